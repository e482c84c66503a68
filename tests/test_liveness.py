"""Liveness of ``running`` runs beyond the pid: process start time, pid namespace, heartbeat lease.

Real processes throughout: a ``sleep`` started here stands for an unrelated process that the
system gave a dead run's pid to.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from processes import BLOCKING_GRID, Processes, history, store_of

from pytest_experiments import Store
from pytest_experiments.model import RunStart, SessionStart
from pytest_experiments.store.liveness import Liveness, Process, pid_namespace, process_start

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process start times come from /proc")

HOUR = 3600.0


def here(pid: int, started: str) -> Process:
    return Process(socket.gethostname(), pid, pid_namespace(), started)


# -- the rules, one by one --------------------------------------------------------------------


def test_process_start_tells_processes_apart(sleeper: subprocess.Popen[bytes]) -> None:
    mine = process_start(os.getpid())
    assert mine
    assert process_start(os.getpid()) == mine  # stable for a process
    assert process_start(sleeper.pid) not in ("", mine)
    assert mine.startswith(Path("/proc/sys/kernel/random/boot_id").read_text().strip() + ":")


def test_a_process_on_this_host_is_judged_by_its_pid_and_start_time(sleeper: subprocess.Popen[bytes]) -> None:
    liveness = Liveness(lease=10)
    now = time.time()
    myself = here(os.getpid(), process_start(os.getpid()))
    # Alive and the same process: live, even with a heartbeat long gone (or none yet).
    assert liveness.is_live(myself, heartbeat=now - HOUR, finished=None, now=now)
    assert liveness.is_live(myself, heartbeat=None, finished=None, now=now)
    # A session that finished runs nothing any more.
    assert not liveness.is_live(myself, heartbeat=now, finished=now, now=now)
    # The pid now belongs to another process (here: this run's pid is the sleep's, its start
    # time ours): the run's process is gone, however fresh the heartbeat.
    reused = here(sleeper.pid, process_start(os.getpid()))
    assert not liveness.is_live(reused, heartbeat=now, finished=None, now=now)
    assert liveness.is_live(here(sleeper.pid, process_start(sleeper.pid)), heartbeat=None, finished=None, now=now)


def test_a_dead_pid_is_dead_at_once() -> None:
    liveness = Liveness(lease=10)
    now = time.time()
    child = subprocess.Popen(["sleep", "300"])
    started = process_start(child.pid)
    child.kill()
    try:
        # Killed but not reaped yet: a zombie holds the pid, and is dead all the same.
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child never became a zombie"
            time.sleep(0.005)
        assert not liveness.is_live(here(child.pid, started), heartbeat=now, finished=None, now=now)
    finally:
        child.wait(timeout=10)
    assert not liveness.is_live(here(child.pid, started), heartbeat=now, finished=None, now=now)
    assert process_start(child.pid) == ""


def test_without_a_start_time_a_live_pid_also_needs_a_fresh_heartbeat(sleeper: subprocess.Popen[bytes]) -> None:
    # A run written by an older version (or where /proc could not be read) has no start time.
    liveness = Liveness(lease=10)
    now = time.time()
    unknown = here(sleeper.pid, "")
    assert liveness.is_live(unknown, heartbeat=now - 5, finished=None, now=now)
    assert not liveness.is_live(unknown, heartbeat=now - 11, finished=None, now=now)
    assert not liveness.is_live(unknown, heartbeat=None, finished=None, now=now)


@pytest.mark.parametrize("elsewhere", ["host", "pid namespace", "boot"])
def test_a_process_out_of_sight_is_judged_by_the_heartbeat_alone(elsewhere: str) -> None:
    liveness = Liveness(lease=10)
    now = time.time()
    # Our own pid, but not our machine, container or boot (a machine with the same hostname):
    # the pid proves nothing either way.
    process = here(os.getpid(), process_start(os.getpid()))
    if elsewhere == "host":
        process = process._replace(host="far-host")
    elif elsewhere == "pid namespace":
        process = process._replace(pid_namespace="1")
    else:
        process = process._replace(started="another-boot-id:" + process.started.rpartition(":")[2])
    assert liveness.is_live(process, heartbeat=now - 5, finished=None, now=now)
    assert not liveness.is_live(process, heartbeat=now - 11, finished=None, now=now)


# -- through the store and the plugin ---------------------------------------------------------


def test_run_whose_pid_was_reused_reads_interrupted_and_is_resumed(
    pytester: pytest.Pytester, procs: Processes, start_sleeper: Callable[[], subprocess.Popen[bytes]]
) -> None:
    pytester.makepyfile(test_grid=BLOCKING_GRID.format(pause=0, points="range(4)"))
    (pytester.path / "block.json").write_text("[2]")
    session = procs.start()
    procs.wait_for(pytester.path / "blocked-2", session)
    procs.kill(session)
    # The system gives the dead process's pid to an unrelated one started later (the sleep),
    # and the dead session's heartbeat is fresh: only the process start time can tell.
    sleeper = start_sleeper()
    Store.open(store_of(pytester)).close()  # a writer folds the dead session's journal into the table
    database = store_of(pytester) / "experiments.sqlite"
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as db, db:
        assert db.execute("UPDATE runs SET pid = ? WHERE status = 'running'", (sleeper.pid,)).rowcount == 1
        db.execute("UPDATE sessions SET heartbeat_at = ?", (time.time(),))
    target = "test_grid.py::test_point[2]"
    assert {run.node_id: run.status for run in history(pytester)}[target] == "interrupted"

    (pytester.path / "block.json").unlink()
    result = pytester.runpytest("--xp-resume", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, deselected=2)
    result.stdout.fnmatch_lines(["xp: resume: 2 done, 2 to run (1 never run, 1 interrupted)"])
    with Store.open(store_of(pytester)) as store:
        assert {run.node_id: run.status for run in store.runs()}[target] == "passed"


def test_stored_run_without_start_time_is_live_only_within_the_lease(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    with Store.open(tmp_path / "store", create=True) as store:
        for name, heartbeat_age in [("fresh", 30.0), ("stale", HOUR)]:
            session = SessionStart(f"{name}-session", time.time() - heartbeat_age, socket.gethostname(), 1, {})
            store.record_session(session)  # its heartbeat: when it started
            store.start_run(
                RunStart(
                    run_id=f"{name}-run",
                    session_id=session.session_id,
                    node_id=f"test_x.py::test_x[{name}]",
                    module="test_x.py",
                    experiment="test_x",
                    param_hash=name,
                    params={"name": name},
                    started_at=time.time(),
                    worker="main",
                    host=socket.gethostname(),
                    pid=sleeper.pid,  # alive, and no start time to compare
                    pid_namespace=pid_namespace(),
                    dir=f"runs/test_x/{name}-run",
                )
            )
        assert {run.run_id: run.status for run in store.runs()} == {"fresh-run": "running", "stale-run": "interrupted"}
        assert store.grid_states() == {
            ("test_x.py", "test_x", "fresh"): ("running", None),
            ("test_x.py", "test_x", "stale"): ("interrupted", None),
        }
