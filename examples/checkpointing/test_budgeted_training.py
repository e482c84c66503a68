"""Training that outlasts a session: each session trains at most ``EPOCHS_PER_SESSION`` epochs
(a cluster job's time limit, say), checkpoints into the run folder and pauses; ``--xp-resume``
continues the same runs from their checkpoints, their loss curves appended, until done.

    pytest examples/checkpointing              # 4 runs paused at epoch 10
    pytest examples/checkpointing --xp-resume  # the same 4 runs, paused at epoch 20
    pytest examples/checkpointing --xp-resume  # done at epoch 30: passed
    pytest-experiments show <run id>           # its attempts: paused, paused, passed

Interrupted instead (Ctrl-C, SIGTERM), a run is saved by the hook in ``conftest.py`` and, since
the experiment says ``continue_runs=True``, continued the same way.
"""

from __future__ import annotations

import checkpoints
import numpy as np
import pytest

FEATURES = 5
EPOCHS = 30
EPOCHS_PER_SESSION = 10


def make_data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(500, FEATURES))
    return inputs, inputs @ rng.normal(size=FEATURES) + rng.normal(scale=0.1, size=500)


@pytest.mark.experiment(continue_runs=True)
@pytest.mark.grid(lr=[0.02, 0.1], seed=[0, 1])
def test_budgeted_training(xp, lr, seed):
    inputs, targets = make_data(seed)
    # The first attempt starts afresh; a continued one (xp.continued > 0) from its checkpoint.
    epoch, weights = checkpoints.load(xp.dir, FEATURES) if xp.continued else (0, np.zeros(FEATURES))
    stop = min(EPOCHS, epoch + EPOCHS_PER_SESSION)
    while epoch < stop:
        residual = inputs @ weights - targets
        weights = weights - lr * 2 * inputs.T @ residual / len(targets)
        epoch += 1
        xp.log_metric("train_mse", float(np.mean(residual**2)), step=epoch)
        checkpoints.LIVE[xp.run_id] = {"epoch": epoch, "weights": weights}
    checkpoints.LIVE.pop(xp.run_id, None)
    if epoch < EPOCHS:
        checkpoints.save(xp.dir, epoch, weights)
        xp.pause(f"budget of {EPOCHS_PER_SESSION} epochs used up at epoch {epoch}")
    return {"mse": float(np.mean((inputs @ weights - targets) ** 2)), "epochs": epoch}
