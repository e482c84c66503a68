"""A realistic sweep: linear regression trained by gradient descent on synthetic data.

Swept over learning rate x seed x data size (12 runs). Each run logs its training loss
per step (a metric series), times its evaluation, saves the learned weights as an
artefact in its run folder, and returns its test metrics.

    pytest examples/training -n 2
"""

from __future__ import annotations

import numpy as np
import pytest

FEATURES = 5
STEPS = 60


@pytest.fixture
def data(seed, size):
    """Synthetic regression data; it depends on the run's own grid parameters."""
    rng = np.random.default_rng(seed)
    true_weights = rng.normal(size=FEATURES)
    inputs = rng.normal(size=(size, FEATURES))
    targets = inputs @ true_weights + rng.normal(scale=0.1, size=size)
    split = int(0.8 * size)
    return inputs[:split], targets[:split], inputs[split:], targets[split:], true_weights


@pytest.mark.grid(lr=[0.01, 0.1], seed=[0, 1, 2], size=[200, 2000])
def test_linear_regression(xp, data, lr, seed, size):
    train_x, train_y, test_x, test_y, true_weights = data
    weights = np.zeros(FEATURES)
    for step in range(STEPS):
        residual = train_x @ weights - train_y
        weights -= lr * 2 * train_x.T @ residual / len(train_y)
        xp.log_metric("train_loss", float(np.mean(residual**2)), step=step)

    with xp.time_block("evaluate"):
        test_mse = np.mean((test_x @ weights - test_y) ** 2)

    np.save(xp.dir / "weights.npy", weights)  # an artefact, kept with the run
    xp.log_param("train_size", len(train_y))  # a derived parameter
    return {"test_mse": test_mse, "weight_error": np.linalg.norm(weights - true_weights)}
