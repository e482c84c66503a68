"""Sessions as a whole: how options are written, how a session ends (exit status, counts,
hooks, a second Ctrl-C), what the controller does under xdist, and worker threads.

Real pytest sessions (pytester in-process, or ``python -m pytest`` processes for signals and
xdist timing) against real SQLite stores; every wait is bounded.
"""

from __future__ import annotations

import textwrap

import pytest
from processes import store_of

from pytest_experiments import Store

pytestmark = pytest.mark.usefixtures("clean_env")

GRID = """
    import pytest


    @pytest.mark.grid(i=[0, 1, 2])
    def test_point(i):
        return {"value": i}
"""


# -- path options are one token -----------------------------------------------------------

PATH_OPTIONS = ["--xp-store", "--xp-baseline", "--xp-save-baseline", "--xp-report-md"]


def usage_error_line(result: pytest.RunResult) -> str:
    """The one line of a session refused at start (exit 4, no traceback)."""
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output
    assert "INTERNALERROR" not in output
    errors = [line for line in result.stderr.lines if line.strip()]
    assert len(errors) == 1, errors
    return errors[0]


@pytest.mark.parametrize("exists", [False, True], ids=["new-path", "existing-path"])
@pytest.mark.parametrize("option", PATH_OPTIONS)
def test_path_option_as_two_tokens_is_a_usage_error(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, option: str, exists: bool
) -> None:
    pytester.makeini("[pytest]\ntestpaths = experiments\n")
    (pytester.path / "experiments").mkdir()
    (pytester.path / "experiments" / "test_grid.py").write_text(textwrap.dedent(GRID))
    # Outside the project: as a test path it would move the rootdir to a common ancestor.
    target = tmp_path_factory.mktemp("elsewhere") / ("store" if option == "--xp-store" else "file.json")
    if exists:
        target.mkdir() if option == "--xp-store" else target.write_text("{}")

    line = usage_error_line(pytester.runpytest(option, str(target)))
    assert line == (
        f"ERROR: xp: write {option}={target} as one token: given as two, pytest takes {target} for a test path "
        "when it looks for the rootdir and ini file, which changes every node id"
    )
    assert not store_of(pytester).exists()
    assert exists == target.exists()


@pytest.mark.parametrize("where", ["PYTEST_ADDOPTS", "addopts"])
def test_two_tokens_are_refused_in_addopts_too(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    store = tmp_path_factory.mktemp("elsewhere") / "store"
    store.mkdir()
    pytester.makepyfile(test_grid=GRID)
    if where == "addopts":
        pytester.makeini(f"[pytest]\naddopts = --xp-store {store}\n")
    else:
        pytester.makeini("[pytest]\n")
        monkeypatch.setenv("PYTEST_ADDOPTS", f"-q --xp-store {store}")
    line = usage_error_line(pytester.runpytest())
    assert line.startswith(f"ERROR: xp: write --xp-store={store} as one token")
    assert not (store / "experiments.sqlite").exists()


def test_one_token_keeps_the_rootdir_ini_and_node_ids(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory
) -> None:
    pytester.makeini("[pytest]\ntestpaths = experiments\n")
    (pytester.path / "experiments").mkdir()
    (pytester.path / "experiments" / "test_grid.py").write_text(textwrap.dedent(GRID))
    store = tmp_path_factory.mktemp("elsewhere") / "store"

    first = pytester.runpytest(f"--xp-store={store}")
    first.assert_outcomes(passed=3)
    # The second session sees an existing store: same rootdir, same ini, same node ids, so
    # resume finds every grid point done.
    second = pytester.runpytest(f"--xp-store={store}", "--xp-resume")
    assert second.ret == pytest.ExitCode.OK
    for result in (first, second):
        assert f"rootdir: {pytester.path}" in result.stdout.lines
        assert "configfile: tox.ini" in result.stdout.lines  # what makeini writes
    assert "xp: resume: 3 done, 0 to run; nothing left to run" in second.stdout.lines
    with Store.open(store) as opened:
        node_ids = sorted(run.node_id for run in opened.runs(history=True))
    assert node_ids == [f"experiments/test_grid.py::test_point[i={i}]" for i in range(3)]
