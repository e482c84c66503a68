"""Checkpoints of the budgeted training example: written into the run folder (``xp.dir``), read
back when ``--xp-resume`` continues the run.

``LIVE`` holds the latest state of each run in flight in this process, by run id: what the
interrupt hook of ``conftest.py`` saves when Ctrl-C or SIGTERM (a cluster's time limit) stops it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

LIVE: dict[str, dict[str, Any]] = {}


def save(folder: Path, epoch: int, weights: np.ndarray) -> None:
    """Write the checkpoint; the small JSON file last and by rename, so a checkpoint is whole or absent."""
    np.save(folder / "weights.npy", weights)
    partial = folder / "checkpoint.json.tmp"
    partial.write_text(json.dumps({"epoch": epoch}))
    os.replace(partial, folder / "checkpoint.json")


def load(folder: Path, features: int) -> tuple[int, np.ndarray]:
    """The epoch and weights of the last checkpoint in ``folder``; epoch 0 and zeros without one."""
    marker = folder / "checkpoint.json"
    if not marker.exists():
        return 0, np.zeros(features)
    return int(json.loads(marker.read_text())["epoch"]), np.load(folder / "weights.npy")
