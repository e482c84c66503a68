"""A CI-checked experiment suite: two tiny classifiers over a grid of settings and seeds.

Every run is deterministic (numpy's seeded generator), so the committed ``baseline.json``
can be reproduced exactly; the tolerances in ``pytest.ini`` absorb the last-digit
differences between machines. In CI (see ``experiments-workflow.yml``)::

    cd examples/ci
    pytest . -n 2 --xp-baseline=baseline.json --xp-report-md=report.md

After an intended change, refresh the baseline and commit it with the change::

    pytest . --xp-save-baseline=baseline.json
"""

from __future__ import annotations

import numpy as np
import pytest

TRAIN, TEST = 300, 200


def blobs(seed: int, size: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping Gaussian classes in 2D (labels 0 and 1)."""
    rng = np.random.default_rng([seed, offset])
    labels = rng.integers(0, 2, size=size)
    centres = np.array([[-1.0, -0.5], [1.0, 0.5]])
    points = centres[labels] + rng.normal(scale=1.2, size=(size, 2))
    return points, labels


def log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    p = np.clip(probabilities, 1e-12, 1 - 1e-12)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


@pytest.mark.grid(lr=[0.05, 0.5], seed=[0, 1, 2])
def test_logistic_regression(lr, seed):
    train_x, train_y = blobs(seed, TRAIN, 0)
    test_x, test_y = blobs(seed, TEST, 1)
    weights, bias = np.zeros(2), 0.0
    for _ in range(100):
        p = 1 / (1 + np.exp(-(train_x @ weights + bias)))
        weights -= lr * train_x.T @ (p - train_y) / TRAIN
        bias -= lr * float(np.mean(p - train_y))
    p = 1 / (1 + np.exp(-(test_x @ weights + bias)))
    return {"accuracy": float(np.mean((p > 0.5) == test_y)), "log_loss": log_loss(p, test_y)}


# A rule of its own, which wins over pytest.ini's for this experiment: k-NN accuracy is noisier.
@pytest.mark.experiment(compare={"accuracy": "higher 0.03"})
@pytest.mark.grid(k=[1, 15], seed=[0, 1, 2])
def test_nearest_neighbours(k, seed):
    train_x, train_y = blobs(seed, TRAIN, 0)
    test_x, test_y = blobs(seed, TEST, 1)
    distances = np.linalg.norm(test_x[:, None, :] - train_x[None, :, :], axis=2)
    nearest = np.argsort(distances, axis=1)[:, :k]
    p = train_y[nearest].mean(axis=1)
    return {"accuracy": float(np.mean((p > 0.5) == test_y)), "log_loss": log_loss(p, test_y)}
