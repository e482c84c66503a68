"""The pytest plugin (``pytest11`` entry point ``experiments``): options, markers, fixtures, and
the step that turns the plugin on.

Installed but unused, the plugin is invisible: a session whose collection holds no experiment
never looks at the store, runs no collector or session hook, installs no signal handler, and
imports no more than this module, ``options``, ``locate``, ``hookspecs`` and ``fixtures`` (pytest
rewrites the asserts of every module of a plugin's distribution as it imports them: each one
costs start-up time). Everything else is imported and registered by :mod:`activation`, once
collection finds an experiment (in each process that collects one; under xdist the controller
learns it from its workers), or at configuration by the options that ask for the store.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

from pytest_experiments.plugin import hookspecs
from pytest_experiments.plugin.fixtures import xp, xp_dir, xp_run  # noqa: F401  (fixtures of this plugin)
from pytest_experiments.plugin.options import Settings, add_options, check_path_tokens, read_settings

if TYPE_CHECKING:
    from pytest_experiments.model import SessionStart
    from pytest_experiments.plugin.store_access import StoreHandle  # noqa: F401  (named in HANDLE_KEY)
    from pytest_experiments.plugin.xdist import XdistController

SETTINGS_KEY = pytest.StashKey[Settings]()
HANDLE_KEY = pytest.StashKey["StoreHandle"]()
#: When this process's session started (configure time): the session itself is made on first use.
STARTED_KEY = pytest.StashKey[float]()
SESSION_KEY = pytest.StashKey["SessionStart"]()
#: Set once the plugin is active in this process (see :mod:`activation`).
ACTIVE_KEY = pytest.StashKey[bool]()
XDIST_KEY = pytest.StashKey["XdistController"]()

# The fixtures that may make a test an experiment (the exact rule: ``identity.is_experiment``).
_RUN_FIXTURES = ("xp", "xp_run", "xp_dir")
_MARKS = ("experiment", "grid")


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
    if config.getoption("help", False) or config.getoption("version", False):
        return
    settings = read_settings(config)
    config.stash[SETTINGS_KEY] = settings
    config.stash[STARTED_KEY] = time.time()
    if settings.selection.status:
        config.option.dist = "no"  # like --collect-only: collect in this process, run nothing
    if settings.shard is not None:
        # --xp-shard: a pure filter on every item (plain tests too), the same in every process.
        from pytest_experiments.plugin.sharding import Sharding

        config.pluginmanager.register(Sharding(settings.shard), "xp-shard")
    if settings.selection.active or settings.comparison.active:
        # The user asked for the store (resume, retry, status, comparisons): check it now.
        from pytest_experiments.plugin.activation import activate

        activate(config)
    elif _starts_xdist_workers(config):
        # The controller does not collect: its workers tell it when they meet an experiment.
        register_xdist_controller(config)


def _starts_xdist_workers(config: pytest.Config) -> bool:
    """Whether this process is an xdist controller about to start workers.

    xdist is recognised by its hooks, whatever name it was loaded under (see :mod:`pytest_experiments.plugin.xdist`,
    not imported here: a session without workers does without it).
    """
    if not hasattr(config.pluginmanager.hook, "pytest_configure_node") or hasattr(config, "workerinput"):
        return False
    return getattr(config.option, "dist", "no") != "no"


def session_of(config: pytest.Config) -> SessionStart:
    """This invocation's session: the controller's (sent to each xdist worker), made on first use."""
    handle = config.stash.get(HANDLE_KEY, None)
    if handle is not None:
        return handle.session  # with the session hooks' metadata, once they ran
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        import os
        import socket

        from pytest_experiments.model import SessionStart
        from pytest_experiments.plugin import xdist
        from pytest_experiments.run import new_id

        fields = xdist.session_fields(config)
        if fields is not None:
            session = SessionStart(**fields)
        else:
            started = config.stash.get(STARTED_KEY, time.time())
            session = SessionStart(new_id(), started, socket.gethostname(), os.getpid(), {})
        config.stash[SESSION_KEY] = session
    return session


def register_xdist_controller(config: pytest.Config) -> XdistController:
    """The controller's end of xdist's channel (once): the session for the workers, and the
    activation when a worker reports an experiment."""
    found = config.stash.get(XDIST_KEY, None)
    if found is None:
        from pytest_experiments.plugin.xdist import XdistController

        def activate_reported() -> None:
            from pytest_experiments.plugin.activation import activate

            activate(config, reported=True)

        settings = config.stash[SETTINGS_KEY]
        found = XdistController(lambda: session_of(config), activate_reported, settings.worker_threads)
        config.pluginmanager.register(found, "xp-xdist")
        config.stash[XDIST_KEY] = found
    return found


def might_be_experiment(item: pytest.Item) -> bool:
    """A cheap necessary condition for :func:`identity.is_experiment`: one of its fixtures or marks."""
    if not isinstance(item, pytest.Function):
        return False
    names = item.fixturenames
    if any(name in names for name in _RUN_FIXTURES):
        return True
    return any(item.get_closest_marker(mark) is not None for mark in _MARKS)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    if ACTIVE_KEY in config.stash or SETTINGS_KEY not in config.stash:
        return
    candidates = [item for item in session.items if might_be_experiment(item)]
    if not candidates:
        return
    from pytest_experiments.plugin.identity import is_experiment

    if any(is_experiment(item) for item in candidates):
        from pytest_experiments.plugin.activation import activate

        activate(config, collected=True, session=session)


@pytest.hookimpl
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Grids are made at collection, before anything is active: the grid module is imported
    # only for a function with a grid mark.
    if metafunc.definition.get_closest_marker("grid") is None:
        return
    from pytest_experiments.plugin.grid import generate_grid

    generate_grid(metafunc)


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(collector: pytest.Module | pytest.Class, name: str, obj: object) -> Any:
    result = yield
    if isinstance(result, list) and len(result) > 1:
        functions = [item for item in result if isinstance(item, pytest.Function)]
        if any(might_be_experiment(item) for item in functions):
            from pytest_experiments.plugin.identity import check_distinct

            check_distinct(functions)
    return result


def pytest_unconfigure(config: pytest.Config) -> None:
    handle = config.stash.get(HANDLE_KEY, None)
    if handle is not None:
        handle.close()
