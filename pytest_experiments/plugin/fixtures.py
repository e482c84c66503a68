"""The ``xp`` / ``xp_run`` and ``xp_dir`` fixtures.

``xp_run`` is the run handle under a name nobody else uses, ``xp`` the short name for it.
A suite may define a fixture of one of these names itself (array-API code names its array
namespace ``xp``): a test receiving that one is not an experiment (see
:func:`pytest_experiments.plugin.identity.is_experiment`), and reaches its run as ``xp_run``.
Each reads the run directly: one fixture per test, not a chain.

PYTEST_DONT_REWRITE (start-up: see :mod:`pytest_experiments.plugin`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from pytest_experiments.plugin.recorder import ItemRun
    from pytest_experiments.run import Run

#: The run an item is running, with what the recorder keeps of it: set in its setup, removed
#: once its teardown is reported (the only per-run entry in an item's stash). Defined here,
#: where every session imports it: the recorder is imported once an experiment is collected.
ITEM_RUN_KEY = pytest.StashKey["ItemRun"]()


def _current_run(request: pytest.FixtureRequest) -> Run:
    current: ItemRun | None = request.node.stash.get(ITEM_RUN_KEY, None)
    if current is None:
        pytest.fail("xp: no experiment run for this test (is pytest-experiments disabled?)", pytrace=False)
    return current.run


@pytest.fixture
def xp(request: pytest.FixtureRequest) -> Run:
    """The current experiment run: log metrics and parameters, add metadata, write artefacts.

    Example::

        def test_train(xp, lr):
            for epoch in range(10):
                xp.log_metric("loss", train_one_epoch(lr), step=epoch)
            (xp.dir / "model.txt").write_text("...")
            return {"accuracy": 0.93}
    """
    return _current_run(request)


@pytest.fixture
def xp_run(request: pytest.FixtureRequest) -> Run:
    """The current experiment run, as ``xp``: for suites where ``xp`` is a fixture of their own
    (the array namespace of array-API code)."""
    return _current_run(request)


@pytest.fixture
def xp_dir(request: pytest.FixtureRequest) -> Path:
    """The run's own folder inside the store (``xp.dir``); files written there are its artefacts."""
    return _current_run(request).dir
