"""The session side, in the controlling process: session hooks, closing the session in
the store, the summary line, and handing the session to xdist workers."""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

import pytest

from pytest_experiments.handle import StoreHandle
from pytest_experiments.identity import is_experiment
from pytest_experiments.run import ExperimentSession, SessionSummary
from pytest_experiments.store import Store, StoreError
from pytest_experiments.values import to_json_value

if TYPE_CHECKING:
    from pytest_experiments.selection import Snapshot

WORKERINPUT_KEY = "xp_session"
SNAPSHOT_KEY = "xp_snapshot"


class SessionRecorder:
    """Calls the session hooks and closes the session in the store (controller only)."""

    def __init__(self, config: pytest.Config, handle: StoreHandle) -> None:
        self._config = config
        self._handle = handle
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

    def _start(self) -> None:
        """Call the session_start hooks (once) and keep their metadata for the session row."""
        if self.started:
            return
        self.started = True
        self._config.hook.pytest_experiments_session_start(session=self.session)
        metadata = to_json_value(self.session.metadata)
        self._handle.session = dataclasses.replace(self._handle.session, metadata=metadata)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # Under xdist the workers are about to start and receive this metadata (tryfirst:
        # before xdist starts them). Without xdist it waits for collection, so that a
        # suite without experiments pays nothing for it.
        if self._config.pluginmanager.has_plugin("dsession"):
            self._start()

    @pytest.hookimpl
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if any(is_experiment(item) for item in session.items):
            self._start()

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        # A crashed worker cannot say what it did: assume it recorded.
        if error is not None or getattr(node, "workeroutput", {}).get("xp_recorded", True):
            self._workers_recorded = True

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        counts: dict[str, int] = {}
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        may_have_runs = self._handle.recorded or self._workers_recorded or interrupted
        # After a store failure (reported when it happened) the session writes nothing more.
        if may_have_runs and self._handle.exists() and self._handle.failure is None:
            try:
                counts = self._handle.use(lambda store: self._finish(store, int(exitstatus)), create=False)
            except StoreError as exc:
                self.store_failure = str(exc)
        self.summary = SessionSummary(counts=counts, store_path=self._handle.path, exitstatus=int(exitstatus))
        if self.started:
            self._config.hook.pytest_experiments_session_finish(session=self.session, summary=self.summary)

    def _finish(self, store: Store, exitstatus: int) -> dict[str, int]:
        store.finish_session(self.session.id, time.time(), exitstatus)
        return store.status_counts(self.session.id)

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.store_failure is not None:
            terminalreporter.write_line(f"xp: {self.store_failure}", red=True)
        if self.summary is None or not self.summary.total:
            return
        counts = ", ".join(f"{n} {status}" for status, n in sorted(self.summary.counts.items(), key=lambda kv: -kv[1]))
        runs = "run" if self.summary.total == 1 else "runs"
        line = f"xp: {self.summary.total} {runs} recorded ({counts}) in {self.summary.store_path}"
        if self.summary.counts.get("interrupted"):
            line += "; --xp-resume runs the interrupted ones again"
        terminalreporter.write_line(line)


class XdistSessionHandover:
    """Gives each xdist worker the session it records into (registered only with xdist)."""

    def __init__(self, handle: StoreHandle, snapshot: Snapshot | None) -> None:
        self._handle = handle
        self._snapshot = snapshot
        self._wire: bytes | None = None

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        # Builtin types only: anything else on the xdist channel aborts the session.
        node.workerinput[WORKERINPUT_KEY] = dataclasses.asdict(self._handle.session)
        if self._snapshot is not None:
            # The same snapshot for every worker, a restarted one included: same selection.
            if self._wire is None:
                self._wire = self._snapshot.to_wire()
            node.workerinput[SNAPSHOT_KEY] = self._wire
