"""The storage interface every backend implements, and how a store is opened.

Two backends: SQLite (a store folder, the default) and PostgreSQL (a server store for many
hosts at once, ``postgresql://...``). Both pass the same contract suite
(``tests/test_store_contract.py``).
"""

from __future__ import annotations

import abc
import contextlib
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    tag_problem,
)
from pytest_experiments.store.journal import Batch, journal_files, writer_is_live
from pytest_experiments.store.liveness import DEFAULT_LEASE_S, Liveness
from pytest_experiments.store.server_url import is_server_url, masked

if TYPE_CHECKING:
    from pytest_experiments.store.copies import RunCopy, SessionCopy


class StoreError(Exception):
    """A store that cannot be used; the message says what is wrong and what to do."""


class Store(abc.ABC):
    """A place where experiment runs are recorded and read back.

    Open one with :meth:`Store.open`. Reading::

        store = Store.open(".experiments")
        for run in store.runs(experiment="test_train"):
            print(run.node_id, run.status, run.metrics)
    """

    #: The folder under which run folders live (``runs/``): an SQLite store's own folder, a
    #: server store's artefacts folder. Journals live there too (``journals/``).
    root: Path
    _liveness: Liveness

    @property
    def location(self) -> str:
        """Where the store is, for messages: its folder, or its URL with any password masked."""
        return str(self.root)

    def database_size(self) -> int:
        """Bytes the store's database takes on this machine's disk (0 for a server store)."""
        return 0

    @staticmethod
    def open(
        path: str | Path,
        *,
        create: bool = False,
        lease: float | None = None,
        readonly: bool = False,
        artifacts: str | Path | None = None,
    ) -> Store:
        """Open the store at ``path``; with ``create``, make it if it does not exist.

        ``path`` is a store folder (SQLite), or a server store's URL,
        ``postgresql://user@host:port/dbname?store=NAME`` (also ``postgres://``; needs the
        ``postgres`` extra). ``lease``: seconds after which a session that stopped renewing its
        heartbeat counts as dead (its ``running`` runs as ``interrupted``). ``readonly``: only
        read, as ``load()`` and the command line do: read permission suffices, nothing is
        created (not even SQLite's ``-wal``/``-shm``) and no write lock is ever waited for;
        writing methods then fail. ``artifacts``: a server store's folder of run folders (a
        filesystem every host sees; default ``./.experiments-artifacts``); an SQLite store
        keeps them inside its folder and takes none. Raises :class:`StoreError` when ``path``
        is not a usable store.
        """
        lease = DEFAULT_LEASE_S if lease is None else lease
        if is_server_url(path):
            return _open_server(str(path), create=create, lease=lease, readonly=readonly, artifacts=artifacts)
        if artifacts is not None:
            raise ValueError("artifacts= is for a server store: an SQLite store keeps its run folders inside it")
        from pytest_experiments.store.sqlite import SQLiteStore

        return _with_journals(SQLiteStore(Path(path), create=create, lease=lease, readonly=readonly), readonly)

    # -- writing (the plugin) -------------------------------------------------------
    @abc.abstractmethod
    def record_session(self, session: SessionStart) -> None:
        """Write ``session`` unless it is already there (any process may be first)."""

    @abc.abstractmethod
    def update_session_metadata(self, session_id: str, metadata: dict[str, Any]) -> None:
        """Replace a recorded session's metadata (under xdist the workers write the session
        before its ``session_start`` hooks ran); nothing happens for an unknown session."""

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

    def claim_first(self, starts: Sequence[RunStart], after: int) -> list[str | None]:
        """:meth:`claim_run` of each of ``starts`` in turn until one is claimed, as one step where
        the backend can: the outcome of each start tried, in order (a prefix of ``starts``, its
        first at least): the reason for a point another session has, None for a claimed one.

        A resuming process that meets points other sessions took (resumers on one grid) asks for
        several at once, and a server store answers in one round trip. Each point is claimed as
        atomically as by :meth:`claim_run`; all ``starts`` come from one process. A point whose
        runs only liveness can judge (a process that died holding it) may be claimed on the way,
        so a None may come before the last outcome: each None is a run this process must run.
        """
        outcomes: list[str | None] = []
        for start in starts:
            outcomes.append(self.claim_run(start, after))
            if outcomes[-1] is None:
                break
        return outcomes

    @abc.abstractmethod
    def continue_run(self, start: RunStart, after: int, statuses: Collection[str]) -> str | Continuation | None:
        """Claim ``start``'s grid point as :meth:`claim_run` does, continuing its latest run when
        that run's live status is one of ``statuses`` (``paused``; ``interrupted`` for experiments
        that opt in).

        In the same atomic step: when another session has the grid point, return the reason and
        write nothing; when its latest run can be continued, reopen that run (same run id, same
        folder) as ``running`` for ``start``'s session and process, its previous attempt kept in
        :meth:`attempts`, and return the :class:`~pytest_experiments.model.Continuation`; else
        write ``start`` as a new ``running`` run and return None. Exactly one of several sessions
        claiming the grid point at once continues the run.
        """

    @abc.abstractmethod
    def attempts(self, run_id: str) -> list[Attempt]:
        """A run's attempts, oldest first: the first one, then one per continuation, the current
        one last (its status is the run's). Raises ``KeyError`` for an unknown id."""

    @abc.abstractmethod
    def heartbeat(self, session_id: str) -> None:
        """Renew a live session's heartbeat, which keeps its running runs from counting as dead."""

    @abc.abstractmethod
    def finish_run(self, end: RunEnd) -> None:
        """Complete a started run with its outcome, metrics and metadata, atomically."""

    @abc.abstractmethod
    def finish_session(self, session_id: str, finished_at: float, exitstatus: int) -> None:
        """Close a session; its runs still ``running`` can never finish and become ``interrupted``."""

    # -- journals (store/journal.py) ----------------------------------------------------
    def fold_journals(self, paths: Iterable[Path] | None = None) -> int:
        """Fold the journals at ``paths`` (default: all of the store's) into the store; return
        how many records were folded.

        Each journal is folded from where the last fold of it stopped, in transactions that move
        that offset on with the records they write: any number of processes may fold the same
        journal at once, and each record is folded exactly once. A journal folded to its end
        whose writer is gone is removed. A read-only store folds nothing.
        """
        folded = 0
        for path in journal_files(self.root) if paths is None else paths:
            folded += self._fold_journal(path)
        return folded

    def _fold_journal(self, path: Path) -> int:
        folded = 0
        while True:
            step = self._fold_once(path)
            if step is None:
                return folded
            batch = step[1]
            folded += len(batch)
            if not batch.more:
                break
        try:
            finished = path.stat().st_size == batch.end
        except OSError:
            return folded
        if finished and not writer_is_live(batch.writer, path, self._liveness):
            # Folded to the end and nobody writes it any more. Readers that listed it find it
            # gone and read the store instead, which holds all of it (see journal_view).
            with contextlib.suppress(OSError):
                path.unlink()
        return folded

    def _fold_once(self, path: Path) -> tuple[int, Batch] | None:
        """In one transaction: read the journal from its folded offset, write its records and
        move the offset on; return the offset it started from and the batch. None: this store
        cannot fold (read-only, or a schema without journals)."""
        return None

    def journal_offsets(self) -> dict[str, int]:
        """How far each journal (by file name) is folded into the store: a byte offset."""
        return {}

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

    def run_columns(
        self,
        *,
        experiment: str | Iterable[str] | None = None,
        status: str | Iterable[str] | None = None,
        history: bool = False,
        metadata: bool = False,
    ) -> RunColumns:
        """The runs :meth:`runs` lists (same filters, same order) as columns, for ``load()``;
        ``metadata``: with each run's metadata.

        This builds them from :meth:`runs`; the backends read them column-wise instead, at a
        fraction of the cost for many runs.
        """
        return RunColumns.of(self.runs(experiment=experiment, status=status, history=history), metadata=metadata)

    def change_token(self) -> str | None:
        """A text that differs whenever anything :meth:`run_columns` gives of the stored runs may
        differ, or None when the store cannot tell (then nothing derived from it may be kept).

        What a reader checks a file derived from the runs against (``load()``'s side files): the
        same token, read before and after the file was made, means the same runs. None while any
        run is stored as ``running`` (its live status changes without the store).
        """
        return None

    def run_changes(
        self, since: int | str | None = None, *, history: bool = False, marks: Sequence[int] = ()
    ) -> RunChanges | None:
        """The runs changed since place ``since`` in the store's change sequence (every run when
        None: each grid point's newest, or with ``history`` all of them), in one snapshot with
        its place in the sequence; or None when the store counts no changes (an older schema)
        or cannot tell now (runs stored as ``running``, as :meth:`change_token`, or changes
        dropped that the caller may not have seen). A place is what a :class:`RunChanges` gave
        as its ``seq``: a change number for SQLite, a snapshot for a server store.

        What lets a reader patch a frame it kept (``load()``) instead of building it again:
        ``marks`` are change numbers whose random marks the reader noted; the answer holds
        those the store still has, so the reader can tell its own store's past from a copy's.
        """
        return None

    @property
    def side_folder(self) -> Path | None:
        """Where readers may keep files derived from the store (checked against
        :meth:`change_token` or :meth:`run_changes`), or None when the store has no such place."""
        return None

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
    def code_source(self, sha256: str) -> str | None:
        """The source of the function whose hash is ``sha256`` (None when the store has none)."""

    @abc.abstractmethod
    def metric_series(self, run_id: str, name: str) -> list[tuple[int | None, float]]:
        """The ``(step, value)`` pairs logged for one metric of one run, in logging order.

        A metric logged once without a step reads as ``[(None, value)]``, an unknown metric
        as ``[]``; an unknown run id raises ``KeyError``.
        """

    @abc.abstractmethod
    def points(self, run_ids: Sequence[str] | None = None, metrics: Sequence[str] | None = None) -> SeriesPoints:
        """Every logged point of these runs (all runs when None) and metrics (all when None), in one
        query: ordered by run, metric and logging order. A NaN reads back as NaN. The points come
        as columns (:class:`~pytest_experiments.model.SeriesPoints`, also a sequence of
        :class:`~pytest_experiments.model.SeriesPoint`): ``load_series()`` builds its frame from them.

        Only logged points: a metric that was only returned (never ``xp.log_metric``-ed) has none.
        """

    def artifacts(self, run_id: str) -> list[Artifact]:
        """The files of a run's folder, sorted by name: what ``xp.log_*`` registered (with its
        ``kind``) and whatever else was written there. Raises ``KeyError`` for an unknown id."""
        return self.run(run_id).artifacts

    @abc.abstractmethod
    def sessions(self) -> list[SessionRecord]:
        """Every session, oldest first, with its run counts by status."""

    @abc.abstractmethod
    def status_counts(self, session_id: str) -> dict[str, int]:
        """How many runs ``session_id`` recorded, by status."""

    # -- annotating, after the fact ---------------------------------------------------
    @abc.abstractmethod
    def set_tags(self, run_id: str, tags: Mapping[str, str | None]) -> dict[str, str]:
        """Merge ``tags`` into a run's tags (a None value removes that tag); return them all.

        Raises ``KeyError`` for an unknown run and ``ValueError`` for a tag that is not a short
        string (see :func:`pytest_experiments.model.tag_problem`).
        """

    @abc.abstractmethod
    def add_note(self, run_id: str, text: str, at: float | None = None) -> Note:
        """Add a note to a run (``at``: when, default now); raises ``KeyError`` for an unknown run."""

    # -- maintenance ----------------------------------------------------------------
    @abc.abstractmethod
    def delete_runs(self, run_ids: Iterable[str]) -> int:
        """Delete these runs, their metric series and their run folders; return how many runs went.

        Unknown ids are ignored. The rows go in one transaction; folders are removed
        afterwards, and only ones inside the store's ``runs/`` tree.
        """

    @abc.abstractmethod
    def add_copies(self, sessions: Sequence[SessionCopy], runs: Sequence[RunCopy]) -> int:
        """Add sessions and finished runs copied from another store, in one transaction (``merge``).

        A session or run whose id is here already is left as it is, so adding the same copies
        twice adds nothing; a run's code and metric series come with it. Returns how many runs
        were added. Run folders are the caller's to copy, before this: a folder without a row
        is harmless, a row without its folder is not.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store's connection; the object cannot be used afterwards."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def checked_tags(tags: Mapping[str, str | None]) -> dict[str, str | None]:
    """``tags`` as a dict, or the ``ValueError`` naming the first tag that is not a short string
    (a None value, which removes a tag, is fine)."""
    if not isinstance(tags, Mapping):
        raise TypeError(f"tags must be a mapping of strings to strings, not {type(tags).__name__}")
    for key, value in tags.items():
        problem = tag_problem(key, "" if value is None else value)
        if problem is not None:
            raise ValueError(problem)
    return dict(tags)


def attempt_reason(status: str, metadata: str, error_type: str | None, error_message: str | None) -> str:
    """Why an attempt ended as it did, from its run row: a pause's reason (``metadata["reason"]``),
    else its error (``Type: message``), else ""."""
    if status == "paused":
        reason = json.loads(metadata).get("reason", "")
        return reason if isinstance(reason, str) else str(reason)
    if error_type is None:
        return ""
    return f"{error_type}: {error_message}" if error_message else error_type


def decode_notes(text: str) -> list[Note]:
    """A run's notes as stored (a JSON list of ``[time, text]``)."""
    return [Note(float(at), str(note)) for at, note in json.loads(text)]


def driver_missing(url: str) -> StoreError | None:
    """The error for a server store whose driver (psycopg) is not installed, or None."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return StoreError(
            f"the PostgreSQL store {masked(url)} needs psycopg: pip install 'pytest-experiments[postgres]'"
        )
    return None


def _open_server(url: str, **options: Any) -> Store:
    """The PostgreSQL store at ``url``; without psycopg, a :class:`StoreError` naming the extra."""
    missing = driver_missing(url)
    if missing is not None:
        raise missing
    from pytest_experiments.store.postgres import PostgresStore

    return _with_journals(PostgresStore(url, **options), bool(options.get("readonly")))


def _with_journals(store: Store, readonly: bool) -> Store:
    """``store`` as readers and writers see it: with its journals (see ``journal_view``)."""
    from pytest_experiments.store.journal_view import JournalView

    try:
        return JournalView(store, readonly=readonly)
    except BaseException:
        store.close()
        raise
