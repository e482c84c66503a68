"""The storage interface every backend implements, and how a store is opened.

The SQLite store is the default and only backend for now; a server store (for many
hosts at once) will implement the same :class:`Store` interface.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from pathlib import Path

from pytest_experiments.records import (
    GridKey,
    GridSnapshot,
    GridState,
    RunEnd,
    RunRecord,
    RunStart,
    SessionRecord,
    SessionStart,
)

#: A session that has not renewed its heartbeat for this long is dead, whatever host it ran on.
DEFAULT_LEASE_S = 300.0


class StoreError(Exception):
    """A store that cannot be used; the message says what is wrong and what to do."""


class Store(abc.ABC):
    """A place where experiment runs are recorded and read back.

    Open one with :meth:`Store.open`. Reading::

        store = Store.open(".experiments")
        for run in store.runs(experiment="test_train"):
            print(run.node_id, run.status, run.metrics)
    """

    #: The folder holding the store (its database and its ``runs/`` tree).
    root: Path

    @staticmethod
    def open(path: str | Path, *, create: bool = False, lease: float | None = None, readonly: bool = False) -> Store:
        """Open the store at ``path``; with ``create``, make it if it does not exist.

        ``lease``: seconds after which a session that stopped renewing its heartbeat
        counts as dead (its ``running`` runs as ``interrupted``). ``readonly``: only read,
        as ``load()`` and the command line do: read permission suffices, no file is created
        (not even SQLite's ``-wal``/``-shm``) and no write lock is ever waited for; writing
        methods then fail. Raises :class:`StoreError` when ``path`` is not a usable store.
        """
        from pytest_experiments.sqlite_store import SQLiteStore

        return SQLiteStore(
            Path(path), create=create, lease=DEFAULT_LEASE_S if lease is None else lease, readonly=readonly
        )

    # -- writing (the plugin) -------------------------------------------------------
    @abc.abstractmethod
    def record_session(self, session: SessionStart) -> None:
        """Write ``session`` unless it is already there (any process may be first)."""

    @abc.abstractmethod
    def start_run(self, start: RunStart) -> None:
        """Write a run as ``running``, durably, before its body starts."""

    @abc.abstractmethod
    def claim_run(self, start: RunStart, after: int) -> str | None:
        """Start a run only if no other session got to its grid point first.

        ``after`` is the :attr:`GridSnapshot.mark` of the snapshot that chose to run it.
        In one atomic step, decided by the store's own state (never by clocks): when
        another session's run of the grid point is live, or another session started one
        after the snapshot that did not end ``interrupted`` (it passed, failed, skipped...),
        return the reason ("running in session ..." / "done in session ...") and write
        nothing; otherwise write the run as ``running`` and return None.
        """

    @abc.abstractmethod
    def heartbeat(self, session_id: str) -> None:
        """Renew a live session's heartbeat, which keeps its running runs from counting as dead."""

    @abc.abstractmethod
    def finish_run(self, end: RunEnd) -> None:
        """Complete a started run with its outcome, metrics and metadata, atomically."""

    @abc.abstractmethod
    def finish_session(self, session_id: str, finished_at: float, exitstatus: int) -> None:
        """Close a session; its runs still ``running`` can never finish and become ``interrupted``."""

    # -- reading --------------------------------------------------------------------
    @abc.abstractmethod
    def runs(
        self,
        *,
        experiment: str | Iterable[str] | None = None,
        status: str | Iterable[str] | None = None,
        history: bool = False,
        session_id: str | None = None,
    ) -> list[RunRecord]:
        """Runs, oldest first: the latest per grid point, or every run with ``history``.

        A grid point is a module, an experiment function and a parameter hash. Filters
        apply after the latest run is chosen, so ``status="failed"`` lists grid points
        whose latest run failed.
        """

    @abc.abstractmethod
    def grid_snapshot(self) -> GridSnapshot:
        """The latest run of every grid point, lean, and the store's mark, in one consistent read.

        This is what resume decides from. A ``running`` run whose process is gone reads
        ``interrupted`` here too.
        """

    def grid_states(self) -> dict[GridKey, GridState]:
        """The states of :meth:`grid_snapshot`."""
        return self.grid_snapshot().states

    @abc.abstractmethod
    def run(self, run_id: str) -> RunRecord:
        """One run with everything recorded: result, traceback, code, session metadata.

        Raises ``KeyError`` for an unknown id.
        """

    @abc.abstractmethod
    def metric_series(self, run_id: str, name: str) -> list[tuple[int | None, float]]:
        """The ``(step, value)`` pairs logged for one metric of one run, in logging order.

        A metric logged once without a step reads as ``[(None, value)]``, an unknown metric
        as ``[]``; an unknown run id raises ``KeyError``.
        """

    @abc.abstractmethod
    def sessions(self) -> list[SessionRecord]:
        """Every session, oldest first, with its run counts by status."""

    @abc.abstractmethod
    def status_counts(self, session_id: str) -> dict[str, int]:
        """How many runs ``session_id`` recorded, by status."""

    # -- maintenance ----------------------------------------------------------------
    @abc.abstractmethod
    def delete_runs(self, run_ids: Iterable[str]) -> int:
        """Delete these runs, their metric series and their run folders; return how many runs went.

        Unknown ids are ignored. The rows go in one transaction; folders are removed
        afterwards, and only ones inside the store's ``runs/`` tree.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store's connection; the object cannot be used afterwards."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
