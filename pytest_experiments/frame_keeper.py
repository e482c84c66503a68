"""The frame keeper: once a session has ended, keeps ``load()``'s frames (the latest runs, and
every run) beside the store, so that the first ``load()`` after the session reads typed columns
rather than decoding each run's row and JSON (:func:`pytest_experiments.frames.cache.keep`).

A session that recorded many runs (``xp_keep_frames``, ``plugin/store_access.py``) starts it
as its last process closes (the controller under xdist, once every worker is done), detached
(``store/children.py``): the session does not wait for it, and it runs at a lower priority. It
is what the writer does for the readers to come, as a database keeps an index: nothing depends
on it. A keeper that is killed, or finds runs still ``running`` (another session records into
the store), leaves the frames as they were, and the next ``load()`` builds or patches them as
before; its files are written whole or not at all.

At most one keeper works on a store, and one waits (many sessions ending together, as the tasks
of a cluster job do, start one each). The working one holds an exclusive lock on
``<side folder>/keeper.lock`` (``fcntl.flock``, released by the system when the process ends,
however it ends); the session takes it before starting its keeper and hands it over, so it is
held from before the session ends. A keeper that finds it held takes ``keeper.next.lock`` and
waits; one that finds that held too ends at once: the waiting one reads the store after the
working one is done, so it will find this keeper's session's runs (stored before this keeper
started) and keep them. A waiting keeper holds no store connection and has not imported pandas.
Not on Windows (no ``flock``): there is no keeper, and ``load()`` builds and keeps frames itself.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from pytest_experiments.store import Store
from pytest_experiments.store.children import KEEPER_QUEUE_LOCK, lock_keeper

#: A keeper still at work after this many seconds (a server that stopped answering) ends: the
#: system's default action for SIGALRM, which releases its lock with the process.
TIME_LIMIT_S = 600
#: How much lower than the session's its priority is (``os.nice``): it yields to what runs next.
NICENESS = 10


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pytest_experiments.frame_keeper")
    parser.add_argument("location", help="the store: a folder or a server store's URL")
    parser.add_argument("--artifacts", type=Path, default=None, help="a server store's folder of run folders")
    parser.add_argument("--locked", type=int, default=None, help="a descriptor of keeper.lock, locked already")
    return parser.parse_args(argv)


def _side_folder(location: Path | str, artifacts: Path | None) -> Path | None:
    """Where the store keeps its frames, when it can say now which runs they are made of; None
    when it keeps none for this process, or a store folder holds runs still ``running`` (another
    session records into it: its own keeper will keep them).

    One short read, before pandas is imported. A server store gives no such token: its keeper
    finds out in :func:`pytest_experiments.frames.cache.keep`."""
    with Store.open(location, readonly=True, artifacts=artifacts) as store:
        folder = store.side_folder  # closed again: no connection is held while waiting
        if artifacts is None and store.change_token() is None:
            return None
    return folder


def _turn(folder: Path) -> int | None:
    """This keeper's turn: the keeper lock of the side folder ``folder``, once it is free, taken
    as the one waiting keeper; None when another keeper waits already."""
    queue = lock_keeper(folder, wait=False, name=KEEPER_QUEUE_LOCK)
    if queue is None:
        return None  # the keeper waiting already will keep this session's runs too
    try:
        return lock_keeper(folder, wait=True)
    finally:
        os.close(queue)  # the next keeper to come may wait now


def main(argv: list[str] | None = None) -> int:
    """Keep the store's ``load()`` frames; 0 when both are kept (or another keeper will), 1 when
    the store cannot give them now (or on failure)."""
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(TIME_LIMIT_S)
    # A background job of a shell ignores SIGINT: a keeper ends on it, and on SIGTERM, as any program.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    options = _parse(sys.argv[1:] if argv is None else argv)
    if hasattr(os, "nice"):
        os.nice(NICENESS)
    location: Path | str = options.location
    try:
        folder = _side_folder(location, options.artifacts)
        if folder is None:
            if options.locked is not None:
                os.close(options.locked)
            return 1
        lock = options.locked if options.locked is not None else _turn(folder)
        if lock is None:
            return 0
        try:
            from pytest_experiments.frames import cache  # pandas: only in the keeper that works
            from pytest_experiments.store.columns import gc_paused

            with Store.open(location, readonly=True, artifacts=options.artifacts) as store, gc_paused():
                kept = [cache.keep(store, history) for history in (False, True)]
        finally:
            os.close(lock)  # the lock goes with it
    except Exception:  # nobody to tell: the next load() builds the frames, as it would have
        return 1
    return 0 if all(kept) else 1


if __name__ == "__main__":
    sys.exit(main())
