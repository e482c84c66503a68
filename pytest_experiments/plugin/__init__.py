"""The pytest plugin (``pytest11`` entry point ``experiments``): wiring only. Options, hookspecs,
markers, the fixtures and collection hooks it re-exports, and the registrations that turn the
rest on.

Installed but unused, the plugin is invisible: a session whose collection holds no experiment
never looks at the store, runs no collector or session hook, installs no signal handler, and
imports no more than this module, ``options`` (with ``sharding`` and ``store.locate`` for
their option types and defaults), ``hookspecs``, ``fixtures`` and ``collection`` (pytest
rewrites the asserts of every module of a plugin's distribution as it imports them: each one
costs start-up time). :mod:`collection` watches collection; everything else is imported and
registered by :mod:`activation`, once collection finds an experiment (in each process that
collects one; under xdist the controller learns it from its workers, through :mod:`xdist`), or
at configuration by the options that ask for the store.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from pytest_experiments.plugin import hookspecs
from pytest_experiments.plugin.collection import (  # noqa: F401  (hooks of this plugin)
    pytest_collection_finish,
    pytest_generate_tests,
    pytest_pycollect_makeitem,
)
from pytest_experiments.plugin.fixtures import xp, xp_dir, xp_run  # noqa: F401  (fixtures of this plugin)
from pytest_experiments.plugin.options import Settings, add_options, check_path_tokens, read_settings

if TYPE_CHECKING:
    from pytest_experiments.plugin.store_access import StoreHandle  # noqa: F401  (named in HANDLE_KEY)

SETTINGS_KEY = pytest.StashKey[Settings]()
HANDLE_KEY = pytest.StashKey["StoreHandle"]()
#: When this process's session started (configure time): the session itself is made on first use.
STARTED_KEY = pytest.StashKey[float]()
#: Set once the plugin is active in this process (see :mod:`activation`).
ACTIVE_KEY = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    # The first hook that sees every argument: the ini file's addopts, PYTEST_ADDOPTS and the command line.
    check_path_tokens(args)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


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
    elif getattr(config.option, "dist", "no") != "no":
        # The controller does not collect: its workers tell it when they meet an experiment.
        from pytest_experiments.plugin import xdist

        if xdist.starts_workers(config):
            xdist.controller(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    handle = config.stash.get(HANDLE_KEY, None)
    if handle is not None:
        handle.close()
