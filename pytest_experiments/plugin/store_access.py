"""A process's access to the store: opened when the first run starts, kept alive by a heartbeat,
and closed to writing for good once writing it failed.

Runs are recorded through the process's journal (``store/journal.py``): a run's start, its
points and its end are each one write to a file, which is folded into the store once a second at
most. The thread running the tests folds it between two runs (:meth:`StoreHandle.fold_if_due`)
once soon after the first run; a process still recording at :data:`FOLDER_AFTER_S` then hands
its folds to a folding process of its own (``store/folder.py``), beside the tests, and one
that cannot start one folds on in that thread. The heartbeat thread folds during a long run,
and :meth:`StoreHandle.close` at the end. Claims (resume, retry) go to the store itself: they must be
decided there, before the run's body starts.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pytest_experiments.model import RunEnd, RunStart, SessionStart
from pytest_experiments.store import Store, StoreError, describe_failure, store_exists
from pytest_experiments.store.children import python_command, start_keeper
from pytest_experiments.store.folder import FoldingProcess, describe_writing, raise_stop_flag
from pytest_experiments.store.journal import JournalWriter
from pytest_experiments.store.liveness import DEFAULT_LEASE_S, Process, pid_namespace, process_start
from pytest_experiments.store.location import shown

T = TypeVar("T")

#: Seconds between two folds of this process's journal into the store: how far behind the
#: store itself may be (readers see the journal anyway).
FOLD_EVERY_S = 1.0
#: The heartbeat thread folds only a journal its main thread has not folded for this long (a
#: long test logging points): a fold in the thread holds the interpreter's lock for its Python
#: part, which every system call of the thread running tests then waits for (5x the fold's own
#: cost, measured), so between runs the test thread folds itself (:meth:`StoreHandle.fold_if_due`).
THREAD_FOLDS_AFTER_S = 5.0
#: Seconds after the first run started that the thread running the tests first folds its journal
#: (between two runs, while the journal is short): a store that cannot take it is found as the
#: session starts, not a second later.
FIRST_FOLD_AFTER_S = 0.05
#: A process still recording this many seconds after its first run hands its folds to a
#: folding process (``store/folder.py``): a fold costs the thread running the tests about a
#: third of what it spends recording a trivial run. A shorter session folds in that thread,
#: and does not pay for starting a process.
FOLDER_AFTER_S = 2.0
#: Seconds between two folds by the folding process: what is left for the summary to wait for.
FOLDER_EVERY_S = 0.25

#: What the session's last process starts as it closes, with ``xp_keep_frames`` (by name: it
#: imports pandas, which the plugin does not).
KEEPER = "pytest_experiments.frame_keeper"
#: A session that recorded this many runs or more leaves a frame keeper: below it, building a
#: frame costs ``load()`` a few hundredths of a second at most, and a kept one it would patch.
KEEP_FRAMES_FROM = 1000

#: One line for an error met while writing the store at a path (a folder or a URL).
describe = describe_writing


class Heartbeat(threading.Thread):
    """Renews the session's heartbeat while this process lives.

    Other hosts sharing the store count a ``running`` run as ``interrupted`` once its
    session's heartbeat is older than the lease; this keeps ours fresh (4 beats a lease).
    A beat that cannot be written is noted in the handle, which the recorder reports.
    """

    def __init__(self, handle: StoreHandle) -> None:
        super().__init__(name="pytest-experiments-heartbeat", daemon=True)
        self._handle = handle
        self._stopped = threading.Event()

    def run(self) -> None:
        store: Store | None = None
        period = min(FOLD_EVERY_S, self._handle.lease / 4)
        next_beat = time.monotonic() + self._handle.lease / 4
        try:
            while not self._stopped.wait(period):
                if self._handle.failure is not None:
                    return  # the session writes nothing more
                stale = self._handle.fold_is_stale()
                beat = time.monotonic() >= next_beat
                # Its own connection is opened only once there is work for it (a beat, a
                # journal left unfolded by a long test): opening a store in this thread beside
                # the one running tests took about 1 s of wall time (measured, 10,000 trivial
                # runs), each of its SQLite calls waiting for the interpreter's lock, and slowed
                # the tests by a fifth all that time. A session shorter than a quarter of the
                # lease never opens it.
                if not (stale or beat):
                    continue
                try:
                    store = store or Store.open(
                        self._handle.path, lease=self._handle.lease, artifacts=self._handle.artifacts
                    )
                except Exception as exc:
                    self._handle.heartbeat_trouble = describe(exc, self._handle.path)
                    continue
                try:
                    if stale:
                        self._handle.fold(store)
                except Exception as exc:
                    # The store cannot take the journal (full, damaged...): as a failed write,
                    # the session stops, and the journal keeps what it recorded. Not once this
                    # process is closing: its last fold says so, and a flag raised after the
                    # controller removed the session's would outlive the session.
                    if not self._stopped.is_set():
                        self._handle.fail(describe(exc, self._handle.path))
                    return
                if not beat:
                    continue
                try:
                    next_beat = time.monotonic() + self._handle.lease / 4
                    store.heartbeat(self._handle.session.session_id)
                    self._handle.touch_journal()
                except Exception as exc:
                    self._handle.heartbeat_trouble = describe(exc, self._handle.path)
                else:
                    self._handle.heartbeat_trouble = None
        finally:
            if store is not None:
                store.close()

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=5)


class StoreHandle:
    """This process's store, opened (and created) when the first run starts: the plugin's
    guard around a :class:`~pytest_experiments.store.Store`, which it reaches only through here.

    Every write goes through :meth:`use`. The first failure (the store cannot be created or
    written, the database is found damaged, the disk is full) ends writing for the whole session:
    it is noted in a flag file that every process of the session (each xdist worker) checks
    before writing, so that nothing more is written to a store found damaged.
    """

    def __init__(
        self,
        path: Path | str,
        session: SessionStart,
        lease: float = DEFAULT_LEASE_S,
        *,
        controller: bool = True,
        artifacts: Path | None = None,
        worker: str = "main",
        keep_frames: bool = True,
    ) -> None:
        #: The store: a folder, or a server store's URL.
        self.path = path
        #: This process's xdist worker id ("main" without xdist), written once in its journal.
        self.worker = worker
        #: A server store's folder of run folders (None: a store folder, which holds its own).
        self.artifacts = artifacts
        self.session = session
        self.lease = lease
        #: Whether the controller, closing, starts the frame keeper (``xp_keep_frames``).
        self.keep_frames = keep_frames
        #: How many runs the session recorded, all its processes together (the controller's
        #: summary sets it): what decides whether it leaves a frame keeper.
        self.session_runs = 0
        self._store: Store | None = None
        self._heartbeat: Heartbeat | None = None
        self._journal: JournalWriter | None = None
        #: The journal's size when it was last folded (by either thread).
        self._folded_size = 0
        self._fold_lock = threading.Lock()
        #: When the journal was last folded, by either thread (or opened: set then).
        self._folded_at = 0.0
        #: When the journal was opened (the first run started).
        self._opened_at = 0.0
        #: When the thread running the tests next folds the journal (or looks at the folding process).
        self._fold_due_at = 0.0
        #: The process folding the journal once this one recorded for FOLDER_AFTER_S (None: none).
        self._folder: FoldingProcess | None = None
        #: Whether one was started: a folding process that died is not started again (this
        #: process folds its journal itself again).
        self._folder_started = False
        #: Whether this process started a run (and so created or used the store).
        self.recorded = False
        #: Why the heartbeat could not be written last time it tried (None: it was written).
        self.heartbeat_trouble: str | None = None
        self._reported_trouble: str | None = None
        self._failure: str | None = None
        # Outside the store (which may be damaged or full), shared by the session's processes.
        self._stop_flag = os.path.join(tempfile.gettempdir(), f"pytest-experiments-{session.session_id}.stopped")
        #: The controller removes the flag when the session ends (workers end before it).
        self._controller = controller

    @property
    def failure(self) -> str | None:
        """Why the session writes nothing more to the store (a failure in any of its processes), or None."""
        # Once a run: os.access answers without raising (os.path.exists makes an OSError to say no).
        if self._failure is None and os.access(self._stop_flag, os.F_OK):
            try:
                text = Path(self._stop_flag).read_text(encoding="utf-8", errors="replace").strip()
            except OSError:
                text = ""
            self._failure = text or f"another process of this session could not write the store {shown(self.path)}"
        return self._failure

    def fail(self, message: str) -> None:
        """Stop writing the store, in this process and in the session's others."""
        if self._failure is not None:
            return
        self._failure = message
        raise_stop_flag(self._stop_flag, message)

    def use(self, action: Callable[[Store], T], *, create: bool = True) -> T:
        """``action(store)`` on this process's store, opened on first use (and created, with ``create``).

        Any failure is raised as a :class:`StoreError` of one line, and from then on the
        session writes nothing more (see :meth:`fail`); so is a failure met earlier.
        """
        failure = self.failure
        if failure is not None:
            raise StoreError(failure)
        try:
            return action(self._open(create))
        except Exception as exc:
            failure = describe_failure(exc, self.path)
            if failure is None:
                raise
            message = failure
        self.fail(message)
        raise StoreError(message)

    def _open(self, create: bool) -> Store:
        if self._store is None:
            self._store = Store.open(self.path, create=create, lease=self.lease, artifacts=self.artifacts)
        if create and not self.recorded:  # this process records runs: the session must be in the store
            self._store.record_session(self.session)
            pid = os.getpid()
            writer = Process(socket.gethostname(), pid, pid_namespace(), process_start(pid))
            self._journal = JournalWriter(self._store.root, writer, self.session.session_id, self.worker)
            self._folded_at = self._opened_at = time.monotonic()  # nothing to fold before the journal exists
            self._fold_due_at = self._opened_at + min(FIRST_FOLD_AFTER_S, FOLD_EVERY_S)
            self.recorded = True
            self._heartbeat = Heartbeat(self)
            self._heartbeat.start()
        return self._store

    def _journal_of(self, store: Store) -> JournalWriter:
        assert self._journal is not None  # opened with the store
        return self._journal

    def record_start(self, start: RunStart) -> None:
        """Record that a run starts (``running``): durable when this returns.

        Once the journal is open, a write to it and no look at the session's flag: the recorder
        looked at it as the item's protocol started, moments before (see :attr:`failure`).
        """
        if self._failure is not None or self._journal is None:
            self.use(lambda store: self._journal_of(store).start(start))
            return
        self._journal_write(self._journal.start, start)

    def _journal_write(self, write: Callable[[T], None], record: T) -> None:
        """``write(record)`` to the journal; a failed write stops the session's writing (one line)."""
        try:
            write(record)
        except OSError as exc:
            message = describe(exc, self.path)
            self.fail(message)
            raise StoreError(message) from None

    def record_end(self, end: RunEnd) -> None:
        """Record a run's end: durable when this returns; in the store at the next fold.

        Only a failure of this process stops it (no look at the session's flag: the run started
        before any, and the journal is not the store that failed: it keeps the run).
        """
        if self._failure is not None or self._journal is None:
            self.use(lambda store: self._journal_of(store).end(end))
            return
        self._journal_write(self._journal.end, end)

    def point_writer(self) -> Callable[[str, str, int, int | None, float], None]:
        """What writes one logged point (``xp.log_metric``), durable when it returns: the journal's
        own method, the shortest path (a write that fails raises an ``OSError`` naming the journal)."""
        assert self._journal is not None  # a run was started, so the journal is open
        return self._journal.point

    def fold(self, store: Store) -> None:
        """Fold this process's journal into ``store`` if it grew since its last fold."""
        journal = self._journal
        if journal is None:
            return
        with self._fold_lock:
            size = journal.size()
            if size > self._folded_size:
                store.fold_journals([journal.path])
                self._folded_size = size
            self._folded_at = time.monotonic()
            self._fold_due_at = self._folded_at + FOLD_EVERY_S

    def fold_is_stale(self) -> bool:
        """Whether the journal has gone unfolded for a while: the test thread runs a long test,
        and no folding process folds it (see :meth:`_folder_alive`)."""
        return time.monotonic() - self._folded_at >= THREAD_FOLDS_AFTER_S and not self._folder_alive()

    def fold_if_due(self) -> None:
        """Between two runs, in the thread that runs them: fold the journal if its last fold is
        :data:`FOLD_EVERY_S` old (the first, :data:`FIRST_FOLD_AFTER_S` after it was opened,
        and none after it until :data:`FOLDER_AFTER_S`), or, once this process recorded for
        :data:`FOLDER_AFTER_S`, start the folding process that folds it from then on. A store
        that cannot take it stops the session's writing, as when the heartbeat thread's fold
        fails: the run just ended is kept (in the journal), and the next experiment stops the
        session, saying why."""
        now = time.monotonic()
        # The session's flag too: a folding process that failed raised it, and said why there.
        if now < self._fold_due_at or self._store is None or self.failure is not None:
            return
        if self._folder is None and now - self._opened_at >= FOLDER_AFTER_S:
            self._start_folder()
        if self._folder_alive():  # it folds; looked at once per FOLD_EVERY_S
            self._folded_at, self._fold_due_at = now, now + FOLD_EVERY_S
            return
        try:
            self.fold(self._store)
        except Exception as exc:
            self.fail(describe(exc, self.path))
            return
        if not self._folder_started:
            # The folding process starts soon: the runs until then are its first fold, not
            # another one in this thread (46 ms of it for the first second of trivial runs).
            self._fold_due_at = max(self._fold_due_at, self._opened_at + FOLDER_AFTER_S)

    def _start_folder(self) -> None:
        """Start the folding process, once (one that cannot start leaves the folds to this process)."""
        if self._folder_started or self._journal is None:
            return
        self._folder_started = True
        with contextlib.suppress(OSError):
            self._folder = FoldingProcess.start(
                self.path, self.artifacts, self.lease, self._journal.path, self._stop_flag, FOLDER_EVERY_S
            )

    def _folder_alive(self) -> bool:
        """Whether a folding process folds the journal. One that died (killed, or failed: then
        it raised the session's stop flag) is forgotten, and this process folds the journal
        itself again."""
        folder = self._folder
        if folder is None:
            return False
        if folder.alive():
            return True
        self._folder = None
        return False

    def touch_journal(self) -> None:
        """Renew the journal's age, which is its writer's heartbeat for readers on other hosts."""
        if self._journal is not None:
            self._journal.touch()

    def _retire_journal(self) -> None:
        """Fold the journal to its end and remove it; whatever fails here, the next writer folds it."""
        journal, self._journal = self._journal, None
        assert journal is not None
        journal.close()
        if self._store is None or self.failure is not None:
            return
        with contextlib.suppress(StoreError, OSError):
            self._store.fold_journals([journal.path])
            if self._store.journal_offsets().get(journal.path.name) == journal.path.stat().st_size:
                journal.path.unlink()

    @functools.cached_property
    def root(self) -> Path:
        """The folder run folders are made in: the store's own, or a server store's artefacts folder."""
        return self.artifacts if self.artifacts is not None else Path(self.path)

    def exists(self) -> bool:
        """Whether the store exists (or is open here already)."""
        return self._store is not None or store_exists(self.path)

    def heartbeat_news(self) -> str | None:
        """A heartbeat failure not reported yet, as one line, or None."""
        trouble = self.heartbeat_trouble
        if trouble is None or trouble == self._reported_trouble:
            return None
        self._reported_trouble = trouble
        return (
            f"cannot renew this session's heartbeat ({trouble}); other hosts sharing the store may take "
            "its running runs for dead and run them again"
        )

    def settle(self) -> None:
        """Once this process runs no more experiments (the session's summary is next): the
        folding process folds what is left of the journal and ends, and this process waits for it.

        Its last fold, in its own process, instead of the summary's reading folding up to a
        second of runs in this one, beside (and against) the folding process's own fold.
        """
        if self._folder is not None:
            folder, self._folder = self._folder, None
            folder.finish()  # its last fold: what is left for this process's own is short

    def close(self) -> None:
        """Stop the heartbeat and the folding process, fold the journal one last time and close
        the connection."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        self.settle()
        if self._journal is not None:
            self._retire_journal()
        side_folder = self._keeper_folder()  # asked while the store is open and the stop flag there
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._controller:
            with contextlib.suppress(OSError):
                os.unlink(self._stop_flag)
        if side_folder is not None:  # the frame keeper: started last, and not waited for
            command = python_command(KEEPER, [str(self.path)])
            if self.artifacts is not None:
                command += ["--artifacts", str(self.artifacts)]
            start_keeper(command, side_folder)

    def _keeper_folder(self) -> Path | None:
        """Where this process, closing, has a frame keeper keep ``load()``'s frames for the first
        ``load()`` after the session (``frame_keeper.py``): the store's side folder when this is
        the session's last process (the controller, once every worker is done), the session
        recorded :data:`KEEP_FRAMES_FROM` runs or more and wrote the store without a failure;
        else None."""
        if not (self._controller and self.keep_frames and self.session_runs >= KEEP_FRAMES_FROM):
            return None
        if self._store is None or self.failure is not None:
            return None
        try:
            return self._store.side_folder
        except Exception:  # no frames kept is no failure
            return None
