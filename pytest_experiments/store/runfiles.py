"""What a run folder holds: the artefact registry joined with a listing of the folder.

The registry (rows written with the run) knows how a file was logged (``xp.log_figure``...);
the listing finds everything else a test wrote straight into ``xp.dir`` and is the truth about
what exists now: a registered file since deleted is not listed. Nothing leaving the run folder
is ever listed: links to folders are not followed, and a link to a file counts only when its
target is inside the run folder.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Iterable
from pathlib import Path

from pytest_experiments.model import Artifact


def media_type(name: str) -> str | None:
    """The media type of a file called ``name``, from its suffix (``image/png``), or None."""
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed


def list_artifacts(run_dir: Path, registered: Iterable[Artifact] = ()) -> list[Artifact]:
    """The files below ``run_dir`` (none when it does not exist), sorted by name, each with what
    the registry says of it."""
    known = {artifact.name: artifact for artifact in registered}
    found: list[Artifact] = []
    for name, size in _files(run_dir):
        entry = known.get(name)
        if entry is None:
            found.append(Artifact(name, size, media_type(name)))
        else:
            found.append(entry._replace(size=size))
    return sorted(found)


def _files(run_dir: Path) -> list[tuple[str, int]]:
    """(name, size) of every regular file below ``run_dir`` that stays inside it."""
    if not run_dir.is_dir():
        return []
    real_root = os.path.realpath(run_dir)
    files: list[tuple[str, int]] = []
    for directory, _, names in os.walk(run_dir):  # followlinks=False: a linked folder is not entered
        for file_name in names:
            path = os.path.join(directory, file_name)
            if os.path.islink(path) and os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
                continue  # a link out of the run folder: never shown, never inlined in a report
            try:
                stat = os.stat(path)
            except OSError:
                continue  # removed meanwhile, or a dangling link
            if not os.path.isfile(path):
                continue
            files.append((Path(os.path.relpath(path, run_dir)).as_posix(), stat.st_size))
    return files
