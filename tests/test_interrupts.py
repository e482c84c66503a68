"""Ctrl-C, SIGTERM and SIGKILL in the middle of a session, then ``--xp-resume``.

Every inner pytest is a real ``python -m pytest`` process (with and without xdist) on a
real SQLite store, signalled for real while some of its runs are in flight. Waits are
bounded and every process started here is killed with its process group afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pytest_experiments import RunRecord, Store

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="POSIX signals, process groups and /proc")

TIMEOUT = 60.0  # generous bound for one inner session; the tests themselves take seconds
GRID_SIZE = 8

_LEAKY_ENV = (
    "PYTEST_ADDOPTS",
    "PYTEST_XP_STORE",
    "PYTEST_XDIST_WORKER",
    "PYTEST_XDIST_WORKER_COUNT",
    "PYTEST_XDIST_TESTRUNUID",
    "PYTEST_DISABLE_PLUGIN_AUTOLOAD",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _LEAKY_ENV:
        monkeypatch.delenv(name, raising=False)


def _env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _LEAKY_ENV}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


class Processes:
    """Inner pytest processes started by one test; whatever is left is killed at teardown."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self._started: list[tuple[subprocess.Popen[str], Path]] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        log = self.cwd.parent / f"{self.cwd.name}-pytest-{len(self._started)}.log"
        with log.open("w") as output:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                cwd=self.cwd,
                env=_env(),
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,  # its own process group: xdist workers die with it at teardown
            )
        self._started.append((proc, log))
        return proc

    def output(self, proc: subprocess.Popen[str]) -> str:
        log = next(log for started, log in self._started if started is proc)
        return log.read_text(errors="replace")

    def finish(self, proc: subprocess.Popen[str], timeout: float = TIMEOUT) -> tuple[int, str]:
        """Wait for ``proc`` (bounded) and return its exit code and output."""
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill(proc)
            pytest.fail(f"inner pytest did not finish within {timeout} s:\n{self.output(proc)}")
        return returncode, self.output(proc)

    def run(self, *args: str) -> tuple[int, str]:
        return self.finish(self.start(*args))

    def wait_for(
        self, proc: subprocess.Popen[str], condition: str, check: Callable[[], bool], timeout: float = 20.0
    ) -> None:
        """Poll ``check()`` until true; fails if ``proc`` ends first or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if proc.poll() is not None:
                pytest.fail(f"inner pytest exited ({proc.returncode}) before {condition}:\n{self.output(proc)}")
            time.sleep(0.01)
        pytest.fail(f"no {condition} within {timeout} s:\n{self.output(proc)}")

    @staticmethod
    def _kill(proc: subprocess.Popen[str]) -> None:
        """SIGKILL ``proc``'s whole process group (xdist workers included) and reap it."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def cleanup(self) -> None:
        # Also for processes that ended: their workers may still be alive.
        for proc, _ in self._started:
            self._kill(proc)


@pytest.fixture
def procs(pytester: pytest.Pytester) -> Iterator[Processes]:
    processes = Processes(pytester.path)
    try:
        yield processes
    finally:
        processes.cleanup()


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(stat.parent.name))
    return members


def wait_group_gone(pgid: int, timeout: float = 15.0) -> None:
    """Workers may outlive the controller by a moment: wait (bounded) until none is left."""
    deadline = time.monotonic() + timeout
    while group_members(pgid):
        if time.monotonic() > deadline:
            pytest.fail(f"processes {group_members(pgid)} of group {pgid} still alive after {timeout} s")
        time.sleep(0.02)


# A ``python &`` started from a non-interactive shell ignores SIGINT, and children inherit
# that: restore Python's handler in every inner process (controller and workers alike) so
# that SIGINT raises KeyboardInterrupt as it does for a user at a terminal.
SIGINT_CONFTEST = """
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)
"""

# Points listed in ``block.json`` write ``blocked-<i>`` (their pid) and then wait, bounded,
# for a signal; every other point finishes at once.
GRID = """
    import json
    import os
    import time
    from pathlib import Path

    import pytest

    HERE = Path(__file__).parent


    @pytest.mark.experiment
    @pytest.mark.parametrize("i", {points})
    def test_point(i):
        block = HERE / "block.json"
        if block.exists() and i in json.loads(block.read_text()):
            partial = HERE / f"blocked-{{i}}.tmp"
            partial.write_text(str(os.getpid()))
            os.replace(partial, HERE / f"blocked-{{i}}")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                time.sleep(0.01)
            raise TimeoutError("never interrupted")
        time.sleep(0.01)
        return {{"value": i}}
"""

GRID_IDS = {f"test_grid.py::test_point[{i}]" for i in range(GRID_SIZE)}


def store_of(pytester: pytest.Pytester) -> Path:
    return pytester.path / ".experiments"


