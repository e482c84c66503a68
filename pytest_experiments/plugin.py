"""The pytest plugin (``pytest11`` entry point ``experiments``): options, hooks, markers, wiring."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_experiments import hookspecs, locate
from pytest_experiments.collectors import BUILTIN_COLLECTORS
from pytest_experiments.fixtures import xp, xp_dir  # noqa: F401  (fixtures of this plugin)
from pytest_experiments.grid import GridPlugin
from pytest_experiments.recorder import Recorder, StoreHandle
from pytest_experiments.records import SessionStart
from pytest_experiments.run import new_id
from pytest_experiments.session import WORKERINPUT_KEY, SessionRecorder, XdistSessionHandover
from pytest_experiments.sqlite_store import check_store_path
from pytest_experiments.store import StoreError


@dataclass(frozen=True)
class Settings:
    """The plugin's options, resolved once (command line > environment > ini > default)."""

    store_path: Path
    worker: str


SETTINGS_KEY = pytest.StashKey[Settings]()
HANDLE_KEY = pytest.StashKey[StoreHandle]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("experiments", "experiments (pytest-experiments)")
    group.addoption(
        "--xp-store",
        dest="xp_store",
        metavar="PATH",
        default=None,
        help=f"folder of the experiment store (default: ${locate.ENV_VAR}, else the xp_store ini key, else <rootdir>/.experiments)",
    )
    parser.addini(locate.INI_KEY, "folder of the experiment store, relative to the ini file", default="")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def _settings(config: pytest.Config) -> Settings:
    ini_dir = config.inipath.parent if config.inipath else config.rootpath
    store_path = locate.resolve(
        config.getoption("xp_store"),
        config.getini(locate.INI_KEY),
        ini_dir,
        config.rootpath,
        config.invocation_params.dir,
    )
    # From workerinput, not PYTEST_XDIST_WORKER: a pytest started inside a worker inherits that variable.
    workerinput = getattr(config, "workerinput", None)
    worker = str(workerinput["workerid"]) if workerinput is not None else "main"
    return Settings(store_path=store_path, worker=worker)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "experiment(compare=None): record each run of this test as an experiment run")
    config.addinivalue_line(
        "markers",
        "grid(name=values, ..., where=None): parametrise over the cartesian product of the axes, filtered by where(**point)",
    )
    config.pluginmanager.register(GridPlugin(), "xp-grid")
    if config.getoption("help", False) or config.getoption("version", False):
        return
    settings = _settings(config)
    try:
        check_store_path(settings.store_path)
    except StoreError as exc:
        raise pytest.UsageError(f"xp: {exc}") from None
    config.stash[SETTINGS_KEY] = settings

    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        session = SessionStart(**workerinput[WORKERINPUT_KEY])
    else:
        session = SessionStart(new_id(), time.time(), socket.gethostname(), os.getpid(), {})
    handle = StoreHandle(settings.store_path, session)
    config.stash[HANDLE_KEY] = handle
    config.pluginmanager.register(Recorder(handle, settings.worker), "xp-recorder")
    if workerinput is None:
        config.pluginmanager.register(SessionRecorder(config, handle), "xp-session")
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(XdistSessionHandover(handle), "xp-xdist")
    for name, collector in BUILTIN_COLLECTORS.items():
        if not config.pluginmanager.is_blocked(name):
            config.pluginmanager.register(collector(), name)


def pytest_unconfigure(config: pytest.Config) -> None:
    handle = config.stash.get(HANDLE_KEY, None)
    if handle is not None:
        handle.close()
