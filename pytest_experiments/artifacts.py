"""Files a run logs into its folder: names checked, files written, each described as an :class:`Artifact`.

The run handle's ``log_*`` methods (``xp.log_artifact``, ``xp.log_figure``...) call these. A
name is a path inside the run folder (``plots/loss.png``): never absolute, never through ``..``,
never with a backslash or NUL, so no name can place a file outside the run folder. Plotting
libraries are recognised by their module names, never imported here: matplotlib and plotly stay
optional (the ``plots`` extra), and a run that logs no figure never loads them.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_experiments.model import Artifact
from pytest_experiments.store.rundirs import inside
from pytest_experiments.store.runfiles import media_type
from pytest_experiments.values import safe_repr, to_json_value

_PLOTS_EXTRA = "pip install 'pytest-experiments[plots]'"
_MAX_PART = 255  # bytes in one file name on every common filesystem


def checked_name(where: str, name: object) -> str:
    """``name`` as a path inside a run folder (``/`` between folders), or the error saying why not."""
    __tracebackhide__ = True
    if not isinstance(name, str):
        raise TypeError(f"{where}: a name must be a string, not {type(name).__name__}")
    problem = None
    parts = name.split("/")
    if not name or "\0" in name or "\\" in name:
        problem = "must be non-empty, without NUL or backslash"
    elif name.startswith("/"):
        problem = "must be relative to the run folder, not absolute"
    elif any(part in ("", ".", "..") for part in parts):
        problem = "must not hold empty, '.' or '..' parts: it stays inside the run folder"
    elif any(len(part.encode("utf-8", "surrogateescape")) > _MAX_PART for part in parts):
        problem = f"has a part longer than {_MAX_PART} bytes"
    if problem is not None:
        raise ValueError(f"{where}: the name {safe_repr(name)[:120]} {problem}; give a file name such as 'loss.png'")
    return name


def target(run_dir: Path, name: str) -> Path:
    """Where ``name`` goes in ``run_dir`` (its folders created), contained by normalised path."""
    path = inside(run_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def described(path: Path, name: str, kind: str, media: str | None = None) -> Artifact:
    """The registry entry of a file just written."""
    return Artifact(name, path.stat().st_size, media or media_type(name), kind)


def with_suffix(name: str, suffix: str) -> str:
    """``name``, with ``suffix`` added when it has none (``loss`` -> ``loss.png``)."""
    return name if os.path.splitext(name.rsplit("/", 1)[-1])[1] else name + suffix


# -- files, bytes, text, mappings -------------------------------------------------------------


def write_file(run_dir: Path, src: Any, name: str | None) -> Artifact:
    """Copy the file ``src`` (a path) or write ``src`` (bytes) into ``run_dir`` as ``name``."""
    __tracebackhide__ = True
    where = "xp.log_artifact"
    if isinstance(src, (bytes, bytearray, memoryview)):
        if name is None:
            raise TypeError(f"{where}: bytes need a name: xp.log_artifact(data, name='data.bin')")
        checked = checked_name(where, name)
        path = target(run_dir, checked)
        path.write_bytes(bytes(src))
        return described(path, checked, "file")
    if not isinstance(src, (str, os.PathLike)):
        raise TypeError(
            f"{where}: expects a file path or bytes, not {type(src).__name__} "
            "(text: xp.log_text; a mapping: xp.log_dict; a figure: xp.log_figure)"
        )
    source = Path(os.fspath(src))
    if source.is_dir():
        raise ValueError(f"{where}: {source} is a folder; log its files one by one, or copy it into xp.dir")
    if not source.is_file():
        raise FileNotFoundError(f"{where}: no file {source}")
    checked = checked_name(where, source.name if name is None else name)
    path = target(run_dir, checked)
    if not (path.exists() and os.path.samefile(source, path)):  # a file already in place is registered as it is
        shutil.copyfile(source, path)
    return described(path, checked, "file")


def write_text(run_dir: Path, name: str, text: object) -> Artifact:
    """``text`` as UTF-8 in ``name`` (``.txt`` added to a name without a suffix)."""
    __tracebackhide__ = True
    checked = with_suffix(checked_name("xp.log_text", name), ".txt")
    if not isinstance(text, str):
        raise TypeError(f"xp.log_text({name!r}): text must be a str, not {type(text).__name__}")
    path = target(run_dir, checked)
    path.write_text(text, encoding="utf-8", errors="backslashreplace")
    return described(path, checked, "text")


def write_dict(run_dir: Path, name: str, mapping: object) -> Artifact:
    """``mapping`` as indented JSON in ``name`` (``.json`` added to a name without a suffix); values
    JSON cannot hold are written as their ``repr``, as results are."""
    __tracebackhide__ = True
    checked = with_suffix(checked_name("xp.log_dict", name), ".json")
    if not isinstance(mapping, Mapping):
        raise TypeError(f"xp.log_dict({name!r}): expects a mapping, not {type(mapping).__name__}")
    path = target(run_dir, checked)
    path.write_text(json.dumps(to_json_value(dict(mapping)), indent=2) + "\n", encoding="utf-8")
    return described(path, checked, "dict", "application/json")


# -- figures -----------------------------------------------------------------------------------


def _module(value: object) -> str:
    return type(value).__module__ or ""


def write_figure(run_dir: Path, figure: Any, name: str) -> list[Artifact]:
    """A matplotlib Figure or Axes as ``name.png`` and ``name.svg`` (then closed), or a plotly
    figure as the HTML fragment ``name.html``."""
    __tracebackhide__ = True
    checked = checked_name("xp.log_figure", name)
    base, suffix = os.path.splitext(checked)
    if suffix.lower() not in (".png", ".svg", ".html"):
        base = checked
    if _module(figure).startswith("matplotlib"):
        return _matplotlib_figure(run_dir, _figure_of(figure), base)
    if _module(figure).startswith("plotly") and hasattr(figure, "to_html"):
        # A fragment: no plotly.js inside (3 MB a figure); the page showing it brings it.
        html = figure.to_html(full_html=False, include_plotlyjs=False)
        path = target(run_dir, base + ".html")
        path.write_text(html, encoding="utf-8")
        return [described(path, base + ".html", "figure", "text/html")]
    raise TypeError(
        f"xp.log_figure({name!r}): expects a matplotlib Figure or Axes, or a plotly figure, "
        f"not {type(figure).__module__}.{type(figure).__qualname__}"
    )


def _figure_of(figure: Any) -> Any:
    """The figure that can be saved: an Axes' (or a SubFigure's) top-level figure."""
    __tracebackhide__ = True
    for _ in range(10):  # Axes -> SubFigure -> ... -> Figure
        if hasattr(figure, "savefig"):
            return figure
        figure = getattr(figure, "figure", None)
    raise TypeError("xp.log_figure: this matplotlib object belongs to no figure; pass a Figure or an Axes")


def _matplotlib_figure(run_dir: Path, figure: Any, base: str) -> list[Artifact]:
    try:
        written = []
        for suffix in (".png", ".svg"):
            path = target(run_dir, base + suffix)
            figure.savefig(path, format=suffix[1:], bbox_inches="tight")
            written.append(described(path, base + suffix, "figure"))
        return written
    finally:
        # pyplot keeps every figure it made until closed: a sweep would leak them. A figure made
        # without pyplot is not in its registry, and pyplot is not imported for it.
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:
            pyplot.close(figure)


# -- images ------------------------------------------------------------------------------------


def write_image(run_dir: Path, name: str, image: Any) -> Artifact:
    """A PIL image or an array (H x W, H x W x 3 or 4; floats in [0, 1]) as the PNG ``name``."""
    __tracebackhide__ = True
    checked = checked_name("xp.log_image", name)
    if not checked.lower().endswith(".png"):
        checked += ".png"
    if _module(image).startswith("PIL") and hasattr(image, "save"):
        path = target(run_dir, checked)
        image.save(path, format="PNG")
        return described(path, checked, "image", "image/png")
    if not hasattr(image, "__array__") or not hasattr(image, "shape"):
        raise TypeError(f"xp.log_image({name!r}): expects a numpy array or a PIL image, not {type(image).__name__}")
    pixels = _pixels(name, image)
    path = target(run_dir, checked)
    try:
        from PIL import Image
    except ImportError:
        try:
            from matplotlib import image as mpl_image
        except ImportError:
            raise ImportError(
                f"xp.log_image({name!r}): writing an array as PNG needs Pillow or matplotlib: {_PLOTS_EXTRA}"
            ) from None
        mpl_image.imsave(path, pixels, format="png")
    else:
        Image.fromarray(pixels).save(path, format="PNG")
    return described(path, checked, "image", "image/png")


def _pixels(name: str, image: Any) -> Any:
    """``image`` as 8-bit pixels (numpy is there: ``image`` is an array)."""
    __tracebackhide__ = True
    import numpy as np

    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) or array.size == 0:
        raise ValueError(
            f"xp.log_image({name!r}): expects H x W, H x W x 3 or H x W x 4 pixels, not shape {array.shape}"
        )
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        return (np.clip(np.nan_to_num(array), 0.0, 1.0) * 255).round().astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        if array.min() < 0 or array.max() > 255:
            raise ValueError(f"xp.log_image({name!r}): integer pixels must be 0 to 255 (floats: 0.0 to 1.0)")
        return array.astype(np.uint8)
    raise TypeError(f"xp.log_image({name!r}): pixels must be numbers, not {array.dtype}")
