"""The store's files on disk, as the operating system and SQLite see them.

A store folder holds ``experiments.sqlite`` (with SQLite's ``-wal`` and ``-shm`` files beside
it while it is in use), ``runs/`` (which may be a symlink to scratch storage) and a
``.gitignore``. This module answers, without writing anything: is a folder a store, can this
process write into it, is a path a symlink that leads nowhere. It opens connections that only
read, and turns SQLite and OS errors into one line that names the store and says what to do.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pytest_experiments.store.base import StoreError
from pytest_experiments.store.journal import JOURNALS_DIR
from pytest_experiments.store.rundirs import GITIGNORE, RUNS_DIR, SIDE_DIR

DB_NAME = "experiments.sqlite"

#: What a store folder may hold before its database exists: another process may be creating
#: it right now (the ``.gitignore`` is written under a temporary name, then renamed).
_STORE_NAMES = frozenset(
    {RUNS_DIR, JOURNALS_DIR, GITIGNORE, DB_NAME, SIDE_DIR, *(f"{DB_NAME}-{end}" for end in ("wal", "shm", "journal"))}
)
_PARTIAL_GITIGNORE = re.compile(r"\.gitignore\.\d+\.tmp")

# SQLite's primary result codes (``sqlite3.Error.sqlite_errorcode & 0xff``, Python 3.11+).
_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_CORRUPT = 3, 8, 10, 11
_SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_AUTH, _SQLITE_NOTADB = 13, 14, 23, 26
# The same, from the message, where Python (3.10) gives no code.
_SQLITE_MESSAGES = {
    "disk is full": _SQLITE_FULL,
    "malformed": _SQLITE_CORRUPT,
    "not a database": _SQLITE_NOTADB,
    "readonly": _SQLITE_READONLY,
    "unable to open": _SQLITE_CANTOPEN,
    "disk i/o error": _SQLITE_IOERR,
}
_DENIED_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: A reader whose database file keeps changing under it gives up after this many reads.
REREADS = 10

T = TypeVar("T")
#: What tells a database file's versions apart: inode, size, modification time (ns).
Signature = tuple[int, int, int]


# -- paths ------------------------------------------------------------------------------


def database_exists(root: Path) -> bool:
    """Whether the store folder ``root`` holds its database."""
    return (root / DB_NAME).exists()


def database_size(root: Path) -> int:
    """Bytes of the database of the store folder ``root``, with SQLite's files beside it."""
    return sum(path.stat().st_size for path in root.glob(f"{DB_NAME}*") if path.is_file())


def nearest_existing(path: Path) -> Path:
    """``path`` if it exists, else its nearest existing ancestor.

    A symlink on the way that cannot be followed (a loop, a missing target) is a
    :class:`StoreError`: ``Path.exists()`` would call it missing, and creating the store
    "below" it fails later, or (a loop given as the store) passes every check.
    """
    candidate = path
    while not os.path.lexists(candidate) and candidate != candidate.parent:
        candidate = candidate.parent
    try:
        os.stat(candidate)
    except OSError as exc:
        raise StoreError(
            f"{candidate} is a symlink that cannot be followed ({exc.strerror}); fix it or choose another --xp-store"
        ) from None
    return candidate


def require_writable(path: Path, message: str) -> None:
    """Raise ``StoreError(message)`` unless this process may write ``path`` (a folder: create files in it).

    ``os.access`` also answers for root: a read-only mount or an immutable file (``chattr +i``)
    is not writable even then.
    """
    mode = os.W_OK | os.X_OK if path.is_dir() else os.W_OK
    writable = os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)
    # A -wal or -shm may go meanwhile (the last connection to close removes them): not a refusal.
    if not writable and os.path.lexists(path):
        raise StoreError(message)


def check_only_store_files(root: Path) -> None:
    """Refuse a folder that holds anything a store does not (``--xp-store .`` in a project).

    A store without its database yet may hold ``runs/`` and ``.gitignore``: what another
    process creating the same store writes first.
    """
    foreign = sorted(
        name for name in os.listdir(root) if name not in _STORE_NAMES and not _PARTIAL_GITIGNORE.fullmatch(name)
    )
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise StoreError(
            f"{root} is a folder holding other files ({shown}), not an experiment store; "
            "give --xp-store a new or empty folder"
        )


def check_runs_folder(root: Path) -> None:
    """``runs/``, if there, must be a folder this process can write (a symlink to one is fine)."""
    runs = root / RUNS_DIR
    if not os.path.lexists(runs):
        return
    nearest_existing(runs)  # a symlink to scratch storage must lead somewhere
    if not runs.is_dir():
        raise StoreError(
            f"{runs} is a file, not the store's folder of run folders; move it away or choose another --xp-store"
        )
    require_writable(runs, f"{runs} is not writable; fix its permissions or choose another --xp-store")


def companions(database: Path) -> list[Path]:
    """The database and SQLite's files beside it that exist now (``-wal``, ``-shm``)."""
    return [
        path
        for path in (database, *(database.with_name(f"{database.name}-{end}") for end in ("wal", "shm")))
        if path.exists()
    ]


