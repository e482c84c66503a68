"""A session's life cycle, in the controlling process: the session hooks, closing the session
in the store, and the summary line.

The other session names: :class:`~pytest_experiments.ExperimentSession` (``run.py``) is what the
session hooks receive, :class:`~pytest_experiments.SessionSummary` what ``session_finish``
receives; :class:`~pytest_experiments.model.SessionStart` is the session's row as first written,
:class:`~pytest_experiments.SessionRecord` as read back (``model.py``).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Generator
from typing import Any

import pytest

import pytest_experiments.plugin.xdist as xdist
from pytest_experiments.plugin.identity import is_experiment
from pytest_experiments.plugin.store_access import StoreHandle, describe
from pytest_experiments.run import ExperimentSession, SessionSummary
from pytest_experiments.store import Store, StoreError
from pytest_experiments.store.location import shown
from pytest_experiments.values import to_json_value


class SessionLifecycle:
    """The session hooks, the session closed in the store, the summary line (controller only)."""

    def __init__(self, config: pytest.Config, handle: StoreHandle, runs_tests: bool = True) -> None:
        self._config = config
        self._handle = handle
        #: False under --collect-only and --xp-status: no experiment can run, no session hook fires.
        self._runs_tests = runs_tests
        self.session = ExperimentSession(
            id=handle.session.session_id,
            started_at=handle.session.started_at,
            store_path=handle.path,
            config=config,
        )
        self.summary: SessionSummary | None = None
        # Whether any process of the session may have recorded a run; if none did, the
        # store is not touched at all (a suite without experiments writes nothing).
        self._workers_recorded = False
        #: Whether the session_start hooks ran (the finish hooks run only then).
        self.started = False
        #: Why closing the session in the store failed (one line), if it did.
        self.store_failure: str | None = None
        #: Grid points this session's workers left to other sessions, by reason (resume / retry).
        self._workers_taken: Counter[str] = Counter()

    def start(self) -> None:
        """Call the session_start hooks (once) and keep their metadata for the session row."""
        if self.started:
            return
        self.started = True
        self._config.hook.pytest_experiments_session_start(session=self.session)
        metadata = to_json_value(self.session.metadata)
        self._handle.session = dataclasses.replace(self._handle.session, metadata=metadata)

    def start_late(self) -> None:
        """Under xdist, once a worker reports the session's first experiment: the session_start
        hooks run now, and their metadata is added to the session the workers wrote already.

        A plain suite under ``-n`` so never runs them (the controller does not collect).
        """
        self._workers_recorded = True
        if self.started or not self._runs_tests:
            return
        self.start()
        if not self._handle.exists():
            return
        metadata = self._handle.session.metadata
        try:
            self._handle.use(lambda store: store.update_session_metadata(self.session.id, metadata), create=False)
        except StoreError as exc:  # reported with the summary; the session goes on
            self.store_failure = str(exc)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # Under xdist the workers are about to start and receive this metadata (tryfirst:
        # before xdist starts them). Without xdist it waits for collection, so that a
        # suite without experiments pays nothing for it.
        if self._config.pluginmanager.has_plugin("dsession"):
            self.start()

    @pytest.hookimpl
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if self._runs_tests and any(is_experiment(item) for item in session.items):
            self.start()

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        self._workers_taken.update(xdist.reported_taken(node))
        # A crashed worker cannot say what it did: assume it recorded.
        if error is not None or xdist.output_of(node).get(xdist.RECORDED_KEY, True):
            self._workers_recorded = True

    def _store(self, exitstatus: int) -> Store | None:
        """The store, if this session may have written to it (never created here)."""
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        may_have_runs = self._handle.recorded or self._workers_recorded or interrupted
        # After a store failure (reported when it happened) the session writes nothing more.
        if may_have_runs and self._handle.exists() and self._handle.failure is None:
            return self._handle.use(lambda store: store, create=False)
        return None

    def _counts(self, exitstatus: int, *, close: bool) -> dict[str, int]:
        """The session's run counts by status; with ``close``, close the session in the store first."""
        try:
            store = self._store(exitstatus)
            if store is None:
                return {}
            self._handle.settle()  # the folding process's last fold first: the counts read all runs
            if close:
                store.finish_session(self.session.id, time.time(), exitstatus)
            return store.status_counts(self.session.id)
        except StoreError as exc:
            self.store_failure = str(exc)
        except Exception as exc:  # database / OS errors of the store itself: one line, never a traceback
            self.store_failure = describe(exc, self._handle.path)
        return {}

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Generator[None, None, None]:
        # The outermost wrapper: its end runs after every other sessionfinish, so the session
        # is closed with the exit status pytest really returns (the comparison's group verdicts
        # and resume's "nothing left" change it in theirs), and also when one of them raised,
        # as a second Ctrl-C does while xdist waits for its workers: then pytest prints no
        # terminal summary, and the summary line is written here.
        try:
            yield
        except BaseException:
            self._close(session, summary_written=False)
            raise
        self._close(session, summary_written=True)

    def _close(self, session: pytest.Session, *, summary_written: bool) -> None:
        """Close the session in the store (duration, exit status) and call the finish hooks."""
        exitstatus = int(session.exitstatus)
        failure_before = self.store_failure
        counts = self._counts(exitstatus, close=True)
        self.summary = SessionSummary(counts=counts, store_path=self._handle.path, exitstatus=exitstatus)
        self._handle.session_runs = self.summary.total  # whether closing it leaves a frame keeper
        terminalreporter = self._config.pluginmanager.get_plugin("terminalreporter")
        if terminalreporter is not None:
            if not summary_written:
                terminalreporter.line("")  # the progress line may still be open
                self._write_summary(terminalreporter)
            elif self.store_failure is not None and self.store_failure != failure_before:
                terminalreporter.write_line(f"xp: {self.store_failure}", red=True)
        if self.started:
            self._config.hook.pytest_experiments_session_finish(session=self.session, summary=self.summary)

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int) -> None:
        # Before the session is closed (the terminal summary runs inside sessionfinish): every
        # run of the session has ended by now, so its counts are final.
        counts = self._counts(int(exitstatus), close=False)
        self.summary = SessionSummary(counts=counts, store_path=self._handle.path, exitstatus=int(exitstatus))
        self._write_summary(terminalreporter)

    def _taken(self) -> Counter[str]:
        """Grid points not run here because other sessions had them, by reason."""
        taken = Counter(self._workers_taken)
        recorder = self._config.pluginmanager.get_plugin("xp-recorder")
        taken.update(getattr(recorder, "taken", {}))
        return taken

    def _write_summary(self, terminalreporter: Any) -> None:
        """``xp: N runs recorded (...) in <store>``, when the session recorded any; a store failure first."""
        if terminalreporter is None:
            return
        if self.store_failure is not None:
            terminalreporter.write_line(f"xp: {self.store_failure}", red=True)
        here = self.summary.total if self.summary is not None else 0
        if self.summary is not None and here:
            counts = ", ".join(
                f"{n} {status}" for status, n in sorted(self.summary.counts.items(), key=lambda kv: -kv[1])
            )
            runs = "run" if here == 1 else "runs"
            line = f"xp: {here} {runs} recorded ({counts}) in {shown(self.summary.store_path)}"
            if self.summary.counts.get("interrupted"):
                line += "; --xp-resume runs the interrupted ones again"
            elif self.summary.counts.get("paused"):
                line += "; --xp-resume continues the paused ones"
            terminalreporter.write_line(line)
        taken = self._taken()
        if taken:  # once, not a skip per grid point: the sessions split the grid
            total = sum(taken.values())
            terminalreporter.write_line(f"xp: {here:,} run here, {total:,} taken by other sessions")
            if self._config.get_verbosity() > 0:
                for reason, count in sorted(taken.items()):
                    terminalreporter.write_line(f"xp:   {count:,} {reason}")
