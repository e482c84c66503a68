"""Sessions as a whole: how options are written, how a session ends (exit status, counts,
hooks, a second Ctrl-C), what the controller does under xdist, and worker threads.

Real pytest sessions (pytester in-process, or ``python -m pytest`` processes for signals and
xdist timing) against real SQLite stores; every wait is bounded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import textwrap
from pathlib import Path
from typing import Any

import pytest
from processes import SIGINT_CONFTEST, Processes, store_of

from pytest_experiments import SessionRecord, Store

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


# -- how a session ends ---------------------------------------------------------------------

# Session hooks log each call; ``session_finish`` logs its counts and exit status.
SESSION_LOG_CONFTEST = """
    import json
    from pathlib import Path

    LOG = Path(__file__).with_name("session-hooks.log")


    def pytest_experiments_session_start(session):
        session.metadata["from_hook"] = "yes"
        with LOG.open("a") as log:
            log.write(json.dumps(["start", session.id]) + "\\n")


    def pytest_experiments_session_finish(session, summary):
        with LOG.open("a") as log:
            log.write(json.dumps(["finish", session.id, summary.counts, summary.exitstatus]) + "\\n")
"""


def hook_calls(path: Path) -> list[list[Any]]:
    log = path / "session-hooks.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def only_session(store: Path) -> SessionRecord:
    with Store.open(store) as opened:
        [session] = opened.sessions()
    return session


SEEDS = """
    import json
    from pathlib import Path

    import pytest

    ACC = json.loads(Path(__file__).with_name("acc.json").read_text())


    @pytest.mark.grid(seed=[0, 1, 2])
    def test_train(seed):
        return {"acc": ACC[seed]}
"""


@pytest.mark.skipif(importlib.util.find_spec("scipy") is None, reason="comparing over seeds needs scipy")
@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["no-xdist", "n2"])
def test_session_records_the_exit_status_pytest_returns(pytester: pytest.Pytester, workers: list[str]) -> None:
    pytester.makeconftest(SESSION_LOG_CONFTEST)
    pytester.makepyfile(test_seeds=SEEDS)
    pytester.makeini("[pytest]\nxp_compare = acc higher 0.01 over=seed\n")
    (pytester.path / "acc.json").write_text("[0.80, 0.84, 0.82]")
    pytester.runpytest_subprocess("--xp-save-baseline=baseline.json").assert_outcomes(passed=3)
    (store_of(pytester) / "experiments.sqlite").unlink()  # one session in the store from here on
    (pytester.path / "session-hooks.log").unlink()

    # Every seed about 0.1 worse: no single run fails, the group regression fails the session.
    (pytester.path / "acc.json").write_text("[0.70, 0.73, 0.71]")
    result = pytester.runpytest_subprocess("--xp-baseline=baseline.json", *workers)
    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    session = only_session(store_of(pytester))
    assert session.exitstatus == pytest.ExitCode.TESTS_FAILED
    assert session.finished_at is not None
    assert hook_calls(pytester.path) == [
        ["start", session.session_id],
        ["finish", session.session_id, {"passed": 3}, pytest.ExitCode.TESTS_FAILED],
    ]


@pytest.mark.parametrize(
    "args",
    [["--collect-only"], ["--collect-only", "-n", "2"], ["--xp-status"], ["--xp-status", "-n", "2"]],
    ids=["collect-only", "collect-only-n2", "status", "status-n2"],
)
def test_a_session_that_runs_no_experiment_calls_no_session_hook(pytester: pytest.Pytester, args: list[str]) -> None:
    pytester.makeconftest(SESSION_LOG_CONFTEST)
    pytester.makepyfile(test_grid=GRID)
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert hook_calls(pytester.path) == []
    assert not store_of(pytester).exists()

    # With a store: still nothing called, nothing written.
    pytester.runpytest().assert_outcomes(passed=3)
    (pytester.path / "session-hooks.log").unlink()
    before = (store_of(pytester) / "experiments.sqlite").read_bytes()
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert hook_calls(pytester.path) == []
    assert (store_of(pytester) / "experiments.sqlite").read_bytes() == before


def test_resume_under_xdist_starts_the_session_before_the_workers(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(SESSION_LOG_CONFTEST)
    pytester.makepyfile(test_grid=GRID)
    pytester.runpytest("-k", "0 or 1").assert_outcomes(passed=2, deselected=1)
    (pytester.path / "session-hooks.log").unlink()

    result = pytester.runpytest("-n", "2", "--xp-resume")
    result.assert_outcomes(passed=1, deselected=2)
    with Store.open(store_of(pytester)) as store:
        session = store.sessions()[-1]
        [run] = store.runs(session_id=session.session_id)
        assert store.run(run.run_id).session["from_hook"] == "yes"  # the worker got the hook's metadata
    assert run.worker in ("gw0", "gw1")
    assert hook_calls(pytester.path) == [
        ["start", session.session_id],
        ["finish", session.session_id, {"passed": 1}, pytest.ExitCode.OK],
    ]


def test_resume_under_xdist_stops_on_a_collection_error_before_any_worker_starts(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_grid=GRID, test_broken="import not_a_module_anywhere\n")
    result = pytester.runpytest("-n", "2", "--xp-resume")
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    result.stdout.fnmatch_lines(["*Interrupted: 1 error during collection*"])
    assert "created:" not in result.stdout.str()
    assert not store_of(pytester).exists()


# The points from 2 on block (bounded) until ``release`` exists and ignore KeyboardInterrupt,
# noting each one in ``interrupted-<i>``: the controller, told to stop, then waits for its
# workers in xdist's teardown, where the second Ctrl-C reaches it.
STUBBORN_GRID = """
    import os
    import time
    from pathlib import Path

    import pytest

    HERE = Path(__file__).parent


    @pytest.mark.grid(i=list(range(6)))
    def test_point(i):
        if i >= 2:
            (HERE / f"blocked-{i}").write_text(str(os.getpid()))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (HERE / "release").exists():
                try:
                    time.sleep(0.01)
                except KeyboardInterrupt:
                    (HERE / f"interrupted-{i}").write_text("")
        return {"value": i}