def history(pytester: pytest.Pytester) -> list[RunRecord]:
    with Store.open(store_of(pytester)) as store:
        return store.runs(history=True)


def latest(pytester: pytest.Pytester) -> dict[str, str]:
    with Store.open(store_of(pytester)) as store:
        return {run.node_id: run.status for run in store.runs()}


def raw_rows(store: Path) -> dict[str, sqlite3.Row]:
    """The ``runs`` table as stored (no read-time interpretation of ``running``), by run id."""
    with contextlib.closing(sqlite3.connect(store / "experiments.sqlite")) as db:
        db.row_factory = sqlite3.Row
        return {row["run_id"]: row for row in db.execute("SELECT * FROM runs")}


def blocked_points(pytester: pytest.Pytester) -> dict[str, int]:
    """{node id: pid} of the points that blocked (were in flight when signalled)."""
    return {
        f"test_grid.py::test_point[{path.name.removeprefix('blocked-')}]": int(path.read_text())
        for path in pytester.path.glob("blocked-*")
        if not path.name.endswith(".tmp")
    }


def recorded_counts(output: str) -> dict[str, int]:
    """The counts of the session's one ``xp: N runs recorded (...)`` line."""
    found = re.findall(r"^xp: (\d+) runs? recorded \((.*)\) in ", output, flags=re.MULTILINE)
    assert len(found) == 1, output
    total, parts = found[0]
    counts = {status: int(n) for n, status in (part.split(" ", 1) for part in parts.split(", "))}
    assert sum(counts.values()) == int(total)
    return counts


def resume_summary(done: int, never_run: int, interrupted: int) -> str:
    parts = [f"{n} {what}" for n, what in ((never_run, "never run"), (interrupted, "interrupted")) if n]
    return f"xp: resume: {done} done, {never_run + interrupted} to run ({', '.join(parts)})"


def resume_runs_exactly_the_rest(pytester: pytest.Pytester, procs: Processes, workers: list[str]) -> None:
    """A following ``--xp-resume`` runs exactly the grid points that did not pass, once each."""
    before = history(pytester)
    statuses = latest(pytester)
    done = {node for node, status in statuses.items() if status == "passed"}
    interrupted = {node for node, status in statuses.items() if status == "interrupted"}
    assert set(statuses.values()) <= {"passed", "interrupted"}, statuses
    (pytester.path / "block.json").unlink(missing_ok=True)

    code, output = procs.run("--xp-resume", *workers)
    assert code == 0, output
    missing = GRID_IDS - done
    assert re.search(rf"\b{len(missing)} passed\b", output), output
    summary = resume_summary(len(done), len(GRID_IDS - done - interrupted), len(interrupted))
    assert summary in output.splitlines(), output
    known = {run.run_id for run in before}
    new = [run for run in history(pytester) if run.run_id not in known]
    assert sorted(run.node_id for run in new) == sorted(missing)
    assert {run.status for run in new} == {"passed"}
    assert set(latest(pytester).values()) == {"passed"}
    # No finished run was lost or run twice.
    assert Counter(run.node_id for run in history(pytester)) == Counter(
        {node: 1 + (node in interrupted) for node in GRID_IDS}
    )


@pytest.mark.parametrize(
    ("signum", "workers", "target"),
    [
        pytest.param(signal.SIGINT, [], "controller", id="SIGINT"),
        pytest.param(signal.SIGINT, ["-n", "2"], "controller", id="SIGINT-n2-controller"),
        pytest.param(signal.SIGINT, ["-n", "2"], "group", id="SIGINT-n2-group"),
        pytest.param(signal.SIGTERM, [], "controller", id="SIGTERM"),
        pytest.param(signal.SIGTERM, ["-n", "2"], "group", id="SIGTERM-n2-group"),
    ],
)
def test_signal_keeps_finished_runs_and_resume_runs_the_rest(
    pytester: pytest.Pytester, procs: Processes, signum: signal.Signals, workers: list[str], target: str
) -> None:
    pytester.makeconftest(SIGINT_CONFTEST)
    pytester.makepyfile(test_grid=GRID.format(points=f"range({GRID_SIZE})"))
    # Without xdist the session blocks at point 3; with two workers each blocks at its
    # first point from 4 on, after the first points have finished.
    in_flight = 2 if workers else 1
    blocking = list(range(4, GRID_SIZE)) if workers else [3]
    (pytester.path / "block.json").write_text(json.dumps(blocking))
    proc = procs.start(*workers)
    procs.wait_for(proc, f"{in_flight} blocked runs", lambda: len(blocked_points(pytester)) >= in_flight)
    if target == "group":
        os.killpg(proc.pid, signum)
    else:
        os.kill(proc.pid, signum)
    code, output = procs.finish(proc)
    wait_group_gone(proc.pid)

    assert code == pytest.ExitCode.INTERRUPTED, output
    assert "KeyboardInterrupt" in output
    assert "database is locked" not in output
    blocked = blocked_points(pytester)
    assert len(blocked) == in_flight
    if workers:
        assert len(set(blocked.values())) == 2  # one run in flight in each worker
        assert proc.pid not in blocked.values()

    # Every finished run is kept; the runs in flight were stored as interrupted.
    statuses = latest(pytester)
    interrupted = {node for node, status in statuses.items() if status == "interrupted"}
    passed = {node for node, status in statuses.items() if status == "passed"}
    assert interrupted == set(blocked)
    assert passed | interrupted == set(statuses)
    assert passed, statuses
    assert len(history(pytester)) == len(statuses)
    for row in raw_rows(store_of(pytester)).values():
        if row["node_id"] in blocked:
            assert row["status"] == "interrupted"  # written so, not only read back so
            assert row["finished_at"] is not None
            assert row["pid"] == blocked[row["node_id"]]
    if not workers:
        with Store.open(store_of(pytester)) as store:
            [run] = [run for run in store.runs() if run.node_id in blocked]
            assert run.error_type == "KeyboardInterrupt"
            [session] = store.sessions()
            assert session.exitstatus == pytest.ExitCode.INTERRUPTED

    # The terminal summary says how many were interrupted.
    assert recorded_counts(output) == {"passed": len(passed), "interrupted": len(interrupted)}

    resume_runs_exactly_the_rest(pytester, procs, workers)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["no-xdist", "xdist"])
