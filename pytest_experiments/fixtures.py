"""The ``xp_run``, ``xp`` and ``xp_dir`` fixtures.

``xp_run`` is the run handle under a name nobody else uses; ``xp`` is the short name for it,
and ``xp_dir`` its folder. Both request ``xp_run``, so a suite whose own ``xp`` fixture
(array-API code names its array namespace so) overrides ours never receives ``xp_run``: its
tests are not experiments (see :func:`pytest_experiments.identity.is_experiment`), and its
experiments still reach their run as ``xp_run``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_experiments.recorder import RUN_KEY
from pytest_experiments.run import Run


@pytest.fixture
def xp_run(request: pytest.FixtureRequest) -> Run:
    """The current experiment run (``xp`` is the same object): log metrics and parameters,
    add metadata, write artefacts. Use this name where ``xp`` means something else in your suite.

    Example::

        def test_train(xp_run, lr):
            for epoch in range(10):
                xp_run.log_metric("loss", train_one_epoch(lr), step=epoch)
            return {"accuracy": 0.93}
    """
    run: Run | None = request.node.stash.get(RUN_KEY, None)
    if run is None:
        pytest.fail("xp: no experiment run for this test (is pytest-experiments disabled?)", pytrace=False)
    return run


@pytest.fixture
def xp(xp_run: Run) -> Run:
    """The current experiment run: log metrics and parameters, add metadata, write artefacts.

    Example::

        def test_train(xp, lr):
            for epoch in range(10):
                xp.log_metric("loss", train_one_epoch(lr), step=epoch)
            (xp.dir / "model.txt").write_text("...")
            return {"accuracy": 0.93}
    """
    return xp_run


@pytest.fixture
def xp_dir(xp_run: Run) -> Path:
    """The run's own folder inside the store (``xp.dir``); files written there are its artefacts."""
    return xp_run.dir
