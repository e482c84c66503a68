"""``pytest-experiments baseline save`` and ``pytest-experiments compare`` on stores written by real sessions.

The command line runs in-process through ``pytest_experiments.cli.main`` (output read with
capsys), and as ``python -m pytest_experiments`` in a subprocess where exit codes and
stderr matter.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import cli, user_error

from pytest_experiments import Store

needs_scipy = pytest.mark.skipif(importlib.util.find_spec("scipy") is None, reason="comparing over seeds needs scipy")

EXPERIMENTS = """
import json
from pathlib import Path

import pytest

DATA = json.loads(Path(__file__).with_name("data.json").read_text())


@pytest.mark.grid(x=DATA["xs"])
def test_grid(x):
    return {"acc": DATA["acc"][str(x)], "loss": 1.0 / x, "seconds": DATA["seconds"] * x}


@pytest.mark.grid(lr=[0.1, 0.2], seed=[0, 1, 2])
def test_seeds(lr, seed):
    return {"score": DATA["scores"][str(lr)][seed]}
"""

INI = """
[pytest]
xp_compare =
    acc higher 0.01
    loss lower 5%
"""

SCORES = {"0.1": [0.80, 0.84, 0.82], "0.2": [0.80, 0.84, 0.82]}
BEFORE = {"xs": [1, 2, 3], "acc": {"1": 0.91, "2": 0.92, "3": 0.93}, "seconds": 10.0, "scores": SCORES}
# x=2 regresses, x=3 improves, x=4 is new; the scores are noisy for lr=0.1 and really drop for lr=0.2.
AFTER = {
    "xs": [1, 2, 3, 4],
    "acc": {"1": 0.905, "2": 0.87, "3": 0.98, "4": 0.5},
    "seconds": 20.0,
    "scores": {"0.1": [0.79, 0.83, 0.79], "0.2": [0.70, 0.73, 0.71]},
}
HEADER = ["run", "metric", "baseline", "new", "delta", "verdict"]


pytestmark = pytest.mark.usefixtures("clean_env")


def set_data(pytester: pytest.Pytester, data: dict[str, Any]) -> None:
    (pytester.path / "data.json").write_text(json.dumps(data), encoding="utf-8")


def session(pytester: pytest.Pytester, data: dict[str, Any], *args: str) -> str:
    """Run the experiments on ``data`` into the default store; return the new session's id."""
    set_data(pytester, data)
    pytester.runpytest("-p", "no:cacheprovider", *args)
    with Store.open(pytester.path / ".experiments") as store:
        return store.sessions()[-1].session_id


@pytest.fixture
def two_sessions(pytester: pytest.Pytester) -> tuple[str, str]:
    """A store (the default, .experiments) with a session on BEFORE and then one on AFTER."""
    pytester.makepyfile(test_exp=EXPERIMENTS)
    pytester.makefile(".ini", pytest=INI)
    return session(pytester, BEFORE), session(pytester, AFTER)


def table(out: str) -> list[list[str]]:
    """The rows of the text table (after the ``comparing ...`` line), cells split on whitespace."""
    lines = out.splitlines()
    assert lines[0].startswith("comparing ")
    rows = [line.split() for line in lines[1:] if line and not line.startswith("no comparison rules")]
    assert rows[0] == HEADER
    return rows[1:]


def verdicts(out: str) -> dict[tuple[str, str], str]:
    """(run, metric) -> verdict of a text table; ``new`` and ``not run`` rows have no metric."""
    found = {}
    for row in table(out):
        if row[-1] == "new" or row[-2:] == ["not", "run"]:
            found[(row[0], "")] = "new" if row[-1] == "new" else "not run"
        else:
            found[(row[0], row[1])] = " ".join(row[5:])
    return found


# -- baseline save ------------------------------------------------------------------------


