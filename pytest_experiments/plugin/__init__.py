"""The pytest plugin (``pytest11`` entry point ``experiments``): hooks, markers and wiring."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING

import pytest

from pytest_experiments.model import SessionStart
from pytest_experiments.plugin import hookspecs
from pytest_experiments.plugin.collectors import BUILTIN_COLLECTORS
from pytest_experiments.plugin.fixtures import xp, xp_dir, xp_run  # noqa: F401  (fixtures of this plugin)
from pytest_experiments.plugin.grid import GridPlugin
from pytest_experiments.plugin.identity import DistinctValues
from pytest_experiments.plugin.options import Settings, add_options, check_path_tokens, read_settings
from pytest_experiments.plugin.recorder import Recorder
from pytest_experiments.plugin.session import SNAPSHOT_KEY, WORKERINPUT_KEY, SessionRecorder, XdistSessionHandover
from pytest_experiments.plugin.sharding import Sharding
from pytest_experiments.plugin.store_access import StoreHandle
from pytest_experiments.run import new_id
from pytest_experiments.store import StoreError, check_location

if TYPE_CHECKING:
    from pytest_experiments.plugin.selection import Snapshot

SETTINGS_KEY = pytest.StashKey[Settings]()
HANDLE_KEY = pytest.StashKey[StoreHandle]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    # The first hook that sees every argument: the ini file's addopts, PYTEST_ADDOPTS and the command line.
    check_path_tokens(args)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "experiment(compare=None): record each run of this test as an experiment run")
    config.addinivalue_line(
        "markers",
        "grid(name=values, ..., where=None): parametrise over the cartesian product of the axes, "
        "filtered by where(**point); several grid marks give the union of their grids",
    )
    config.pluginmanager.register(GridPlugin(), "xp-grid")
    config.pluginmanager.register(DistinctValues(), "xp-identity")
    if config.getoption("help", False) or config.getoption("version", False):
        return
    settings = read_settings(config)
    workerinput = getattr(config, "workerinput", None)
    try:
        # The whole database is checked once per session, in the process that starts it (~0.1 s for 100,000 runs).
        check_location(settings.store_path, integrity=workerinput is None)
    except StoreError as exc:
        raise pytest.UsageError(f"xp: {exc}") from None
    config.stash[SETTINGS_KEY] = settings
    if settings.selection.status:
        config.option.dist = "no"  # like --collect-only: collect in this process, run nothing

    if workerinput is not None:
        session = SessionStart(**workerinput[WORKERINPUT_KEY])
    else:
        session = SessionStart(new_id(), time.time(), socket.gethostname(), os.getpid(), {})
    snapshot = _snapshot(config, settings) if settings.selection.active else None

    handle = StoreHandle(settings.store_path, session, settings.lease, controller=workerinput is None)
    config.stash[HANDLE_KEY] = handle
    claim_after = snapshot.mark if snapshot is not None and settings.selection.claims else None
    config.pluginmanager.register(Recorder(handle, settings.worker, claim_after), "xp-recorder")
    if snapshot is not None:
        _register_selection(config, settings, snapshot, controller=workerinput is None)
    if workerinput is None:
        runs_tests = not (config.getoption("collectonly") or settings.selection.status)
        config.pluginmanager.register(SessionRecorder(config, handle, runs_tests), "xp-session")
        if config.pluginmanager.hasplugin("xdist"):
            handover = XdistSessionHandover(handle, snapshot, settings.worker_threads)
            config.pluginmanager.register(handover, "xp-xdist")
    if settings.comparison.active:
        from pytest_experiments.plugin.baseline import ComparisonReport, RunComparison

        config.pluginmanager.register(RunComparison(settings.comparison), "xp-compare")
        if workerinput is None:
            report = ComparisonReport(settings.comparison, session.session_id, settings.store_path)
            config.pluginmanager.register(report, "xp-compare-report")
    if settings.shard is not None:  # --xp-shard (issue 10): a pure filter, the same in every process
        config.pluginmanager.register(Sharding(settings.shard), "xp-shard")
    for name, collector in BUILTIN_COLLECTORS.items():
        if not config.pluginmanager.is_blocked(name):
            config.pluginmanager.register(collector(), name)
    _stop_on_sigterm(config)


def _register_selection(config: pytest.Config, settings: Settings, snapshot: Snapshot, controller: bool) -> None:
    """Resume / retry / status: the selection in every process; its exit status, and under
    xdist the controller's own collection before the workers start, on the controller."""
    from pytest_experiments.plugin.selection import DeferredWorkers, Selection, SelectionController

    selection = Selection(config, settings.selection, snapshot, settings.store_path)
    config.pluginmanager.register(selection, "xp-selection")
    if controller:
        config.pluginmanager.register(SelectionController(settings.selection, selection), "xp-selection-report")
        if settings.selection.claims and DeferredWorkers.wanted(config):
            config.pluginmanager.register(DeferredWorkers(config), "xp-deferred-workers")


def _snapshot(config: pytest.Config, settings: Settings) -> Snapshot:
    """The store's state that resume / retry / status decide from: taken once by the
    controller, received by each xdist worker (so that all of them decide alike)."""
    from pytest_experiments.plugin.selection import Snapshot

    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        return Snapshot.from_wire(workerinput[SNAPSHOT_KEY])
    try:
        return Snapshot.take(settings.store_path, settings.lease)
    except StoreError as exc:
        raise pytest.UsageError(f"xp: {exc}") from None


def _stop_on_sigterm(config: pytest.Config) -> None:
    """Make SIGTERM (what cluster schedulers send at a time limit) stop the session like Ctrl-C,
    so finished runs are kept and the ones in flight are stored as ``interrupted``."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous not in (signal.SIG_DFL, None):
        return  # somebody else handles SIGTERM already

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt("SIGTERM")

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    signal.signal(signal.SIGTERM, interrupt)
    config.add_cleanup(restore)


def pytest_unconfigure(config: pytest.Config) -> None:
    handle = config.stash.get(HANDLE_KEY, None)
    if handle is not None:
        handle.close()
