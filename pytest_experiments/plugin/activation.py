"""Turning the plugin on, in one process: the store checked, the recorder, the session side,
the metadata collectors and the SIGTERM handler registered.

It happens once per process, when the process meets its first experiment: at the end of its
collection (without xdist, and in each xdist worker), or, on an xdist controller (which does not
collect), when a worker reports one. The options that ask for the store (resume, retry, status,
comparisons) turn it on at configuration. Until then the plugin touches nothing (see
:mod:`plugin`, whose collection hooks call :func:`activate`).
"""

from __future__ import annotations

import builtins
import os
import signal
import sys
import threading
import types
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

import pytest

# Submodules by their full name: ``from package import module`` would take the copy a finished
# in-process (pytester) session left as the package's attribute, and keep that session alive.
import pytest_experiments.plugin.xdist as xdist
from pytest_experiments.plugin import ACTIVE_KEY, HANDLE_KEY, KEEP_FRAMES_INI_KEY, add_hookspecs
from pytest_experiments.plugin.collectors import BUILTIN_COLLECTORS
from pytest_experiments.plugin.gc_freeze import freeze_collected
from pytest_experiments.plugin.pausing import Continuing, show_paused
from pytest_experiments.plugin.recorder import Recorder
from pytest_experiments.plugin.session import SessionLifecycle
from pytest_experiments.plugin.settings import Settings, settings_of
from pytest_experiments.plugin.store_access import StoreHandle
from pytest_experiments.store import StoreError, check_location
from pytest_experiments.store.location import shown

if TYPE_CHECKING:
    from pytest_experiments.plugin.selection import Snapshot


def activate(
    config: pytest.Config, *, collected: bool = False, reported: bool = False, session: pytest.Session | None = None
) -> None:
    """Turn the plugin on in this process (once).

    ``collected``: this process's collection holds an experiment; ``reported``: an xdist
    worker reported one to this controller. Neither: an option asked for the store at
    configuration. A store that cannot be used is a usage error (exit 4) before any test
    runs; under xdist a worker's (``session``: its collection) is handed to the controller,
    which stops with it.
    """
    if ACTIVE_KEY in config.stash:
        return
    if collected and config.getoption("collectonly"):
        return  # nothing runs: the store is not looked at
    config.stash[ACTIVE_KEY] = True
    add_hookspecs(config.pluginmanager)  # before anything calls them
    settings = settings_of(config)
    worker = xdist.is_worker(config)
    if not reported:  # the workers checked it before they reported
        try:
            # SQLite checks every page (~0.1 s for 100,000 runs): in the process that starts the
            # session; under xdist in each worker that meets an experiment, so that all of them
            # decide alike.
            check_location(settings.store_path, integrity=not worker or collected)
        except StoreError as exc:
            if worker and session is not None:
                xdist.report_store_failure(session, f"xp: {exc}")
                return
            raise pytest.UsageError(f"xp: {exc}") from None

    # Read before the selection may defer xdist's workers (it sets ``dist`` to "no" until then).
    distributes = xdist.starts_workers(config)
    started = xdist.session_of(config)
    snapshot = _snapshot(config, settings) if settings.selection.active else None
    handle = StoreHandle(
        settings.store_path,
        started,
        settings.lease,
        controller=not worker,
        artifacts=settings.artifacts_root,
        worker=settings.worker,
        keep_frames=config.getini(KEEP_FRAMES_INI_KEY),
    )
    config.stash[HANDLE_KEY] = handle
    config.add_cleanup(handle.close)  # after every plugin's pytest_unconfigure
    if not worker and settings.server_store and settings.artifacts is None:
        _warn_local_artifacts(config, handle)
    claim_after = snapshot.mark if snapshot is not None and settings.selection.claims else None
    continuing = None
    if snapshot is not None and claim_after is not None and Continuing.needed(snapshot.states):
        continuing = Continuing(snapshot.states)
    config.pluginmanager.register(Recorder(handle, settings.worker, claim_after, continuing), "xp-recorder")
    if distributes:  # the controller shows its workers' paused runs (the others, their own: show_paused)
        show_paused(config)
    if snapshot is not None:
        _register_selection(config, settings, snapshot, controller=not worker)
        if settings.selection.claims and not config.pluginmanager.is_blocked("xp-spread"):
            from pytest_experiments.plugin.spread import Spread

            config.pluginmanager.register(Spread(started.session_id), "xp-spread")
    if not worker:
        runs_tests = not (config.getoption("collectonly") or settings.selection.status)
        lifecycle = SessionLifecycle(config, handle, runs_tests)
        config.pluginmanager.register(lifecycle, "xp-session")
        if distributes:
            controller = xdist.controller(config)
            if snapshot is not None:
                controller.snapshot_wire = snapshot.to_wire()
    if settings.comparison.active:
        from pytest_experiments.plugin.baseline import ComparisonReport, RunComparison

        config.pluginmanager.register(RunComparison(settings.comparison), "xp-compare")
        if not worker:
            report = ComparisonReport(
                settings.comparison, started.session_id, settings.store_path, settings.artifacts_root
            )
            config.pluginmanager.register(report, "xp-compare-report")
    if settings.html is not None and not worker:
        from pytest_experiments.plugin.html import HtmlReport

        config.pluginmanager.register(
            HtmlReport(settings.html, settings.store_path, started.session_id, settings.artifacts_root), "xp-html"
        )
    for name, collector in BUILTIN_COLLECTORS.items():
        if not config.pluginmanager.is_blocked(name):
            config.pluginmanager.register(collector(), name)
    if collected:  # its own collection_finish is not called any more (see Recorder's)
        freeze_collected(config)
    if not worker:
        # Registered after the collectors, so that the session hooks see them.
        if collected and runs_tests:
            lifecycle.start()  # collection is over: its own collection_finish is not called any more
        elif reported:
            lifecycle.start_late()
    _stop_on_sigterm(config)


