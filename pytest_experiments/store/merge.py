"""Merging stores written separately (one SQLite store per node, per array task) into one.

Every source is read whole and checked before the destination is changed at all: a source
that is not a store, is damaged, has a newer schema or has a run still in flight refuses the
merge and leaves the destination as it was. Run ids are unique by construction (a timestamp
and 48 random bits, see :func:`pytest_experiments.ids.new_id`), so the same id in two stores
is the same run copied twice (added once: merging again adds nothing), unless their contents
differ, which refuses the merge too.

Then the run folders of the runs to add are copied (each under a temporary name, then renamed
into place), and only then are the rows written, in one transaction: a crash in between leaves
folders without rows, which are harmless (the next merge replaces them), never a row whose
folder is missing. Reading goes through the :class:`Store` interface and writing through
:meth:`Store.add_copies`, so any backend can be a source or the destination.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pytest_experiments.store import Store, StoreError
from pytest_experiments.store.copies import RunCopy, SessionCopy, run_copy, session_copy
from pytest_experiments.store.rundirs import RUNS_DIR, inside, within
from pytest_experiments.store.server_url import is_server_url, masked
from pytest_experiments.store.sqlite_files import DB_NAME, Reader, damaged

_TIMEOUT_S = 30.0


@dataclass
class Source:
    """One store's sessions and runs, read whole."""

    location: str
    root: Path
    sessions: list[SessionCopy] = field(default_factory=list)
    runs: list[RunCopy] = field(default_factory=list)


@dataclass(frozen=True)
class MergeReport:
    """What a merge did."""

    sources: int
    #: Runs written into the destination.
    added: int
    #: Runs of the sources the destination held already (or that two sources shared).
    present: int
    sessions: int
    #: Run folders copied.
    folders: int


def shown(location: str | Path) -> str:
    """A store's location for messages (a URL's password masked)."""
    return masked(str(location)) if is_server_url(location) else str(location)


def _check_whole(root: Path) -> None:
    """Have SQLite check every page of the store at ``root`` (only reading)."""
    database = root / DB_NAME
    reader = Reader(database, _TIMEOUT_S)
    try:
        problems = [row[0] for row in reader.read(lambda db: db.execute("PRAGMA quick_check(3)").fetchall())]
    except sqlite3.DatabaseError as exc:
        raise StoreError(damaged(database, str(exc))) from None
    finally:
        reader.close()
    if problems != ["ok"]:
        raise StoreError(damaged(database, f"quick_check: {'; '.join(problems)}"))


def read_source(location: str | Path) -> Source:
    """Every session and run of the store at ``location``; a :class:`StoreError` when it
    cannot be merged (the message names the store and what to do)."""
    with Store.open(location, readonly=True) as store:
        if not is_server_url(location):
            _check_whole(store.root)
        listed = store.runs(history=True)
        running = [run for run in listed if run.status == "running"]
        if running:
            raise StoreError(
                f"{store.location} has {len(running)} runs still in flight (session {running[0].session_id}); "
                "merge it once its sessions have ended"
            )
        source = Source(store.location, store.root, [session_copy(s) for s in store.sessions()])
        source.runs = [run_copy(store, run) for run in listed]
    for run in source.runs:
        if not _in_runs(source.root, run.dir):
            raise StoreError(
                f"{source.location}: run {run.run_id} has its folder outside the store's runs/ ({run.dir!r}); "
                "the store is damaged, merge the others"
            )
    return source


def _read_or_refuse(location: str | Path) -> Source:
    try:
        return read_source(location)
    except StoreError as exc:
        raise StoreError(str(exc).replace("choose another --xp-store", "leave it out of the merge")) from None


def _in_runs(root: Path, relative: str) -> bool:
    """Whether ``relative`` is a folder strictly inside ``root/runs/`` (never followed otherwise)."""
    try:
        path = inside(root, relative)
    except ValueError:
        return False
    runs = inside(root, RUNS_DIR)
    return path != runs and within(runs, path)


def _unique_runs(sources: Sequence[Source]) -> dict[str, tuple[RunCopy, Source]]:
    """Each run once, by id; the same id with other contents refuses the merge."""
    runs: dict[str, tuple[RunCopy, Source]] = {}
    for source in sources:
        for run in source.runs:
            seen = runs.setdefault(run.run_id, (run, source))
            if seen[0] is not run and seen[0].fingerprint() != run.fingerprint():
                raise StoreError(
                    f"run {run.run_id} is in {seen[1].location} and in {source.location} with different contents; "
                    "merge the stores separately into different destinations"
                )
    return runs


def _present(destination: Store, runs: dict[str, tuple[RunCopy, Source]]) -> set[str]:
    """The ids of ``runs`` the destination holds already (with the same contents, else refused)."""
    present = set()
    for listed in destination.runs(history=True):
        found = runs.get(listed.run_id)
        if found is None:
            continue
        if run_copy(destination, listed).fingerprint() != found[0].fingerprint():
            raise StoreError(
                f"run {listed.run_id} of {found[1].location} is in {destination.location} already, with different "
                "contents; merge into another destination"
            )
        present.add(listed.run_id)
    return present


def _copy_folder(source: Path, target: Path) -> bool:
    """Copy a run folder into place (a leftover of an interrupted merge is replaced); False
    when the run has none (a run folder exists only once a test used it)."""
    if not source.is_dir():
        return False
    partial = target.with_name(f".{target.name}.merging-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    # Symlinks are copied as links, never followed: a link in a run folder may lead anywhere.
    shutil.copytree(source, partial, symlinks=True)
    if target.exists():
        shutil.rmtree(target)
    os.replace(partial, target)
    return True


def _sqlite_destination_exists(into: str | Path) -> bool:
    return not is_server_url(into) and (Path(into) / DB_NAME).exists()


def merge(sources: Sequence[str | Path], into: str | Path, *, artifacts: str | Path | None = None) -> MergeReport:
    """Merge the stores at ``sources`` into the store at ``into`` (created if needed); see the
    module doc. ``artifacts``: a server destination's folder of run folders."""
    if not is_server_url(into):
        into = Path(into).absolute()
        for location in sources:
            if not is_server_url(location) and Path(location).resolve() == into.resolve():
                raise StoreError(f"{into} is both a source and the destination; merge into another store")
    read = [_read_or_refuse(location) for location in sources]
    runs = _unique_runs(read)
    present: set[str] = set()
    if _sqlite_destination_exists(into):  # looked at without writing: a refusal leaves it as it was
        with Store.open(into, readonly=True) as existing:
            present = _present(existing, runs)
    with Store.open(into, create=True, artifacts=artifacts) as destination:
        if is_server_url(into):
            present = _present(destination, runs)
        to_add = [(run, source) for run_id, (run, source) in runs.items() if run_id not in present]
        folders = 0
        for run, source in to_add:
            target = inside(destination.root, run.dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            folders += _copy_folder(inside(source.root, run.dir), target)
        sessions = list({session.session_id: session for source in read for session in source.sessions}.values())
        added = destination.add_copies(sessions, [run for run, _ in to_add])
    return MergeReport(len(read), added, len(runs) - added, len(sessions), folders)
