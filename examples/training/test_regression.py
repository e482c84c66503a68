"""A realistic sweep: linear regression trained by gradient descent on synthetic data.

Swept over learning rate x seed x data size (12 runs). Each run logs its training loss
per step (a metric series), times its evaluation, saves the learned weights as an
artefact in its run folder, logs its loss curve as a figure (when matplotlib is installed:
the ``plots`` extra) and its configuration, tags itself, and returns its test metrics.

    pytest examples/training -n 2
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

FEATURES = 5
STEPS = 60
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


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
    xp.tags["regime"] = "small-data" if size < 1000 else "large-data"
    weights = np.zeros(FEATURES)
    losses = []
    for step in range(STEPS):
        residual = train_x @ weights - train_y
        weights -= lr * 2 * train_x.T @ residual / len(train_y)
        losses.append(float(np.mean(residual**2)))
        xp.log_metric("train_loss", losses[-1], step=step)

    with xp.time_block("evaluate"):
        test_mse = np.mean((test_x @ weights - test_y) ** 2)

    np.save(xp.dir / "weights.npy", weights)  # an artefact, kept with the run
    xp.log_dict("config", {"lr": lr, "seed": seed, "size": size, "steps": STEPS})
    if HAS_MATPLOTLIB:
        log_loss_curve(xp, losses, lr)
    xp.log_param("train_size", len(train_y))  # a derived parameter
    return {"test_mse": test_mse, "weight_error": np.linalg.norm(weights - true_weights)}


def log_loss_curve(xp, losses, lr):
    """The loss curve as loss_curve.png and .svg in the run folder (the figure is closed after)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4, 3))
    axes = figure.add_subplot()
    axes.semilogy(losses)
    axes.set(xlabel="step", ylabel="train loss", title=f"lr={lr}")
    xp.log_figure(figure, "loss_curve")
