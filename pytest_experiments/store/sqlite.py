"""The default store: one SQLite database in WAL mode plus a ``runs/`` tree of run folders.

Concurrency: every process (each xdist worker, each pytest invocation) has its own
connection. Writers wait for each other through SQLite's busy timeout, and every
read-then-write runs under ``BEGIN IMMEDIATE`` so that a transaction never has to
upgrade its lock (which fails at once instead of waiting). On top of that, a write that
still meets a locked database is retried: "database is locked" never reaches the user.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from itertools import accumulate, chain, repeat
from pathlib import Path
from typing import Any, TypeVar

# Submodules by their full name: ``from package import module`` would take the copy a finished
# in-process (pytester) session left as the package's attribute, and keep that session alive.
import pytest_experiments.store.columns as columns
import pytest_experiments.store.rundirs as rundirs
import pytest_experiments.store.sqlite_files as sqlite_files
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
from pytest_experiments.store.mounts import network_store_problem
from pytest_experiments.store.rundirs import SIDE_DIR, create_root, remove_run_folder
from pytest_experiments.store.runfiles import list_artifacts
from pytest_experiments.store.sqlite_files import (
    Reader,
    check_only_store_files,
    check_runs_folder,
    companions,
    damaged,
    explain,
    nearest_existing,
    require_writable,
)
from pytest_experiments.values import dumps, storable_text

DB_NAME = sqlite_files.DB_NAME  # other modules import these two from here
RUNS_DIR = rundirs.RUNS_DIR
#: Marks a database as ours ("XPST"), so another application's SQLite file is refused.
APPLICATION_ID = 0x58505354
SCHEMA_VERSION = 7
_BUSY_TIMEOUT_S = 30.0
_RETRY_FOR_S = 300.0

_SCHEMA = """
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
#: The columns of the runs table (as of schema 7) but ``seq``: an update of any of them is a change
#: (tests/test_load_incremental.py checks that this is every column but seq).
RUN_COLUMNS_BUT_SEQ = (
    "run_id", "session_id", "node_id", "module", "experiment", "param_hash", "params", "logged_params",
    "status", "started_at", "finished_at", "duration", "worker", "host", "pid", "pid_namespace", "dir",
    "code_sha256", "metrics", "result", "metadata", "error_type", "error_message", "traceback",
    "pid_started", "tags", "notes",
)  # fmt: skip
# A change of a run, appended to change_log by migration 7's triggers: a new row after the last
# one, holding the count of runs stored as running after it. Plain INSERT: in a trigger, the
# conflict policy of the statement that fired it wins, and a new row meets no conflict.
_LOG_CHANGE = (
    "INSERT INTO change_log (run_id, token, running) "
    "VALUES ({row}.run_id, random(), (SELECT running FROM change_log ORDER BY seq DESC LIMIT 1){counted}); "
)
_LAST_CHANGE = "SELECT seq, token, running FROM change_log ORDER BY seq DESC LIMIT 1"
#: How many changes change_log keeps (a writer opening the store drops older ones): a frame
#: kept before them is built again. About 50 bytes each.
CHANGES_KEPT = 250_000

# Schema version 1 is created as above; each entry here takes a store from the version before
# it to its own, in the writer's creating transaction. A new store goes through them too, so
# a created and a migrated store are the same.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (
        # When the run's process started (liveness.process_start): a reused pid is not the run's.
        "ALTER TABLE runs ADD COLUMN pid_started TEXT NOT NULL DEFAULT ''",
        # The store's own order of run starts, for claims. Not the rowid, which SQLite reuses
        # once the newest rows are deleted (gc): a counter that only ever grows, set by a
        # trigger so that no writer can insert a run without one. Version-1 rows have none;
        # ``coalesce(seq, rowid)`` orders them, and the counter starts above their rowids.
        "ALTER TABLE runs ADD COLUMN seq INTEGER",
        "CREATE TABLE run_sequence (id INTEGER PRIMARY KEY CHECK (id = 1), last INTEGER NOT NULL)",
        "INSERT INTO run_sequence (id, last) SELECT 1, coalesce(max(rowid), 0) FROM runs",
        """CREATE TRIGGER runs_sequence AFTER INSERT ON runs BEGIN
            UPDATE run_sequence SET last = last + 1;
            UPDATE runs SET seq = (SELECT last FROM run_sequence) WHERE rowid = NEW.rowid;
        END""",
    ),
    3: (
        # Tags (a JSON object of short strings) and notes (a JSON list of [time, text]) are read
        # with every listing, so they live in the run's row.
        "ALTER TABLE runs ADD COLUMN tags TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE runs ADD COLUMN notes TEXT NOT NULL DEFAULT '[]'",
        # What xp.log_* wrote into the run folder: what a listing of the folder cannot know.
        """CREATE TABLE artifacts (
            run_id     TEXT NOT NULL,
            name       TEXT NOT NULL,
            size       INTEGER NOT NULL,
            media_type TEXT,
            kind       TEXT,
            PRIMARY KEY (run_id, name)
        ) WITHOUT ROWID""",
    ),
    4: (
        # A continued run's earlier attempts (xp.pause, interrupted runs continued): the run's
        # row holds the current one. Written only when a run is continued, never per run.
        """CREATE TABLE run_attempts (
            run_id      TEXT NOT NULL,
            attempt     INTEGER NOT NULL,
            session_id  TEXT NOT NULL,
            started_at  REAL NOT NULL,
            finished_at REAL,
            status      TEXT NOT NULL,
            reason      TEXT NOT NULL DEFAULT '',
            worker      TEXT NOT NULL,
            host        TEXT NOT NULL,
            pid         INTEGER NOT NULL,
            PRIMARY KEY (run_id, attempt)
        ) WITHOUT ROWID""",
    ),
    5: (
        # How far each journal (store/journal.py) is folded into the store: a fold moves the
        # offset in the transaction that applies the records, so each record is folded once.
        "CREATE TABLE IF NOT EXISTS journals (name TEXT PRIMARY KEY, folded INTEGER NOT NULL) WITHOUT ROWID",
    ),
    6: (
        # A token drawn anew by every change to a run, by triggers so that no writer (nor a hand
        # edit) can change one without it: what load()'s side files are checked against
        # (Store.change_token). Random rather than a counter: a store restored from a copy and
        # changed again never meets a token it had before.
        "CREATE TABLE runs_changed (id INTEGER PRIMARY KEY CHECK (id = 1), token BLOB NOT NULL)",
        "INSERT INTO runs_changed (id, token) VALUES (1, randomblob(16))",
        *(
            f"CREATE TRIGGER runs_changed_{event.lower()} AFTER {event} ON runs BEGIN "
            "UPDATE runs_changed SET token = randomblob(16); END"
            for event in ("INSERT", "UPDATE", "DELETE")
        ),
    ),
    7: (
        # Every change to a run, in order: readers that keep a frame of the runs (frames/cache.py)
        # read those since the one they saw and patch it rather than build it again. A log
        # rather than a number per run: appending is the cheapest write (one row at the end
        # of the table, a few microseconds a change), and a change once logged keeps its
        # number and random token (pruned only when far behind), which is how a reader tells
        # its store's past from another's: a copy restored from before counts the same numbers
        # again, with other tokens. Each row also counts the runs stored as running after it
        # (change_token() scanned every run for that: 45 ms at 100,000 runs).
        "CREATE TABLE IF NOT EXISTS change_log (seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL, "
        "token INTEGER NOT NULL, running INTEGER NOT NULL)",
        # Its first row: the runs stored as running now (readers patch nothing kept before it).
        "INSERT INTO change_log (run_id, token, running) SELECT '', random(), count(*) FROM runs WHERE status = 'running'",
        *(f"DROP TRIGGER IF EXISTS runs_changed_{event}" for event in ("insert", "update", "renamed", "delete")),
        "DROP TABLE IF EXISTS runs_changed",  # the log's last row is the token now
        *(
            f"CREATE TRIGGER runs_changed_{name} AFTER {event} ON runs {when}BEGIN {logged}END"
            for name, event, when, logged in (
                ("insert", "INSERT", "", _LOG_CHANGE.format(row="NEW", counted=" + (NEW.status = 'running')")),
                (
                    # Every column but seq: the stamp runs_sequence puts on a new row is part of its insert.
                    "update",
                    f"UPDATE OF {', '.join(RUN_COLUMNS_BUT_SEQ)}",
                    "",
                    _LOG_CHANGE.format(row="NEW", counted=" + (NEW.status = 'running') - (OLD.status = 'running')"),
                ),
                # The run id itself changed (no writer does; by hand): the old one is gone. A trigger
                # of its own, which other updates do not fire.
                (
                    "renamed",
                    "UPDATE OF run_id",
                    "WHEN OLD.run_id IS NOT NEW.run_id ",
                    _LOG_CHANGE.format(row="OLD", counted=""),
                ),
                ("delete", "DELETE", "", _LOG_CHANGE.format(row="OLD", counted=" - (OLD.status = 'running')")),
            )
        ),
    ),
}

