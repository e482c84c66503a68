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
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from processes import BLOCKING_GRID, SIGINT_CONFTEST, Processes, history, store_of

from pytest_experiments import Store

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="POSIX signals, process groups and /proc"),
    pytest.mark.usefixtures("clean_env"),
]


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


# The grid of these tests is ``BLOCKING_GRID``: the points listed in ``block.json`` block
# (nothing releases them here) until the test signals the session.
GRID_SIZE = 8
GRID_IDS = {f"test_grid.py::test_point[{i}]" for i in range(GRID_SIZE)}


def latest(pytester: pytest.Pytester) -> dict[str, str]:
    with Store.open(store_of(pytester)) as store:
        return {run.node_id: run.status for run in store.runs()}


def raw_rows(store: Path) -> dict[str, sqlite3.Row]:
    """The ``runs`` table as stored (no read-time interpretation of ``running``), by run id, once a
    writer opened the store: which folds the journals of the processes that were killed."""
    Store.open(store).close()
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
    pytester.makepyfile(test_grid=BLOCKING_GRID.format(pause=0.01, points=f"range({GRID_SIZE})"))
    # Without xdist the session blocks at point 3; with two workers each blocks at its
    # first point from 4 on, after the first points have finished.
    in_flight = 2 if workers else 1
    blocking = list(range(4, GRID_SIZE)) if workers else [3]
    (pytester.path / "block.json").write_text(json.dumps(blocking))
    proc = procs.start(*workers)
    procs.wait_until(proc, f"{in_flight} blocked runs", lambda: len(blocked_points(pytester)) >= in_flight)
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
    pytester.makepyfile(test_grid=BLOCKING_GRID.format(pause=0.01, points=f"range({GRID_SIZE})"))
    in_flight = 2 if workers else 1
    blocking = list(range(4, GRID_SIZE)) if workers else [3]
    (pytester.path / "block.json").write_text(json.dumps(blocking))
    proc = procs.start(*workers)
    procs.wait_until(proc, f"{in_flight} blocked runs", lambda: len(blocked_points(pytester)) >= in_flight)
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
    pytester.makepyfile(test_grid=BLOCKING_GRID.format(pause=0.01, points=f"range(0, {2 * GRID_SIZE}, 2)"))
    code, output = procs.run()
    assert code == 0, output
    pytester.makepyfile(test_grid=BLOCKING_GRID.format(pause=0.01, points=f"range({2 * GRID_SIZE})"))
    (pytester.path / "block.json").write_text("[5]")
    victim_node = "test_grid.py::test_point[5]"

    proc = procs.start("-n", "2", "--xp-resume")
    procs.wait_until(proc, "blocked run", lambda: victim_node in blocked_points(pytester))
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
