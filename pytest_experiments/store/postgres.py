"""The PostgreSQL store: many hosts record into one database; run folders under an artefacts root.

A store is one schema (``?store=NAME`` in the URL, default ``experiments``: see
:mod:`pytest_experiments.store.server_url`), created on first use and versioned; the run folders
live under the artefacts root given to :meth:`Store.open` (``artifacts=``), a filesystem every
host sees, with their paths stored relative to it.

Concurrency: every process has its own connection, in autocommit; what must be atomic is one
transaction. A run start takes the next number of the store's run counter in the statement
that inserts the run: the counter row's lock orders run starts as they commit, so a snapshot
(one ``REPEATABLE READ`` transaction) that reads the counter as ``M`` sees exactly the runs
numbered up to ``M``, and any run it does not see is numbered above. A claim takes a
transaction-scoped advisory lock on its grid point, then checks and inserts: two claimers of
one grid point take turns, and the second sees the first one's run. Liveness is judged as
for SQLite (:mod:`pytest_experiments.store.liveness`), from the run's process and its session's
heartbeat. Folders of one journal take turns the same way, under the journal's lock; the
statement after the lock's reads (or checks) the journal's offset, so it sees every fold of it
before (see ``_fold_once``).

Identifiers (the schema) go through ``psycopg.sql.Identifier``; every value is a parameter.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from itertools import chain, repeat
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

# Submodules by their full name: ``from package import module`` would take the copy a finished
# in-process (pytester) session left as the package's attribute, and keep that session alive.
import pytest_experiments.store.columns as columns
import pytest_experiments.store.postgres_sql as q
from pytest_experiments.model import (
    Artifact,
    Attempt,
    Continuation,
    GridKey,
    GridSnapshot,
    GridState,
    Note,
    RunChanges,
    RunColumns,
    RunEnd,
    RunRecord,
    RunStart,
    SeriesPoints,
    SessionRecord,
    SessionStart,
)
from pytest_experiments.store.base import Store, StoreError, attempt_reason, checked_tags, decode_notes
from pytest_experiments.store.copies import RunCopy, SessionCopy, run_row, session_row
from pytest_experiments.store.journal import Batch, read_batch
from pytest_experiments.store.liveness import DEFAULT_LEASE_S, Liveness, Process
from pytest_experiments.store.rundirs import SIDE_DIR, create_root, remove_run_folder
from pytest_experiments.store.runfiles import list_artifacts
from pytest_experiments.store.server_url import BadURL, masked, secrets_in, split_store
from pytest_experiments.values import dumps, storable_text

#: Where a server store keeps run folders when ``Store.open`` is given no ``artifacts``.
DEFAULT_ARTIFACTS = ".experiments-artifacts"
_CONNECT_TIMEOUT_S = 10


# Called for every run listed: the bound method, not json.loads and its keyword handling.
_decode = json.JSONDecoder().decode


def _lock_key(*parts: str) -> int:
    """A 64-bit advisory lock key for ``parts`` (a collision with another key only makes one wait)."""
    digest = hashlib.sha256("\0".join((q.APPLICATION, *parts)).encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class NoStore(StoreError):
    """There is no store at the URL (yet): no schema, or an empty one."""


def store_exists(url: str) -> bool:
    """Whether the store at ``url`` has been created; a server that cannot be reached is a :class:`StoreError`."""
    try:
        PostgresStore(url, readonly=True).close()
    except NoStore:
        return False
    return True


class PostgresStore(Store):
    """A store in a PostgreSQL database. See :meth:`Store.open` and the module doc."""

    def __init__(
        self,
        url: str,
        *,
        create: bool = False,
        lease: float = DEFAULT_LEASE_S,
        readonly: bool = False,
        artifacts: str | Path | None = None,
    ) -> None:
        if create and readonly:
            raise ValueError("a store opened read-only cannot be created")
        self._location = masked(url)
        self._secrets = secrets_in(url)
        try:
            conninfo, self.name = split_store(url)
        except BadURL as exc:
            raise StoreError(str(exc)) from None
        self.root = Path(os.path.abspath(artifacts if artifacts is not None else DEFAULT_ARTIFACTS))
        self.lease = lease
        self._liveness = Liveness(lease)
        self._readonly = readonly
        self._schema = sql.Identifier(self.name)
        self._code_written: set[str] = set()
        # How far this connection last folded (or found folded) each journal, by name: see _fold_once.
        self._folded: dict[str, int] = {}
        self._db = self._connect(conninfo, readonly)
        try:
            with self._errors(writing=not readonly):
                self._set_up_session(readonly)
                self._sql = {key: self._compose(text) for key, text in q.STATEMENTS.items()}
                self._prepare(create)
            if create:
                self._create_artifacts()
        except BaseException:
            self.close()
            raise

    # -- connecting and the schema --------------------------------------------------------
    @property
    def location(self) -> str:
        return self._location

    def __repr__(self) -> str:
        return f"PostgresStore({self._location!r}, artifacts={str(self.root)!r})"

    def _connect(self, conninfo: str, readonly: bool) -> psycopg.Connection[tuple[Any, ...]]:
        # libpq reads the rest (PGPASSWORD, ~/.pgpass, PGSERVICE...); ours only where unset.
        extra: dict[str, Any] = {"application_name": q.APPLICATION}
        if "PGCONNECT_TIMEOUT" not in os.environ:
            extra["connect_timeout"] = _CONNECT_TIMEOUT_S
        try:
            params = psycopg.conninfo.conninfo_to_dict(conninfo)
            options = {key: value for key, value in extra.items() if key not in params}
            connection = psycopg.connect(conninfo, autocommit=True, **options)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to the store {self._location} ({self._detail(exc)}); check the server and "
                "the URL, or choose another --xp-store"
            ) from None
        return connection

    def _set_up_session(self, readonly: bool) -> None:
        if readonly:
            # Every statement of this connection is then a read-only transaction: the server
            # itself refuses any write.
            self._db.execute("SET default_transaction_read_only = on")
        else:
            # A commit does not wait for the server's disk (a run's two commits took 7 ms on
            # the project's machine, 1 ms without waiting), as SQLite's synchronous=NORMAL: a
            # crash of this process loses nothing committed; a crash of the server may lose its
            # last fraction of a second of commits, never consistency, and claims stay atomic.
            self._db.execute("SET synchronous_commit = off")

    def _compose(self, text: str) -> str:
        return sql.SQL(text).format(s=self._schema).as_string(self._db)

    def _prepare(self, create: bool) -> None:
        if create:
            # One creator at a time (another process may be creating the same store right now).
            with self._db.transaction():
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key("schema", self.name),))
                self._create_schema()
            self._version = q.SCHEMA_VERSION
        else:
            # Never migrated without create=: it is read at the version it has.
            self._version = self._check_schema(self._schema_state())
            if self._version < 2:
                self._sql.update({key: self._compose(text) for key, text in q.STATEMENTS_V1.items()})

    def _schema_state(self) -> tuple[bool, bool, bool]:
        """Whether the schema exists, holds anything, and holds our version table."""
        row = self._db.execute(
            "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = %s), "
            "EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s), "
            "EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = 'store_version')",
            (self.name, self.name, self.name),
        ).fetchone()
        assert row is not None
        return bool(row[0]), bool(row[1]), bool(row[2])

    def _check_schema(self, state: tuple[bool, bool, bool]) -> int:
        """The version of the store, refusing a missing, foreign or newer one."""
        exists, holds, ours = state
        if not exists:
            raise NoStore(f"no experiment store at {self._location} yet: run some experiments first")
        if not ours:
            if not holds:
                raise NoStore(f"no experiment store at {self._location} yet: run some experiments first")
            raise StoreError(
                f"schema {self.name!r} at {self._location} holds tables of something else, not an experiment "
                "store; choose another store name (?store=NAME)"
            )
        row = self._db.execute(self._sql["version"]).fetchone()
        if row is None or row[0] != q.APPLICATION:
            raise StoreError(
                f"schema {self.name!r} at {self._location} is not an experiment store; "
                "choose another store name (?store=NAME)"
            )
        version = int(row[1])
        if version > q.SCHEMA_VERSION:
            raise StoreError(
                f"the store {self._location} has schema version {version}, newer than this pytest-experiments "
                f"reads ({q.SCHEMA_VERSION}); upgrade pytest-experiments"
            )
        return version

    def _create_schema(self) -> None:
        """Create or migrate the schema (in a transaction, under the creation lock)."""
        state = self._schema_state()
        exists, holds, _ = state
        if not holds:  # new, or an empty schema made for us
            if not exists:
                self._db.execute(sql.SQL("CREATE SCHEMA {}").format(self._schema))
            for statement in q.SCHEMA:
                self._db.execute(self._compose(statement))
            self._db.execute(self._compose("INSERT INTO {s}.store_version VALUES (%s, 1)"), (q.APPLICATION,))
            state = (True, True, True)
        version = self._check_schema(state)
        for target in range(version + 1, q.SCHEMA_VERSION + 1):
            for statement in q.MIGRATIONS[target]:
                self._db.execute(self._compose(statement))
            self._db.execute(self._compose("UPDATE {s}.store_version SET version = %s"), (target,))
        self._db.execute(self._compose(q.STATEMENTS["prune_changes"]), (q.CHANGES_KEPT,))

    def _create_artifacts(self) -> None:
        try:
            create_root(self.root)
        except OSError as exc:
            raise StoreError(
                f"cannot create the artefacts folder {self.root} of the store {self._location} ({exc.strerror}); "
                "choose another artefacts folder"
            ) from None

    # -- errors -----------------------------------------------------------------------------
    def _detail(self, error: BaseException) -> str:
        """``error``'s message on one line, never holding a password."""
        text = " ".join(str(error).split())
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    @contextlib.contextmanager
    def _errors(self, *, writing: bool = True) -> Iterator[None]:
        """Raise any database error as one :class:`StoreError` line."""
        try:
            yield
        except psycopg.Error as exc:
            verb = "write" if writing else "read"
            raise StoreError(
                f"cannot {verb} the store {self._location} ({self._detail(exc)}); check it, or choose another --xp-store"
            ) from None

    # -- writing ----------------------------------------------------------------------------
    def record_session(self, session: SessionStart) -> None:
        args = (session.session_id, session.started_at, session.started_at, session.host, session.pid)
        with self._errors():
            self._db.execute(self._sql["record_session"], (*args, dumps(session.metadata)))

    def update_session_metadata(self, session_id: str, metadata: dict[str, Any]) -> None:
        with self._errors():
            self._db.execute(self._sql["update_session_metadata"], (dumps(metadata), session_id))

    def start_run(self, start: RunStart) -> None:
        with self._errors():
            self._db.execute(self._sql["start_run"], _start_args(start))

    def claim_run(self, start: RunStart, after: int) -> str | None:
        # One round trip in the common cases (the point is free, or another session has it):
        # the lock, the check, and the insert done only if the check would find nothing, sent
        # as one pipeline, which makes them one implicit transaction, ended (and the lock
        # released) by the pipeline's single sync; psycopg's transaction() would add a round
        # trip for its BEGIN and one for its COMMIT. Each statement reads what was committed
        # when it began, so the check and the insert see the run of every claimer of the point
        # before us (see the module doc).
        point = (start.module, start.experiment, start.param_hash, start.session_id, after)
        with self._errors():
            with self._db.pipeline():
                self._db.execute(self._sql["lock_grid_point"], (self._point_lock(start),))
                check = self._db.execute(self._sql["claimed_elsewhere"], (after, *point))
                insert = self._db.execute(self._sql["claim_if_free"], (*point, *_start_args(start)))
            if insert.rowcount == 1:
                return None
            reason = self._claimed_elsewhere(check.fetchall())
        if reason is not None:
            return reason
        # Only runs that are over (their process died, or interrupted after the mark): the
        # point is free after all, which only liveness (judged here) can tell.
        return self._claim_judged(start, after)

    def claim_first(self, starts: Sequence[RunStart], after: int) -> list[str | None]:
        if len(starts) < 2 or len({(s.session_id, s.worker, s.host, s.pid) for s in starts}) > 1:
            # One point: claim_run's statements, cheaper to plan and run than the arrays below.
            return super().claim_first(starts, after)
        # One round trip, as claim_run: two statements in one pipeline (one implicit
        # transaction). The first takes the points' locks; the second, which sees the runs of
        # every claimer that held one of them before us, lists the runs that keep each point
        # from us and inserts the first point that has none.
        first = starts[0]
        keys = sorted({self._point_lock(start) for start in starts})  # in one order: no deadlock
        candidates = [
            [s.run_id for s in starts], [storable_text(s.node_id) for s in starts],
            [storable_text(s.module) for s in starts], [s.experiment for s in starts],
            [s.param_hash for s in starts], [dumps(s.params) for s in starts],
            [s.started_at for s in starts], [s.dir for s in starts],
        ]  # fmt: skip
        process = (first.session_id, first.worker, first.host, first.pid, first.pid_namespace, first.pid_started)
        with self._errors():
            with self._db.pipeline():
                self._db.execute(self._sql["lock_grid_points"], (keys,))
                claim = self._db.execute(
                    self._sql["claim_first_free"], (*candidates, after, first.session_id, after, *process)
                )
            rows = claim.fetchall()
        claimed = rows[0][0]  # the 1-based place of the point claimed, or None
        blocking: dict[int, list[tuple[Any, ...]]] = {}
        for row in rows:
            if row[1] is not None:
                blocking.setdefault(row[1], []).append(row[2:])
        outcomes: list[str | None] = []
        for place, start in enumerate(starts, 1):
            if place == claimed:
                outcomes.append(None)
                break
            reason = self._claimed_elsewhere(blocking.get(place, []))
            if reason is None:
                # Only runs that are over (their process died, or interrupted after the mark):
                # free after all, which only liveness (judged here) can tell. Claimed on its own;
                # the statement may have claimed a later point too, which the outcomes go on to.
                reason = self._claim_judged(start, after)
            outcomes.append(reason)
            if reason is None and claimed is None:
                break
        return outcomes

    def _claim_judged(self, start: RunStart, after: int) -> str | None:
        """The claim of a grid point whose runs liveness must judge: checked and inserted under its lock."""
        # Pipelined: BEGIN, the lock and the check reach the server in one round trip, the
        # insert and COMMIT in a second.
        with self._errors(), self._db.pipeline(), self._db.transaction():
            # Claimers of one grid point take turns here; the check then sees the runs of every
            # claimer before us (each statement reads what was committed when it began).
            self._db.execute(self._sql["lock_grid_point"], (self._point_lock(start),))
            rows = self._db.execute(
                self._sql["claimed_elsewhere"],
                (after, start.module, start.experiment, start.param_hash, start.session_id, after),
            ).fetchall()
            reason = self._claimed_elsewhere(rows)
            if reason is None:
                self._db.execute(self._sql["start_run"], _start_args(start))
            return reason

    def _point_lock(self, start: RunStart) -> int:
        return _lock_key(self.name, start.module, start.experiment, start.param_hash)

    def _claimed_elsewhere(self, rows: list[tuple[Any, ...]]) -> str | None:
        """Why another session has the grid point, from its runs that are running or after the snapshot."""
        now = time.time()
        judged = [(row[0], row[1], self._status(row[2], row[3:7], row[7], row[8], now)) for row in rows]
        for session_id, _, status in judged:
            if status == "running":
                return f"running in session {session_id}"
        for session_id, is_after, status in judged:
            # Started after the snapshot and not cut short: that session did this grid point's work.
            if is_after and status != "interrupted":
                return f"done in session {session_id}"
        return None

    def continue_run(self, start: RunStart, after: int, statuses: Collection[str]) -> str | Continuation | None:
        if self._version < 3:  # opened without create=: not migrated
            raise StoreError(
                f"the store {self._location} was written by an older pytest-experiments (schema {self._version}); "
                "record a run into it with this version first, which upgrades it, to continue a run"
            )
        with self._errors(), self._db.transaction():
            # The claim's lock and check (see claim_run), then continue or start.
            key = _lock_key(self.name, start.module, start.experiment, start.param_hash)
            self._db.execute(self._sql["lock_grid_point"], (key,))
            rows = self._db.execute(
                self._sql["claimed_elsewhere"],
                (after, start.module, start.experiment, start.param_hash, start.session_id, after),
            ).fetchall()
            reason = self._claimed_elsewhere(rows)
            if reason is not None:
                return reason
            latest = self._db.execute(
                self._sql["latest_of_point"], (start.module, start.experiment, start.param_hash)
            ).fetchone()
            now = time.time()
            status = None if latest is None else self._status(latest[2], latest[6:10], latest[10], latest[11], now)
            if latest is None or status not in statuses:
                self._db.execute(self._sql["start_run"], _start_args(start))
                return None
            return self._reopen(latest, str(status), start)

    def _reopen(self, row: Sequence[Any], status: str, start: RunStart) -> Continuation:
        """Keep the run's current attempt in ``run_attempts`` and make its row ``start``'s attempt
        (inside the claim's transaction)."""
        run_id, session_id, _, started_at, finished_at, worker, host, pid = row[:8]
        directory, metrics, logged_params, metadata, error_type, error_message = row[12:]
        count_row = self._db.execute(self._sql["attempt_count"], (run_id,)).fetchone()
        earlier = int(count_row[0]) if count_row else 0
        reason = storable_text(attempt_reason(status, metadata, error_type, error_message))
        self._db.execute(
            self._sql["add_attempt"],
            (run_id, earlier, session_id, started_at, finished_at, status, reason, worker, host, pid),
        )
        continued = earlier + 1
        self._db.execute(
            self._sql["reopen_run"],
            (start.session_id, storable_text(start.node_id), start.started_at, start.worker, start.host, start.pid,
             start.pid_namespace, start.pid_started, dumps({"continued": continued}), run_id),
        )  # fmt: skip
        seq_row = self._db.execute(self._sql["next_point_seq"], (run_id,)).fetchone()
        next_seq = int(seq_row[0]) if seq_row else 0
        return Continuation(run_id, directory, continued, next_seq, _decode(metrics), _decode(logged_params))

    def attempts(self, run_id: str) -> list[Attempt]:
        rows = self._query("current_attempt", (run_id,))
        if not rows:
            raise KeyError(run_id)
        earlier = [Attempt(*row) for row in self._query("attempts", (run_id,))] if self._version >= 3 else []
        row = rows[0]
        session_id, status, started_at, finished_at, worker, host, pid = row[:7]
        live = self._status(status, (host, pid, row[7], row[8]), row[9], row[10], time.time())
        metadata, error_type, message = row[11:]
        reason = attempt_reason(live, metadata, error_type, message)
        return [*earlier, Attempt(session_id, started_at, finished_at, live, reason, worker, host, pid)]

    def heartbeat(self, session_id: str) -> None:
        with self._errors():
            self._db.execute(self._sql["heartbeat"], (time.time(), session_id))

    def finish_run(self, end: RunEnd) -> None:
        # A function's source is written once per connection, not with every run.
        self._finish(end)

    def _finish(self, end: RunEnd, *, in_transaction: bool = False) -> None:
        new_code = (
            end.code_sha256 is not None and end.code_source is not None and end.code_sha256 not in self._code_written
        )
        code = (end.code_sha256, storable_text(end.code_source)) if new_code else (None, None)
        points = [[storable_text(p.name) for p in end.points], [p.seq for p in end.points],
                  [p.step for p in end.points], [p.value for p in end.points]]  # fmt: skip
        outcome = (
            end.status, end.finished_at, end.duration, dumps(end.result), dumps(end.metrics),
            dumps(end.logged_params), dumps(end.metadata), end.code_sha256, storable_text(end.error_type),
            storable_text(end.error_message), storable_text(end.traceback), end.run_id,
        )  # fmt: skip
        files = [[storable_text(a.name) for a in end.artifacts], [a.size for a in end.artifacts],
                 [a.media_type for a in end.artifacts], [a.kind for a in end.artifacts]]  # fmt: skip
        with self._errors():
            if in_transaction:  # a fold's: queued in its pipeline; its code is written by every fold
                self._db.execute(self._sql["finish_run"], (*code, code[1], end.run_id, *points, *outcome))
                if end.tags:
                    self._db.execute(self._sql["merge_tags"], (dumps(end.tags), end.run_id))
                if end.artifacts:
                    self._db.execute(self._sql["add_artifacts"], (end.run_id, *files))
                return
            if end.tags or end.artifacts:
                with self._db.transaction():
                    self._db.execute(self._sql["finish_run"], (*code, code[1], end.run_id, *points, *outcome))
                    if end.tags:
                        self._db.execute(self._sql["merge_tags"], (dumps(end.tags), end.run_id))
                    if end.artifacts:
                        self._db.execute(self._sql["add_artifacts"], (end.run_id, *files))
            else:  # the common case: one statement, one round trip
                self._db.execute(self._sql["finish_run"], (*code, code[1], end.run_id, *points, *outcome))
        if new_code:
            self._code_written.add(end.code_sha256)  # type: ignore[arg-type]

    # -- journals -------------------------------------------------------------------------
    def journal_offsets(self) -> dict[str, int]:
        if self._version < 4:
            return {}
        return {name: int(folded) for name, folded in self._query("journal_offsets")}

    def _fold_once(self, path: Path) -> tuple[int, Batch] | None:
        if self._readonly or self._version < 4:
            return None
        expected = self._folded.get(path.name)
        if expected is not None:
            # The common case, the writer folding its own journal every second: nobody else
            # folds it, so it is still folded to where this connection left it.
            batch = read_batch(path, expected)
            if batch.end == expected:
                return expected, batch  # nothing new: the store holds the journal up to there already
            if self._fold_guarded(path.name, expected, batch):
                return expected, batch
        return self._fold_read(path)

    def _fold_guarded(self, name: str, expected: int, batch: Batch) -> bool:
        """Fold ``batch``, read from ``expected``, in one round trip; False (nothing folded) if the
        journal's stored offset was not ``expected`` any more (another process folded it)."""
        # One pipeline, one implicit transaction ended (committed, or rolled back with all its
        # records if the offset moved meanwhile) by the pipeline's single sync: the journal's
        # lock, the records, and the new offset, written only over ``expected``. That last
        # statement sees what every folder of the journal before us committed (the lock is
        # taken in an earlier statement). Last, and not before the records, because a failure
        # then aborts no statement after it: psycopg would raise it in the middle of queueing
        # the records, log a warning for the aborted rest, and keep as prepared a statement whose
        # preparation the abort skipped. psycopg's transaction() would add a round trip for its
        # BEGIN and two for its COMMIT.
        self._folded.pop(name, None)  # unknown until the outcome is known
        with self._errors():
            try:
                with self._db.pipeline():
                    self._db.execute(self._sql["lock_journal"], (_lock_key("journal", name),))
                    self._apply(batch)
                    self._db.execute(self._sql["fold_offset_from"], (name, expected, batch.end, name))
            except psycopg.errors.InvalidTextRepresentation as exc:
                if q.GUARD_FAILED not in str(exc):
                    raise
                return False
        self._folded[name] = batch.end
        return True

    def _fold_read(self, path: Path) -> tuple[int, Batch]:
        """Fold from the offset read from the store: two round trips (the batch depends on the offset)."""
        self._folded.pop(path.name, None)
        with self._errors(), self._db.pipeline():
            # One implicit transaction, as in _fold_guarded: the lock and the offset, read in a
            # statement after the lock's; then every record and the new offset.
            self._db.execute(self._sql["lock_journal"], (_lock_key("journal", path.name),))
            row = self._db.execute(self._sql["journal_offset"], (path.name,)).fetchone()
            offset = int(row[0]) if row is not None else 0
            batch = read_batch(path, offset)
            if batch.end > offset:
                self._apply(batch)
                self._db.execute(self._sql["fold_offset"], (path.name, batch.end))
        self._folded[path.name] = batch.end
        return offset, batch

    def _apply(self, batch: Batch) -> None:
        """Queue a journal's records (in the fold's transaction and pipeline)."""
        cursor = self._db.cursor()
        if batch.starts:
            cursor.executemany(self._sql["fold_start"], [_start_args(start) for start in batch.starts])
        if batch.points:
            columns = list(zip(*batch.points, strict=True))
            names = [storable_text(name) for name in columns[1]]
            self._db.execute(self._sql["fold_points"], (list(columns[0]), names, *map(list, columns[2:])))
        for run_id, latest in batch.latest().items():
            finite = {name: value for name, value in latest.items() if math.isfinite(value)}  # what jsonb takes
            self._db.execute(self._sql["fold_latest"], (dumps(finite), run_id))
        for end in batch.ends:
            self._finish(end, in_transaction=True)

    def finish_session(self, session_id: str, finished_at: float, exitstatus: int) -> None:
        with self._errors():
            self._db.execute(
                self._sql["finish_session"],
                (finished_at, finished_at, exitstatus, session_id, finished_at, finished_at, session_id),
            )

    # -- reading ----------------------------------------------------------------------------
    def _status(
        self, status: str, process: Sequence[Any], heartbeat: float | None, finished: float | None, now: float
    ) -> str:
        """The live status of a run stored with ``status`` (see :mod:`pytest_experiments.store.liveness`)."""
        if status == "running" and not self._liveness.is_live(Process(*process), heartbeat, finished, now):
            return "interrupted"
        return status

    def _record(self, row: Sequence[Any], now: float) -> RunRecord:
        params, logged_params, metrics, metadata, tags, notes = _decode(row[q.VALUES])
        return RunRecord(
            run_id=row[q.RUN_ID],
            session_id=row[q.SESSION_ID],
            node_id=row[q.NODE_ID],
            module=row[q.MODULE],
            experiment=row[q.EXPERIMENT],
            param_hash=row[q.PARAM_HASH],
            params=params,
            logged_params=logged_params,
            status=self._status(
                row[q.STATUS],
                (row[q.HOST], row[q.PID], row[q.PID_NAMESPACE], row[q.PID_STARTED]),
                row[q.HEARTBEAT],
                row[q.SESSION_FINISHED],
                now,
            ),
            started_at=row[q.STARTED],
            finished_at=row[q.FINISHED],
            duration=row[q.DURATION],
            worker=row[q.WORKER],
            host=row[q.HOST],
            pid=row[q.PID],
            dir=self.root / row[q.DIR],
            metrics=metrics,
            error_type=row[q.ERROR_TYPE],
            error_message=row[q.ERROR_MESSAGE],
            code_sha256=row[q.CODE],
            metadata=metadata,
            tags=tags,
            notes=[Note(float(at), str(text)) for at, text in notes],
        )

    def _query(self, key: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        # Binary results: numbers arrive as they are, not as text to parse (load() of many runs).
        with self._errors(writing=False), self._db.cursor(binary=True) as cursor:
            return cursor.execute(self._sql[key], args).fetchall()

    def runs(
        self,
        *,
        experiment: str | Iterable[str] | None = None,
        status: str | Iterable[str] | None = None,
        history: bool = False,
        session_id: str | None = None,
    ) -> list[RunRecord]:
        names = None if experiment is None else [experiment] if isinstance(experiment, str) else list(experiment)
        rows = self._query("history" if history else "latest", (names, names, session_id, session_id))
        now = time.time()
        records = [self._record(row, now) for row in rows]
        if status is not None:
            wanted = {status} if isinstance(status, str) else set(status)
            records = [record for record in records if record.status in wanted]
        return records

    def run_columns(
        self,
        *,
        experiment: str | Iterable[str] | None = None,
        status: str | Iterable[str] | None = None,
        history: bool = False,
        metadata: bool = False,
    ) -> RunColumns:
        names = None if experiment is None else [experiment] if isinstance(experiment, str) else list(experiment)
        statement = self._compose(q.COLUMN_READS[history, min(self._version, 2), metadata])
        wanted = None if status is None else {status} if isinstance(status, str) else set(status)
        with columns.gc_paused():
            with self._errors(writing=False), self._db.cursor(binary=True) as cursor:
                rows = cursor.execute(statement, (names, names)).fetchall()
            return columns.run_columns(
                rows, root=self.root, liveness=self._liveness, latest=not history, status=wanted, metadata=metadata
            )

    # -- load()'s kept frames (schema 5 on) ---------------------------------------------
    def run_changes(
        self, since: int | str | None = None, *, history: bool = False, marks: Sequence[int] = ()
    ) -> RunChanges | None:
        """See :meth:`Store.run_changes`. ``since`` and the answer's ``seq`` are not change
        numbers here but snapshots (``pg_current_snapshot()``'s text): the runs changed since are
        those of the changes that snapshot did not see (see ``MIGRATIONS[5]``)."""
        seen = None if since is None else _snapshot_parts(since)
        if self._version < 5 or (since is not None and seen is None):  # an older store logs no changes
            return None
        with columns.gc_paused(), self._errors(writing=False):
            try:
                with self._db.transaction():
                    return self._changes(since, seen, history, marks)
            except psycopg.errors.InsufficientPrivilege:
                # A role that may read the runs but not the change log (its grants made before
                # schema 5 added it): its frames are built each time, as before.
                return None

    def _changes(
        self, since: int | str | None, seen: tuple[int, int, list[int]] | None, history: bool, marks: Sequence[int]
    ) -> RunChanges | None:
        """:meth:`run_changes` in its transaction (``seen``: ``since``'s parts)."""
        # One snapshot for every read below.
        self._db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        state = self._db.execute(self._sql["change_state"]).fetchone()
        if state is None:  # the log emptied by hand (writers keep its last row): no place to note
            return None
        snapshot, pruned, running, marked, mark = str(state[0]), int(state[1]), bool(state[2]), int(state[3]), state[4]
        now = _snapshot_parts(snapshot)
        assert now is not None
        # Live statuses change without the store. A log pruned of a change that the caller's
        # snapshot may not have seen, or a transaction counter gone back (another server),
        # cannot tell what changed since.
        if running or (seen is not None and (pruned >= seen[0] or now[0] < seen[0])):
            return None
        removed: list[str] = []
        with self._db.cursor(binary=True) as cursor:
            if seen is None:
                rows = cursor.execute(self._sql["changes_history" if history else "changes_latest"]).fetchall()
            else:
                _, xmax, running_then = seen
                changed = [row[0] for row in self._db.execute(self._sql["changed_since"], (xmax, running_then))]
                rows = cursor.execute(self._sql["changes_changed"], (changed,)).fetchall()
                existing = {row[0] for row in rows}
                removed = [run_id for run_id in changed if run_id not in existing and run_id]
        found = {}
        if marks:  # a first read asks for none
            marked_rows = self._db.execute(self._sql["change_marks"], (list(marks),))
            found = {int(number): str(value) for number, value in marked_rows}
        runs, extra = columns.run_columns_with(
            rows, root=self.root, liveness=self._liveness, latest=since is None and not history
        )
        seq_of, param_hash = extra or ([], [])
        place = self._place()
        return RunChanges(
            since=since, seq=snapshot, mark=str(mark), marked=marked, token=f"{place} {snapshot} {marked}:{mark}",
            place=place, columns=runs, rowid=seq_of, param_hash=param_hash, removed=removed, marks=found,
        )  # fmt: skip

    def _place(self) -> str:
        """The store as a kept frame is of it: the database, the schema and the artefacts root
        (the frames hold each run folder's absolute path)."""
        return f"postgresql {self._version} {self._location} {self.name} {self.root}"

    @property
    def side_folder(self) -> Path | None:
        # In the artefacts root, one folder per store (several may share a root), and only
        # when it is there already and this reader owns it: a reader creates no root.
        if self._version < 5:
            return None
        geteuid = getattr(os, "geteuid", None)  # not on Windows: no other owner to tell apart
        try:
            owned = geteuid is None or self.root.stat().st_uid == geteuid()
        except OSError:
            owned = False
        digest = hashlib.sha256(self._place().encode()).hexdigest()[:16]
        return self.root / SIDE_DIR / f"postgresql-{digest}" if owned else None

    def grid_snapshot(self) -> GridSnapshot:
        with self._errors(writing=False), self._db.transaction():
            # One snapshot of the database for both reads: the runs it shows are exactly
            # those numbered up to the mark (see the module doc).
            self._db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            mark_row = self._db.execute(self._sql["mark"]).fetchone()
            rows = self._db.execute(self._sql["grid"]).fetchall()
        now = time.time()
        states: dict[GridKey, GridState] = {
            (row[0], row[1], row[2]): (self._status(row[3], row[5:9], row[9], row[10], now), row[4]) for row in rows
        }
        return GridSnapshot(states, int(mark_row[0]) if mark_row else 0)

    def run(self, run_id: str) -> RunRecord:
        rows = self._query("run", (run_id,))
        if not rows:
            raise KeyError(run_id)
        row = rows[0]
        record = self._record(row, time.time())
        result, traceback, source, session = row[q.LISTED :]
        record.result = None if result is None else json.loads(result)
        record.traceback = traceback
        record.code_source = source
        record.session = json.loads(session) if session is not None else {}
        registered = [Artifact(*row) for row in self._query("artifacts", (run_id,))] if self._version >= 2 else []
        record.artifacts = list_artifacts(record.dir, registered)
        return record

    def code_source(self, sha256: str) -> str | None:
        rows = self._query("code_source", (sha256,))
        return str(rows[0][0]) if rows else None

    def points(self, run_ids: Sequence[str] | None = None, metrics: Sequence[str] | None = None) -> SeriesPoints:
        ids = None if run_ids is None else list(run_ids)
        names = None if metrics is None else [storable_text(name) for name in metrics]
        with columns.gc_paused():
            series = self._query("points", (ids, ids, names, names))
            run = list(chain.from_iterable(repeat(run_id, len(seqs)) for run_id, _, seqs, _, _ in series))
            name = list(chain.from_iterable(repeat(metric, len(seqs)) for _, metric, seqs, _, _ in series))
            seq, step, value = (list(chain.from_iterable(row[column] for row in series)) for column in (2, 3, 4))
            return SeriesPoints(run, name, seq, step, [math.nan if number is None else number for number in value])

    def metric_series(self, run_id: str, name: str) -> list[tuple[int | None, float]]:
        rows = self._query("series", (run_id, storable_text(name)))
        if rows:
            return [(step, math.nan if value is None else value) for step, value in rows]
        record = self.run(run_id)
        return [(None, record.metrics[name])] if name in record.metrics else []

    def _counts(self, session_id: str | None) -> dict[str, dict[str, int]]:
        """Run counts by status, per session (all sessions when ``session_id`` is None)."""
        counts: dict[str, dict[str, int]] = {}
        now = time.time()
        for row in self._query("counts", (session_id, session_id)):
            per_session = counts.setdefault(row[0], {})
            status = self._status(row[1], row[2:6], row[6], row[7], now)
            per_session[status] = per_session.get(status, 0) + row[8]
        return counts

    def status_counts(self, session_id: str) -> dict[str, int]:
        return self._counts(session_id).get(session_id, {})

    def sessions(self) -> list[SessionRecord]:
        rows = self._query("sessions")
        counts = self._counts(None)
        return [
            SessionRecord(
                session_id=session_id,
                started_at=started_at,
                finished_at=finished_at,
                host=host,
                pid=pid,
                exitstatus=exitstatus,
                metadata=json.loads(metadata),
                counts=counts.get(session_id, {}),
            )
            for session_id, started_at, finished_at, host, pid, exitstatus, metadata in rows
        ]

    # -- annotating ---------------------------------------------------------------------------
    def _require_annotations(self) -> None:
        if self._version < 2:  # opened without create=: not migrated
            raise StoreError(
                f"the store {self._location} was written by an older pytest-experiments (schema {self._version}); "
                "record a run into it with this version first, which upgrades it"
            )

    def set_tags(self, run_id: str, tags: Mapping[str, str | None]) -> dict[str, str]:
        update = checked_tags(tags)
        self._require_annotations()
        with self._errors(), self._db.transaction():
            row = self._db.execute(self._sql["tags_for_update"], (run_id,)).fetchone()
            if row is None:
                raise KeyError(run_id)
            merged = {key: value for key, value in {**json.loads(row[0]), **update}.items() if value is not None}
            self._db.execute(self._sql["set_tags"], (dumps(merged), run_id))
        return merged

    def add_note(self, run_id: str, text: str, at: float | None = None) -> Note:
        note = Note(time.time() if at is None else at, storable_text(text))
        self._require_annotations()
        with self._errors(), self._db.transaction():
            row = self._db.execute(self._sql["notes_for_update"], (run_id,)).fetchone()
            if row is None:
                raise KeyError(run_id)
            notes = [[at, text] for at, text in decode_notes(row[0])] + [list(note)]
            self._db.execute(self._sql["set_notes"], (dumps(notes), run_id))
        return note

    # -- maintenance ------------------------------------------------------------------------
    def delete_runs(self, run_ids: Iterable[str]) -> int:
        ids = list(dict.fromkeys(run_ids))
        if not ids:
            return 0
        with self._errors(), self._db.transaction():
            folders = [row[0] for row in self._db.execute(self._sql["folders"], (ids,)).fetchall()]
            self._db.execute(self._sql["delete_points"], (ids,))
            if self._version >= 2:
                self._db.execute(self._sql["delete_artifacts"], (ids,))
            if self._version >= 3:
                self._db.execute(self._sql["delete_attempts"], (ids,))
            deleted = self._db.execute(self._sql["delete_runs"], (ids,)).rowcount
        for relative in folders:
            remove_run_folder(self.root, relative)
        return deleted

    def add_copies(self, sessions: Sequence[SessionCopy], runs: Sequence[RunCopy]) -> int:
        # merge (issue 10): one transaction; ON CONFLICT DO NOTHING keeps what is here.
        added = 0
        with self._errors(), self._db.transaction():
            for session in sessions:
                self._db.execute(self._sql["add_session_copy"], session_row(session))
            for run in runs:
                if run.code_source is not None:
                    self._db.execute(self._sql["add_code_copy"], (run.code_sha256, storable_text(run.code_source)))
            for run in sorted(runs, key=lambda run: run.started_at):  # the store's sequence follows start order
                if not self._db.execute(self._sql["add_run_copy"], run_row(run)).rowcount:
                    continue
                added += 1
                points = [[storable_text(p.name) for p in run.points], [p.seq for p in run.points],
                          [p.step for p in run.points], [p.value for p in run.points]]  # fmt: skip
                self._db.execute(self._sql["add_points_copy"], (run.run_id, *points))
                if run.artifacts:
                    files = [[storable_text(a.name) for a in run.artifacts], [a.size for a in run.artifacts],
                             [a.media_type for a in run.artifacts], [a.kind for a in run.artifacts]]  # fmt: skip
                    self._db.execute(self._sql["add_artifacts"], (run.run_id, *files))
                for number, attempt in enumerate(run.attempts):
                    self._db.execute(self._sql["add_attempt"], (run.run_id, number, *attempt))
        return added

    def close(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self._db.close()


def _snapshot_parts(snapshot: object) -> tuple[int, int, list[int]] | None:
    """A snapshot's text (``xmin:xmax:xip,...``) as its xmin, xmax and the transactions running
    then; None for anything else (a kept frame's file is read, not trusted)."""
    if not isinstance(snapshot, str):
        return None
    xmin, _, rest = snapshot.partition(":")
    xmax, _, running = rest.partition(":")
    try:
        return int(xmin), int(xmax), [int(xid) for xid in running.split(",") if xid]
    except ValueError:
        return None


def _start_args(start: RunStart) -> tuple[Any, ...]:
    return (
        start.run_id, start.session_id, storable_text(start.node_id), storable_text(start.module), start.experiment,
        start.param_hash, dumps(start.params), start.started_at, start.worker, start.host, start.pid,
        start.pid_namespace, start.pid_started, start.dir,
    )  # fmt: skip