# Columns read for listings; the bulky ones (result, traceback) only by ``run()``.
_LIST_COLUMNS = ", ".join(
    f"r.{column}"
    for column in [
        "run_id",
        "session_id",
        "node_id",
        "module",
        "experiment",
        "param_hash",
        "params",
        "logged_params",
        "status",
        "started_at",
        "finished_at",
        "duration",
        "worker",
        "host",
        "pid",
        "pid_namespace",
        "dir",
        "code_sha256",
        "metrics",
        "metadata",
        "error_type",
        "error_message",
    ]
)
# What liveness needs of a run's session: a run can only be in flight while its session lives.
_SESSION_COLUMNS = "s.heartbeat_at AS session_heartbeat, s.finished_at AS session_finished"
_WITH_SESSION = "LEFT JOIN sessions s ON s.session_id = r.session_id"


def _list_columns(version: int) -> str:
    """What listings read of a run in a store at ``version`` (tags and notes from version 3)."""
    extra = "r.tags, r.notes" if version >= 3 else "'{}' AS tags, '[]' AS notes"
    return f"{_LIST_COLUMNS}, {extra}"


def _liveness_columns(version: int) -> str:
    """What liveness needs beyond the run's host, pid and pid namespace, for a store at ``version``."""
    # Version-1 stores have no process start time (and readers never migrate a store).
    started = "r.pid_started" if version >= 2 else "'' AS pid_started"
    return f"{started}, {_SESSION_COLUMNS}"


def _columns(version: int, metadata: bool) -> str:
    """What ``run_columns`` reads of a run (``columns.LISTED``) in a store at ``version``."""
    stored = ", ".join(f"r.{name}" for name in columns.LISTED[: columns.LISTED.index("tags")])
    return f"{stored}, {_tags(version)}, {_process(version)}, {'r.metadata' if metadata else 'NULL'}"


def _tags(version: int) -> str:
    """A run's tags in a store at ``version`` (from version 3)."""
    return "r.tags" if version >= 3 else "'{}'"


def _process(version: int) -> str:
    """Who runs a run stored as running (JSON), for liveness; NULL for the others."""
    started = "r.pid_started" if version >= 2 else "''"
    # JSON keeps the heartbeat to 15 digits (10 microseconds), far below any lease. Looked up
    # only for those runs.
    return (
        "CASE WHEN r.status = 'running' THEN json_array(r.host, r.pid, r.pid_namespace, "
        f"{started}, (SELECT heartbeat_at FROM sessions s WHERE s.session_id = r.session_id), "
        "(SELECT finished_at FROM sessions s WHERE s.session_id = r.session_id)) END"
    )


#: The text fields of ``columns.LISTED`` that hold no NULL, joined by the database with this
#: separator (the unit separator: a value holding it makes the split count wrong, and is read
#: as rows instead).
_SEPARATOR = "\x1f"
_JOINED_TEXT = ("run_id", "session_id", "node_id", "module", "experiment", "status", "worker", "dir")
_JSON_FIELDS = ("params", "logged_params", "metrics")


def _joined_columns(version: int, metadata: bool, hashes: bool) -> str:
    """The aggregate of :func:`_listed_fields`: the number of runs, their row ids, the text fields
    (NULL-free ones joined, the others as JSON arrays), and each JSON field as one JSON array."""
    text = ", ".join(f"group_concat(r.{name}, char(31))" for name in _JOINED_TEXT)
    json_fields = [*(f"r.{name}" for name in _JSON_FIELDS), _tags(version), *(["r.metadata"] if metadata else [])]
    arrays = ", ".join(f"'[' || group_concat({field}, ',') || ']'" for field in json_fields)
    hashed = ", group_concat(r.param_hash, char(31))" if hashes else ""
    return (
        f"count(*), group_concat(r.rowid), {text}, json_group_array(r.error_type), "
        f"json_group_array(r.error_message), {arrays}{hashed}"
    )


def _listed_fields(
    db: sqlite3.Connection, version: int, condition: str, args: Sequence[Any], history: bool, *,
    metadata: bool = False, extra: bool = False,
) -> list[Any] | None:  # fmt: skip
    """The runs of :func:`_listed_rows` as fields (``columns.run_columns_of``), with (``extra``)
    their row id and grid point (none for ``history``) after them; None when there are none.

    Python made an object per row and field of the rows (two million at 100,000 runs, 0.22 s of
    the query's 0.25; SQLite's own part 0.04): here the database joins each text and JSON field
    of all runs into one text, split or decoded in one call, and only the numbers come as rows.
    Text that would not split back (holding the separator) is read as rows."""
    if history:
        where, where_args = condition, list(args)
    else:  # in ascending order, so that the rows are looked up (and joined) in the table's order
        where, where_args = (
            "WHERE r.rowid IN (SELECT value FROM json_each(?))",
            [json.dumps(sorted(_newest_rowids(db, condition, args)))],
        )
    numbers = db.execute(
        f"SELECT r.rowid, r.started_at, r.finished_at, r.duration, {_process(version)} FROM runs r {where} "
        "ORDER BY r.rowid",
        where_args,
    ).fetchall()
    if not numbers:
        return None
    hashed = extra and not history
    try:
        joined = db.execute(f"SELECT {_joined_columns(version, metadata, hashed)} FROM runs r {where}", where_args)
        count, rowids, *texts = joined.fetchone()
    except sqlite3.DataError:  # a text past SQLite's longest (a billion bytes by default): read as rows
        count, rowids, texts = -1, "", []
    rowid, started, finished, duration, process = (list(column) for column in zip(*numbers, strict=True))
    joined_texts = texts[: len(_JOINED_TEXT)] + ([texts[-1]] if hashed else [])
    split = [text.split(_SEPARATOR) if isinstance(text, str) else [] for text in joined_texts]
    # The same runs in the same order (an aggregate takes the rows in its scan's order: the
    # table's), and text that split back into a value per run: else read as rows.
    if count != len(rowid) or rowids != ",".join(map(str, rowid)) or any(len(values) != count for values in split):
        hashes = "r.param_hash" if hashed else "''"
        listed = f"{_columns(version, metadata)}, r.rowid, {hashes}" if extra else _columns(version, metadata)
        return [list(column) for column in zip(*_listed_rows(db, listed, condition, args, history), strict=True)]
    run_id, session_id, node_id, module, experiment, status, worker, folder = split[: len(_JOINED_TEXT)]
    error_type, error_message = json.loads(texts[len(_JOINED_TEXT)]), json.loads(texts[len(_JOINED_TEXT) + 1])
    json_texts = texts[len(_JOINED_TEXT) + 2 :]
    arrays = [columns.JsonArray(text, count) for text in json_texts[: len(_JSON_FIELDS) + 1]]  # and the tags
    found = columns.JsonArray(json_texts[len(_JSON_FIELDS) + 1], count) if metadata else [None] * count
    fields = [run_id, session_id, node_id, module, experiment, status, started, finished, duration, worker, folder,
              error_type, error_message, *arrays, process, found]  # fmt: skip
    if extra:
        fields += [rowid, split[-1] if hashed else [""] * count]
    return fields


