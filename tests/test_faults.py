"""Fault tolerance and concurrency, with real processes and real signals.

Every inner pytest is a real ``python -m pytest`` process on a real SQLite store. Waits are
bounded (marker files polled against a deadline, ``wait(timeout=...)``) and every process
started here is killed with its process group afterwards, so a bug can never hang the suite.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from processes import BLOCKING_GRID, GATE_CONFTEST, SIGINT_CONFTEST, TIMEOUT, Processes, inner_env

from pytest_experiments import Store
from pytest_experiments.store.sqlite import APPLICATION_ID

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals, fork and process groups")

LOCKED = "database is locked"


@pytest.fixture(scope="module")
def load() -> Callable[..., Any]:
    """``pytest_experiments.load``, with pandas imported before pytester snapshots ``sys.modules``.

    (pytester drops modules first imported during a test, and numpy cannot be imported twice.)
    """
    from pytest_experiments.frames import load

    return load


def raw_rows(store: Path) -> list[sqlite3.Row]:
    """The ``runs`` table as stored (no read-time interpretation of ``running``), once a writer
    opened the store: which folds the journals of the processes that were killed."""
    Store.open(store).close()
    with contextlib.closing(sqlite3.connect(store / "experiments.sqlite")) as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT * FROM runs ORDER BY started_at, rowid").fetchall()


def files_under(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file()}


def test_twelve_runs_under_two_workers_are_all_recorded_once(
    load: Callable[..., Any], pytester: pytest.Pytester, procs: Processes
) -> None:
    pytester.makepyfile(
        test_grid="""
        import time

        import pytest


        @pytest.mark.experiment
        @pytest.mark.parametrize("i", range(12))
        def test_point(i):
            time.sleep(0.02)
            return {"square": i * i}
        """
    )
    store = pytester.path / "store"
    code, output = procs.run("-n", "2", f"--xp-store={store}")
    assert code == 0, output
    assert "12 passed" in output
    assert LOCKED not in output

    frame = load(store, history=True)
    assert len(frame) == 12
    assert frame["run_id"].nunique() == 12
    assert sorted(frame["node_id"]) == sorted(f"test_grid.py::test_point[{i}]" for i in range(12))
    assert set(frame["status"]) == {"passed"}
    assert set(frame["worker"]) == {"gw0", "gw1"}
    assert frame["session_id"].nunique() == 1
    squares = dict(zip(frame["params.i"], frame["metrics.square"], strict=True))
    assert squares == {i: float(i * i) for i in range(12)}


def test_two_processes_racing_to_create_one_store(
    load: Callable[..., Any], pytester: pytest.Pytester, procs: Processes
) -> None:
    grid = """
        import pytest


        @pytest.mark.experiment
        @pytest.mark.parametrize("i", range(30))
        def test_point(xp, i):
            for step in range(3):
                xp.log_metric("loss", 1.0 / (i + step + 1), step=step)
            return {"value": i}
    """
    pytester.makeconftest(GATE_CONFTEST)
    pytester.makepyfile(test_a=grid, test_b=grid)
    store = pytester.path / "store"
    gate = pytester.mkdir("gate")
    assert not store.exists()  # both processes find no store and create it at once

    first = procs.start("test_a.py", f"--xp-store={store}", XP_TEST_GATE=str(gate))
    second = procs.start("test_b.py", f"--xp-store={store}", XP_TEST_GATE=str(gate))
    procs.release_together(gate, 2)
    results = [procs.finish(first), procs.finish(second)]

    for code, output in results:
        assert code == 0, output
        assert LOCKED not in output
        assert "xp: 30 runs recorded (30 passed)" in output
    frame = load(store, history=True)
    assert len(frame) == 60
    assert frame["run_id"].nunique() == 60
    expected = [f"test_{name}.py::test_point[{i}]" for name in "ab" for i in range(30)]
    assert Counter(frame["node_id"]) == Counter(expected)
    assert set(frame["status"]) == {"passed"}
    with Store.open(store) as opened:
        sessions = opened.sessions()
        assert [session.counts for session in sessions] == [{"passed": 30}, {"passed": 30}]
        assert len(opened.metric_series(frame["run_id"][0], "loss")) == 3
    with contextlib.closing(sqlite3.connect(store / "experiments.sqlite")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# Each round forks fresh processes that all open (creating) one new store at the same instant:
# each racer says it is ready on one pipe and blocks reading another, which the parent closes
# once every racer is ready, waking them all at once (a head start in time would let a slow
# fork on a loaded machine race nothing).
OPEN_RACE = """
import os
import sys
from pathlib import Path

