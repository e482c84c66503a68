"""Schema versions 2 and 3 and the migration of older stores, on real stores and real sessions.

Version 3 added tags, notes and the artefact registry (issue 11).

Version 2 added what concurrent resume needs: the start time of a run's process (liveness)
and a run sequence the store assigns (claims). A writer migrates a version-1 store in one
immediate transaction; a reader reads it as it is, and never takes the write lock.
"""

from __future__ import annotations

import contextlib
import re
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import GATE_CONFTEST, Processes, store_of

from pytest_experiments.store.liveness import pid_namespace
from pytest_experiments.store.sqlite import APPLICATION_ID, DB_NAME, SCHEMA_VERSION
from pytest_experiments.values import dumps, param_hash

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")

# The schema of version 1, frozen here as pytest-experiments 0.1.0 created it.
V1_SCHEMA = """
CREATE TABLE sessions (
    session_id   TEXT PRIMARY KEY,
    started_at   REAL NOT NULL,
    finished_at  REAL,
    heartbeat_at REAL,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    exitstatus   INTEGER,
    metadata     TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE code (
    sha256 TEXT PRIMARY KEY,
    source TEXT NOT NULL
);
CREATE TABLE runs (
    run_id        TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL,
    node_id       TEXT NOT NULL,
    module        TEXT NOT NULL,
    experiment    TEXT NOT NULL,
    param_hash    TEXT NOT NULL,
    params        TEXT NOT NULL,
    logged_params TEXT NOT NULL DEFAULT '{}',
    status        TEXT NOT NULL,
    started_at    REAL NOT NULL,
    finished_at   REAL,
    duration      REAL,
    worker        TEXT NOT NULL,
    host          TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    pid_namespace TEXT NOT NULL DEFAULT '',
    dir           TEXT NOT NULL,
    code_sha256   TEXT,
    metrics       TEXT NOT NULL DEFAULT '{}',
    result        TEXT,
    metadata      TEXT NOT NULL DEFAULT '{}',
    error_type    TEXT,
    error_message TEXT,
    traceback     TEXT
);
-- The one secondary index: resume's claims and load() find a grid point's latest run by
-- it. Session queries scan instead (once per session), which keeps each run's writes cheaper.
CREATE INDEX runs_by_grid_point ON runs (module, experiment, param_hash, started_at);
CREATE TABLE metric_points (
    run_id TEXT NOT NULL,
    name   TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    step   INTEGER,
    value  REAL,
    PRIMARY KEY (run_id, name, seq)
) WITHOUT ROWID;
"""

GRID = """
    import pytest


    @pytest.mark.experiment
    @pytest.mark.parametrize("i", range(4))
    def test_point(i):
        return {"value": i}
"""
OLD_COLUMNS = ["run_id", "session_id", "status", "node_id", "params", "started_at", "finished_at", "pid"]