T = TypeVar("T")


def _snapshot(connection: sqlite3.Connection, body: Callable[[], T]) -> T:
    """``body()`` in one read transaction of ``connection``: every query it makes sees the same
    state of the database (a WAL reader's snapshot), and it never takes the write lock."""
    connection.execute("BEGIN")
    try:
        result = body()
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")  # ends the read; nothing was written
    return result


def _one_read(connection: sqlite3.Connection, body: Callable[[], T]) -> T:
    """``body()`` in one read transaction of ``connection`` (:func:`_snapshot`), or in the one it is in."""
    return body() if connection.in_transaction else _snapshot(connection, body)


def _listed_rows(db: sqlite3.Connection, listed: str, condition: str, args: Sequence[Any], history: bool) -> list[Any]:
    """``listed`` of the runs meeting ``condition`` (with ``args``): every one, or (not
    ``history``) each grid point's newest; inside one read of ``db``."""
    # In the table's own order (rowid, no sort): columns.run_columns orders them.
    if history:
        return db.execute(f"SELECT {listed} FROM runs r {condition} ORDER BY r.rowid", args).fetchall()
    newest = json.dumps(_newest_rowids(db, condition, args))
    return db.execute(
        f"SELECT {listed} FROM runs r WHERE r.rowid IN (SELECT value FROM json_each(?)) ORDER BY r.rowid", (newest,)
    ).fetchall()


def _newest_rowids(db: sqlite3.Connection, condition: str, args: Sequence[Any]) -> list[int]:
    """The row id of the newest run (by start time, then row id) of each grid point of the runs
    meeting ``condition``: the last of its grid point in the grid point index.

    The index scanned twice, in its order (no sort): every run's row id, then the number of
    runs of each grid point, which cuts the first into grid points: less than half the CPU time
    of a window function over the index (``LEAD(rowid) OVER (PARTITION BY ...)``) at 100,000 runs.
    """
    point = "module, experiment, param_hash"
    rowids = [
        rowid
        for (rowid,) in db.execute(f"SELECT rowid FROM runs {condition} ORDER BY {point}, started_at, rowid", args)
    ]
    sizes = [
        size for (size,) in db.execute(f"SELECT count(*) FROM runs {condition} GROUP BY {point} ORDER BY {point}", args)
    ]
    return [rowids[end - 1] for end in accumulate(sizes)]


_INSERT_RUN = (
    "INSERT INTO runs (run_id, session_id, node_id, module, experiment, param_hash, params, status, "
    "started_at, worker, host, pid, pid_namespace, pid_started, dir) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)"
)
# A fold may meet a run that a claim, or an earlier fold, wrote already.
_INSERT_RUN_ONCE = _INSERT_RUN.replace("INSERT INTO", "INSERT OR IGNORE INTO", 1)
_INSERT_POINT = "INSERT OR REPLACE INTO metric_points (run_id, name, seq, step, value) VALUES (?, ?, ?, ?, ?)"
# A run started and ended within one fold: one row, complete. Upserted: a claim, or a fold
# interrupted before its commit that a later one repeats, may have written its start.
_OUTCOME = (
    "status", "finished_at", "duration", "result", "metrics", "logged_params", "metadata", "code_sha256",
    "error_type", "error_message", "traceback",
)  # fmt: skip
_INSERT_WHOLE_RUN = (
    "INSERT INTO runs (run_id, session_id, node_id, module, experiment, param_hash, params, started_at, worker, "
    f"host, pid, pid_namespace, pid_started, dir, {', '.join(_OUTCOME)}, tags) VALUES ({', '.join('?' * 26)}) "
    f"ON CONFLICT (run_id) DO UPDATE SET {', '.join(f'{column} = excluded.{column}' for column in _OUTCOME)}, "
    "tags = json_patch(runs.tags, excluded.tags)"
)
# Ids per DELETE statement: well under SQLite's limit on bound variables (999 before 3.32).
_DELETE_BATCH = 500


def _start_args(start: RunStart) -> tuple[Any, ...]:
    return (
        start.run_id, start.session_id, storable_text(start.node_id), storable_text(start.module), start.experiment,
        start.param_hash,
        dumps(start.params), start.started_at, start.worker, start.host, start.pid, start.pid_namespace,
        start.pid_started, start.dir,
    )  # fmt: skip


def _end_args(end: RunEnd) -> tuple[Any, ...]:
    """A run's outcome, in the order of :data:`_INSERT_WHOLE_RUN`'s last columns."""
    return (
        end.status, end.finished_at, end.duration, dumps(end.result), dumps(end.metrics), dumps(end.logged_params),
        dumps(end.metadata), end.code_sha256, storable_text(end.error_type), storable_text(end.error_message),
        storable_text(end.traceback), dumps(end.tags) if end.tags else "{}",
    )  # fmt: skip


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _retrying(action: Callable[[], T]) -> T:
    """Run ``action``, retrying while the database is locked by another process."""
    deadline = time.monotonic() + _RETRY_FOR_S
    delay = 0.005
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def check_store_path(root: Path, *, integrity: bool = False) -> None:
    """Raise :class:`StoreError` unless this process can record into ``root``: a store, or a
    folder that can become one. Creates and changes nothing.

    A folder is a store when it holds our database, or only what a store holds before its
    database exists (``runs/``, ``.gitignore``: another process may be creating it right now);
    an empty folder becomes one; any other folder is refused, so that ``--xp-store .`` never
    writes into a project. ``integrity`` also has SQLite check every page of the database
    (``PRAGMA quick_check``, about 0.1 s for 100,000 runs): once per session, by the process
    that starts it.
    """
    existing = nearest_existing(root)
    network = network_store_problem(existing)  # SQLite's locks fail there (mounts.py)
    if network is not None:
        raise StoreError(network)
    if existing != root:
        if not existing.is_dir():
            raise StoreError(
                f"cannot create store {root}: {existing} is a file, not a folder; choose another --xp-store"
            )
        require_writable(existing, f"cannot create store {root}: {existing} is not writable; choose another --xp-store")
        return
    if not root.is_dir():
        raise StoreError(f"{root} is a file, not a store folder; give --xp-store a folder path")
    require_writable(root, f"store folder {root} is not writable; fix its permissions or choose another --xp-store")
    database = root / DB_NAME
    if os.path.lexists(database):
        _check_database(database, integrity)
    else:
        check_only_store_files(root)
    check_runs_folder(root)


def _check_database(database: Path, integrity: bool) -> None:
    # Only through SQLite, never open() + close(): closing any descriptor of the file drops
    # every POSIX lock this process holds on it, SQLite's too, and another process closing
    # its connection would then delete the WAL that our live connections still write to.
    # A reader connection creates no file: a refused store is left exactly as it was.
    if database.stat().st_size:  # else what SQLite itself creates first: still to be initialised
        reader = Reader(database, _BUSY_TIMEOUT_S)
        try:
            reader.read(lambda connection: _check_contents(connection, database, integrity))
        finally:
            reader.close()
    for path in companions(database):
        require_writable(
            path,
            f"{path} is not writable by this user; fix its permissions or choose another --xp-store "
            "(reading needs no write permission: load() and the pytest-experiments command work)",
        )


def _check_contents(connection: sqlite3.Connection, database: Path, integrity: bool) -> None:
    _retrying(lambda: _check_schema(connection, database))
    if not integrity:
        return
    try:
        problems = [row[0] for row in _retrying(lambda: connection.execute("PRAGMA quick_check(3)").fetchall())]
    except sqlite3.DatabaseError as exc:
        raise StoreError(damaged(database, str(exc))) from None
    if problems != ["ok"]:
        raise StoreError(damaged(database, f"quick_check: {'; '.join(problems)}"))


