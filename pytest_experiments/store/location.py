"""A store location, and what can be asked of it without going through a backend's module
(which location a session uses is :mod:`locate`).

A location is a store folder (SQLite, the default) or a server store's URL
(``postgresql://...``). Outside the store layer, code speaks to :class:`Store` (opened with
:meth:`Store.open`) and to these functions only: which backend serves a location, its files,
its driver and its errors stay inside :mod:`pytest_experiments.store`. Backends are imported when first needed, so importing
this module (the plugin does, at start-up) imports no database driver.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TypeAlias

from pytest_experiments.store.server_url import is_server_url, masked

#: A store folder or a server store's URL.
Location: TypeAlias = "str | Path"


def check_location(location: Location, *, integrity: bool = False) -> None:
    """Raise :class:`StoreError` unless this process can record into ``location``: a store, or a
    place where one can be created. Creates and changes nothing.

    ``integrity`` also checks the whole database where the backend can (SQLite: every page, about
    0.1 s for 100,000 runs): once per session, by the process that starts it. A server store is
    checked by connecting: a missing driver, a server that is down or refuses, a store of a
    newer schema or a schema of something else are refused; a store not created yet is fine.
    """
    if is_server_url(location):
        store_exists(location)  # connects, and refuses a foreign or newer schema
        return
    from pytest_experiments.store.sqlite import check_store_path

    check_store_path(Path(location), integrity=integrity)


def shown(location: Location) -> str:
    """``location`` as messages show it: a folder's path, or a URL with its password masked."""
    return masked(location) if isinstance(location, str) and is_server_url(location) else str(location)


def store_exists(location: Location) -> bool:
    """Whether a store has been created at ``location`` (nothing is created to find out)."""
    if is_server_url(location):
        from pytest_experiments.store.base import driver_missing

        missing = driver_missing(str(location))
        if missing is not None:
            raise missing
        from pytest_experiments.store.postgres import store_exists as server_store_exists

        return server_store_exists(str(location))
    from pytest_experiments.store.sqlite_files import database_exists

    return database_exists(Path(location))


def describe_failure(error: BaseException, location: Location, *, writing: bool = True) -> str | None:
    """One line for ``error`` met while using the store at ``location`` (what is wrong, what to do),
    or None when ``error`` is not a failure of the store (a bug, to be raised as it is).

    A store failure is a :class:`StoreError`, an OS error, or an error of a backend's database
    driver (a full disk, a damaged or read-only database...).
    """
    from pytest_experiments.store.base import StoreError

    if isinstance(error, StoreError):
        return str(error)
    if isinstance(error, OSError) and is_server_url(location):
        # The database is the server's: an OS error here is the artefacts folder's (run folders).
        return _artifacts_failure(error, str(location), writing=writing)
    if isinstance(error, OSError) or is_database_error(error):
        from pytest_experiments.store.sqlite_files import explain

        return explain(error, Path(location), writing=writing)
    return None


def is_database_error(error: BaseException) -> bool:
    """Whether ``error`` comes from a store's database driver (SQLite's: damaged, not a database, locked...).

    Asked of ``sys.modules``: an error of a driver that was never imported cannot be at hand, and
    asking must not import it.
    """
    sqlite3 = sys.modules.get("sqlite3")
    return sqlite3 is not None and isinstance(error, sqlite3.Error)


def _artifacts_failure(error: OSError, url: str, *, writing: bool) -> str:
    import errno

    where = error.filename or "the artefacts folder"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"no space left on device while writing {where} (run folders of the store {masked(url)}); free some space"
        )
    verb = "write" if writing else "read"
    return (
        f"cannot {verb} {where} (run folders of the store {masked(url)}: {error.strerror or error}); "
        "check it, or choose another --xp-artifacts"
    )
