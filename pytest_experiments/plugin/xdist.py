"""Everything that crosses pytest-xdist's channel between the controller and its workers.

xdist is recognised by what it does, not by the name it was loaded under (``-p xdist``,
``-p xdist.plugin``, ``pytest_plugins = ["xdist.plugin"]``): its hooks exist, and a worker's
config has ``workerinput``. What travels:

==========================  =====================================================================
``workerinput``             the session the worker records into (``xp_session``) and, with
                            resume / retry / status, the controller's snapshot (``xp_snapshot``)
``workeroutput``            whether the worker used the store (``xp_recorded``), why it could not
                            (``xp_store_failure``), a usage error it found (``xp_usage_error``:
                            a bad comparison rule), what ``--xp-shard`` left to other shards
                            (``xp_shard_deselected``)
a report's attribute        ``xp_experiment`` on the reports of an experiment: how the
                            controller learns that the session runs experiments (it does not
                            collect under xdist)
==========================  =====================================================================

Only builtin types go on the channel: anything else aborts the session. A worker started by a
controller without this plugin (or an older one) finds no key and does without.

The session a process records into is decided here too (:func:`session_of`): on a worker, the
controller's, as received. This module is imported by a session that distributes (``-n``) or
that is turned on, never by a plain one.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from pytest_experiments.plugin import HANDLE_KEY, STARTED_KEY, thread_count

if TYPE_CHECKING:
    from pytest_experiments.model import SessionStart

SESSION_KEY = "xp_session"
SNAPSHOT_KEY = "xp_snapshot"
RECORDED_KEY = "xp_recorded"
#: Grid points a worker left to other sessions, by reason (a dict of builtins).
TAKEN_KEY = "xp_taken"
STORE_FAILURE_KEY = "xp_store_failure"
USAGE_ERROR_KEY = "xp_usage_error"
SHARD_DESELECTED_KEY = "xp_shard_deselected"
EXPERIMENT_ATTRIBUTE = "xp_experiment"

#: This process's session until the store is opened (then its handle holds it): see :func:`session_of`.
_SESSION_STASH = pytest.StashKey[dict[str, Any]]()
_CONTROLLER_STASH = pytest.StashKey["XdistController"]()

#: What OpenMP and the BLAS libraries (OpenBLAS, MKL, BLIS, Accelerate), numexpr and numba
#: read, once, when they load, to size their thread pools.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS",
)  # fmt: skip


def worker_threads(config: pytest.Config) -> int | str | None:
    """--xp-worker-threads, else the ini key; None: leave the thread variables alone."""
    threads: int | str | None = config.getoption("xp_worker_threads")
    ini_threads = str(config.getini("xp_worker_threads")).strip()
    if threads is None and ini_threads:
        try:
            threads = thread_count(ini_threads)
        except argparse.ArgumentTypeError as exc:
            raise pytest.UsageError(f"xp: ini key xp_worker_threads: {exc}") from None
    return threads


def has_xdist(config: pytest.Config) -> bool:
    """Whether pytest-xdist is loaded in this process, under whichever name: its hooks exist."""
    return hasattr(config.pluginmanager.hook, "pytest_configure_node")


def _workerinput(config: pytest.Config) -> dict[str, Any] | None:
    workerinput = getattr(config, "workerinput", None)
    return workerinput if isinstance(workerinput, dict) else None


def is_worker(config: pytest.Config) -> bool:
    """Whether this process is an xdist worker."""
    return _workerinput(config) is not None


def starts_workers(config: pytest.Config) -> bool:
    """Whether this process is an xdist controller about to start workers."""
    if not has_xdist(config) or is_worker(config):
        return False
    return getattr(config.option, "dist", "no") != "no"


def session_of(config: pytest.Config) -> SessionStart:
    """This invocation's session: the controller's (sent to each xdist worker), made on first use."""
    handle = config.stash.get(HANDLE_KEY, None)
    if handle is not None:
        return handle.session  # with the session hooks' metadata, once they ran
    from pytest_experiments.model import SessionStart

    return SessionStart(**session_fields(config))


def session_fields(config: pytest.Config) -> dict[str, Any]:
    """The fields of this invocation's session (:class:`SessionStart`), made on first use: what a
    controller sends its workers (builtins, and without loading the model: a plain session's
    controller sends them too)."""
    handle = config.stash.get(HANDLE_KEY, None)
    if handle is not None:
        import dataclasses

        return dataclasses.asdict(handle.session)
    fields = config.stash.get(_SESSION_STASH, None)
    if fields is None:
        fields = _session_fields(config)
        if fields is None:
            import socket

            from pytest_experiments.ids import new_id

            started = config.stash.get(STARTED_KEY, time.time())
            fields = {"session_id": new_id(), "started_at": started, "host": socket.gethostname()}
            fields.update(pid=os.getpid(), metadata={})
        config.stash[_SESSION_STASH] = fields
    return dict(fields, metadata=dict(fields["metadata"]))


def _session_fields(config: pytest.Config) -> dict[str, Any] | None:
    """On a worker, the fields of the controller's session (:class:`SessionStart`); else None."""
    workerinput = _workerinput(config)
    fields = None if workerinput is None else workerinput.get(SESSION_KEY)
    return fields if isinstance(fields, dict) else None