def _warn_local_artifacts(config: pytest.Config, handle: StoreHandle) -> None:
    """One line, once per session (the controller's): run folders of a server store without
    ``--xp-artifacts`` stay on this host."""
    line = (
        f"xp: warning: run folders of the store {shown(handle.path)} are kept in {handle.root}, which other hosts "
        "cannot see; give --xp-artifacts PATH (ini xp_artifacts) on a filesystem every host sees"
    )
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line, yellow=True)
    else:  # activated at configuration, before the terminal exists
        config.pluginmanager.register(_LineAtStart(line), "xp-artifacts-warning")


class _LineAtStart:
    """Writes one line when the session starts (pytest's header is out by then)."""

    def __init__(self, line: str) -> None:
        self._line = line

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(self._line, yellow=True)


def _register_selection(config: pytest.Config, settings: Settings, snapshot: Snapshot, controller: bool) -> None:
    """Resume / retry / status: the selection in every process; its exit status, and under
    xdist the controller's own collection before the workers start, on the controller."""
    from pytest_experiments.plugin.selection import DeferredWorkers, Selection, SelectionExitStatus

    selection = Selection(config, settings.selection, snapshot, settings.store_path)
    config.pluginmanager.register(selection, "xp-selection")
    if controller:
        config.pluginmanager.register(SelectionExitStatus(settings.selection, selection), "xp-selection-report")
        if settings.selection.claims and DeferredWorkers.wanted(config):
            config.pluginmanager.register(DeferredWorkers(config), "xp-deferred-workers")


def _snapshot(config: pytest.Config, settings: Settings) -> Snapshot:
    """The store's state that resume / retry / status decide from: taken once by the
    controller, received by each xdist worker (so that all of them decide alike)."""
    from pytest_experiments.plugin.selection import Snapshot

    wire = xdist.snapshot_wire(config)
    if wire is not None:
        return Snapshot.from_wire(wire)
    try:
        return Snapshot.take(settings.store_path, settings.lease, settings.artifacts_root)
    except StoreError as exc:
        raise pytest.UsageError(f"xp: {exc}") from None


# -- SIGTERM -------------------------------------------------------------------------------------

# The handler this process installed and the one it replaced, while a session with experiments
# runs here; None otherwise. Read by the fork hook, registered once by each copy of this module
# (pytester's in-process sessions import it afresh: see :func:`_fork_hook`).
_sigterm: tuple[Any, Any] | None = None
_fork_hook_registered = False


def _stop_on_sigterm(config: pytest.Config) -> None:
    """Make SIGTERM (what cluster schedulers send at a time limit) stop the session like Ctrl-C,
    so finished runs are kept and the ones in flight are stored as ``interrupted``.

    Only in a session that runs experiments; restored when it ends, and in any process the
    session forks (a test's child process terminated by SIGTERM must die of it, as without
    the plugin).
    """
    global _sigterm, _fork_hook_registered
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        # Somebody else handles SIGTERM already: Python, or (None) C code embedding it, whose
        # handler could not be put back (``signal.signal`` takes no None).
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt("SIGTERM")

    def restore() -> None:
        global _sigterm
        _sigterm = None
        if signal.getsignal(signal.SIGTERM) is interrupt:
            signal.signal(signal.SIGTERM, previous)

    signal.signal(signal.SIGTERM, interrupt)
    _sigterm = (interrupt, previous)
    if not _fork_hook_registered and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_fork_hook())
        _fork_hook_registered = True
    config.add_cleanup(restore)


def _restore_in_child() -> None:
    """In a forked child: SIGTERM as it was before the session took it (a no-op once it ended)."""
    global _sigterm
    installed = _sigterm
    _sigterm = None  # the child is not the session
    if installed is None:
        return
    interrupt, previous = installed
    try:
        if signal.getsignal(signal.SIGTERM) is interrupt:
            signal.signal(signal.SIGTERM, previous)
    except ValueError:  # forked from another thread: signal handlers belong to the main thread
        pass


def _in_child(name: str = __name__) -> None:
    """The fork hook's body: the copy of this module in use restores SIGTERM in the child."""
    module = sys.modules.get(name)
    if module is not None:
        module._restore_in_child()


def _fork_hook() -> Callable[[], None]:
    """:func:`_in_child`, with globals of its own that hold nothing but ``sys``.

    ``os.register_at_fork`` keeps a handler for good, and a function keeps its module's globals,
    whose ``__loader__`` (pytest's assertion rewriter) holds the session that imported the
    module. pytester's in-process sessions import this module afresh each time: a handler of
    this module's would keep every such session with experiments alive, with its config, items
    and plugins. This one keeps none, and finds the copy in use by its name when the process
    forks (each copy registers one: the later calls find SIGTERM restored already).
    """
    namespace = {"__builtins__": builtins, "sys": sys}
    return types.FunctionType(_in_child.__code__, namespace, "_in_child", _in_child.__defaults__)