"""


def test_second_ctrl_c_under_xdist_still_closes_the_session(pytester: pytest.Pytester, procs: Processes) -> None:
    pytester.makeconftest(SIGINT_CONFTEST + SESSION_LOG_CONFTEST)
    pytester.makepyfile(test_grid=STUBBORN_GRID)
    proc = procs.start("-n", "2")
    procs.wait_until(proc, "2 blocked runs", lambda: len(list(pytester.path.glob("blocked-*"))) >= 2)
    os.kill(proc.pid, signal.SIGINT)
    # A worker interrupted means the controller is in xdist's teardown, waiting for it.
    procs.wait_until(proc, "a worker interrupted", lambda: any(pytester.path.glob("interrupted-*")))
    os.kill(proc.pid, signal.SIGINT)
    code, output = procs.finish(proc)
    assert code != 0, output

    session = only_session(store_of(pytester))
    assert session.exitstatus == pytest.ExitCode.INTERRUPTED
    assert session.finished_at is not None
    assert session.finished_at >= session.started_at
    assert session.counts == {"passed": 2, "interrupted": 2}
    assert re.search(r"^xp: 4 runs recorded \((2 passed, 2 interrupted|2 interrupted, 2 passed)\) in ", output, re.M)
    assert hook_calls(pytester.path) == [
        ["start", session.session_id],
        ["finish", session.session_id, {"passed": 2, "interrupted": 2}, pytest.ExitCode.INTERRUPTED],
    ]


# -- threads per xdist worker --------------------------------------------------------------

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# What the environment held when the module was imported (when numpy would load its BLAS).
THREADS_SEEN = """
    import os
    from pathlib import Path

    import pytest

    SEEN = {{name: os.environ.get(name) for name in {names}}}


    @pytest.mark.grid(i=[0, 1, 2, 3])
    def test_point(i):
        return SEEN


    def test_plain():
        (Path(__file__).parent / f"plain-{{os.getpid()}}.json").write_text(repr(SEEN))
"""


@pytest.fixture
def threads_seen(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for name in (*THREAD_VARIABLES, "VECLIB_MAXIMUM_THREADS", "BLIS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    pytester.makepyfile(test_threads=THREADS_SEEN.format(names=THREAD_VARIABLES))
    return pytester


def seen_by_runs(pytester: pytest.Pytester) -> list[dict[str, str | None]]:
    """What each run of the latest session saw, and in which process."""
    with Store.open(store_of(pytester)) as store:
        latest = store.sessions()[-1].session_id
        runs = [store.run(run.run_id) for run in store.runs(history=True, session_id=latest)]
    assert len(runs) == 4
    return [dict(run.result, worker=run.worker) for run in runs]


def cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@pytest.mark.parametrize(
    ("args", "ini", "expected"),
    [
        (["--xp-worker-threads=1"], "", "1"),
        (["--xp-worker-threads=3"], "xp_worker_threads = 1", "3"),  # the option beats the ini key
        ([], "xp_worker_threads = auto", str(max(1, cpus() // 2))),
    ],
    ids=["option", "option-beats-ini", "ini-auto"],
)
def test_worker_threads_are_set_for_each_worker_before_its_imports(
    threads_seen: pytest.Pytester, args: list[str], ini: str, expected: str
) -> None:
    threads_seen.makeini(f"[pytest]\n{ini}\n")
    threads_seen.runpytest("-n", "2", *args).assert_outcomes(passed=5)
    seen = seen_by_runs(threads_seen)
    assert {run["worker"] for run in seen} <= {"gw0", "gw1"}
    assert all(run[name] == expected for run in seen for name in THREAD_VARIABLES), seen
    assert not set(THREAD_VARIABLES) & set(os.environ)  # the controller's own environment is left alone


def test_a_users_own_thread_setting_wins(threads_seen: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    threads_seen.runpytest("-n", "2", "--xp-worker-threads=1").assert_outcomes(passed=5)
    for run in seen_by_runs(threads_seen):
        assert (run["OMP_NUM_THREADS"], run["OPENBLAS_NUM_THREADS"], run["MKL_NUM_THREADS"]) == ("3", None, None)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["no-xdist", "n2"])
def test_without_the_option_no_thread_variable_is_set(threads_seen: pytest.Pytester, workers: list[str]) -> None:
    threads_seen.runpytest(*workers).assert_outcomes(passed=5)
    for run in seen_by_runs(threads_seen):
        assert [run[name] for name in THREAD_VARIABLES] == [None] * 3
    [plain] = threads_seen.path.glob("plain-*.json")
    assert plain.read_text() == repr(dict.fromkeys(THREAD_VARIABLES))


@pytest.mark.parametrize("where", ["option", "ini"])
def test_bad_worker_threads_is_a_usage_error(pytester: pytest.Pytester, where: str) -> None:
    pytester.makepyfile(test_grid=GRID)
    if where == "ini":
        pytester.makeini("[pytest]\nxp_worker_threads = many\n")
        result = pytester.runpytest("-n", "2")
        assert usage_error_line(result) == (
            "ERROR: xp: ini key xp_worker_threads: 'many' is not a number of threads: write a positive integer or auto"
        )
    else:
        result = pytester.runpytest("-n", "2", "--xp-worker-threads=0")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        assert "'0' is not a number of threads: write a positive integer or auto" in result.stderr.str()
    assert not store_of(pytester).exists()
