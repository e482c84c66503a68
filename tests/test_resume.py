"""Resume, retry failures, rerun changed code and grid status, against real SQLite stores.

Quick cases run pytest in-process (``pytester.runpytest``); anything about xdist workers,
concurrent sessions or liveness runs real ``python -m pytest`` processes. Every wait is
bounded and every process started here is killed with its process group at teardown.
Claims between concurrently resuming sessions are tested in ``test_claims.py``.
"""

from __future__ import annotations

import contextlib
import json
import linecache
import os
import re
import shutil
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pytest
from backends import Backend
from processes import BLOCKING_GRID, Processes, history, store_of

from pytest_experiments import RunRecord, Store, load, open_store
from pytest_experiments.model import RunStart, SessionStart

pytestmark = pytest.mark.usefixtures("clean_env")


# -- helpers ------------------------------------------------------------------------------


def write_module(pytester: pytest.Pytester, name: str, source: str) -> None:
    """(Re)write a test module so that the next session surely sees the new text.

    Assertion rewriting caches compiled modules by mtime and size, and ``inspect`` caches
    source lines: a rewrite within the same second must not be served from either cache.
    """
    shutil.rmtree(pytester.path / "__pycache__", ignore_errors=True)
    pytester.makepyfile(**{name: source})
    linecache.clearcache()


def runs_per_node(pytester: pytest.Pytester) -> Counter[str]:
    return Counter(run.node_id for run in history(pytester))


def runs_of_latest_session(pytester: pytest.Pytester) -> list[RunRecord]:
    """The runs of the newest session that recorded any."""
    runs = history(pytester)
    latest = max(runs, key=lambda run: run.started_at).session_id
    return [run for run in runs if run.session_id == latest]


def raw_counts(store: Path) -> tuple[int, int]:
    """(runs, sessions) as stored."""
    with contextlib.closing(sqlite3.connect(store / "experiments.sqlite")) as db:
        return (
            db.execute("SELECT count(*) FROM runs").fetchone()[0],
            db.execute("SELECT count(*) FROM sessions").fetchone()[0],
        )


def raw_status(store: Path, run_id: str) -> str:
    with contextlib.closing(sqlite3.connect(store / "experiments.sqlite")) as db:
        return str(db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0])


def xp_line(lines: list[str], prefix: str) -> str:
    """The one output line starting with ``prefix`` (fails if there is not exactly one)."""
    found = [line for line in lines if line.startswith(prefix)]
    assert len(found) == 1, "\n".join(lines)
    return found[0]


def ids(module: str, function: str, values: Iterable[object]) -> set[str]:
    return {f"{module}::{function}[{value}]" for value in values}


def latest_runs(pytester: pytest.Pytester) -> list[RunRecord]:
    with open_store(store_of(pytester)) as store:
        return store.runs()


# -- resume: what counts as done ----------------------------------------------------------

# One experiment whose grid points end in each status. ``interrupt.flag`` makes the point
# "interrupted" raise KeyboardInterrupt (so the session stops there: it is the last point).
MIXED = """
    from pathlib import Path

    import pytest

    FLAG = Path(__file__).with_name("interrupt.flag")


    def test_plain():
        pass


    @pytest.fixture
    def guard(request):
        if request.node.callspec.params["case"] == "error":
            raise RuntimeError("setup broke")


    @pytest.mark.experiment
    @pytest.mark.parametrize("case", {cases})
    def test_case(case, guard):
        if case == "failed":
            raise ValueError("boom")
        if case == "skipped":
            pytest.skip("not today")
        if case == "xfailed":
            pytest.xfail("known")
        if case == "interrupted" and FLAG.exists():
            raise KeyboardInterrupt
        return {{"length": len(case)}}
"""
MIXED_CASES = (
    '["passed", "xfailed", pytest.param("xpassed", marks=pytest.mark.xfail(reason="maybe")), '
    '"failed", "error", "skipped", "interrupted"{more}]'
)


