"""Run folders: ``runs/<experiment>/<run id>`` inside the store, never anywhere else.

A folder's path is built from the experiment's name and the run id only, never from a
parameter value or node id, and it is stored relative to the store root so that a
store moved elsewhere stays valid.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_MAX_NAME = 100


@functools.lru_cache(maxsize=4096)  # a few experiment names, asked once per run
def safe_name(name: str) -> str:
    """``name`` reduced to letters, digits, ``_``, ``.`` and ``-``, never ``.``/``..`` or empty."""
    cleaned = _UNSAFE.sub("_", name).strip("._-")[:_MAX_NAME]
    return cleaned or "experiment"


def relative_run_dir(experiment: str, run_id: str) -> str:
    """The run folder of ``run_id``, relative to the store root (POSIX separators)."""
    return f"runs/{safe_name(experiment)}/{_UNSAFE.sub('_', run_id) or 'run'}"


def inside(root: Path, relative: str) -> Path:
    """``root / relative``, refusing any path that would leave ``root``."""
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise ValueError(f"run folder {relative!r} would leave the store {root}")
    return path