def make_version_1_store(root: Path, running_pid: int) -> None:
    """A version-1 store of ``test_grid.py::test_point``: point 0 passed, 1 is ``running``
    (pid ``running_pid``, its session's heartbeat an hour old), 2 failed, 3 never ran."""
    (root / "runs").mkdir(parents=True)
    now = time.time()
    with contextlib.closing(sqlite3.connect(root / DB_NAME)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(V1_SCHEMA)
        db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        db.execute("PRAGMA user_version=1")
        with db:
            db.execute(
                "INSERT INTO sessions (session_id, started_at, heartbeat_at, host, pid) VALUES (?, ?, ?, ?, ?)",
                ("old-session", now - 7200, now - 3600, "", 1),
            )
            for i, status in enumerate(["passed", "running", "failed"]):
                run_id = f"old-run-{i}"
                db.execute(
                    "INSERT INTO runs (run_id, session_id, node_id, module, experiment, param_hash, params, status, "
                    "started_at, finished_at, worker, host, pid, pid_namespace, dir) "
                    "VALUES (?, 'old-session', ?, 'test_grid.py', 'test_point', ?, ?, ?, ?, ?, 'main', ?, ?, ?, ?)",
                    (
                        run_id, f"test_grid.py::test_point[{i}]", param_hash({"i": i}), dumps({"i": i}), status,
                        now - 7000 + i, None if status == "running" else now - 6900 + i, socket.gethostname(),
                        running_pid, pid_namespace(), f"runs/test_point/{run_id}",
                    ),
                )  # fmt: skip


def schema_of(root: Path) -> tuple[int, list[str], list[str]]:
    """(user_version, the columns of runs, every table and trigger)."""
    with contextlib.closing(sqlite3.connect(root / DB_NAME)) as db:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        columns = [row[1] for row in db.execute("PRAGMA table_info(runs)")]
        names = [
            row[0]
            for row in db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger') ORDER BY name")
        ]
    return version, columns, names


def old_rows(root: Path) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(root / DB_NAME)) as db:
        return db.execute(
            f"SELECT {', '.join(OLD_COLUMNS)} FROM runs WHERE run_id LIKE 'old-%' ORDER BY rowid"
        ).fetchall()


STATUS_ROW = (
    "test_grid.py::test_point     4     1       1      0            1       0        0        0          1           0"
)


