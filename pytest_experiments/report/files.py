"""A run's files for the report: each listed with its size, media type and how it was logged;
images embedded.

Self-contained means embedded: an image goes into the page as a ``data:`` URI. A file larger
than :data:`IMAGE_LIMIT`, or any image once the report holds :data:`TOTAL_LIMIT` bytes of
images, is listed by name and size only, and the page says why. The listing itself is the
store's (``Store.run(...).artifacts``): it never leaves the run folder.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_experiments.model import Artifact

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


def has_files(folder: Path) -> bool:
    """Whether ``folder`` exists and holds anything (most runs of a sweep write nothing)."""
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is not None
    except OSError:
        return False


def files_data(folder: Path, artifacts: Sequence[Artifact], budget: Budget) -> list[dict[str, Any]]:
    """The run's files as the page reads them: ``name``, ``size``, ``type``, ``kind``, and
    ``data`` (base64) for an embedded image or ``omitted`` saying why it is not."""
    files: list[dict[str, Any]] = []
    pngs = {artifact.name[: -len(".png")] for artifact in artifacts if artifact.name.endswith(".png")}
    for artifact in artifacts[:FILES_LIMIT]:
        entry: dict[str, Any] = {
            "name": artifact.name,
            "size": artifact.size,
            "type": artifact.media_type or "application/octet-stream",
            "kind": artifact.kind,
        }
        if entry["type"] == "image/svg+xml" and artifact.name[: -len(".svg")] in pngs:
            entry["omitted"] = "the PNG of the same figure is shown"  # xp.log_figure saves both
        elif entry["type"] in IMAGE_TYPES:
            _embed(folder / artifact.name, entry, budget)
        files.append(entry)
    if len(artifacts) > FILES_LIMIT:
        files.append(
            {"name": f"... and {len(artifacts) - FILES_LIMIT} more files", "size": None, "type": "", "kind": None}
        )
    return files


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
