"""The pytest plugin (``pytest11`` entry point ``experiments``): wiring only. Options, markers, the
fixtures and collection hooks it re-exports, and the registrations that turn the rest on.

Installed but unused, the plugin is invisible: a session whose collection holds no experiment
never looks at the store, runs no collector or session hook, installs no signal handler, and
imports no more than this module, :mod:`options` (declarations only), :mod:`fixtures` and
:mod:`collection`: pytest rewrites the asserts of every module of a plugin's distribution as it
imports them, so each one costs start-up time (``benchmarks/startup.py``). The options are
resolved (:mod:`settings`) and the hook specifications added (:mod:`hookspecs`) on first use.
:mod:`collection` watches collection; everything else is imported and registered by
:mod:`activation`, once collection finds an experiment (in each process that collects one;
under xdist the controller learns it from its workers, through :mod:`xdist`), or at
configuration by the options that ask for the store.

PYTEST_DONT_REWRITE: pytest rewrites the asserts of a plugin's modules as it imports them,
which without its cache (``PYTHONDONTWRITEBYTECODE``, read-only installs) means walking each
module's syntax tree in Python on every run; the start-up modules have no assert to rewrite and
say so with this marker, which pytest reads before the walk.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from pytest_experiments.plugin import options
from pytest_experiments.plugin.collection import (  # noqa: F401  (hooks of this plugin)
    pytest_collection_finish,
    pytest_generate_tests,
    pytest_pycollect_makeitem,
)
from pytest_experiments.plugin.fixtures import xp, xp_dir, xp_run  # noqa: F401  (fixtures of this plugin)

if TYPE_CHECKING:
    from pytest_experiments.plugin.store_access import StoreHandle  # noqa: F401  (named in HANDLE_KEY)

HANDLE_KEY = pytest.StashKey["StoreHandle"]()
#: When this process's session started (configure time): the session itself is made on first use.
#: Its presence also says the plugin is configured (not for ``--help`` / ``--version``).
STARTED_KEY = pytest.StashKey[float]()
#: Set once the plugin is active in this process (see :mod:`activation`).
ACTIVE_KEY = pytest.StashKey[bool]()

#: The hooks of :mod:`hookspecs`, by name: a plugin or conftest that implements one gets the
#: specifications added as it registers (tests/test_unused.py keeps the two in step).
HOOK_NAMES = (
    "pytest_experiments_run_start",
    "pytest_experiments_run_end",
    "pytest_experiments_run_interrupt",
    "pytest_experiments_session_start",
    "pytest_experiments_session_finish",
)


def add_hookspecs(manager: pytest.PytestPluginManager) -> None:
    """Add the ``pytest_experiments_*`` hook specifications (once): when a plugin implements
    one of them, and when the plugin is turned on (before it calls them)."""
    if not getattr(manager.hook, HOOK_NAMES[0], None) or not getattr(manager.hook, HOOK_NAMES[0]).has_spec():
        from pytest_experiments.plugin import hookspecs

        manager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    # The first hook that sees every argument: the ini file's addopts, PYTEST_ADDOPTS and the command line.
    options.check_path_tokens(args)


def pytest_plugin_registered(plugin: object, manager: pytest.PytestPluginManager) -> None:
    # Historic: also called for the plugins registered before this one. A hook implemented
    # before its specification is checked when the specification is added, and pytest
    # refuses unknown hooks only once collection is over: conftests of subfolders are in time.
    if any(hasattr(plugin, name) for name in HOOK_NAMES):
        add_hookspecs(manager)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "experiment(compare=None, continue_runs=False): record each run of this test as an experiment run; "
        "continue_runs=True: --xp-resume continues its interrupted runs as paused ones",
    )
    config.addinivalue_line(
        "markers",
        "grid(name=values, ..., where=None): parametrise over the cartesian product of the axes, "
        "filtered by where(**point); several grid marks give the union of their grids",
    )
    if config.getoption("help", False) or config.getoption("version", False):
        return
    config.stash[STARTED_KEY] = time.time()
    if options.given(config):
        _configure_from_settings(config)
    elif getattr(config.option, "dist", "no") != "no":
        # The controller does not collect: its workers tell it when they meet an experiment.
        from pytest_experiments.plugin import xdist

        if xdist.starts_workers(config):
            xdist.controller(config)


def _configure_from_settings(config: pytest.Config) -> None:
    """The options that act at configuration: a shard, and those that ask for the store."""
    from pytest_experiments.plugin.settings import settings_of

    settings = settings_of(config)
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
    elif getattr(config.option, "dist", "no") != "no":
        from pytest_experiments.plugin import xdist

        if xdist.starts_workers(config):
            xdist.controller(config)
