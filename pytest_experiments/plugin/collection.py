"""Watching collection, in every session: the plugin's only hooks before it is turned on.

Its hooks are hooks of the entry-point module (:mod:`pytest_experiments.plugin` imports them, as
it does the fixtures): a plain session registers no object of ours. Imported with the plugin, so
kept small: each hook imports the module that does the work only for a test that needs it. A ``grid`` mark becomes parameters (:mod:`grid`); the grid points of
one function must be distinct (:mod:`identity`); the first experiment collected turns the plugin
on (:mod:`activation`).

PYTEST_DONT_REWRITE (start-up: see :mod:`pytest_experiments.plugin`).
"""

from __future__ import annotations

from typing import Any

import pytest

# The fixtures and marks that may make a test an experiment (the exact rule: ``identity.is_experiment``).
_RUN_FIXTURES = ("xp", "xp_run", "xp_dir")
_MARKS = ("experiment", "grid")


def might_be_experiment(item: pytest.Item) -> bool:
    """A cheap necessary condition for :func:`identity.is_experiment`: one of its fixtures or marks."""
    if not isinstance(item, pytest.Function):
        return False
    names = item.fixturenames
    if any(name in names for name in _RUN_FIXTURES):
        return True
    return any(item.get_closest_marker(mark) is not None for mark in _MARKS)


@pytest.hookimpl
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Grids are made at collection, before anything is active.
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


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    from pytest_experiments.plugin import ACTIVE_KEY, STARTED_KEY  # the package imports this module

    config = session.config
    if ACTIVE_KEY in config.stash or STARTED_KEY not in config.stash:
        return  # on already, or configured for --help / --version
    candidates = [item for item in session.items if might_be_experiment(item)]
    if not candidates:
        return
    from pytest_experiments.plugin.identity import is_experiment

    if any(is_experiment(item) for item in candidates):
        from pytest_experiments.plugin.activation import activate

        activate(config, collected=True, session=session)