# -- connections that only read ---------------------------------------------------------


def file_signature(database: Path) -> Signature:
    """The version of ``database`` on disk: any write (a checkpoint) changes it."""
    stat = os.stat(database)
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def open_reader(database: Path, timeout: float) -> tuple[sqlite3.Connection, Signature | None]:
    """A connection that only reads ``database``: read permission suffices, it creates no file
    and never waits for a writer; and the database file's signature when that matters.

    SQLite (3.22+) reads a WAL database read-only (``mode=ro``) when its ``-wal`` and ``-shm``
    exist, which they do while any connection is open (a crashed one leaves them too), and
    readers of a WAL database never wait for its writer. When there is no WAL (the last
    connection to close removed it) ``mode=ro`` would create ``-wal`` and ``-shm``, owned by
    this user (so the owner can no longer write) or fail in a folder it cannot write; the file
    then holds every committed run, and is opened ``immutable``: read as it is, without locks
    or side files. An empty WAL holds nothing either. A writer starting meanwhile writes into
    a new WAL, but may rewrite the file (a checkpoint, the switch to WAL of a new store) under
    such a reader: the signature returned lets :class:`Reader` see that and read again.
    """
    uri = database.absolute().as_uri()
    wal = database.with_name(f"{database.name}-wal")
    try:
        logged = wal.stat().st_size > 0
    except FileNotFoundError:
        logged = False
    if logged:
        return sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None, timeout=timeout), None
    signature = file_signature(database)
    connection = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None, timeout=timeout)
    return connection, signature


class Reader:
    """A connection that only reads ``database`` (see :func:`open_reader`), opened anew when
    the file changed under it, so that every read it answers is consistent."""

    def __init__(self, database: Path, timeout: float) -> None:
        self.database = database
        self._timeout = timeout
        self.connection, self._signature = open_reader(database, timeout)

    def read(self, action: Callable[[sqlite3.Connection], T]) -> T:
        """``action(connection)``, done again on a new connection if the file changed meanwhile
        (a half-rewritten file may also make it fail: "malformed", "not a pytest-experiments database")."""
        for _ in range(REREADS):
            try:
                result = action(self.connection)
            except (sqlite3.DatabaseError, StoreError):
                if self._intact():
                    raise
            else:
                if self._intact():
                    return result
            self.connection.close()
            self.connection, self._signature = open_reader(self.database, self._timeout)
        raise StoreError(f"{self.database} kept changing while it was read; try again")

    def _intact(self) -> bool:
        return self._signature is None or file_signature(self.database) == self._signature

    def close(self) -> None:
        self.connection.close()


# -- errors -----------------------------------------------------------------------------


def damaged(database: Path, detail: str) -> str:
    """The line for a database SQLite reports damaged."""
    return (
        f"the store database {database} is damaged ({one_line(detail)}); nothing more is written to it: move the "
        f"store away (`sqlite3 {database.name} .recover` rescues what is readable) and choose another --xp-store"
    )


def explain(error: BaseException, root: Path, *, writing: bool = True) -> str:
    """One line for ``error`` (SQLite's or the OS's) met while using the store at ``root``."""
    kind = _kind(error, root)
    if kind == _SQLITE_FULL:
        return f"no space left on device while writing {root}; free some space and run again (--xp-resume runs only what is missing)"
    detail = one_line(error.strerror or str(error)) if isinstance(error, OSError) else one_line(str(error))
    if kind in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return damaged(root / DB_NAME, detail)
    verb = "write" if writing else "read"
    if kind == _SQLITE_READONLY:
        return f"cannot {verb} the store {root} ({detail}); fix its permissions or choose another --xp-store"
    return f"cannot {verb} the store {root} ({detail}); check it, or choose another --xp-store"


def _kind(error: BaseException, root: Path) -> int | None:
    """The SQLite result code that describes ``error`` best (OS errors mapped onto them)."""
    if isinstance(error, OSError):
        if error.errno in _FULL_ERRNOS:
            return _SQLITE_FULL
        return _SQLITE_READONLY if error.errno in _DENIED_ERRNOS else None
    if not isinstance(error, sqlite3.Error):
        return None
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(code, int):
        code &= 0xFF
    else:
        text = str(error).lower()
        code = next((value for key, value in _SQLITE_MESSAGES.items() if key in text), None)
    if code in (_SQLITE_PERM, _SQLITE_AUTH, _SQLITE_CANTOPEN):
        return _SQLITE_READONLY
    if code == _SQLITE_IOERR and _out_of_space(root):
        return _SQLITE_FULL  # a -shm or -wal that cannot grow on a full disk is an I/O error
    return code


def _out_of_space(root: Path) -> bool:
    path = root
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free < 64 * 1024
    except OSError:
        return False


def one_line(text: str) -> str:
    """``text`` on one line (SQLite's and quick_check's messages may span several)."""
    return " ".join(text.split())