def test_baseline_save_writes_the_same_file_as_the_plugin(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    pytester.makepyfile(test_exp=EXPERIMENTS)
    pytester.makefile(".ini", pytest=INI)
    session(pytester, BEFORE, "--xp-save-baseline=plugin.json")
    code, out, err = cli(capsys, "baseline", "save", "cli.json")
    assert (code, err) == (0, "")
    assert out == "baseline written to cli.json: 0 updated, 9 added, 0 kept (9 entries)\n"
    assert (pytester.path / "cli.json").read_bytes() == (pytester.path / "plugin.json").read_bytes()
    text = (pytester.path / "cli.json").read_text(encoding="utf-8")
    data = json.loads(text)
    assert text == json.dumps(data, sort_keys=True, indent=2) + "\n"
    assert data["runs"]["test_exp.py::test_grid[x=2]"]["metrics"] == {"acc": 0.92, "loss": 0.5, "seconds": 20.0}


def test_baseline_save_takes_the_latest_passed_run_of_each_grid_point(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    pytester.makepyfile(test_exp=EXPERIMENTS)
    pytester.makefile(".ini", pytest=INI)
    session(pytester, BEFORE)
    # A second session: x=1 changes, x=3 fails (no acc for it), the seeds are not run at all.
    session(pytester, {**BEFORE, "acc": {"1": 0.5, "2": 0.92}}, "-k", "test_grid")
    store = pytester.path / ".experiments"
    code, out, err = cli(capsys, "baseline", "save", "out/base.json", "--experiment", "test_grid", "--store", store)
    assert (code, err) == (0, "")
    assert out == "baseline written to out/base.json: 0 updated, 2 added, 0 kept (2 entries)\n"
    runs = json.loads((pytester.path / "out" / "base.json").read_text(encoding="utf-8"))["runs"]
    # x=3's latest run failed: left out (not replaced by its older passed run); seeds: other experiment.
    assert sorted(runs) == ["test_exp.py::test_grid[x=1]", "test_exp.py::test_grid[x=2]"]
    assert runs["test_exp.py::test_grid[x=1]"]["metrics"]["acc"] == 0.5  # the latest run
    assert runs["test_exp.py::test_grid[x=1]"]["params"] == {"x": 1}

    code, out, _ = cli(
        capsys, "baseline", "save", "all.json", "--experiment", "test_grid", "--experiment", "test_seeds"
    )
    assert (code, out) == (0, "baseline written to all.json: 0 updated, 8 added, 0 kept (8 entries)\n")


def test_baseline_save_merges_into_the_file(pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]) -> None:
    pytester.makepyfile(test_exp=EXPERIMENTS)
    pytester.makefile(".ini", pytest=INI)
    session(pytester, BEFORE)
    code, out, _ = cli(capsys, "baseline", "save", "b.json")
    assert (code, out) == (0, "baseline written to b.json: 0 updated, 9 added, 0 kept (9 entries)\n")
    saved = json.loads((pytester.path / "b.json").read_text(encoding="utf-8"))["runs"]
    session(pytester, {**BEFORE, "acc": {"1": 0.5, "2": 0.6, "3": 0.7}}, "-k", "test_grid")
    code, out, _ = cli(capsys, "baseline", "save", "b.json", "--experiment", "test_grid")
    assert (code, out) == (0, "baseline written to b.json: 3 updated, 0 added, 6 kept (9 entries)\n")
    merged = json.loads((pytester.path / "b.json").read_text(encoding="utf-8"))["runs"]
    assert {node: entry for node, entry in merged.items() if "test_seeds" in node} == {
        node: entry for node, entry in saved.items() if "test_seeds" in node
    }
    assert merged["test_exp.py::test_grid[x=1]"]["metrics"]["acc"] == 0.5


@pytest.mark.parametrize("where", ["folder", "below-a-file", "read-only-mount", "not-a-baseline"])
def test_baseline_save_to_an_unusable_file_is_one_line_and_leaves_nothing(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str], tmpfs: Callable[..., Path], where: str
) -> None:
    pytester.makepyfile(test_exp=EXPERIMENTS)
    pytester.makefile(".ini", pytest=INI)
    session(pytester, BEFORE)
    (pytester.path / "notes.txt").write_text("mine", encoding="utf-8")
    if where == "folder":
        target = pytester.path / "out"
        target.mkdir()
        expected = f"{target} is a folder; give a file name"
    elif where == "below-a-file":
        target = pytester.path / "notes.txt" / "b.json"
        expected = f"cannot write {target}: {pytester.path / 'notes.txt'} is not a folder"
    elif where == "read-only-mount":
        target = tmpfs("ro", read_only=True) / "b.json"
        expected = f"cannot write {target}: {target.parent} is not writable"
    else:
        target = pytester.path / "notes.txt"
        expected = f"baseline {target} is not a readable JSON file (Expecting value: line 1 column 1 (char 0)); move it away to save a new baseline"
    before = sorted(pytester.path.rglob("*"))
    line = user_error(capsys, "baseline", "save", target)
    assert line == f"pytest-experiments: error: cannot save the baseline: {expected}"
    assert sorted(pytester.path.rglob("*")) == before  # nothing written, no *.partial
    assert (pytester.path / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_baseline_save_errors(pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]) -> None:
    pytester.makefile(".ini", pytest=INI)
    assert "no experiment store at" in user_error(capsys, "baseline", "save", "b.json")
    assert "no experiment store at /nonexistent/store" in user_error(
        capsys, "baseline", "save", "b.json", "--store", "/nonexistent/store"
    )
    empty = pytester.path / "empty"
    Store.open(empty, create=True).close()
    assert "no passed run to save" in user_error(capsys, "baseline", "save", "b.json", "--store", empty)
    corrupt = pytester.path / "corrupt"
    corrupt.mkdir()
    (corrupt / "experiments.sqlite").write_text("not a database", encoding="utf-8")
    assert "is not a pytest-experiments database" in user_error(
        capsys, "baseline", "save", "b.json", "--store", corrupt
    )
    assert not (pytester.path / "b.json").exists()


