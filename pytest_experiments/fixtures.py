"""The ``xp`` and ``xp_dir`` fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_experiments.recorder import RUN_KEY
from pytest_experiments.run import Run


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
    run: Run | None = request.node.stash.get(RUN_KEY, None)
    if run is None:
        pytest.fail("xp: no experiment run for this test (is pytest-experiments disabled?)", pytrace=False)
    return run


@pytest.fixture
def xp_dir(xp: Run) -> Path:
    """The run's own folder inside the store (``xp.dir``); files written there are its artefacts."""
    return xp.dir