def test_a_reader_reads_a_version_1_store_as_it_is_and_never_waits_for_the_write_lock(
    pytester: pytest.Pytester, procs: Processes, sleeper: subprocess.Popen[bytes]
) -> None:
    pytester.makepyfile(test_grid=GRID)
    store = store_of(pytester)
    make_version_1_store(store, sleeper.pid)
    before = schema_of(store), old_rows(store)

    # A writer holds the write lock throughout: --xp-status only reads, so it neither waits
    # for the lock nor migrates the store (which would need it).
    with contextlib.closing(sqlite3.connect(store / DB_NAME, isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")
        code, output = procs.finish(procs.start("--xp-status"), timeout=20)
        writer.execute("ROLLBACK")
    assert code == 0, output
    # The run in flight has no process start time (version 1): its pid is alive, but its
    # session's heartbeat is an hour old, so it is not running any more.
    assert STATUS_ROW in output.splitlines(), output
    assert (schema_of(store), old_rows(store)) == before
    assert before[0][0] == 1


def test_a_writer_migrates_a_version_1_store_and_resumes_it(
    pytester: pytest.Pytester, procs: Processes, sleeper: subprocess.Popen[bytes]
) -> None:
    pytester.makepyfile(test_grid=GRID)
    store = store_of(pytester)
    make_version_1_store(store, sleeper.pid)
    rows = old_rows(store)

    code, output = procs.run("--xp-resume")
    assert code == 0, output
    assert "xp: resume: 1 done, 2 to run (1 never run, 1 interrupted); 1 failed kept (--xp-retry-failed)" in (
        output.splitlines()
    )
    version, columns, names = schema_of(store)
    assert version == SCHEMA_VERSION
    assert columns[-4:] == ["pid_started", "seq", "tags", "notes"]
    assert {"run_sequence", "runs_sequence", "artifacts", "run_attempts"} <= set(names)
    assert old_rows(store) == rows  # migrated, not rewritten
    with contextlib.closing(sqlite3.connect(store / DB_NAME)) as db:
        new = db.execute("SELECT seq, pid_started FROM runs WHERE run_id NOT LIKE 'old-%' ORDER BY seq").fetchall()
        old = db.execute("SELECT seq, rowid FROM runs WHERE run_id LIKE 'old-%'").fetchall()
        [(last,)] = db.execute("SELECT last FROM run_sequence").fetchall()
    # The runs recorded since count on from the old ones; the old ones keep no sequence number.
    assert [seq for seq, _ in new] == [4, 5]
    assert all(started for _, started in new)
    assert {seq for seq, _ in old} == {None}
    assert max(rowid for _, rowid in old) == 3
    assert last == 5


def test_sessions_opening_a_version_1_store_at_once_migrate_it_once(
    pytester: pytest.Pytester, procs: Processes, sleeper: subprocess.Popen[bytes]
) -> None:
    pytester.makepyfile(test_grid=GRID)
    pytester.makeconftest(GATE_CONFTEST)
    store = store_of(pytester)
    make_version_1_store(store, sleeper.pid)
    gate = pytester.mkdir("gate")
    # Each opens the store (and so migrates it) when its first run starts, after the gate.
    started = [procs.start(XP_TEST_GATE=str(gate)) for _ in range(4)]
    procs.release_together(gate, 4)
    for proc in started:
        code, output = procs.finish(proc)
        assert code == 0, output
        assert "4 passed" in output

    version, _, names = schema_of(store)
    assert version == SCHEMA_VERSION
    assert names.count("run_sequence") == names.count("runs_sequence") == 1
    with contextlib.closing(sqlite3.connect(store / DB_NAME)) as db:
        seqs = [row[0] for row in db.execute("SELECT seq FROM runs WHERE run_id NOT LIKE 'old-%'")]
        [(last,)] = db.execute("SELECT last FROM run_sequence").fetchall()
    assert sorted(seqs) == list(range(4, 20))
    assert last == 19


def test_a_snapshot_of_a_version_1_store_still_sees_runs_recorded_after_the_migration(
    pytester: pytest.Pytester, procs: Processes, sleeper: subprocess.Popen[bytes]
) -> None:
    pytester.makepyfile(test_grid=GRID)
    pytester.makeconftest(GATE_CONFTEST)
    store = store_of(pytester)
    make_version_1_store(store, sleeper.pid)
    gate = pytester.mkdir("gate")
    # The resuming session snapshots the version-1 store and waits; another session then
    # migrates it and records point 3. The resuming session must count that run as after
    # its snapshot: it skips point 3 and runs point 1 only.
    resuming = procs.start("--xp-resume", "-v", XP_TEST_GATE=str(gate))
    procs.wait_ready(gate, 1)
    code, output = procs.run("test_grid.py::test_point[3]")
    assert code == 0, output
    assert schema_of(store)[0] == SCHEMA_VERSION
    procs.open_gate(gate)
    code, output = procs.finish(resuming)

    assert code == 0, output
    assert "xp: resume: 1 done, 2 to run (1 never run, 1 interrupted); 1 failed kept (--xp-retry-failed)" in (
        output.splitlines()
    )
    assert "1 passed" in output
    assert "skipped" not in output  # point 3 is not run at all: said once in the summary
    assert "xp: 1 run here, 1 taken by other sessions" in output.splitlines()
    assert re.search(r"^xp:   1 done in session \S+$", output, re.MULTILINE), output


def test_an_older_store_is_read_without_tags_and_annotated_only_once_upgraded(
    pytester: pytest.Pytester, sleeper: subprocess.Popen[bytes]
) -> None:
    from pytest_experiments import Store, StoreError

    store = store_of(pytester)
    make_version_1_store(store, sleeper.pid)
    with Store.open(store, readonly=True) as reader:
        runs = reader.runs(history=True)
        assert [(run.tags, run.notes) for run in runs] == [({}, [])] * 3
        assert reader.artifacts("old-run-0") == []
        assert reader.points() == []
    # A writer opened without create= never migrates: it refuses to annotate, saying how.
    with Store.open(store) as writer:
        with pytest.raises(StoreError, match=r"older pytest-experiments .*record a run into it"):
            writer.set_tags("old-run-0", {"a": "b"})
        assert writer.delete_runs(["old-run-2"]) == 1
    assert schema_of(store)[0] == 1
    with Store.open(store, create=True) as writer:
        assert writer.set_tags("old-run-0", {"a": "b"}) == {"a": "b"}
    assert schema_of(store)[0] == SCHEMA_VERSION
