"""Folding journals into a PostgreSQL store: one round trip a batch, each record exactly once.

The writer folds its own journal every second: after its first fold, a fold sends the
journal's lock, the records and the new offset in one pipeline, the offset moved on only from
where this connection left it (else the whole fold fails, and is made again from the offset
read). Round trips are counted from libpq's own trace of the messages the connection sends to
the real server; races are real processes released together at a gate.
"""

from __future__ import annotations

import contextlib
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from backends import Backend, make_backend
from processes import GATE_WAIT, Processes

from pytest_experiments.model import RunEnd, RunStart, SessionStart
from pytest_experiments.store.journal import FOLD_CHUNK, JournalWriter, read_batch
from pytest_experiments.store.liveness import Process, pid_namespace, process_start
from pytest_experiments.store.postgres import PostgresStore

needs_trace = pytest.mark.skipif(sys.platform != "linux", reason="libpq's trace, as psycopg offers it, is Linux's")


@pytest.fixture
def pg(tmp_path: Path, postgres_database: str) -> Backend:
    """A new PostgreSQL store location (not created yet) in this session's test database."""
    return make_backend("postgresql", tmp_path, postgres_database)


def open_backend(pg: Backend, *, create: bool = False) -> PostgresStore:
    """The backend itself (not ``Store.open``'s reading view): its fold says how much it folded."""
    return PostgresStore(pg.location, create=create, artifacts=pg.artifacts)


def created(pg: Backend) -> PostgresStore:
    store = open_backend(pg, create=True)
    store.record_session(SessionStart("s", 0.0, "h", os.getpid(), {}))
    return store


def journal_of(pg: Backend) -> JournalWriter:
    assert pg.artifacts is not None
    pid = os.getpid()
    return JournalWriter(pg.artifacts, Process("h", pid, pid_namespace(), process_start(pid)), "s")


def write_runs(journal: JournalWriter, first: int, runs: int, points: int) -> int:
    """Runs ``first``.. of ``points`` points each, started and ended; return how many records."""
    for n in range(first, first + runs):
        run_id = f"run-{n:05d}"
        journal.start(RunStart(run_id, "s", f"t.py::t[{n}]", "t.py", "t", f"h{n}", {"n": n}, float(n), "main",
                               "h", os.getpid(), f"runs/t/{run_id}"))  # fmt: skip
        for step in range(points):
            journal.point(run_id, "loss", step, step, 1.0 / (step + 1))
        journal.end(RunEnd(run_id, "passed", n + 1.0, 1.0, {"n": n}, {"loss": 1.0 / points}, [], {}, {}))
    return runs * (points + 2)


