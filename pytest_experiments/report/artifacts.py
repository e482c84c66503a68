"""A run folder's files for the report: listed with size and media type, images embedded.

Self-contained means embedded: an image goes into the page as a ``data:`` URI. A file larger
than :data:`IMAGE_LIMIT`, or any image once the report holds :data:`TOTAL_LIMIT` bytes of
images, is listed by name and size only (the page says it was left out, and why).
"""

from __future__ import annotations

import base64
import contextlib
import mimetypes
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Largest image embedded (bytes on disk).
IMAGE_LIMIT = 2 * 1024 * 1024
#: Bytes of images one report embeds at most; later ones are listed only.
TOTAL_LIMIT = 50 * 1024 * 1024
#: Files listed per run at most (a run folder may hold a dataset's worth of files).
FILES_LIMIT = 200
#: Media types shown inline with ``<img>``: a browser runs no script of an SVG loaded that way.
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml"})


@dataclass
class Budget:
    """Bytes of images still allowed in one report."""

    left: int = TOTAL_LIMIT


def media_type(name: str) -> str:
    """The media type guessed from a file name, ``application/octet-stream`` when unknown."""
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


def run_files(folder: Path, budget: Budget) -> list[dict[str, Any]]:
    """The files below ``folder`` (relative names, sorted): name, size, type, and ``data`` for an embedded image.

    Symbolic links are not followed, so nothing outside the run folder is read.
    """
    files: list[dict[str, Any]] = []
    for relative, size in _walk(folder):
        entry: dict[str, Any] = {"name": relative, "size": size, "type": media_type(relative)}
        if entry["type"] in IMAGE_TYPES:
            _embed(folder / relative, entry, budget)
        files.append(entry)
    return files


def _walk(folder: Path) -> list[tuple[str, int]]:
    """(relative name, size) of the regular files below ``folder``, at most :data:`FILES_LIMIT`."""
    found: list[tuple[str, int]] = []
    pending = [folder]
    while pending and len(found) < FILES_LIMIT:
        current = pending.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue  # no folder (a run that wrote nothing) or unreadable
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):  # removed while listed
                    found.append((Path(entry.path).relative_to(folder).as_posix(), entry.stat().st_size))
    return sorted(found)[:FILES_LIMIT]


def _embed(path: Path, entry: dict[str, Any], budget: Budget) -> None:
    """Put the image at ``path`` into ``entry`` as base64, or say why not."""
    size = int(entry["size"])
    if size > IMAGE_LIMIT:
        entry["omitted"] = f"larger than {IMAGE_LIMIT // (1024 * 1024)} MB"
        return
    if size > budget.left:
        entry["omitted"] = f"the report holds {TOTAL_LIMIT // (1024 * 1024)} MB of images already"
        return
    try:
        content = path.read_bytes()
    except OSError as exc:
        entry["omitted"] = f"unreadable ({exc.strerror})"
        return
    budget.left -= len(content)
    entry["data"] = base64.b64encode(content).decode("ascii")