def test_whole_process_killed_then_resume_runs_only_the_missing(
    pytester: pytest.Pytester, procs: Processes, workers: list[str]
) -> None:
    pytester.makepyfile(test_grid=GRID.format(points=f"range({GRID_SIZE})"))
    in_flight = 2 if workers else 1
    blocking = list(range(4, GRID_SIZE)) if workers else [3]
    (pytester.path / "block.json").write_text(json.dumps(blocking))
    proc = procs.start(*workers)
    procs.wait_for(proc, f"{in_flight} blocked runs", lambda: len(blocked_points(pytester)) >= in_flight)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    wait_group_gone(proc.pid)

    # Nothing closed the session: the rows in flight are still "running" as stored, and
    # read back as interrupted because their processes are dead.
    blocked = blocked_points(pytester)
    assert len(blocked) == in_flight
    rows = raw_rows(store_of(pytester))
    assert sorted(row["node_id"] for row in rows.values() if row["status"] == "running") == sorted(blocked)
    statuses = latest(pytester)
    assert {node for node, status in statuses.items() if status == "interrupted"} == set(blocked)
    assert set(statuses.values()) == {"passed", "interrupted"}

    resume_runs_exactly_the_rest(pytester, procs, workers)


def test_worker_killed_under_resume_then_resume_runs_only_the_missing(
    pytester: pytest.Pytester, procs: Processes
) -> None:
    # Half of the grid done (the even points), by a first session over half the grid.
    pytester.makepyfile(test_grid=GRID.format(points=f"range(0, {2 * GRID_SIZE}, 2)"))
    code, output = procs.run()
    assert code == 0, output
    pytester.makepyfile(test_grid=GRID.format(points=f"range({2 * GRID_SIZE})"))
    (pytester.path / "block.json").write_text("[5]")
    victim_node = "test_grid.py::test_point[5]"

    proc = procs.start("-n", "2", "--xp-resume")
    procs.wait_for(proc, "blocked run", lambda: victim_node in blocked_points(pytester))
    victim = blocked_points(pytester)[victim_node]
    assert victim != proc.pid
    os.kill(victim, signal.SIGKILL)
    code, output = procs.finish(proc)

    # xdist reports the killed item as failed and replaces the worker; the rest run.
    assert code == 1, output
    assert f"crashed while running '{victim_node}'" in output
    assert "replacing crashed worker" in output
    assert "Different tests were collected" not in output
    assert f"1 failed, {GRID_SIZE - 1} passed" in output
    assert f"xp: resume: {GRID_SIZE} done, {GRID_SIZE} to run ({GRID_SIZE} never run)" in output.splitlines()
    statuses = latest(pytester)
    assert statuses.pop(victim_node) == "interrupted"
    assert set(statuses.values()) == {"passed"}
    assert len(statuses) == 2 * GRID_SIZE - 1
    assert set(Counter(run.node_id for run in history(pytester)).values()) == {1}

    (pytester.path / "block.json").unlink()
    before = {run.run_id for run in history(pytester)}
    code, output = procs.run("-n", "2", "--xp-resume")
    assert code == 0, output
    assert "1 passed" in output
    assert f"xp: resume: {2 * GRID_SIZE - 1} done, 1 to run (1 interrupted)" in output.splitlines()
    new = [run for run in history(pytester) if run.run_id not in before]
    assert [(run.node_id, run.status) for run in new] == [(victim_node, "passed")]