from pytest_experiments import Store
from pytest_experiments.store.sqlite import SQLiteStore  # noqa: F401  (imported once, before forking)

base, rounds, racers = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for number in range(rounds):
    ready_read, ready_write = os.pipe()
    go_read, go_write = os.pipe()
    children = []
    for _ in range(racers):
        pid = os.fork()
        if pid == 0:
            os.close(ready_read)
            os.close(go_write)
            os.write(ready_write, b"r")
            os.read(go_read, 1)  # end of file once the parent closes the pipe
            try:
                Store.open(base / str(number), create=True).close()
            except Exception as exc:
                print(f"round {number}: {type(exc).__name__}: {exc}", flush=True)
                os._exit(1)
            os._exit(0)
        children.append(pid)
    os.close(ready_write)
    os.close(go_read)
    ready = b""
    while len(ready) < racers:
        chunk = os.read(ready_read, racers)
        if not chunk:
            sys.exit(f"round {number}: a racer died before it was ready")
        ready += chunk
    os.close(go_write)
    os.close(ready_read)
    for pid in children:
        os.waitpid(pid, 0)
"""


def test_fresh_store_created_by_many_processes_at_once(tmp_path: Path) -> None:
    """Schema creation and the switch to WAL are serialised: no racer is refused or sees a lock error."""
    rounds, racers = 80, 4
    proc = subprocess.Popen(
        [sys.executable, "-c", OPEN_RACE, str(tmp_path), str(rounds), str(racers)],
        env=inner_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output = proc.communicate(timeout=TIMEOUT)[0]
    finally:
        Processes.kill(proc)
    assert proc.returncode == 0, output
    assert output == ""  # every racer opened every store
    for number in range(rounds):
        with contextlib.closing(sqlite3.connect(tmp_path / str(number) / "experiments.sqlite")) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
            assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'runs'").fetchone()[0] == 1


def test_worker_killed_mid_run_reads_back_interrupted(
    load: Callable[..., Any], pytester: pytest.Pytester, procs: Processes
) -> None:
    pytester.makepyfile(test_grid=BLOCKING_GRID.format(points="range(10)", pause=0.02))
    (pytester.path / "block.json").write_text("[3]")
    store = pytester.path / "store"
    proc = procs.start("-n", "2", f"--xp-store={store}")
    victim_pid = int(procs.wait_for(pytester.path / "blocked-3", proc))
    assert victim_pid != proc.pid  # the body runs in a worker, not in the controller
    os.kill(victim_pid, signal.SIGKILL)
    code, output = procs.finish(proc)

    # xdist reports the crashed item as failed, replaces the worker and runs everything else.
    assert code == 1, output
    assert "crashed while running 'test_grid.py::test_point[3]'" in output
    assert "replacing crashed worker" in output
    assert "9 passed" in output
    assert LOCKED not in output

    # The store: the killed run is interrupted (never "failed", never re-run), the rest passed.
    frame = load(store, history=True)
    assert len(frame) == 10
    assert frame["run_id"].nunique() == 10
    statuses = dict(zip(frame["node_id"], frame["status"], strict=True))
    assert statuses.pop("test_grid.py::test_point[3]") == "interrupted"
    assert statuses == {f"test_grid.py::test_point[{i}]": "passed" for i in range(10) if i != 3}
    [killed] = [row for row in raw_rows(store) if row["node_id"] == "test_grid.py::test_point[3]"]
    assert killed["pid"] == victim_pid
    assert killed["worker"] in ("gw0", "gw1")
    # Written as such by the controller when the session ended, not only read back so.
    assert killed["status"] == "interrupted"
    assert killed["finished_at"] is not None
    with Store.open(store) as opened:
        [session] = opened.sessions()
        assert session.exitstatus == 1
        assert session.counts == {"passed": 9, "interrupted": 1}


def test_pytest_process_killed_keeps_finished_runs(
    load: Callable[..., Any], pytester: pytest.Pytester, procs: Processes
) -> None:
    pytester.makepyfile(test_grid=BLOCKING_GRID.format(points="range(6)", pause=0.02))
    (pytester.path / "block.json").write_text("[3]")
    store = pytester.path / "store"
    proc = procs.start(f"--xp-store={store}")
    procs.wait_for(pytester.path / "blocked-3", proc)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL

    # Nothing closed the session: the in-flight row is still "running" in the table, and reads
    # back as interrupted because its process is dead. Points 4 and 5 never started.
    [killed] = [row for row in raw_rows(store) if row["node_id"] == "test_grid.py::test_point[3]"]
    assert killed["status"] == "running"
    assert killed["pid"] == proc.pid
    frame = load(store, history=True)
    statuses = dict(zip(frame["node_id"], frame["status"], strict=True))
    assert statuses == {
        "test_grid.py::test_point[0]": "passed",
        "test_grid.py::test_point[1]": "passed",
        "test_grid.py::test_point[2]": "passed",
        "test_grid.py::test_point[3]": "interrupted",
    }
    with contextlib.closing(sqlite3.connect(store / "experiments.sqlite")) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    # The store is still usable: a following session records new runs beside the old ones.
    pytester.makepyfile(
        test_after="""
        import pytest


        @pytest.mark.experiment
        @pytest.mark.parametrize("i", range(3))
        def test_again(xp, i):
            (xp.dir / "note.txt").write_text(str(i))
            return i
        """
    )
    code, output = procs.run("test_after.py", f"--xp-store={store}")
    assert code == 0, output
    assert "xp: 3 runs recorded (3 passed)" in output
    frame = load(store, history=True)
    assert len(frame) == 7
    assert Counter(frame["status"]) == {"passed": 6, "interrupted": 1}
    assert frame["session_id"].nunique() == 2
    again = frame[frame["experiment"] == "test_again"]
    assert all((Path(folder) / "note.txt").is_file() for folder in again["dir"])
    assert set(frame.loc[frame["status"] == "interrupted", "node_id"]) == {"test_grid.py::test_point[3]"}


def test_sigint_stores_the_run_in_flight_as_interrupted(
    load: Callable[..., Any], pytester: pytest.Pytester, procs: Processes
) -> None:
    pytester.makeconftest(SIGINT_CONFTEST)
    pytester.makepyfile(test_grid=BLOCKING_GRID.format(points="range(5)", pause=0.02))
    (pytester.path / "block.json").write_text("[2]")
    store = pytester.path / "store"
    proc = procs.start(f"--xp-store={store}")
    procs.wait_for(pytester.path / "blocked-2", proc)
    os.kill(proc.pid, signal.SIGINT)
    code, output = procs.finish(proc)

    assert code == pytest.ExitCode.INTERRUPTED, output
    assert "KeyboardInterrupt" in output
    assert LOCKED not in output
    rows = {row["node_id"]: row for row in raw_rows(store)}
    assert set(rows) == {f"test_grid.py::test_point[{i}]" for i in range(3)}
    for i in (0, 1):
        assert rows[f"test_grid.py::test_point[{i}]"]["status"] == "passed"
    interrupted = rows["test_grid.py::test_point[2]"]
    # Stored by the interrupted process itself, before it exited.
    assert interrupted["status"] == "interrupted"
    assert interrupted["finished_at"] is not None
    assert interrupted["error_type"] == "KeyboardInterrupt"
    frame = load(store, history=True)
    assert Counter(frame["status"]) == {"passed": 2, "interrupted": 1}
    with Store.open(store) as opened:
        [session] = opened.sessions()
        assert session.exitstatus == pytest.ExitCode.INTERRUPTED


def test_hostile_parameters_stay_inside_the_store(
    load: Callable[..., Any], pytester: pytest.Pytester, procs: Processes
) -> None:
    pytester.makepyfile(
        test_hostile="""
        import pytest

        HOSTILE = ["../../x", "/etc/passwd", "..\\\\..\\\\x", "~/x", "a/../../../x", "..", "/"]


        @pytest.mark.parametrize("name", HOSTILE)
        def test_value(xp_dir, name):
            (xp_dir / "artefact.txt").write_text(name)
            print("value", name)
            return {"length": len(name)}


        @pytest.mark.parametrize(
            "n", [1, 2, 3, pytest.param(4, id="../../../../y")], ids=["../x", "../../../../x", "/tmp/x", None]
        )
        def test_ids(xp_dir, n):
            (xp_dir / "artefact.txt").write_text(str(n))
            return n
        """
    )
    passwd = Path("/etc/passwd")
    passwd_before = (passwd.stat().st_mtime_ns, hashlib.sha256(passwd.read_bytes()).hexdigest())
    absolute_ids_before = [Path("/tmp/x").exists(), Path("/tmp/x/artefact.txt").exists()]
    store = pytester.path / "deep" / "er" / "store"  # escapes of a few levels still land in pytester.path
    before = files_under(pytester.path)
    code, output = procs.run(f"--xp-store={store}")
    assert code == 0, output

    # Every new file is inside the store, and /etc/passwd is untouched.
    new = files_under(pytester.path) - before
    assert new, "nothing was written"
    outside = sorted(str(path) for path in new if not path.is_relative_to(store))
    assert outside == []
    assert not (pytester.path.parent / "x").exists()
    assert (passwd.stat().st_mtime_ns, hashlib.sha256(passwd.read_bytes()).hexdigest()) == passwd_before
    assert [Path("/tmp/x").exists(), Path("/tmp/x/artefact.txt").exists()] == absolute_ids_before

    frame = load(store, history=True)
    assert len(frame) == 11
    assert set(frame["status"]) == {"passed"}
    runs = (store / "runs").resolve()
    for folder, run_id in zip(frame["dir"], frame["run_id"], strict=True):
        path = Path(folder).resolve()
        assert path.is_relative_to(runs), folder
        assert path.parent.parent == runs  # runs/<experiment>/<run id>, nothing deeper or shallower
        assert path.name == run_id
        assert (path / "artefact.txt").is_file()
    # The stored path is relative, made of the experiment name and run id only.
    for row in raw_rows(store):
        assert row["dir"] == f"runs/{row['experiment']}/{row['run_id']}"
    # The run folders are exactly one per run, under the two experiments' folders.
    assert {path.name for path in runs.iterdir()} == {"test_value", "test_ids"}
    assert {path.name for path in runs.glob("*/*")} == set(frame["run_id"])
    value_runs = frame[frame["experiment"] == "test_value"]
    artefacts = {(Path(folder) / "artefact.txt").read_text() for folder in value_runs["dir"]}
    assert artefacts == {"../../x", "/etc/passwd", "..\\..\\x", "~/x", "a/../../../x", "..", "/"}
    assert all((Path(folder) / "stdout.txt").is_file() for folder in value_runs["dir"])


def test_run_ids_unique_when_many_processes_start_runs_at_once(pytester: pytest.Pytester, procs: Processes) -> None:
    pytester.makeconftest(GATE_CONFTEST)
    pytester.makepyfile(
        test_grid="""
        import pytest


        @pytest.mark.experiment
        @pytest.mark.parametrize("i", range(25))
        def test_point(i):
            return i
        """
    )
    store = pytester.path / "store"
    gate = pytester.mkdir("gate")
    started = [procs.start(f"--xp-store={store}", XP_TEST_GATE=str(gate)) for _ in range(4)]
    procs.release_together(gate, 4)
    for proc in started:
        code, output = procs.finish(proc)
        assert code == 0, output
        assert LOCKED not in output

    rows = raw_rows(store)
    assert len(rows) == 100
    assert len({row["run_id"] for row in rows}) == len(rows)
    assert {row["status"] for row in rows} == {"passed"}
    # Each process recorded each grid point exactly once, in its own session.
    per_session = Counter((row["session_id"], row["node_id"]) for row in rows)
    assert len({row["session_id"] for row in rows}) == 4
    assert set(per_session.values()) == {1}
    assert len({row["pid"] for row in rows}) == 4


def test_moved_store_keeps_valid_run_folders(
    load: Callable[..., Any], pytester: pytest.Pytester, procs: Processes
) -> None:
    pytester.makepyfile(
        test_move="""
        import pytest


        @pytest.mark.parametrize("i", range(4))
        def test_point(xp, i):
            if i:  # point 0 writes nothing, so it has no folder
                (xp.dir / "model.txt").write_text(f"model {i}")
            return {"value": i}
        """
    )
    old = pytester.path / "store"
    code, output = procs.run(f"--xp-store={old}")
    assert code == 0, output
    before = load(old, history=True)
    assert all(Path(folder).is_relative_to(old) for folder in before["dir"])

    new = pytester.path / "elsewhere" / "moved-store"
    new.parent.mkdir()
    shutil.move(old, new)
    assert not old.exists()

    frame = load(new, history=True)
    assert list(frame["run_id"]) == list(before["run_id"])
    for folder, i in zip(frame["dir"], frame["params.i"], strict=True):
        path = Path(folder)
        assert path.is_relative_to(new), folder
        if i:
            assert (path / "model.txt").read_text() == f"model {i}"
        else:
            assert not path.exists()
    with Store.open(new) as opened:
        run = opened.run(frame["run_id"][1])
        assert run.dir == Path(frame["dir"][1])
        assert run.dir.is_dir()

    # The moved store records further sessions as before.
    code, output = procs.run(f"--xp-store={new}")
    assert code == 0, output
    assert len(load(new, history=True)) == 8
