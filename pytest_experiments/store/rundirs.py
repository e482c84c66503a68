"""Run folders: ``runs/<experiment>/<run id>`` inside the store, never anywhere else.

A folder's path is built from the experiment's name and the run id only, never from a
parameter value or node id, and it is stored relative to the store root so that a
store moved elsewhere stays valid. The root is the store's folder (SQLite) or a server
store's artefacts folder.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import string
from pathlib import Path

RUNS_DIR = "runs"
#: Files readers derive from the store (``load()``'s frames), each checked against the store's
#: state before it is read: deleting the folder loses nothing. In a store folder (SQLite) or
#: an artefacts root (a server store: one folder in it per store).
SIDE_DIR = "derived"
GITIGNORE = ".gitignore"

#: What a folder name may hold. A run id made of these alone is its own folder name (the
#: plugin's ids always are), told without a regular expression, which costs a run 1-2% of what
#: recording it adds (callgrind); any other is cleaned by ``_UNSAFE``, made of the same set.
_SAFE_CHARACTERS = frozenset(string.ascii_letters + string.digits + "_.-")
_UNSAFE = re.compile(f"[^{re.escape(''.join(sorted(_SAFE_CHARACTERS)))}]+")
_MAX_NAME = 100


@functools.lru_cache(maxsize=4096)  # a few experiment names, asked once per run
def safe_name(name: str) -> str:
    """``name`` reduced to letters, digits, ``_``, ``.`` and ``-``, never ``.``/``..`` or empty."""
    cleaned = _UNSAFE.sub("_", name).strip("._-")[:_MAX_NAME]
    return cleaned or "experiment"


def relative_run_dir(experiment: str, run_id: str) -> str:
    """The run folder of ``run_id``, relative to the store root (POSIX separators)."""
    folder = run_id if run_id and _SAFE_CHARACTERS.issuperset(run_id) else _UNSAFE.sub("_", run_id) or "run"
    return f"{RUNS_DIR}/{safe_name(experiment)}/{folder}"


def inside(root: Path, relative: str) -> Path:
    """``root / relative``, refusing any path that would leave ``root``.

    Containment is decided on the normalised path, as pytest's cache does, not on the
    resolved one: a symlink the user made inside the store (``runs/`` pointing to scratch
    storage) is followed, while ``..`` or an absolute path can still never leave it.
    """
    path = os.path.normpath(os.path.join(os.path.abspath(root), relative))
    if not within(root, path):
        raise ValueError(f"run folder {relative!r} would leave the store {root}")
    return Path(path)


def within(root: Path, path: str | Path) -> bool:
    """Whether ``path`` is ``root`` or below it, as normalised absolute paths (symlinks not followed)."""
    base = os.path.normpath(os.path.abspath(root))
    return os.path.commonpath([base, os.path.normpath(os.path.abspath(path))]) == base


def create_root(root: Path) -> None:
    """Create ``root`` with its ``runs/`` folder and a ``.gitignore`` that ignores everything (the
    store is data, never committed); several processes may do it at once."""
    (root / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    gitignore = root / GITIGNORE
    if not gitignore.exists():
        # Written under a unique name then renamed, so concurrent creators never see half a file.
        partial = root / f"{GITIGNORE}.{os.getpid()}.tmp"
        try:
            partial.write_text("# Created by pytest-experiments: the store is data, never committed.\n*\n")
            os.replace(partial, gitignore)
        except BaseException:
            partial.unlink(missing_ok=True)  # a full disk leaves no half-written file behind
            raise


def remove_run_folder(root: Path, relative: str) -> None:
    """Remove one run folder, refusing anything but a folder strictly inside ``root/runs/``
    (which may be a symlink to scratch storage: compared as normalised paths)."""
    runs_root = inside(root, RUNS_DIR)
    try:
        path = inside(root, relative)
    except ValueError:
        return  # a stored path leaving the store is never followed
    if path != runs_root and path.is_relative_to(runs_root) and path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