def test_baseline_save_unknown_experiment(two_sessions: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    line = user_error(capsys, "baseline", "save", "b.json", "--experiment", "test_nope")
    assert "no passed run to save; run the experiments first (or check --experiment)" in line


# -- compare ------------------------------------------------------------------------------


def test_compare_baseline_file_with_the_stores_latest_runs(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    pytester.makepyfile(test_exp=EXPERIMENTS)
    pytester.makefile(".ini", pytest=INI)
    session(pytester, BEFORE, "--xp-save-baseline=baseline.json")
    session(pytester, AFTER)
    code, out, err = cli(capsys, "compare", "baseline.json")  # NEW: the latest runs of the store found from here
    assert (code, err) == (1, "")
    assert (
        out.splitlines()[0] == f"comparing latest runs of {pytester.path / '.experiments'} with baseline baseline.json"
    )
    rows = table(out)
    assert rows[:4] == [
        ["test_exp.py::test_grid[x=2]", "acc", "0.92", "0.87", "-0.05", "regressed"],
        ["test_exp.py::test_grid[x=3]", "acc", "0.93", "0.98", "+0.05", "improved"],
        ["test_exp.py::test_grid[x=4]", "-", "-", "new"],
        ["test_exp.py::test_grid[x=1]", "acc", "0.91", "0.905", "-0.005", "ok"],
    ]
    found = verdicts(out)
    assert found[("test_exp.py::test_grid[x=1]", "loss")] == "ok"
    assert found[("test_exp.py::test_grid[x=3]", "seconds")] == "shown"
    assert found[("test_exp.py::test_seeds[lr=0.2-seed=0]", "score")] == "shown"  # no rule: shown, never judged
    assert len(found) == 3 * 3 + 1 + 6  # acc, loss, seconds of x=1..3, x=4 new, score of 6 seed runs
    lines = out.splitlines()
    assert len({line.index(line.split()[1]) for line in lines[1:] if len(line.split()) == 6}) == 1  # aligned


def test_compare_markdown(two_sessions: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    first, second = two_sessions
    code, out, err = cli(capsys, "compare", first, second, "--format", "markdown")
    assert (code, err) == (1, "")
    lines = out.splitlines()
    assert lines[:4] == [
        f"Comparing session {second} with session {first}",
        "",
        "| run | metric | baseline | new | delta | verdict |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    assert lines[4:7] == [
        "| test_exp.py::test_grid[x=2] | acc | 0.92 | 0.87 | -0.05 | ❌ regressed |",
        "| test_exp.py::test_grid[x=3] | acc | 0.93 | 0.98 | +0.05 | ✅ improved |",
        "| test_exp.py::test_grid[x=4] |  | - | - |  | 🆕 new |",
    ]
    assert "| test_exp.py::test_grid[x=1] | loss | 1 | 1 | +0 | ok |" in lines
    assert "| test_exp.py::test_seeds[lr=0.1-seed=2] | score | 0.82 | 0.79 | -0.03 | shown |" in lines
    assert lines[-1] == "1 regressed, 1 improved, 4 ok, 9 shown, 1 new"


def test_compare_sources_sessions_prefixes_and_store_folders(
    pytester: pytest.Pytester, two_sessions: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = two_sessions
    store = pytester.path / ".experiments"
    by_ids = cli(capsys, "compare", first, second)
    assert by_ids[0] == 1
    assert by_ids[1].splitlines()[0] == f"comparing session {second} with session {first}"
    expected = verdicts(by_ids[1])
    assert expected[("test_exp.py::test_grid[x=2]", "acc")] == "regressed"
    # A session id as BASE, NEW defaulting to the store's latest runs (here: the second session's).
    default = cli(capsys, "compare", first)
    assert default[1].splitlines()[0] == f"comparing latest runs of {store} with session {first}"
    assert (default[0], verdicts(default[1])) == (1, expected)
    # A unique prefix of a session id, and the store given as a folder.
    prefixed = cli(capsys, "compare", first[:-4], store)
    assert prefixed[1].splitlines()[0] == f"comparing latest runs of {store} with session {first}"
    assert (prefixed[0], verdicts(prefixed[1])) == (1, expected)
    # A session with itself, and the store's latest runs with themselves: all ok, exit 0.
    same = cli(capsys, "compare", second, second)
    assert same[0] == 0
    assert set(verdicts(same[1]).values()) == {"ok", "shown"}
    assert cli(capsys, "compare", store, "--store", store)[0] == 0


def test_compare_reverse_direction_regresses_what_improved(
    two_sessions: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = two_sessions
    code, out, _ = cli(capsys, "compare", second, first)
    assert code == 1  # x=3 goes back from 0.98 to 0.93
    found = verdicts(out)
    assert found[("test_exp.py::test_grid[x=3]", "acc")] == "regressed"
    assert found[("test_exp.py::test_grid[x=2]", "acc")] == "improved"
    assert found[("test_exp.py::test_grid[x=4]", "")] == "not run"  # in BASE, not in NEW: listed, not judged


def test_compare_rules_from_options_replace_the_ini(
    two_sessions: tuple[str, str], capsys: pytest.CaptureFixture[str], pytester: pytest.Pytester
) -> None:
    first, second = two_sessions
    code, out, _ = cli(capsys, "compare", first, second, "--rule", "acc higher 0.1", "--rule", "seconds lower 200%")
    assert code == 0  # acc within the looser tolerance; seconds doubled, within 200%
    found = verdicts(out)
    assert found[("test_exp.py::test_grid[x=2]", "acc")] == "ok"
    assert found[("test_exp.py::test_grid[x=2]", "seconds")] == "ok"
    assert found[("test_exp.py::test_grid[x=2]", "loss")] == "shown"  # the ini's loss rule is not used
    code, out, _ = cli(capsys, "compare", first, second, "--rule", "seconds lower 50%")
    assert code == 1
    assert verdicts(out)[("test_exp.py::test_grid[x=1]", "seconds")] == "regressed"
    # Without any rule nothing is judged, whatever changed.
    (pytester.path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    code, out, _ = cli(capsys, "compare", first, second)
    assert code == 0
    assert set(verdicts(out).values()) == {"shown", "new"}
    assert (
        out.splitlines()[-1] == "no comparison rules (--rule or the xp_compare ini key): metrics are shown, not judged"
    )


@needs_scipy
def test_compare_over_seeds(two_sessions: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    first, second = two_sessions
    code, out, _ = cli(capsys, "compare", first, second, "--rule", "score higher 0.01", "--over", "seed")
    assert code == 1
    rows = {row[0]: row for row in table(out) if row[1] == "score"}
    assert set(rows) == {"test_exp.py::test_seeds[lr=0.1]", "test_exp.py::test_seeds[lr=0.2]"}
    assert rows["test_exp.py::test_seeds[lr=0.1]"][2:] == ["0.82", "0.803333", "-0.0166667", "ok", "p=0.2"]
    assert rows["test_exp.py::test_seeds[lr=0.2]"][2:] == ["0.82", "0.713333", "-0.106667", "regressed", "p=0.00118"]
    # Judged run by run, noise alone fails the lr=0.1 seeds too.
    code, out, _ = cli(capsys, "compare", first, second, "--rule", "score higher 0.01")
    assert code == 1
    assert verdicts(out)[("test_exp.py::test_seeds[lr=0.1-seed=2]", "score")] == "regressed"
    # The rule's own over=, and --alpha.
    code, out, _ = cli(capsys, "compare", first, second, "--rule", "score higher 0.2 over=seed")
    assert code == 0
    assert verdicts(out)[("test_exp.py::test_seeds[lr=0.2]", "score")] == "ok p=0.00118"
    code, out, _ = cli(capsys, "compare", first, second, "--rule", "score higher 0.01 over=seed", "--alpha", "0.001")
    assert code == 0  # p = 0.00118 is not below 0.001
    assert verdicts(out)[("test_exp.py::test_seeds[lr=0.2]", "score")] == "ok p=0.00118"


BY_X = """
import json
from pathlib import Path

import pytest

DATA = json.loads(Path(__file__).with_name("data.json").read_text())


@pytest.mark.grid(x=[1, 2, 3, 4])
def test_grid(x):
    return DATA[str(x)]
"""


def test_compare_nan_and_missing_metrics_regress(pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]) -> None:
    pytester.makepyfile(test_exp=BY_X)
    pytester.makefile(".ini", pytest="[pytest]\nxp_compare =\n    acc higher 0.01\n    f1 higher 0.01\n")
    first = session(pytester, {str(x): {"acc": 0.9, "loss": 0.1} for x in (1, 2, 3, 4)})
    # x=1 diverged, x=2 lost its acc, x=3 reports no metric at all, x=4 is fine.
    after = {"1": {"acc": math.nan, "loss": 0.1}, "2": {"loss": 0.1}, "3": None, "4": {"acc": 0.9, "loss": 0.1}}
    second = session(pytester, after)
    code, out, err = cli(capsys, "compare", first, second)
    assert (code, err) == (1, "")
    assert table(out)[:3] == [
        ["test_exp.py::test_grid[x=1]", "acc", "0.9", "nan", "regressed", "(became", "NaN)"],
        ["test_exp.py::test_grid[x=2]", "acc", "0.9", "-", "regressed", "(missing)"],
        ["test_exp.py::test_grid[x=3]", "acc", "0.9", "-", "regressed", "(missing)"],
    ]
    assert verdicts(out)[("test_exp.py::test_grid[x=4]", "acc")] == "ok"
    assert "rule 'f1 higher 0.01' judged nothing: no run reports 'f1'" in out.splitlines()
    code, out, _ = cli(capsys, "compare", first, second, "--format", "markdown")
    assert code == 1
    assert "| test_exp.py::test_grid[x=1] | acc | 0.9 | nan |  | ❌ regressed (became NaN) |" in out.splitlines()
    assert out.splitlines()[-1] == "Rule 'f1 higher 0.01' judged nothing: no run reports 'f1'"
    # The other way round, NaN in the baseline: x=1 recovered.
    code, out, _ = cli(capsys, "compare", second, first)
    assert ["test_exp.py::test_grid[x=1]", "acc", "nan", "0.9", "improved", "(no", "longer", "NaN)"] in table(out)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--over", "seeds"], "--over seeds: no experiment has a parameter 'seeds'; parameters: lr, seed, x"),
        (
            ["--rule", "score higher 0.01 over=seed,fold"],
            "comparison rule 'score higher 0.01 over=seed,fold': over=fold names no parameter of any experiment; "
            "parameters: lr, seed, x",
        ),
    ],
    ids=["option", "rule"],
)
def test_compare_unknown_noise_parameter(
    two_sessions: tuple[str, str], capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    first, second = two_sessions
    assert user_error(capsys, "compare", first, second, *args) == f"pytest-experiments: error: {expected}"


# -- errors -------------------------------------------------------------------------------


def test_compare_errors_are_one_line_and_exit_2(
    pytester: pytest.Pytester, two_sessions: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    first, _ = two_sessions
    assert "'20991231-nope' matches no file, store or session" in user_error(capsys, "compare", "20991231-nope")
    assert "'2' matches 2 sessions" in user_error(capsys, "compare", "2")  # both ids start with the year
    assert "'nope' matches no file, store or session" in user_error(capsys, "compare", first, "nope")
    (pytester.path / "bad.json").write_text("{", encoding="utf-8")
    assert "baseline bad.json is not a readable JSON file" in user_error(capsys, "compare", "bad.json")
    (pytester.path / "other.json").write_text('{"runs": {}}', encoding="utf-8")
    assert "other.json is not a pytest-experiments baseline (format 1)" in user_error(capsys, "compare", "other.json")
    line = user_error(capsys, "compare", first, "--rule", "acc sideways 1")
    assert "comparison rule 'acc sideways 1': direction must be 'higher' or 'lower', not 'sideways'" in line
    assert "needs a metric, a direction and a tolerance" in user_error(capsys, "compare", first, "--rule", "acc higher")
    assert "--alpha 1.5 is not between 0 and 1" in user_error(capsys, "compare", first, "--alpha", "1.5")
    (pytester.path / "folder").mkdir()
    assert "folder is a folder but not an experiment store" in user_error(capsys, "compare", "folder")
    (pytester.path / "pytest.ini").write_text("[pytest]\nxp_compare = acc sideways 1\n", encoding="utf-8")
    assert "comparison rule 'acc sideways 1'" in user_error(capsys, "compare", first)


def test_compare_missing_empty_and_corrupt_stores(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    pytester.makefile(".ini", pytest=INI)
    (pytester.path / "baseline.json").write_text('{"pytest_experiments_baseline": 1, "runs": {}}', encoding="utf-8")
    missing = pytester.path / ".experiments"
    assert f"no experiment store at {missing}" in user_error(capsys, "compare", "baseline.json")
    # A session id needs a store.
    assert "no experiment store at" in user_error(capsys, "compare", "20261123-000000-abc")
    empty = pytester.path / "empty"
    Store.open(empty, create=True).close()
    line = user_error(capsys, "compare", "baseline.json", "--store", empty)
    assert f"nothing to compare in the latest runs of {empty}: no run with metrics" in line
    assert "nothing to compare" in user_error(capsys, "compare", empty, "baseline.json")
    corrupt = pytester.path / "corrupt"
    corrupt.mkdir()
    (corrupt / "experiments.sqlite").write_text("not a database", encoding="utf-8")
    assert "is not a pytest-experiments database" in user_error(capsys, "compare", "baseline.json", "--store", corrupt)
    assert "is not a pytest-experiments database" in user_error(capsys, "compare", corrupt, "baseline.json")


def test_empty_baseline_file_makes_every_run_new(
    pytester: pytest.Pytester, two_sessions: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = pytester.path / "empty.json"
    path.write_text('{"pytest_experiments_baseline": 1, "runs": {}}', encoding="utf-8")
    code, out, _ = cli(capsys, "compare", path)
    assert code == 0
    assert set(verdicts(out).values()) == {"new"}
    assert len(verdicts(out)) == 10  # x=1..4 and six seed runs


def test_compare_over_seeds_without_scipy(
    two_sessions: tuple[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = two_sessions
    monkeypatch.setitem(sys.modules, "scipy", None)
    line = user_error(capsys, "compare", first, second, "--rule", "score higher 0.01", "--over", "seed")
    assert line == (
        "pytest-experiments: error: comparing over seeds (over=...) needs scipy: pip install 'pytest-experiments[stats]'"
    )


def test_help_shows_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["baseline", "save"], ["compare"]):
        code, out, _ = cli(capsys, *command, "--help")
        assert code == 0
        assert "example" in out
        assert f"pytest-experiments {' '.join(command)} " in out


def test_python_m_exit_codes_and_stderr(pytester: pytest.Pytester, two_sessions: tuple[str, str]) -> None:
    first, second = two_sessions

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest_experiments", *args],
            cwd=pytester.path, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    regressed = run("compare", first, "--format", "markdown")
    assert (regressed.returncode, regressed.stderr) == (1, "")
    assert "| test_exp.py::test_grid[x=2] | acc | 0.92 | 0.87 | -0.05 | ❌ regressed |" in regressed.stdout
    fine = run("compare", second)
    assert (fine.returncode, fine.stderr) == (0, "")
    saved = run("baseline", "save", "b.json")
    assert (saved.returncode, saved.stdout) == (
        0,
        "baseline written to b.json: 0 updated, 10 added, 0 kept (10 entries)\n",
    )
    bad = run("compare", "b.json", "--rule", "acc sideways 1")
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert bad.stderr.count("\n") == 1
    assert bad.stderr.startswith("pytest-experiments: error: comparison rule 'acc sideways 1'")