def _check_schema(connection: sqlite3.Connection, database: Path) -> bool:
    """Validate the schema; return True when the database still has to be initialised."""
    try:
        # One statement, so one snapshot: read separately (autocommit), the three values could
        # straddle another process's schema creation and show tables without the application id.
        application_id, version, tables = connection.execute(
            "SELECT (SELECT application_id FROM pragma_application_id), "
            "(SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_master)"
        ).fetchone()
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
            raise
        if "malformed" in str(exc):  # ours or not, SQLite found it damaged
            raise StoreError(damaged(database, str(exc))) from None
        raise StoreError(
            f"{database} is not a pytest-experiments database; move it away or choose another --xp-store"
        ) from None
    if application_id == 0 and version == 0 and tables == 0:
        return True
    if application_id != APPLICATION_ID:
        raise StoreError(f"{database} is an SQLite database of another application; choose another --xp-store")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{database} has schema version {version}, newer than this pytest-experiments reads "
            f"({SCHEMA_VERSION}); upgrade pytest-experiments"
        )
    return False


class SQLiteStore(Store):
    """The embedded default store. See :meth:`Store.open`."""

    def __init__(
        self, root: Path, *, create: bool = False, lease: float = DEFAULT_LEASE_S, readonly: bool = False
    ) -> None:
        if create and readonly:
            raise ValueError("a store opened read-only cannot be created")
        if readonly:
            nearest_existing(root)  # resolve() below fails on a symlink loop with a bare RuntimeError
        else:
            check_store_path(root)
        self.root = root.resolve()
        self.database = self.root / DB_NAME
        self.lease = lease
        self._liveness = Liveness(lease)
        self._code_written: set[str] = set()
        #: A read-only store reads through it (see ``_read``).
        self._reader: Reader | None = None
        if not self.database.exists():
            if not create:
                raise StoreError(f"no experiment store at {self.root}: run some experiments first")
            self._translating(lambda: create_root(self.root))
        if readonly:
            self._reader = self._translating(lambda: Reader(self.database, _BUSY_TIMEOUT_S), False)
            self._db = self._reader.connection
        else:
            self._db = self._translating(
                lambda: sqlite3.connect(str(self.database), isolation_level=None, timeout=_BUSY_TIMEOUT_S)
            )
        try:
            if readonly:
                self._translating(self._check_reader, False)
            else:
                self._translating(lambda: self._prepare_writer(create))
        except BaseException:
            self.close()
            raise

    def _translating(self, action: Callable[[], T], writing: bool = True) -> T:
        """``action()``, its SQLite or OS error raised as one :class:`StoreError` line."""
        try:
            return action()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(explain(exc, self.root, writing=writing)) from None

    def _prepare_writer(self, create: bool) -> None:
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable against crashes, fsync only at checkpoints
        # Checkpoint (and fsync) every ~32 MB of WAL instead of every 4 MB: fewer stalls per run.
        self._db.execute("PRAGMA wal_autocheckpoint=8000")
        _retrying(self._use_wal)
        if create:
            # Serialises schema creation and migration between processes opening the store at once.
            self._version = self._immediate(self._create_schema)
        else:
            # A store opened without ``create`` never takes the write lock to create or migrate
            # a schema: it works with the version it finds (0: still being created).
            self._version = _retrying(self._read_version)

    def _check_reader(self) -> None:
        # A reader neither switches to WAL nor creates the schema: both write, and wait for writers.
        if self._read(lambda connection: _check_schema(connection, self.database)):
            raise StoreError(f"no experiment store at {self.root} yet: run some experiments first")
        # Nor does it migrate: it reads the store at the version it finds.
        self._version = self._read(lambda connection: int(connection.execute("PRAGMA user_version").fetchone()[0]))

    def _read(self, action: Callable[[sqlite3.Connection], T]) -> T:
        """``action(connection)``, a read; a read-only store's :class:`Reader` makes it consistent."""
        if self._reader is None:
            return _retrying(lambda: action(self._db))
        try:
            return self._reader.read(lambda connection: _retrying(lambda: action(connection)))
        finally:
            self._db = self._reader.connection  # it may have reconnected

    def _use_wal(self) -> None:
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError("database is locked (could not switch to WAL)")

    def _immediate(self, body: Callable[[], T]) -> T:
        """Run ``body`` in one ``BEGIN IMMEDIATE`` transaction, retried while the database is locked.

        IMMEDIATE takes the write lock first, so a read-then-write never has to upgrade a
        read lock (which fails at once instead of waiting for the busy timeout).
        """

        def transaction() -> T:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = body()
                self._db.execute("COMMIT")
            except BaseException:
                # SQLite rolls back by itself after some errors (a full disk at COMMIT): a
                # ROLLBACK then fails, and its error would hide the real one.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            return result

        return _retrying(transaction)

    def _create_schema(self) -> int:
        """Create or migrate the schema to :data:`SCHEMA_VERSION` (in the writer's immediate transaction)."""
        if _check_schema(self._db, self.database):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            self._db.execute("PRAGMA user_version=1")
        # Read again under the write lock: another writer may have migrated since we looked.
        version = self._user_version()
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[target]:
                self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version={target}")
        if SCHEMA_VERSION >= 7:  # the log's oldest changes, far behind (the last one stays: it holds the count)
            self._db.execute(
                "DELETE FROM change_log WHERE seq <= (SELECT max(seq) FROM change_log) - ?", (CHANGES_KEPT,)
            )
        return SCHEMA_VERSION

    def _read_version(self) -> int:
        _check_schema(self._db, self.database)
        return self._user_version()

    def _user_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _write(
        self, statements: Sequence[tuple[str, Sequence[Any]]], many: Sequence[tuple[str, list[Sequence[Any]]]] = ()
    ) -> int:
        """Execute ``statements`` (and ``executemany`` batches) in one immediate transaction."""

        def body() -> int:
            changed = sum(self._db.execute(sql, args).rowcount for sql, args in statements)
            for sql, rows in many:
                self._db.executemany(sql, rows)
            return changed

        return self._immediate(body)

    # -- writing --------------------------------------------------------------------
    def record_session(self, session: SessionStart) -> None:
        sql = "INSERT OR IGNORE INTO sessions (session_id, started_at, heartbeat_at, host, pid, metadata) VALUES (?, ?, ?, ?, ?, ?)"
        args = (
            session.session_id,
            session.started_at,
            session.started_at,
            session.host,
            session.pid,
            dumps(session.metadata),
        )
        _retrying(lambda: self._db.execute(sql, args))

    def update_session_metadata(self, session_id: str, metadata: dict[str, Any]) -> None:
        sql = "UPDATE sessions SET metadata = ? WHERE session_id = ?"
        args = (dumps(metadata), session_id)
        _retrying(lambda: self._db.execute(sql, args))

    def start_run(self, start: RunStart) -> None:
        _retrying(lambda: self._db.execute(_INSERT_RUN, _start_args(start)))

    def claim_run(self, start: RunStart, after: int) -> str | None:
        # Check and insert in one immediate transaction: of two sessions claiming the same
        # grid point at once, the second sees the first one's row. Only the database decides
        # what came "after" the snapshot: a run's sequence number is assigned inside the
        # transaction that inserts it, so a claimer stamped early but committed late (it
        # waited for the lock, or was descheduled) is still after a snapshot read before.
        def body() -> str | None:
            reason = self._claimed_elsewhere(start, after)
            if reason is None:
                self._db.execute(_INSERT_RUN, _start_args(start))
            return reason

        return self._immediate(body)

    def _claimed_elsewhere(self, start: RunStart, after: int) -> str | None:
        cursor = self._db.cursor()
        cursor.row_factory = sqlite3.Row
        # Through the grid point index: a grid point has a handful of runs.
        rows = cursor.execute(
            "SELECT r.status, r.session_id, coalesce(r.seq, r.rowid) > ? AS is_after, r.host, r.pid, r.pid_namespace, "
            f"{_liveness_columns(self._version)} FROM runs r {_WITH_SESSION} "
            "WHERE r.module = ? AND r.experiment = ? AND r.param_hash = ? AND r.session_id != ? "
            "AND (r.status = 'running' OR coalesce(r.seq, r.rowid) > ?)",
            (after, start.module, start.experiment, start.param_hash, start.session_id, after),
        ).fetchall()
        statuses = [(row, self._live_status(row)) for row in rows]
        for row, status in statuses:
            if status == "running":
                return f"running in session {row['session_id']}"
        for row, status in statuses:
            # Started after the snapshot and not cut short: that session did this grid
            # point's work. An interrupted one (its process died) leaves it to us.
            if row["is_after"] and status != "interrupted":
                return f"done in session {row['session_id']}"
        return None

    def continue_run(self, start: RunStart, after: int, statuses: Collection[str]) -> str | Continuation | None:
        self._require_version(4, "continue a run")

        def body() -> str | Continuation | None:
            reason = self._claimed_elsewhere(start, after)
            if reason is not None:
                return reason
            latest = self._latest_of_point(start)
            if latest is None or self._live_status(latest) not in statuses:
                self._db.execute(_INSERT_RUN, _start_args(start))
                return None
            return self._reopen(latest, start)

        return self._immediate(body)

    def _latest_of_point(self, start: RunStart) -> sqlite3.Row | None:
        cursor = self._db.cursor()
        cursor.row_factory = sqlite3.Row
        row: sqlite3.Row | None = cursor.execute(
            "SELECT r.run_id, r.session_id, r.status, r.started_at, r.finished_at, r.worker, r.host, r.pid, "
            "r.pid_namespace, r.dir, r.metrics, r.logged_params, r.metadata, r.error_type, r.error_message, "
            f"{_liveness_columns(self._version)} FROM runs r {_WITH_SESSION} "
            "WHERE r.module = ? AND r.experiment = ? AND r.param_hash = ? ORDER BY r.started_at DESC, r.rowid DESC LIMIT 1",
            (start.module, start.experiment, start.param_hash),
        ).fetchone()
        return row

    def _reopen(self, row: sqlite3.Row, start: RunStart) -> Continuation:
        """Keep the run's current attempt in ``run_attempts`` and make its row ``start``'s attempt
        (inside the claim's transaction)."""
        run_id = row["run_id"]
        earlier = self._db.execute("SELECT count(*) FROM run_attempts WHERE run_id = ?", (run_id,)).fetchone()[0]
        status = self._live_status(row)
        reason = attempt_reason(status, row["metadata"], row["error_type"], row["error_message"])
        self._db.execute(
            "INSERT INTO run_attempts (run_id, attempt, session_id, started_at, finished_at, status, reason, worker, "
            "host, pid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, earlier, row["session_id"], row["started_at"], row["finished_at"], status, storable_text(reason),
             row["worker"], row["host"], row["pid"]),
        )  # fmt: skip
        continued = earlier + 1
        # A new number in the store's sequence: to a concurrent claimer, this attempt started
        # after its snapshot, as a new run would have.
        self._db.execute("UPDATE run_sequence SET last = last + 1")
        self._db.execute(
            "UPDATE runs SET seq = (SELECT last FROM run_sequence), session_id = ?, node_id = ?, status = 'running', "
            "started_at = ?, finished_at = NULL, duration = NULL, worker = ?, host = ?, pid = ?, pid_namespace = ?, "
            "pid_started = ?, result = NULL, metadata = ?, error_type = NULL, error_message = NULL, traceback = NULL "
            "WHERE run_id = ?",
            (start.session_id, storable_text(start.node_id), start.started_at, start.worker, start.host, start.pid,
             start.pid_namespace, start.pid_started, dumps({"continued": continued}), run_id),
        )  # fmt: skip
        next_seq = self._db.execute(
            "SELECT coalesce(max(seq) + 1, 0) FROM metric_points WHERE run_id = ?", (run_id,)
        ).fetchone()[0]
        return Continuation(
            run_id, row["dir"], continued, int(next_seq), json.loads(row["metrics"]), json.loads(row["logged_params"])
        )

    def attempts(self, run_id: str) -> list[Attempt]:
        rows = self._query(
            f"SELECT r.session_id, r.status, r.started_at, r.finished_at, r.worker, r.host, r.pid, r.pid_namespace, "
            f"r.metadata, r.error_type, r.error_message, {_liveness_columns(self._version)} "
            f"FROM runs r {_WITH_SESSION} WHERE r.run_id = ?",
            (run_id,),
        )
        if not rows:
            raise KeyError(run_id)
        earlier = []
        if self._version >= 4:
            earlier = [
                Attempt(*row)
                for row in self._read(
                    lambda connection: connection.execute(
                        "SELECT session_id, started_at, finished_at, status, reason, worker, host, pid "
                        "FROM run_attempts WHERE run_id = ? ORDER BY attempt",
                        (run_id,),
                    ).fetchall()
                )
            ]
        row = rows[0]
        status = self._live_status(row)
        reason = attempt_reason(status, row["metadata"], row["error_type"], row["error_message"])
        started, finished = row["started_at"], row["finished_at"]
        current = Attempt(row["session_id"], started, finished, status, reason, row["worker"], row["host"], row["pid"])
        return [*earlier, current]

    def _require_version(self, version: int, what: str) -> None:
        if self._version < version:  # a writer opened without create= works with the version it found
            raise StoreError(
                f"the store {self.root} was written by an older pytest-experiments (schema {self._version}); "
                f"record a run into it with this version first, which upgrades it, to {what}"
            )

    def heartbeat(self, session_id: str) -> None:
        sql = "UPDATE sessions SET heartbeat_at = ? WHERE session_id = ? AND finished_at IS NULL"
        _retrying(lambda: self._db.execute(sql, (time.time(), session_id)))

    def finish_run(self, end: RunEnd) -> None:
        statements, many, new_code = self._end_statements(end)
        points: list[Sequence[Any]] = [(end.run_id, storable_text(p.name), p.seq, p.step, p.value) for p in end.points]
        if points:
            many.append((_INSERT_POINT, points))
        self._write(statements, many)
        if new_code is not None:
            self._code_written.add(new_code)

    def _end_statements(
        self, end: RunEnd, known: set[str] | None = None, *, whole: bool = False
    ) -> tuple[list[tuple[str, Sequence[Any]]], list[tuple[str, list[Sequence[Any]]]], str | None]:
        """The statements that complete a run (its points aside), and the code hash they write first,
        if any; ``whole``: the run's row was written complete already (its code and files remain)."""
        statements: list[tuple[str, Sequence[Any]]] = []
        # A function's source is written once per connection, not with every run.
        new_code = (
            end.code_sha256 is not None
            and end.code_source is not None
            and end.code_sha256 not in (self._code_written if known is None else known)
        )
        if new_code:
            statements.append(
                (
                    "INSERT OR IGNORE INTO code (sha256, source) VALUES (?, ?)",
                    (end.code_sha256, storable_text(end.code_source)),
                )
            )
        many: list[tuple[str, list[Sequence[Any]]]] = []
        if not whole:
            statements.append((
                "UPDATE runs SET status = ?, finished_at = ?, duration = ?, result = ?, metrics = ?, "
                "logged_params = ?, metadata = ?, code_sha256 = ?, error_type = ?, error_message = ?, traceback = ? "
                "WHERE run_id = ?",
                (*_end_args(end)[:-1], end.run_id),
            ))  # fmt: skip
        if end.tags and not whole:
            # Merged: `pytest-experiments tag` may have tagged the run while it ran.
            statements.append(
                ("UPDATE runs SET tags = json_patch(tags, ?) WHERE run_id = ?", (dumps(end.tags), end.run_id))
            )
        if end.artifacts:
            files: list[Sequence[Any]] = [
                (end.run_id, storable_text(a.name), a.size, a.media_type, a.kind) for a in end.artifacts
            ]
            many.append(
                (
                    "INSERT OR REPLACE INTO artifacts (run_id, name, size, media_type, kind) VALUES (?, ?, ?, ?, ?)",
                    files,
                )
            )
        return statements, many, end.code_sha256 if new_code else None

    # -- journals ---------------------------------------------------------------------
    def journal_offsets(self) -> dict[str, int]:
        if self._version < 5:
            return {}
        rows = self._read(lambda connection: connection.execute("SELECT name, folded FROM journals").fetchall())
        return {name: folded for name, folded in rows}

    def _fold_once(self, path: Path) -> tuple[int, Batch] | None:
        if self._reader is not None or self._version < 5:
            return None
        written: list[str] = []

        def body() -> tuple[int, Batch]:
            written.clear()  # a retried transaction starts over
            row = self._db.execute("SELECT folded FROM journals WHERE name = ?", (path.name,)).fetchone()
            offset = row[0] if row else 0
            batch = read_batch(path, offset)
            if batch.end > offset:
                self._apply(batch, written)
                self._db.execute("INSERT OR REPLACE INTO journals (name, folded) VALUES (?, ?)", (path.name, batch.end))
            return offset, batch

        folded = self._translating(lambda: self._immediate(body))
        self._code_written.update(written)
        return folded

    def _apply(self, batch: Batch, code_written: list[str]) -> None:
        """Write a journal's records (in the fold's transaction)."""
        # A run that started and ended in this batch (most runs) is written whole, in one row
        # insert; the others are started here, or completed below.
        ended = {end.run_id: end for end in batch.ends}
        whole = [(start, ended.pop(start.run_id)) for start in batch.starts if start.run_id in ended]
        whole_ids = {start.run_id for start, _ in whole}
        started = [start for start in batch.starts if start.run_id not in whole_ids]
        self._db.executemany(_INSERT_RUN_ONCE, [_start_args(start) for start in started])
        self._db.executemany(_INSERT_WHOLE_RUN, [(*_start_args(start), *_end_args(end)) for start, end in whole])
        self._db.executemany(
            _INSERT_POINT,
            [(run, storable_text(name), seq, step, value) for run, name, seq, step, value in batch.points],
        )
        for run_id, latest in batch.latest().items():
            # A run still going (or cut short): its metrics are its latest points.
            row = self._db.execute(
                "SELECT metrics FROM runs WHERE run_id = ? AND status = 'running'", (run_id,)
            ).fetchone()
            if row is not None:
                merged = {**json.loads(row[0]), **latest}
                self._db.execute("UPDATE runs SET metrics = ? WHERE run_id = ?", (dumps(merged), run_id))
        known = set(self._code_written)  # a retried transaction must write its code again
        for end in [*ended.values(), *(end for _, end in whole)]:
            no_new_code = end.code_source is None or end.code_sha256 in known
            if end.run_id not in ended and not end.tags and not end.artifacts and no_new_code:
                continue  # the usual run: its row is whole, its code written already, no tags nor files
            statements, many, new_code = self._end_statements(end, known, whole=end.run_id not in ended)
            for sql, args in statements:
                self._db.execute(sql, args)
            for sql, rows in many:
                self._db.executemany(sql, rows)
            if new_code is not None:
                code_written.append(new_code)
                known.add(new_code)  # later ends of this fold need not write it again

    def finish_session(self, session_id: str, finished_at: float, exitstatus: int) -> None:
        self._write([
            ("UPDATE sessions SET finished_at = ?, heartbeat_at = ?, exitstatus = ? WHERE session_id = ?",
             (finished_at, finished_at, exitstatus, session_id)),
            ("UPDATE runs SET status = 'interrupted', finished_at = ?, duration = ? - started_at "
             "WHERE session_id = ? AND status = 'running'", (finished_at, finished_at, session_id)),
        ])  # fmt: skip

    # -- reading --------------------------------------------------------------------
    def _is_live(self, row: sqlite3.Row) -> bool:
        """Whether a ``running`` run can still be in flight (see :mod:`pytest_experiments.store.liveness`)."""
        process = Process(row["host"], row["pid"], row["pid_namespace"], row["pid_started"])
        return self._liveness.is_live(process, row["session_heartbeat"], row["session_finished"], time.time())

    def _live_status(self, row: sqlite3.Row) -> str:
        status: str = row["status"]
        if status == "running" and not self._is_live(row):
            return "interrupted"
        return status

    def _record(self, row: sqlite3.Row) -> RunRecord:
        keys = row.keys()
        return RunRecord(
            run_id=row["run_id"],
            session_id=row["session_id"],
            node_id=row["node_id"],
            module=row["module"],
            experiment=row["experiment"],
            param_hash=row["param_hash"],
            params=json.loads(row["params"]),
            logged_params=json.loads(row["logged_params"]),
            status=self._live_status(row),
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            duration=row["duration"],
            worker=row["worker"],
            host=row["host"],
            pid=row["pid"],
            dir=self.root / row["dir"],
            metrics=json.loads(row["metrics"]),
            error_type=row["error_type"],
            error_message=row["error_message"],
            code_sha256=row["code_sha256"],
            metadata=json.loads(row["metadata"]),
            result=json.loads(row["result"]) if "result" in keys and row["result"] is not None else None,
            traceback=row["traceback"] if "traceback" in keys else None,
            tags=json.loads(row["tags"]) if "tags" in keys else {},
            notes=decode_notes(row["notes"]) if "notes" in keys else [],
        )

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        def rows(connection: sqlite3.Connection) -> list[sqlite3.Row]:
            cursor = connection.cursor()
            cursor.row_factory = sqlite3.Row
            return cursor.execute(sql, args).fetchall()

        return self._read(rows)

    def runs(
        self,
        *,
        experiment: str | Iterable[str] | None = None,
        status: str | Iterable[str] | None = None,
        history: bool = False,
        session_id: str | None = None,
    ) -> list[RunRecord]:
        where, args = [], []
        if experiment is not None:
            names = [experiment] if isinstance(experiment, str) else list(experiment)
            where.append(f"r.experiment IN ({', '.join('?' * len(names))})")
            args.extend(names)
        if session_id is not None:
            where.append("r.session_id = ?")
            args.append(session_id)
        condition = f"WHERE {' AND '.join(where)}" if where else ""
        columns = f"{_list_columns(self._version)}, {_liveness_columns(self._version)}"
        if history:
            sql = f"SELECT {columns} FROM runs r {_WITH_SESSION} {condition} ORDER BY r.started_at, r.rowid"
        else:
            sql = (
                f"SELECT {columns} FROM (SELECT r.*, ROW_NUMBER() OVER (PARTITION BY "
                "r.module, r.experiment, r.param_hash ORDER BY r.started_at DESC, r.rowid DESC) AS newness "
                f"FROM runs r {condition}) r {_WITH_SESSION} WHERE r.newness = 1 ORDER BY r.started_at, r.run_id"
            )
        records = [self._record(row) for row in self._query(sql, args)]
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
        args: list[Any] = []
        condition = ""
        if experiment is not None:
            names = [experiment] if isinstance(experiment, str) else list(experiment)
            condition = f"WHERE experiment IN ({', '.join('?' * len(names))})"  # placeholders only
            args.extend(names)
        wanted = None if status is None else {status} if isinstance(status, str) else set(status)
        with columns.gc_paused():
            fields = self._read(
                lambda connection: _one_read(
                    connection,
                    lambda: _listed_fields(connection, self._version, condition, args, history, metadata=metadata),
                )
            )
            return columns.run_columns(
                [], fields=fields, root=self.root, liveness=self._liveness, latest=not history, status=wanted,
                metadata=metadata,
            )  # fmt: skip

    def change_token(self) -> str | None:
        if self._version < 6:  # a reader never migrates: an older store has no token
            return None
        if self._version >= 7:  # the log's last change, which counts the runs stored as running
            last = self._read(lambda connection: connection.execute(_LAST_CHANGE).fetchone())
            return None if last is None or last[2] else f"sqlite {self._version} {last[0]}:{last[1]} {self.root}"
        # One statement, so one snapshot of the token and of the runs stored as running.
        token, running = self._read(
            lambda connection: connection.execute(
                "SELECT (SELECT hex(token) FROM runs_changed), EXISTS (SELECT 1 FROM runs WHERE status = 'running')"
            ).fetchone()
        )
        if token is None or running:
            return None
        # The root too: the frames hold each run folder's absolute path.
        return f"sqlite {self._version} {token} {self.root}"

    def run_changes(
        self, since: int | str | None = None, *, history: bool = False, marks: Sequence[int] = ()
    ) -> RunChanges | None:
        if self._version < 7 or isinstance(since, str):  # an older store counts no changes
            return None
        with columns.gc_paused():
            return self._read(
                lambda connection: _snapshot(connection, lambda: self._changes(connection, since, history, marks))
            )

    def _changes(
        self, db: sqlite3.Connection, since: int | None, history: bool, marks: Sequence[int]
    ) -> RunChanges | None:
        """:meth:`run_changes`, inside its read transaction on ``db``."""
        last = db.execute(_LAST_CHANGE).fetchone()
        if last is None or last[2]:  # as change_token(): live statuses change without the store
            return None
        seq, mark = int(last[0]), str(last[1])
        # Grid points are noted only for the latest runs (history keeps every run whatever its point).
        hashes = "''" if history else "r.param_hash"
        listed = f"{_columns(self._version, False)}, r.rowid, {hashes}"
        removed: list[str] = []
        fields: list[Any] | None = None
        if since is None:
            fields = _listed_fields(db, self._version, "", [], history, extra=True)
            rows = []
        else:
            # The log's rows after ``since`` (by its key: as many as there were changes), then
            # the runs they name by theirs.
            changed = [
                run_id for (run_id,) in db.execute("SELECT DISTINCT run_id FROM change_log WHERE seq > ?", (since,))
            ]
            rows = db.execute(
                f"SELECT {listed} FROM runs r WHERE r.run_id IN (SELECT value FROM json_each(?)) ORDER BY r.rowid",
                (json.dumps(changed),),
            ).fetchall()
            existing = {row[0] for row in rows}
            removed = [run_id for run_id in changed if run_id not in existing and run_id]
        found = {
            int(number): str(token)
            for number, token in db.execute(
                "SELECT seq, token FROM change_log WHERE seq IN (SELECT value FROM json_each(?))",
                (json.dumps(list(marks)),),
            )
        }
        latest = since is None and not history
        runs, extra = (
            columns.run_columns_with(rows, root=self.root, liveness=self._liveness, latest=latest)
            if fields is None
            else columns.run_columns_of(fields, root=self.root, liveness=self._liveness, latest=latest)
        )
        rowid, param_hash = extra or ([], [])
        return RunChanges(
            since=since, seq=seq, mark=mark, token=f"sqlite {self._version} {seq}:{mark} {self.root}",
            place=f"sqlite {self._version} {self.root}", columns=runs, rowid=rowid, param_hash=param_hash,
            removed=removed, marks=found,
        )  # fmt: skip

    @property
    def side_folder(self) -> Path | None:
        # Only the store's owner keeps files in it: a reader creates none that would belong to
        # another user than the store's (as SQLite's -wal and -shm would).
        geteuid = getattr(os, "geteuid", None)  # not on Windows: no other owner to tell apart
        try:
            owned = geteuid is None or self.database.stat().st_uid == geteuid()
        except OSError:
            owned = False
        return self.root / SIDE_DIR if owned else None

    def grid_snapshot(self) -> GridSnapshot:
        # Every query in one read transaction: a WAL reader sees one state of the database
        # throughout, so runs inserted meanwhile by other processes are in none of them (and
        # are "after" the mark). Deferred: a reader never takes the write lock.
        def transaction() -> GridSnapshot:
            self._db.execute("BEGIN")
            try:
                snapshot = self._read_grid()
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")  # ends the read; nothing was written
            return snapshot

        return _retrying(transaction)

    def _read_grid(self) -> GridSnapshot:
        # The first SELECT fixes the transaction's view; the schema version is read in it too,
        # since a writer may have migrated the store since this connection opened it.
        version, has_runs = self._db.execute(
            "SELECT (SELECT user_version FROM pragma_user_version), "
            "(SELECT count(*) FROM sqlite_master WHERE name = 'runs')"
        ).fetchone()
        if not has_runs:
            return GridSnapshot({}, 0)  # a store another process is creating right now: empty
        if version >= 2:
            mark = self._db.execute("SELECT last FROM run_sequence").fetchone()[0]
        else:  # a version-1 store (readers never migrate): its rowids, which the sequence starts above
            mark = self._db.execute("SELECT coalesce(max(rowid), 0) FROM runs").fetchone()[0]
        # One scan in start order, the newest run of a grid point overwriting the older ones:
        # for 100,000 grid points this is several times faster than a GROUP BY that looks
        # each newest row up through the index.
        rows = self._db.execute(
            "SELECT module, experiment, param_hash, status, code_sha256 FROM runs ORDER BY started_at, rowid"
        ).fetchall()
        states: dict[GridKey, GridState] = {row[:3]: row[3:] for row in rows}
        if any(status == "running" for status, _ in states.values()):
            for key, status in self._newest_running_statuses(version).items():
                state = states.get(key)
                if state is not None and state[0] == "running":
                    states[key] = (status, state[1])
        return GridSnapshot(states, int(mark))

    def _newest_running_statuses(self, version: int) -> dict[GridKey, str]:
        """Live status (``running`` or ``interrupted``) of the newest run stored as running, per grid point."""
        cursor = self._db.cursor()
        cursor.row_factory = sqlite3.Row
        rows = cursor.execute(
            f"SELECT r.module, r.experiment, r.param_hash, r.status, r.host, r.pid, r.pid_namespace, "
            f"{_liveness_columns(version)} FROM runs r {_WITH_SESSION} WHERE r.status = 'running' "
            "ORDER BY r.started_at, r.rowid"
        ).fetchall()
        return {(row["module"], row["experiment"], row["param_hash"]): self._live_status(row) for row in rows}

    def run(self, run_id: str) -> RunRecord:
        rows = self._query(
            f"SELECT r.*, {_liveness_columns(self._version)} FROM runs r {_WITH_SESSION} WHERE r.run_id = ?", (run_id,)
        )
        if not rows:
            raise KeyError(run_id)
        record = self._record(rows[0])
        if record.code_sha256:
            record.code_source = self.code_source(record.code_sha256)
        session = self._query("SELECT metadata FROM sessions WHERE session_id = ?", (record.session_id,))
        record.session = json.loads(session[0]["metadata"]) if session else {}
        record.artifacts = list_artifacts(record.dir, self._registered(run_id))
        return record

    def code_source(self, sha256: str) -> str | None:
        rows = self._query("SELECT source FROM code WHERE sha256 = ?", (sha256,))
        return str(rows[0]["source"]) if rows else None

    def _registered(self, run_id: str) -> list[Artifact]:
        if self._version < 3:
            return []
        rows = self._query("SELECT name, size, media_type, kind FROM artifacts WHERE run_id = ?", (run_id,))
        return [Artifact(row["name"], row["size"], row["media_type"], row["kind"]) for row in rows]

    def points(self, run_ids: Sequence[str] | None = None, metrics: Sequence[str] | None = None) -> SeriesPoints:
        where, args = [], []
        # Each selection is one JSON array parameter: one query whatever the number of runs,
        # and no limit on bound variables.
        if run_ids is not None:
            where.append("run_id IN (SELECT value FROM json_each(?))")
            args.append(json.dumps(list(run_ids)))
        if metrics is not None:
            where.append("name IN (SELECT value FROM json_each(?))")
            args.append(dumps([storable_text(name) for name in metrics]))
        condition = f"WHERE {' AND '.join(where)}" if where else ""

        # Each series' run and metric once (with its length), then only the points' own fields:
        # two reads in one transaction, so both see the same points, and two thirds fewer
        # Python objects for a long series than one row per point with its names.
        def read(connection: sqlite3.Connection) -> tuple[list[Any], list[Any]]:
            connection.execute("BEGIN")
            try:
                series = connection.execute(
                    f"SELECT run_id, name, count(*) FROM metric_points {condition} "
                    "GROUP BY run_id, name ORDER BY run_id, name",
                    args,
                ).fetchall()
                rows = connection.execute(
                    f"SELECT seq, step, value FROM metric_points {condition} ORDER BY run_id, name, seq", args
                ).fetchall()
            finally:
                connection.execute("COMMIT")  # ends the read; nothing was written
            return series, rows

        with columns.gc_paused():
            series, rows = self._read(read)
            if not rows:
                return SeriesPoints([], [], [], [], [])
            run = list(chain.from_iterable(repeat(run_id, count) for run_id, _, count in series))
            name = list(chain.from_iterable(repeat(metric, count) for _, metric, count in series))
            seq, step, value = (list(column) for column in zip(*rows, strict=True))
            # SQLite stores a NaN as NULL: it was logged as a number, so it reads back as NaN.
            return SeriesPoints(run, name, seq, step, [math.nan if number is None else number for number in value])

    def metric_series(self, run_id: str, name: str) -> list[tuple[int | None, float]]:
        rows = self._query(
            "SELECT step, value FROM metric_points WHERE run_id = ? AND name = ? ORDER BY seq",
            (run_id, storable_text(name)),
        )
        if rows:
            # SQLite stores a NaN as NULL: it was logged as a number, so it reads back as NaN.
            return [(row["step"], math.nan if row["value"] is None else row["value"]) for row in rows]
        record = self.run(run_id)
        return [(None, record.metrics[name])] if name in record.metrics else []

    def _counts(self, session_id: str | None) -> dict[str, dict[str, int]]:
        """Run counts by status, per session (all sessions when ``session_id`` is None)."""
        condition = "WHERE r.session_id = ?" if session_id is not None else ""
        rows = self._query(
            f"SELECT r.session_id, r.status, r.host, r.pid, r.pid_namespace, {_liveness_columns(self._version)}, "
            f"count(*) AS n FROM runs r {_WITH_SESSION} {condition} "
            "GROUP BY r.session_id, r.status, r.host, r.pid, r.pid_namespace, pid_started",
            () if session_id is None else (session_id,),
        )
        counts: dict[str, dict[str, int]] = {}
        for row in rows:
            per_session = counts.setdefault(row["session_id"], {})
            status = self._live_status(row)
            per_session[status] = per_session.get(status, 0) + row["n"]
        return counts

    def status_counts(self, session_id: str) -> dict[str, int]:
        return self._counts(session_id).get(session_id, {})

    def sessions(self) -> list[SessionRecord]:
        rows = self._query("SELECT * FROM sessions ORDER BY started_at, session_id")
        counts = self._counts(None)
        return [
            SessionRecord(
                session_id=row["session_id"],
                started_at=row["started_at"],
                finished_at=row["finished_at"],
                host=row["host"],
                pid=row["pid"],
                exitstatus=row["exitstatus"],
                metadata=json.loads(row["metadata"]),
                counts=counts.get(row["session_id"], {}),
            )
            for row in rows
        ]

    # -- annotating -----------------------------------------------------------------
    def _require_annotations(self) -> None:
        if self._version < 3:  # a writer opened without create= works with the version it found
            raise StoreError(
                f"the store {self.root} was written by an older pytest-experiments (schema {self._version}); "
                "record a run into it with this version first, which upgrades it"
            )

    def set_tags(self, run_id: str, tags: Mapping[str, str | None]) -> dict[str, str]:
        update = checked_tags(tags)
        self._require_annotations()

        def body() -> dict[str, str]:
            row = self._db.execute("SELECT tags FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise KeyError(run_id)
            merged = {**json.loads(row[0]), **update}
            merged = {key: value for key, value in merged.items() if value is not None}
            self._db.execute("UPDATE runs SET tags = ? WHERE run_id = ?", (dumps(merged), run_id))
            return merged

        return self._immediate(body)

    def add_note(self, run_id: str, text: str, at: float | None = None) -> Note:
        note = Note(time.time() if at is None else at, storable_text(text))
        self._require_annotations()

        def body() -> None:
            row = self._db.execute("SELECT notes FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise KeyError(run_id)
            notes = [*json.loads(row[0]), list(note)]
            self._db.execute("UPDATE runs SET notes = ? WHERE run_id = ?", (dumps(notes), run_id))

        self._immediate(body)
        return note

    # -- maintenance ----------------------------------------------------------------
    def delete_runs(self, run_ids: Iterable[str]) -> int:
        ids = list(dict.fromkeys(run_ids))
        folders: list[str] = []

        def body() -> int:
            folders.clear()  # a retried transaction starts over
            deleted = 0
            for start in range(0, len(ids), _DELETE_BATCH):
                batch = ids[start : start + _DELETE_BATCH]
                marks = ", ".join("?" * len(batch))  # placeholders only: the ids are never SQL
                rows = self._db.execute(f"SELECT dir FROM runs WHERE run_id IN ({marks})", batch).fetchall()
                folders.extend(row[0] for row in rows)
                self._db.execute(f"DELETE FROM metric_points WHERE run_id IN ({marks})", batch)
                if self._version >= 3:
                    self._db.execute(f"DELETE FROM artifacts WHERE run_id IN ({marks})", batch)
                if self._version >= 4:
                    self._db.execute(f"DELETE FROM run_attempts WHERE run_id IN ({marks})", batch)
                deleted += self._db.execute(f"DELETE FROM runs WHERE run_id IN ({marks})", batch).rowcount
            return deleted

        deleted = self._immediate(body) if ids else 0
        for relative in folders:
            remove_run_folder(self.root, relative)
        return deleted

    def database_size(self) -> int:
        return sqlite_files.database_size(self.root)

    def add_copies(self, sessions: Sequence[SessionCopy], runs: Sequence[RunCopy]) -> int:
        # merge (issue 10): one immediate transaction; INSERT OR IGNORE keeps what is here.
        def body() -> int:
            self._db.executemany(_INSERT_SESSION_COPY, [session_row(session) for session in sessions])
            code = [(run.code_sha256, storable_text(run.code_source)) for run in runs if run.code_source is not None]
            self._db.executemany("INSERT OR IGNORE INTO code (sha256, source) VALUES (?, ?)", code)
            added = 0
            for run in sorted(runs, key=lambda run: run.started_at):  # the store's sequence follows start order
                if self._db.execute(_INSERT_RUN_COPY, run_row(run)).rowcount:
                    added += 1
                    points = [(run.run_id, storable_text(p.name), p.seq, p.step, p.value) for p in run.points]
                    self._db.executemany(
                        "INSERT OR IGNORE INTO metric_points (run_id, name, seq, step, value) VALUES (?, ?, ?, ?, ?)",
                        points,
                    )
                    self._db.executemany(
                        "INSERT OR IGNORE INTO artifacts (run_id, name, size, media_type, kind) VALUES (?, ?, ?, ?, ?)",
                        [(run.run_id, storable_text(a.name), a.size, a.media_type, a.kind) for a in run.artifacts],
                    )
                    self._db.executemany(
                        "INSERT OR IGNORE INTO run_attempts (run_id, attempt, session_id, started_at, finished_at, "
                        "status, reason, worker, host, pid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [(run.run_id, number, *attempt) for number, attempt in enumerate(run.attempts)],
                    )
            return added

        return self._immediate(body)

    def close(self) -> None:
        self._db.close()


_INSERT_SESSION_COPY = (
    "INSERT OR IGNORE INTO sessions (session_id, started_at, finished_at, heartbeat_at, host, pid, exitstatus, "
    "metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_RUN_COPY = (
    "INSERT OR IGNORE INTO runs (run_id, session_id, node_id, module, experiment, param_hash, params, "
    "logged_params, status, started_at, finished_at, duration, worker, host, pid, dir, code_sha256, metrics, "
    "result, metadata, error_type, error_message, traceback, tags, notes) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