def test_resume_runs_what_is_not_done_and_keeps_failures(pytester: pytest.Pytester, xp_backend: Backend) -> None:
    write_module(pytester, "test_mixed", MIXED.format(cases=MIXED_CASES.format(more="")))
    (pytester.path / "interrupt.flag").write_text("")
    result = pytester.runpytest(no_reraise_ctrlc=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    before = {run.params["case"]: run.status for run in history(pytester)}
    assert before == {
        "passed": "passed",
        "xfailed": "xfailed",
        "xpassed": "xpassed",
        "failed": "failed",
        "error": "error",
        "skipped": "skipped",
        "interrupted": "interrupted",
    }

    # The grid grows by one point; the interrupting condition is gone.
    write_module(pytester, "test_mixed", MIXED.format(cases=MIXED_CASES.format(more=', "new"')))
    (pytester.path / "interrupt.flag").unlink()
    result = pytester.runpytest("--xp-resume", "-v")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    line = xp_line(result.stdout.lines, "xp: resume:")
    assert (
        line
        == "xp: resume: 3 done, 3 to run (1 never run, 1 interrupted, 1 skipped); 2 failed kept (--xp-retry-failed)"
    )
    # Deselected like --lf does it: pytest's own counts say so.
    outcomes = result.parseoutcomes()
    assert outcomes["deselected"] == 5
    assert outcomes["passed"] == 3  # test_plain (not an experiment: resume leaves it alone), interrupted, new
    assert outcomes["skipped"] == 1
    result.stdout.fnmatch_lines(["*collected 9 items / 5 deselected / 4 selected*"])
    result.stdout.fnmatch_lines(["test_mixed.py::test_plain PASSED*"])

    # Only the points that were not done got new runs; kept failures were not touched.
    new = runs_of_latest_session(pytester)
    assert sorted(run.params["case"] for run in new) == ["interrupted", "new", "skipped"]
    assert Counter(run.params["case"] for run in history(pytester)) == {
        "passed": 1,
        "xfailed": 1,
        "xpassed": 1,
        "failed": 1,
        "error": 1,
        "skipped": 2,
        "interrupted": 2,
        "new": 1,
    }
    latest = {run.params["case"]: run.status for run in latest_runs(pytester)}
    assert latest["failed"] == "failed"
    assert latest["error"] == "error"
    assert latest["interrupted"] == "passed"


REORDERED = """
    import pytest


    @pytest.mark.experiment
    @pytest.mark.parametrize("cfg", {configs})
    def test_fit(cfg):
        return {{"lr": cfg["lr"]}}
"""


def test_reordered_grid_still_counts_old_runs_as_done(pytester: pytest.Pytester, xp_backend: Backend) -> None:
    # Dicts get positional ids (cfg0, cfg1...): reordering the grid shifts every id.
    write_module(pytester, "test_fit", REORDERED.format(configs='[{"lr": 0.1}, {"lr": 0.2}]'))
    pytester.runpytest().assert_outcomes(passed=2)
    old = {run.node_id: run.params["cfg"]["lr"] for run in history(pytester)}
    assert old == {"test_fit.py::test_fit[cfg0]": 0.1, "test_fit.py::test_fit[cfg1]": 0.2}

    write_module(pytester, "test_fit", REORDERED.format(configs='[{"lr": 0.3}, {"lr": 0.2}, {"lr": 0.1}]'))
    result = pytester.runpytest("--xp-resume")
    result.assert_outcomes(passed=1, deselected=2)
    assert xp_line(result.stdout.lines, "xp: resume:") == "xp: resume: 2 done, 1 to run (1 never run)"
    [new] = runs_of_latest_session(pytester)
    # The new point took the id an old run was recorded under, and still is the only one run.
    assert new.node_id == "test_fit.py::test_fit[cfg0]"
    assert new.params == {"cfg": {"lr": 0.3}}
    assert len(history(pytester)) == 3


CHANGED_VALUES = """
    import pytest


    @pytest.mark.experiment
    @pytest.mark.parametrize("x", {values}, ids=["a", "b"])
    def test_value(x):
        return x
"""


def test_changed_values_under_unchanged_id_are_not_done(pytester: pytest.Pytester) -> None:
    write_module(pytester, "test_value", CHANGED_VALUES.format(values="[1, 2]"))
    pytester.runpytest().assert_outcomes(passed=2)

    write_module(pytester, "test_value", CHANGED_VALUES.format(values="[1, 3]"))
    result = pytester.runpytest("--xp-resume")
    result.assert_outcomes(passed=1, deselected=1)
    assert xp_line(result.stdout.lines, "xp: resume:") == "xp: resume: 1 done, 1 to run (1 never run)"
    [new] = runs_of_latest_session(pytester)
    assert (new.node_id, new.params) == ("test_value.py::test_value[b]", {"x": 3})
    # Under id "b" there are now two grid points, each with its own latest run.
    frame = load(store_of(pytester))
    assert sorted(frame.loc[frame["node_id"] == "test_value.py::test_value[b]", "params.x"]) == [2, 3]


# -- retry failed -------------------------------------------------------------------------

# ``model`` holds the bug; the experiment function itself does not change when it is fixed.
RETRY = """
    from pathlib import Path

    import pytest

    FLAG = Path(__file__).with_name("interrupt.flag")


    def model(i):
        {model}


    def test_plain():
        pass


    @pytest.fixture
    def data(request):
        {data}
        return request.node.callspec.params["i"]


    @pytest.mark.experiment
    @pytest.mark.parametrize("i", range(6))
    def test_point(i, data):
        if i == 5 and FLAG.exists():
            raise KeyboardInterrupt
        return {{"value": model(i)}}
"""
BUGGY_MODEL = "return 1 / (i - 1)  # i == 1 fails"
FIXED_MODEL = "return 1 / (i + 1)"
BUGGY_DATA = 'assert request.node.callspec.params["i"] != 3, "no data for 3"'
FIXED_DATA = "pass"


def test_retry_failed_after_fixing_a_failure(pytester: pytest.Pytester, xp_backend: Backend) -> None:
    write_module(pytester, "test_retry", RETRY.format(model=BUGGY_MODEL, data=BUGGY_DATA))
    (pytester.path / "interrupt.flag").write_text("")
    result = pytester.runpytest(no_reraise_ctrlc=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    first = load(store_of(pytester), history=True)
    statuses = dict(zip(first["params.i"], first["status"], strict=True))
    assert statuses == {0: "passed", 1: "failed", 2: "passed", 3: "error", 4: "passed", 5: "interrupted"}

    write_module(pytester, "test_retry", RETRY.format(model=FIXED_MODEL, data=FIXED_DATA))
    (pytester.path / "interrupt.flag").unlink()
    result = pytester.runpytest("--xp-retry-failed")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    # Like --lf: tests that are not experiments are deselected too.
    result.assert_outcomes(passed=3, deselected=4)
    line = xp_line(result.stdout.lines, "xp: retry-failed:")
    assert line == "xp: retry-failed: 3 done, 3 to run (1 failed, 1 error, 1 interrupted)"

    after = load(store_of(pytester), history=True)
    assert len(after) == len(first) + 3
    new = after[~after["run_id"].isin(first["run_id"])]
    assert sorted(new["params.i"]) == [1, 3, 5]
    assert set(new["status"]) == {"passed"}
    assert new["session_id"].nunique() == 1
    # The old runs are history, untouched.
    old = after[after["run_id"].isin(first["run_id"])]
    assert dict(zip(old["params.i"], old["status"], strict=True)) == statuses
    latest = load(store_of(pytester))
    assert set(latest["status"]) == {"passed"}
    assert len(latest) == 6


def test_resume_and_retry_failed_together_run_every_experiment_not_done(
    pytester: pytest.Pytester, xp_backend: Backend
) -> None:
    write_module(pytester, "test_mixed", MIXED.format(cases=MIXED_CASES.format(more="")))
    (pytester.path / "interrupt.flag").write_text("")
    assert pytester.runpytest(no_reraise_ctrlc=True).ret == pytest.ExitCode.INTERRUPTED
    before = {run.run_id for run in history(pytester)}

    write_module(pytester, "test_mixed", MIXED.format(cases=MIXED_CASES.format(more=', "new"')))
    (pytester.path / "interrupt.flag").unlink()
    result = pytester.runpytest("--xp-resume", "--xp-retry-failed")
    # test_plain runs too: with --xp-resume, tests that are not experiments are left alone.
    result.assert_outcomes(passed=3, failed=1, errors=1, skipped=1, deselected=3)
    line = xp_line(result.stdout.lines, "xp: resume + retry-failed:")
    assert line == (
        "xp: resume + retry-failed: 3 done, 5 to run (1 never run, 1 interrupted, 1 skipped, 1 failed, 1 error)"
    )
    new = [run for run in history(pytester) if run.run_id not in before]
    assert sorted(run.params["case"] for run in new) == ["error", "failed", "interrupted", "new", "skipped"]


GRID = """
    import pytest


    @pytest.mark.experiment
    @pytest.mark.parametrize("i", range(3))
    def test_point(i):
        return i
"""
PLAIN = """
    def test_plain():
        pass
"""


@pytest.mark.parametrize(
    "workers", [[], ["-n", "2"], ["-p", "no:xdist"]], ids=["in-process", "xdist", "xdist-plugin-off"]
)
@pytest.mark.parametrize(
    ("flags", "mode", "paths", "deselected"),
    [
        (["--xp-resume"], "resume", ["test_grid.py"], 3),
        (["--xp-retry-failed"], "retry-failed", [], 4),
    ],
    ids=["resume", "retry-failed"],
)
def test_nothing_left_to_run_exits_zero(
    pytester: pytest.Pytester, workers: list[str], flags: list[str], mode: str, paths: list[str], deselected: int
) -> None:
    write_module(pytester, "test_grid", GRID)
    write_module(pytester, "test_plain", PLAIN)
    pytester.runpytest().assert_outcomes(passed=4)
    counts = raw_counts(store_of(pytester))

    result = pytester.runpytest(*flags, *workers, *paths)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()  # not 5: cluster scripts run under set -e
    assert xp_line(result.stdout.lines, f"xp: {mode}:") == f"xp: {mode}: 3 done, 0 to run; nothing left to run"
    # Under -n too: the controller selected, and started no worker for nothing.
    assert result.parseoutcomes() == {"deselected": deselected}
    assert "created:" not in result.stdout.str()
    assert "[gw" not in result.stdout.str()
    assert raw_counts(store_of(pytester)) == counts  # nothing recorded, not even a session


# -- rerun changed code -------------------------------------------------------------------

CODE = """
    import pytest


    @pytest.mark.experiment
    @pytest.mark.parametrize("i", range(3))
    def test_a(i):
        return {{"v": {a}}}


    @pytest.mark.grid(j=[0, 1])
    def test_b(j):
        return {{"w": j}}


    @pytest.mark.grid(k=[0])
    def test_c(k):
        return {{"u": {c}}}
"""


def test_rerun_changed_after_editing_the_function_body(pytester: pytest.Pytester, xp_backend: Backend) -> None:
    write_module(pytester, "test_code", CODE.format(a="i", c="k"))
    pytester.runpytest().assert_outcomes(passed=6)
    before = {run.run_id: run for run in history(pytester)}

    # Bodies of test_a and test_c change; test_b and every grid stay as they were.
    write_module(pytester, "test_code", CODE.format(a="i * 10", c="k - 1"))
    result = pytester.runpytest("--xp-resume")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert xp_line(result.stdout.lines, "xp: resume:") == (
        "xp: resume: 6 done, 0 to run; 4 done with older code (test_a: 3, test_c: 1; --xp-rerun-changed reruns them)"
        "; nothing left to run"
    )
    assert len(history(pytester)) == 6

    result = pytester.runpytest("--xp-resume", "--xp-rerun-changed")
    result.assert_outcomes(passed=4, deselected=2)
    assert xp_line(result.stdout.lines, "xp: resume:") == "xp: resume: 2 done, 4 to run (4 code changed)"
    new = [run for run in history(pytester) if run.run_id not in before]
    assert sorted(run.node_id for run in new) == sorted(
        [*ids("test_code.py", "test_a", range(3)), "test_code.py::test_c[k=0]"]
    )
    assert {run.node_id: run.metrics for run in new if run.experiment == "test_a"} == {
        f"test_code.py::test_a[{i}]": {"v": float(i * 10)} for i in range(3)
    }
    old_code = {run.experiment: run.code_sha256 for run in before.values()}
    for run in new:
        assert run.code_sha256 is not None
        assert run.code_sha256 != old_code[run.experiment]

    # Now everything ran the current code.
    result = pytester.runpytest("--xp-resume", "--xp-rerun-changed")
    assert result.ret == pytest.ExitCode.OK
    assert xp_line(result.stdout.lines, "xp: resume:") == "xp: resume: 6 done, 0 to run; nothing left to run"


def test_editing_only_the_grid_mark_is_not_a_code_change(pytester: pytest.Pytester) -> None:
    write_module(pytester, "test_code", CODE.format(a="i", c="k"))
    pytester.runpytest().assert_outcomes(passed=6)

    source = CODE.format(a="i", c="k").replace("grid(j=[0, 1])", "grid(j=[0, 1, 2], where=lambda j: j < 5)")
    source = source.replace("range(3)", "[0, 1, 2, 3]")
    write_module(pytester, "test_code", source)
    result = pytester.runpytest("--xp-resume", "--xp-rerun-changed")
    result.assert_outcomes(passed=2, deselected=6)
    assert xp_line(result.stdout.lines, "xp: resume:") == "xp: resume: 6 done, 2 to run (2 never run)"
    assert sorted(run.node_id for run in runs_of_latest_session(pytester)) == [
        "test_code.py::test_a[3]",
        "test_code.py::test_b[j=2]",
    ]


def test_rerun_changed_without_resume_is_a_usage_error(pytester: pytest.Pytester) -> None:
    write_module(pytester, "test_grid", GRID)
    result = pytester.runpytest_subprocess("--xp-rerun-changed", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [line for line in result.stderr.lines if line.strip()]
    assert lines == ["ERROR: xp: --xp-rerun-changed only applies with --xp-resume; add --xp-resume"]
    assert not store_of(pytester).exists()


# -- status -------------------------------------------------------------------------------

STATUS = """
    from pathlib import Path

    import pytest

    FLAG = Path(__file__).with_name("interrupt.flag")


    @pytest.fixture
    def guard(request):
        if request.node.callspec.params["i"] == 3:
            raise RuntimeError("setup broke")


    @pytest.mark.grid(i={alpha})
    def test_alpha(i, guard):
        if i == 1:
            pytest.skip("not today")
        if i == 2:
            raise ValueError("boom")
        return i


    @pytest.mark.grid(g=[0, 1])
    def test_gamma(g):
        return {gamma}


    @pytest.mark.grid(b=[0, 1])
    def test_beta(b):
        if b == 1 and FLAG.exists():
            raise KeyboardInterrupt
        return b
"""


def status_table(lines: list[str]) -> dict[str, dict[str, int]]:
    """The ``--xp-status`` table as {experiment: {column: count}}."""
    start = next(index for index, line in enumerate(lines) if line.startswith("experiment "))
    header = re.split(r"\s{2,}", lines[start].strip())
    table = {}
    for line in lines[start + 1 :]:
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) != len(header) or not all(cell.isdigit() for cell in cells[1:]):
            break
        table[cells[0]] = dict(zip(header[1:], map(int, cells[1:]), strict=True))
    return table


def status_node_ids(lines: list[str]) -> dict[str, list[str]]:
    """The ``-v`` listing under the table: {status: node ids}."""
    listing: dict[str, list[str]] = {}
    current = None
    for line in lines:
        if re.fullmatch(r"[a-z][a-z ]*:", line):
            current = listing.setdefault(line[:-1], [])
        elif current is not None and line.startswith("  "):
            current.append(line.strip())
        elif current is not None:
            current = None
    return listing


def make_status_store(pytester: pytest.Pytester) -> None:
    write_module(pytester, "test_status", STATUS.format(alpha="[0, 1, 2, 3]", gamma="g"))
    (pytester.path / "interrupt.flag").write_text("")
    assert pytester.runpytest(no_reraise_ctrlc=True).ret == pytest.ExitCode.INTERRUPTED
    # One more alpha point (never run) and a changed gamma body (older code).
    write_module(pytester, "test_status", STATUS.format(alpha="[0, 1, 2, 3, 4]", gamma="g + 100"))
    (pytester.path / "interrupt.flag").unlink()


COLUMNS = ("grid", "done", "failed", "error", "interrupted", "paused", "skipped", "running", "never run", "older code")
EXPECTED_STATUS = {
    "test_status.py::test_alpha": dict(zip(COLUMNS, (5, 1, 1, 1, 0, 0, 1, 0, 1, 0), strict=True)),
    "test_status.py::test_gamma": dict(zip(COLUMNS, (2, 2, 0, 0, 0, 0, 0, 0, 0, 2), strict=True)),
    "test_status.py::test_beta": dict(zip(COLUMNS, (2, 1, 0, 0, 1, 0, 0, 0, 0, 0), strict=True)),
}


def test_status_prints_the_grid_by_status_and_runs_nothing(pytester: pytest.Pytester) -> None:
    make_status_store(pytester)
    store = store_of(pytester)
    counts = raw_counts(store)

    result = pytester.runpytest("--xp-status")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    lines = result.stdout.lines
    assert f"xp status (store: {store})" in lines
    assert status_table(lines) == EXPECTED_STATUS
    result.stdout.fnmatch_lines(["*no tests ran*"])
    assert "PASSED" not in result.stdout.str()
    assert raw_counts(store) == counts  # ran nothing, recorded nothing

    result = pytester.runpytest("--xp-status", "-v")
    assert result.ret == pytest.ExitCode.OK
    assert status_table(result.stdout.lines) == EXPECTED_STATUS
    assert status_node_ids(result.stdout.lines) == {
        "done": [
            "test_status.py::test_alpha[i=0]",
            "test_status.py::test_beta[b=0]",
        ],
        "done with older code": ["test_status.py::test_gamma[g=0]", "test_status.py::test_gamma[g=1]"],
        "error": ["test_status.py::test_alpha[i=3]"],
        "failed": ["test_status.py::test_alpha[i=2]"],
        "interrupted": ["test_status.py::test_beta[b=1]"],
        "never run": ["test_status.py::test_alpha[i=4]"],
        "skipped": ["test_status.py::test_alpha[i=1]"],
    }
    assert raw_counts(store) == counts


def test_status_works_with_k_and_turns_xdist_off(pytester: pytest.Pytester) -> None:
    make_status_store(pytester)
    counts = raw_counts(store_of(pytester))

    result = pytester.runpytest("--xp-status", "-k", "gamma or beta")
    assert result.ret == pytest.ExitCode.OK
    assert status_table(result.stdout.lines) == {
        name: row for name, row in EXPECTED_STATUS.items() if not name.endswith("alpha")
    }

    result = pytester.runpytest("--xp-status", "-k", "alpha and not 4", "-n", "2")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    output = result.stdout.str()
    assert "created:" not in output
    assert "[gw" not in output
    assert status_table(result.stdout.lines) == {
        "test_status.py::test_alpha": dict(EXPECTED_STATUS["test_status.py::test_alpha"], grid=4, **{"never run": 0})
    }
    assert raw_counts(store_of(pytester)) == counts


def test_status_without_a_store_shows_everything_never_run_and_creates_nothing(pytester: pytest.Pytester) -> None:
    write_module(pytester, "test_grid", GRID)
    result = pytester.runpytest("--xp-status")
    assert result.ret == pytest.ExitCode.OK
    assert status_table(result.stdout.lines) == {
        "test_grid.py::test_point": dict(zip(COLUMNS, (3, 0, 0, 0, 0, 0, 0, 0, 3, 0), strict=True))
    }
    assert not store_of(pytester).exists()


# -- option values ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1", "abc"])
def test_bad_lease_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    write_module(pytester, "test_grid", GRID)
    result = pytester.runpytest_subprocess(f"--xp-lease={value}", "--xp-resume", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = result.stderr.str()
    assert "--xp-lease" in errors
    assert f"'{value}' is not a positive number of seconds" in errors
    assert not store_of(pytester).exists()

    pytester.makeini(f"[pytest]\nxp_lease = {value}\n")
    result = pytester.runpytest_subprocess("--xp-resume", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [line for line in result.stderr.lines if line.strip()]
    assert lines == [f"ERROR: xp: ini key xp_lease: '{value}' is not a positive number of seconds, e.g. 300"]
    assert not store_of(pytester).exists()


def test_resume_and_rerun_changed_as_ini_keys(pytester: pytest.Pytester) -> None:
    write_module(pytester, "test_code", CODE.format(a="i", c="k"))
    pytester.runpytest().assert_outcomes(passed=6)
    write_module(pytester, "test_code", CODE.format(a="i + 1", c="k"))
    pytester.makeini("[pytest]\nxp_resume = true\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.OK
    assert xp_line(result.stdout.lines, "xp: resume:").startswith(
        "xp: resume: 6 done, 0 to run; 3 done with older code"
    )

    pytester.makeini("[pytest]\nxp_resume = true\nxp_rerun_changed = true\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=3, deselected=3)
    assert xp_line(result.stdout.lines, "xp: resume:") == "xp: resume: 3 done, 3 to run (3 code changed)"


# -- real processes -----------------------------------------------------------------------


# Every xdist worker writes the node ids it will run (after deselection) to
# ``collected-<worker>.txt``. A worker started after ``killed`` exists (the replacement of
# a killed one) notes the passed runs, announces itself with ``collecting-<worker>`` and
# waits, bounded, until other workers have written more runs, so it surely collects while
# the store is changing; it notes the counts in ``late-<worker>.json``. Meanwhile, once the
# victim blocks in point 1, the other workers hold back each further point until a
# replacement announces itself: they are surely still writing then (the victim's points go
# back to them when it dies).
WORKER_CONFTEST = """
    import contextlib
    import json
    import os
    import sqlite3
    import time
    from pathlib import Path

    HERE = Path(__file__).parent


    def passed_runs():
        with contextlib.closing(sqlite3.connect(HERE / ".experiments" / "experiments.sqlite", timeout=30)) as db:
            return db.execute("SELECT count(*) FROM runs WHERE status = 'passed'").fetchone()[0]


    def wait_for(condition, what):
        deadline = time.monotonic() + 60
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(what)
            time.sleep(0.01)


    def pytest_collection(session):
        worker = getattr(session.config, "workerinput", {}).get("workerid")
        if worker is None or not (HERE / "killed").exists():
            return
        before = passed_runs()
        (HERE / f"collecting-{worker}").write_text("")
        wait_for(lambda: passed_runs() >= before + 3, "no runs written while the replacement collected")
        (HERE / f"late-{worker}.json").write_text(json.dumps({"before": before, "after": passed_runs()}))


    def pytest_runtest_setup(item):
        if not hasattr(item.config, "workerinput") or not (HERE / "blocked-1").exists():
            return
        wait_for(lambda: any(HERE.glob("collecting-*")), "no replacement worker started collecting")


    def pytest_collection_finish(session):
        worker = getattr(session.config, "workerinput", {}).get("workerid")
        if worker is not None:
            (HERE / f"collected-{worker}.txt").write_text("\\n".join(item.nodeid for item in session.items))
"""


def half_done_grid(pytester: pytest.Pytester, size: int, pause: float) -> None:
    """A ``size``-point grid of which the even points passed (run in-process, quickly)."""
    write_module(pytester, "test_grid", BLOCKING_GRID.format(pause=0, points=f"range(0, {size}, 2)"))
    pytester.runpytest("-q", "-p", "no:cacheprovider").assert_outcomes(passed=size // 2)
    # Same function body, a grid twice as large: the odd points were never run.
    write_module(pytester, "test_grid", BLOCKING_GRID.format(pause=pause, points=f"range({size})"))


def grid_ids(size: int, step: int = 1, start: int = 0) -> set[str]:
    return ids("test_grid.py", "test_point", range(start, size, step))


def test_xdist_workers_collect_the_same_items_on_a_half_done_grid(pytester: pytest.Pytester, procs: Processes) -> None:
    half_done_grid(pytester, 200, pause=0.005)
    pytester.makeconftest(WORKER_CONFTEST)
    code, output = procs.run("-n", "2", "--xp-resume")
    assert code == 0, output
    assert "Different tests were collected" not in output
    assert "100 passed" in output
    # The controller collects and selects first: the plan comes once, at the start, before
    # any worker exists.
    lines = output.splitlines()
    assert output.count("xp: resume:") == 1
    plan = lines.index("xp: resume: 100 done, 100 to run (100 never run)")
    assert lines[plan - 1] == "collected 200 items / 100 deselected / 100 selected"
    assert plan < lines.index("created: 2/2 workers")

    collected = {path.name: path.read_text().splitlines() for path in pytester.path.glob("collected-*.txt")}
    assert set(collected) == {"collected-gw0.txt", "collected-gw1.txt"}
    assert collected["collected-gw0.txt"] == collected["collected-gw1.txt"]
    assert set(collected["collected-gw0.txt"]) == grid_ids(200, step=2, start=1)

    per_node = runs_per_node(pytester)
    assert per_node == Counter(dict.fromkeys(grid_ids(200), 1))
    assert {run.status for run in history(pytester)} == {"passed"}
    assert {run.worker for run in runs_of_latest_session(pytester)} == {"gw0", "gw1"}


def test_replaced_worker_collects_late_and_selects_the_same(pytester: pytest.Pytester, procs: Processes) -> None:
    half_done_grid(pytester, 200, pause=0)
    pytester.makeconftest(WORKER_CONFTEST)
    (pytester.path / "block.json").write_text("[1]")
    # In pytest's order (-p no:xp-spread): the blocked point comes first, while the grid is still to run.
    proc = procs.start("-n", "2", "--xp-resume", "-p", "no:xp-spread")
    victim = int(procs.wait_for(pytester.path / "blocked-1", proc))
    assert victim != proc.pid
    (pytester.path / "killed").write_text("")
    os.kill(victim, signal.SIGKILL)
    code, output = procs.finish(proc)

    # xdist reports the killed item as failed, replaces the worker and runs the rest.
    assert code == 1, output
    assert "replacing crashed worker" in output
    assert "crashed while running 'test_grid.py::test_point[1]'" in output
    assert "Different tests were collected" not in output
    assert "1 failed, 99 passed" in output, output
    assert "xp: resume: 100 done, 100 to run (100 never run)" in output.splitlines()

    # The replacement collected while the other worker was writing runs, well after the
    # snapshot (100 done), and still selected exactly what the first two workers did.
    [late] = [json.loads(path.read_text()) for path in pytester.path.glob("late-*.json")]
    assert late["after"] > late["before"] >= 100, late
    collected = {path.name: path.read_text().splitlines() for path in pytester.path.glob("collected-*.txt")}
    assert len(collected) == 3, sorted(collected)
    assert all(items == collected["collected-gw0.txt"] for items in collected.values())
    assert set(collected["collected-gw0.txt"]) == grid_ids(200, step=2, start=1)

    # Every grid point passed once, except the one whose worker was killed.
    latest = {run.node_id: run.status for run in latest_runs(pytester)}
    killed = "test_grid.py::test_point[1]"
    assert latest.pop(killed) == "interrupted"
    assert set(latest) == grid_ids(200) - {killed}
    assert set(latest.values()) == {"passed"}
    assert set(runs_per_node(pytester).values()) == {1}

    # Resuming again runs exactly the killed point.
    (pytester.path / "block.json").unlink()
    (pytester.path / "killed").unlink()
    result = pytester.runpytest("--xp-resume", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, deselected=199)
    assert xp_line(result.stdout.lines, "xp: resume:") == "xp: resume: 199 done, 1 to run (1 interrupted)"
    assert [run.node_id for run in runs_of_latest_session(pytester)] == [killed]


# -- liveness and claims ------------------------------------------------------------------

SMALL_GRID = """
    import pytest


    @pytest.mark.experiment
    @pytest.mark.parametrize("i", range(4))
    def test_point(i):
        return {"value": i}
"""


def plant_foreign_run(pytester: pytest.Pytester, node_id: str, heartbeat_age: float) -> str:
    """Store a ``running`` run of ``node_id`` from a session on another host whose
    last heartbeat is ``heartbeat_age`` seconds old; return its run id."""
    with Store.open(store_of(pytester)) as store:
        [done] = [run for run in store.runs() if run.node_id == node_id]
        now = time.time()
        session = SessionStart("other-session", now - heartbeat_age, "other-host", 4242, {})
        store.record_session(session)
        store.start_run(
            RunStart(
                run_id="other-run",
                session_id=session.session_id,
                node_id=done.node_id,
                module=done.module,
                experiment=done.experiment,
                param_hash=done.param_hash,
                params=done.params,
                started_at=now,
                worker="gw3",
                host="other-host",
                pid=4242,
                dir="runs/test_point/other-run",
            )
        )
    return "other-run"


def latest_status(pytester: pytest.Pytester, node_id: str) -> str:
    frame: pd.DataFrame = load(store_of(pytester))
    [status] = frame.loc[frame["node_id"] == node_id, "status"]
    return str(status)


def test_stale_run_of_another_host_reads_interrupted_and_is_resumed(pytester: pytest.Pytester) -> None:
    write_module(pytester, "test_grid", SMALL_GRID)
    pytester.runpytest().assert_outcomes(passed=4)
    target = "test_grid.py::test_point[2]"
    run_id = plant_foreign_run(pytester, target, heartbeat_age=3600)  # default lease: 300 s
    assert raw_status(store_of(pytester), run_id) == "running"

    assert latest_status(pytester, target) == "interrupted"
    result = pytester.runpytest("--xp-resume")
    result.assert_outcomes(passed=1, deselected=3)
    assert xp_line(result.stdout.lines, "xp: resume:") == "xp: resume: 3 done, 1 to run (1 interrupted)"
    assert [run.node_id for run in runs_of_latest_session(pytester)] == [target]
    assert latest_status(pytester, target) == "passed"
    assert runs_per_node(pytester)[target] == 3


def test_live_run_of_another_host_is_not_resumed_until_its_lease_expires(pytester: pytest.Pytester) -> None:
    write_module(pytester, "test_grid", SMALL_GRID)
    pytester.runpytest().assert_outcomes(passed=4)
    target = "test_grid.py::test_point[2]"
    run_id = plant_foreign_run(pytester, target, heartbeat_age=30)
    store = store_of(pytester)

    # 30 s without a heartbeat is within the default lease: still running over there.
    assert latest_status(pytester, target) == "running"
    result = pytester.runpytest("--xp-resume")
    assert result.ret == pytest.ExitCode.OK
    assert xp_line(result.stdout.lines, "xp: resume:") == (
        "xp: resume: 3 done, 0 to run; 1 running in another session; nothing left to run"
    )
    assert result.parseoutcomes() == {"deselected": 4}
    assert raw_status(store, run_id) == "running"
    assert runs_per_node(pytester)[target] == 2

    # With a lease shorter than the heartbeat's age, that session counts as dead.
    result = pytester.runpytest("--xp-resume", "--xp-lease", "10")
    result.assert_outcomes(passed=1, deselected=3)
    assert xp_line(result.stdout.lines, "xp: resume:") == "xp: resume: 3 done, 1 to run (1 interrupted)"
    assert [run.node_id for run in runs_of_latest_session(pytester)] == [target]


# A session that looks, to this process, like it runs on another host (a container with its
# own hostname sharing the store): liveness can only come from its heartbeat.
FAR_HOST_CONFTEST = """
    import socket

    socket.gethostname = lambda: "far-host"
"""


def session_heartbeat(store: Path, host: str) -> tuple[float, float] | None:
    """(started_at, heartbeat_at) of the session recorded from ``host``, once there is one."""
    with contextlib.closing(sqlite3.connect(store / "experiments.sqlite", timeout=30)) as db:
        row = db.execute("SELECT started_at, heartbeat_at FROM sessions WHERE host = ?", (host,)).fetchone()
    return None if row is None else (row[0], row[1])


def open_files(pid: int, path: Path) -> list[str]:
    """The file descriptors process ``pid`` holds open on ``path`` (Linux)."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd) == str(path):
                found.append(fd.name)
    return found


def test_heartbeat_keeps_a_session_on_another_host_alive_until_it_dies(
    pytester: pytest.Pytester, procs: Processes
) -> None:
    write_module(pytester, "test_grid", BLOCKING_GRID.format(pause=0, points="range(4)"))
    pytester.makeconftest(FAR_HOST_CONFTEST)
    (pytester.path / "block.json").write_text("[2]")
    # The far session beats every 0.2 s (a quarter of its own lease); this host judges it with
    # a lease of ten beats, so that no beat delayed by a loaded machine or a busy store counts
    # as a death, while the run still outlives a lease only through its heartbeat.
    lease = 2.0
    far = procs.start("--xp-lease", "0.8")
    procs.wait_for(pytester.path / "blocked-2", far)
    store = store_of(pytester)
    target = "test_grid.py::test_point[2]"

    # Its heartbeat is renewed while its run goes on for longer than a lease.
    deadline = time.monotonic() + 30
    while True:
        started_at, heartbeat_at = session_heartbeat(store, "far-host") or (0.0, 0.0)
        if heartbeat_at > started_at + lease:
            break
        assert time.monotonic() < deadline, "the heartbeat was not renewed"
        assert far.poll() is None, procs.output(far)
        time.sleep(0.02)
    with Store.open(store, lease=lease) as opened:
        assert {run.node_id: run.status for run in opened.runs()}[target] == "running"
    pytester.makeconftest("")  # the sessions below run on this host
    result = pytester.runpytest("--xp-resume", "--xp-lease", str(lease), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, deselected=3)
    assert xp_line(result.stdout.lines, "xp: resume:") == (
        "xp: resume: 2 done, 1 to run (1 never run); 1 running in another session"
    )

    # Once it is dead, its run counts as interrupted after one lease, and is resumed.
    os.killpg(far.pid, signal.SIGKILL)
    far.wait(timeout=10)
    deadline = time.monotonic() + 30
    while True:
        with Store.open(store, lease=lease) as opened:
            if {run.node_id: run.status for run in opened.runs()}[target] == "interrupted":
                break
        assert time.monotonic() < deadline, "the dead session's run never read back interrupted"
        time.sleep(0.02)
    (pytester.path / "block.json").unlink()
    result = pytester.runpytest("--xp-resume", "--xp-lease", str(lease), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, deselected=3)
    assert xp_line(result.stdout.lines, "xp: resume:") == "xp: resume: 3 done, 1 to run (1 interrupted)"
    assert [run.node_id for run in runs_of_latest_session(pytester)] == [target]
    assert runs_per_node(pytester) == Counter({**dict.fromkeys(grid_ids(4), 1), target: 2})


def test_runs_written_after_another_process_closed_the_store_are_kept(
    pytester: pytest.Pytester, procs: Processes
) -> None:
    # A short lease makes the session open its heartbeat connection at once (a long session
    # does so after lease / 4): that second connection must not cost the first one its locks,
    # or the next process to close the store takes itself for the last one and removes the
    # WAL the session still writes to: its runs become invisible, and lost when it is killed.
    write_module(pytester, "test_grid", BLOCKING_GRID.format(pause=0, points="range(6)"))
    (pytester.path / "block.json").write_text("[2, 4]")
    session = procs.start("--xp-lease", "0.4")
    procs.wait_for(pytester.path / "blocked-2", session)
    database = (store_of(pytester) / "experiments.sqlite").resolve()
    deadline = time.monotonic() + 10
    while len(open_files(session.pid, database)) < 2:  # the run's connection and the heartbeat's
        assert time.monotonic() < deadline, "the heartbeat never opened the store"
        assert session.poll() is None, procs.output(session)
        time.sleep(0.01)

    # Another process opens and closes the store while the session runs...
    code, output = procs.run("--xp-status")
    assert code == 0, output
    # ... which then finishes points 2 and 3, and stops in point 4.
    (pytester.path / "release-2").write_text("")
    procs.wait_for(pytester.path / "blocked-4", session)
    statuses = {run.node_id: run.status for run in history(pytester)}
    assert statuses == {**dict.fromkeys(grid_ids(4), "passed"), "test_grid.py::test_point[4]": "running"}

    # Killed now, the session keeps every finished run, and resume runs exactly the rest.
    os.killpg(session.pid, signal.SIGKILL)
    session.wait(timeout=10)
    statuses = {run.node_id: run.status for run in history(pytester)}
    assert statuses == {**dict.fromkeys(grid_ids(4), "passed"), "test_grid.py::test_point[4]": "interrupted"}
    (pytester.path / "block.json").unlink()
    result = pytester.runpytest("--xp-resume", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, deselected=4)
    assert xp_line(result.stdout.lines, "xp: resume:") == "xp: resume: 4 done, 2 to run (1 never run, 1 interrupted)"
    assert runs_per_node(pytester) == Counter({**dict.fromkeys(grid_ids(6), 1), "test_grid.py::test_point[4]": 2})


def test_run_in_progress_in_a_live_session_is_neither_rerun_nor_interrupted(
    pytester: pytest.Pytester, procs: Processes
) -> None:
    write_module(pytester, "test_grid", BLOCKING_GRID.format(pause=0, points="range(4)"))
    (pytester.path / "block.json").write_text("[3]")
    other = procs.start()
    procs.wait_for(pytester.path / "blocked-3", other)
    target = "test_grid.py::test_point[3]"
    [in_flight] = [run for run in history(pytester) if run.node_id == target]

    result = pytester.runpytest("--xp-resume", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert xp_line(result.stdout.lines, "xp: resume:") == (
        "xp: resume: 3 done, 0 to run; 1 running in another session; nothing left to run"
    )
    assert raw_status(store_of(pytester), in_flight.run_id) == "running"
    assert latest_status(pytester, target) == "running"

    (pytester.path / "release").write_text("")
    code, output = procs.finish(other)
    assert code == 0, output
    assert runs_per_node(pytester) == Counter(dict.fromkeys(grid_ids(4), 1))
    assert {run.status for run in history(pytester)} == {"passed"}