def snapshot_wire(config: pytest.Config) -> bytes | None:
    """On a worker, the controller's snapshot (resume / retry / status) as sent; else None."""
    workerinput = _workerinput(config)
    wire = None if workerinput is None else workerinput.get(SNAPSHOT_KEY)
    return wire if isinstance(wire, bytes) else None


def put_output(config: pytest.Config, key: str, value: object) -> bool:
    """On a worker, put ``value`` (builtin types only) in what the controller receives when the
    worker ends; False in any other process."""
    workeroutput = getattr(config, "workeroutput", None)
    if not isinstance(workeroutput, dict):
        return False
    workeroutput[key] = value
    return True


def output_of(node: object) -> dict[str, Any]:
    """On the controller, what a worker put in its output (empty when it sent nothing)."""
    workeroutput = getattr(node, "workeroutput", None)
    return workeroutput if isinstance(workeroutput, dict) else {}


def report_recorded(config: pytest.Config, recorded: bool, taken: Mapping[str, int] | None = None) -> None:
    """On a worker, tell the controller whether this worker used the store, and which grid
    points it left to other sessions (by reason)."""
    put_output(config, RECORDED_KEY, recorded)
    put_output(config, TAKEN_KEY, dict(taken or {}))


def reported_taken(node: object) -> dict[str, int]:
    """On the controller, what a finished worker left to other sessions (see :func:`report_recorded`)."""
    taken = output_of(node).get(TAKEN_KEY, {})
    return {str(reason): int(count) for reason, count in taken.items()} if isinstance(taken, dict) else {}


def report_store_failure(session: pytest.Session, message: str) -> None:
    """On a worker, a store that cannot be used: the worker runs nothing (every worker finds
    the same, so their collections stay alike) and the controller stops with ``message``."""
    put_output(session.config, STORE_FAILURE_KEY, message)
    session.items.clear()


def tag_experiment_report(report: pytest.TestReport) -> None:
    """Mark a worker's report as one of an experiment (it travels with the report's attributes)."""
    setattr(report, EXPERIMENT_ATTRIBUTE, True)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity: a cluster job's share, not the whole machine)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def controller(config: pytest.Config) -> XdistController:
    """The controller's end of the channel, registered on first use: by a controller about to
    start workers (they tell it when they meet an experiment), or when the plugin is turned on."""
    found = config.stash.get(_CONTROLLER_STASH, None)
    if found is None:

        def activate_reported() -> None:
            from pytest_experiments.plugin.activation import activate

            activate(config, reported=True)

        threads = worker_threads(config)
        found = XdistController(lambda: session_fields(config), activate_reported, threads)
        config.pluginmanager.register(found, "xp-xdist")
        config.stash[_CONTROLLER_STASH] = found
    return found


class XdistController:
    """The controller's side of the channel (registered on a controller that starts workers).

    Gives each worker the session it records into, resume's snapshot and the thread limits;
    calls ``on_experiment`` once a worker reports an experiment or says it used the store.
    """

    def __init__(
        self,
        session: Callable[[], dict[str, Any]],
        on_experiment: Callable[[], None],
        threads: int | str | None = None,
    ) -> None:
        self._session = session
        self._on_experiment = on_experiment
        self._threads = threads
        #: With resume / retry / status: the same snapshot for every worker (a restarted one included).
        self.snapshot_wire: bytes | None = None
        self.experiments_seen = False
        self._store_failure: str | None = None

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_setupnodes(self, config: pytest.Config, specs: Sequence[Any]) -> None:
        # --xp-worker-threads: N workers each sizing their BLAS pools to every core
        # oversubscribe the machine. The variables go into each worker's environment as
        # its process starts (execnet's env: spec), before anything imports numpy; a
        # user who set any of them decides alone.
        if self._threads is None or not specs or any(name in os.environ for name in THREAD_VARIABLES):
            return
        threads = max(1, available_cpus() // len(specs)) if self._threads == "auto" else int(self._threads)
        for spec in specs:
            if not any(name in spec.env for name in THREAD_VARIABLES):
                spec.env.update(dict.fromkeys(THREAD_VARIABLES, str(threads)))

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[SESSION_KEY] = self._session()
        if self.snapshot_wire is not None:
            node.workerinput[SNAPSHOT_KEY] = self.snapshot_wire

    def _seen(self) -> None:
        if not self.experiments_seen:
            self.experiments_seen = True
            self._on_experiment()

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not self.experiments_seen and getattr(report, EXPERIMENT_ATTRIBUTE, False):
            self._seen()

    @pytest.hookimpl(optionalhook=True, tryfirst=True)
    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        workeroutput = output_of(node)
        failure = workeroutput.get(STORE_FAILURE_KEY)
        if isinstance(failure, str) and self._store_failure is None:
            self._store_failure = failure
        # A worker that used the store without any report reaching here (it crashed, or the
        # store failed before the first report) still makes this a session with experiments.
        if workeroutput.get(RECORDED_KEY, False):
            self._seen()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Any:
        result = yield
        if self._store_failure is not None:  # as without xdist: exit 4, the message on one line
            raise pytest.UsageError(self._store_failure)
        return result