@contextlib.contextmanager
def round_trips(store: PostgresStore, trace: Path) -> Iterator[list[int]]:
    """Count the round trips of ``store``'s connection in the block: the times it asks the server
    for what is pending and waits for it (a Sync or a Flush, which psycopg sends as a pair when it
    syncs a pipeline, or a simple Query), read from libpq's trace of the messages it sends."""
    from psycopg import pq

    counted: list[int] = []
    pgconn = store._db.pgconn
    with open(trace, "w") as file:
        pgconn.trace(file.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            yield counted
        finally:
            pgconn.untrace()  # flushes the trace
    sent = [line.split("\t")[2] for line in trace.read_text().splitlines() if line.startswith("F\t")]
    counted.append(
        sum(
            1
            for i, kind in enumerate(sent)
            if kind in ("Sync", "Query") or (kind == "Flush" and sent[i - 1 : i] != ["Sync"])
        )
    )


def counts(pg: Backend) -> tuple[int, int, int]:
    """The store's runs, points, and the last number its run counter gave (each run once: as many)."""
    import psycopg
    from psycopg import sql

    statement = sql.SQL("SELECT (SELECT count(*) FROM {}), (SELECT count(*) FROM {}), (SELECT last FROM {})").format(
        *(sql.Identifier(pg.schema, table) for table in ("runs", "metric_points", "run_sequence"))
    )
    with psycopg.connect(pg.database_url, autocommit=True) as connection:
        row = connection.execute(statement).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


@needs_trace
def test_a_batch_of_runs_and_points_is_folded_in_one_round_trip(pg: Backend, tmp_path: Path) -> None:
    store = created(pg)
    journal = journal_of(pg)
    try:
        write_runs(journal, 0, 2, 10)
        with round_trips(store, tmp_path / "first.trace") as first:
            store.fold_journals([journal.path])
        records = write_runs(journal, 2, 40, 250)  # 40 runs x 250 points, started and ended: one batch
        assert not read_batch(journal.path, 0).more
        with round_trips(store, tmp_path / "batch.trace") as batch:
            assert store.fold_journals([journal.path]) == records
        with round_trips(store, tmp_path / "nothing.trace") as nothing:  # nothing new: the store is not asked
            assert store.fold_journals([journal.path]) == 0
        # The first fold of a journal reads its offset first: one round trip more.
        assert (first, batch, nothing) == ([2], [1], [0])
        assert counts(pg) == (42, 40 * 250 + 2 * 10, 42)
        assert store.journal_offsets() == {journal.path.name: journal.size()}
        assert store.metric_series("run-00041", "loss")[-1] == (249, 1.0 / 250)
        assert store.run("run-00041").status == "passed"
    finally:
        journal.close()
        store.close()


@needs_trace
def test_a_journal_folded_meanwhile_by_another_process_is_folded_from_where_that_one_stopped(
    pg: Backend, tmp_path: Path
) -> None:
    ours, other = created(pg), open_backend(pg)
    journal = journal_of(pg)
    try:
        first = write_runs(journal, 0, 3, 10)
        assert ours.fold_journals([journal.path]) == first
        second = write_runs(journal, 3, 3, 10)
        assert other.fold_journals([journal.path]) == second  # behind our back
        third = write_runs(journal, 6, 3, 10)
        with round_trips(ours, tmp_path / "guarded.trace") as trips:
            # The guard fails the first attempt, records and all; the fold then reads the offset.
            assert ours.fold_journals([journal.path]) == third
        assert trips == [1 + 2]
        assert counts(pg) == (9, 90, 9)  # the second batch not folded twice, nor any run started twice
        fourth = write_runs(journal, 9, 1, 10)
        with round_trips(ours, tmp_path / "again.trace") as trips:
            assert ours.fold_journals([journal.path]) == fourth
        assert trips == [1]
        assert counts(pg) == (10, 100, 10)
    finally:
        journal.close()
        ours.close()
        other.close()


RACER = (
    textwrap.dedent(GATE_WAIT)
    + """
import sys
from pathlib import Path
from pytest_experiments.store.postgres import PostgresStore

url, artifacts, gate, prime = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4] == "prime"
store = PostgresStore(url, artifacts=artifacts)
primed = store.fold_journals() if prime else 0  # then it knows where the journal is folded to
wait_at_gate(gate)
print("folded", primed, store.fold_journals())
store.close()
"""
)


@pytest.mark.parametrize("prime", ["prime", "cold"])
def test_two_processes_fold_a_postgres_journal_exactly_once(
    pg: Backend, pytester: pytest.Pytester, procs: Processes, prime: str
) -> None:
    # "prime": both racers have folded the journal before, so both send their guarded batch at
    # once and one guard fails; "cold": both read the offset at once, under the journal's lock.
    store = created(pg)
    journal = journal_of(pg)
    try:
        records = write_runs(journal, 0, 20, 50)
        gate = pytester.mkdir("gate")
        assert pg.artifacts is not None
        racers = [procs.start_script(RACER, pg.location, str(pg.artifacts), str(gate), prime) for _ in range(2)]
        procs.wait_ready(gate, 2)
        before = journal.size()
        records += write_runs(journal, 20, 400, 50)
        assert journal.size() - before > FOLD_CHUNK  # more than one batch
        procs.open_gate(gate, delay=0.1)
        folded = []
        for racer in racers:
            code, output = procs.finish(racer)
            assert code == 0, output
            assert "error ignored" not in output  # psycopg's warning for statements a failed fold aborted
            folded.extend(int(number) for number in output.split("folded", 1)[1].split()[:2])
        assert sum(folded) == records, folded  # between them, every record exactly once
        assert counts(pg) == (420, 420 * 50, 420)  # each run inserted once
        assert store.journal_offsets() == {journal.path.name: journal.size()}
    finally:
        journal.close()
        store.close()
