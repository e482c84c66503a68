"""A process's access to the store: opened when the first run starts, kept alive by a heartbeat."""

from __future__ import annotations

import threading
from pathlib import Path

from pytest_experiments.records import SessionStart
from pytest_experiments.sqlite_store import DB_NAME
from pytest_experiments.store import DEFAULT_LEASE_S, Store


class Heartbeat(threading.Thread):
    """Renews the session's heartbeat while this process lives.

    Other hosts sharing the store count a ``running`` run as ``interrupted`` once its
    session's heartbeat is older than the lease; this keeps ours fresh (4 beats a lease).
    """

    def __init__(self, path: Path, session_id: str, lease: float) -> None:
        super().__init__(name="pytest-experiments-heartbeat", daemon=True)
        self._path = path
        self._session_id = session_id
        self._lease = lease
        self._stopped = threading.Event()

    def run(self) -> None:
        store: Store | None = None
        try:
            while not self._stopped.wait(self._lease / 4):
                try:
                    store = store or Store.open(self._path, lease=self._lease)
                    store.heartbeat(self._session_id)
                except Exception:
                    continue
        finally:
            if store is not None:
                store.close()

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=5)


class StoreHandle:
    """This process's store, opened (and created) when the first run starts."""

    def __init__(self, path: Path, session: SessionStart, lease: float = DEFAULT_LEASE_S) -> None:
        self.path = path
        self.session = session
        self.lease = lease
        self._store: Store | None = None
        self._heartbeat: Heartbeat | None = None
        #: Whether this process started a run (and so created or used the store).
        self.recorded = False

    def get(self) -> Store:
        """The store, created if needed, with this session recorded in it."""
        if self._store is None:
            store = Store.open(self.path, create=True, lease=self.lease)
            store.record_session(self.session)
            self._store = store
            self.recorded = True
            self._heartbeat = Heartbeat(self.path, self.session.session_id, self.lease)
            self._heartbeat.start()
        return self._store

    def existing(self) -> Store | None:
        """The store if it exists (never creates it)."""
        if self._store is None:
            if not (self.path / DB_NAME).exists():
                return None
            self._store = Store.open(self.path, lease=self.lease)
        return self._store

    def close(self) -> None:
        """Stop the heartbeat and close the connection."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        if self._store is not None:
            self._store.close()
            self._store = None
