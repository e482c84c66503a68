"""The one table renderer: tables for people (text, markdown, LaTeX) and for programs (CSV, JSON).

Every table pytest-experiments prints goes through here: the command line's, ``--xp-status``,
the baseline comparison (terminal and markdown report) and the results table of ``runs`` and
``export``. :func:`text_table` and :func:`markdown_table` lay out rows of strings;
:func:`render` turns a :class:`Table` of plain values (see
:func:`pytest_experiments.frames.results_table` for a results frame) into one of
:data:`FORMATS`. No pandas here: a frame becomes a :class:`Table` in :mod:`pytest_experiments.frames`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

FORMATS = ("text", "markdown", "csv", "json", "latex")
ELLIPSIS = "..."  # ASCII: a terminal with a non-UTF-8 locale must still print it
_GAP = "  "
# Columns shortened before any is dropped, and the narrowest each may become.
_NODE_ID_MIN = 24
_TEXT_MIN = 12
_UNLIMITED = 1 << 30
_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_LATEX_PATTERN = re.compile("|".join(re.escape(char) for char in _LATEX_SPECIALS))


def terminal_width() -> int:
    """Columns of the terminal (``COLUMNS`` wins; 100 when output is not a terminal)."""
    return max(20, shutil.get_terminal_size((100, 24)).columns)


# -- plain layout -----------------------------------------------------------------------


@dataclass
class Column:
    """One column of a table: its header, whether it holds numbers (aligned right) and how it may shrink."""

    header: str
    right: bool = False
    #: ``"middle"`` (keep both ends, for node ids), ``"end"`` (keep the start) or None (never).
    shrink: str | None = None


def text_table(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int | None = None) -> list[str]:
    """Lines of an aligned table no wider than ``width`` (default: the terminal).

    Too wide, it shortens free-text columns, then long node ids (never below a readable
    share of the width), then drops columns from the right and says which in a last
    line; only when the first columns alone are still too wide does it cut node ids
    further. It never wraps a row. ``width=0``: no limit, nothing shortened.
    """
    width = terminal_width() if width is None else width or _UNLIMITED
    natural = [max([len(column.header), *(len(row[index]) for row in rows)]) for index, column in enumerate(columns)]
    node_floor = max(_NODE_ID_MIN, width * 2 // 5)

    def fitted(kept: int) -> list[int]:
        widths = list(natural)
        _shrink(columns[:kept], widths, width, "end", _TEXT_MIN)
        _shrink(columns[:kept], widths, width, "middle", node_floor)
        return widths

    kept = len(columns)
    while kept > 1 and _total(fitted(kept)[:kept]) > width:
        kept -= 1
    widths = fitted(kept)
    _shrink(columns[:kept], widths, width, "middle", len(ELLIPSIS) + 2)
    widths[0] = min(widths[0], width)  # a single column wider than the terminal is cut
    lines = [_line([column.header for column in columns[:kept]], columns, widths)]
    lines += [_line(row[:kept], columns, widths) for row in rows]
    if kept < len(columns):
        dropped = ", ".join(column.header for column in columns[kept:])
        note = f"({len(columns) - kept} more columns not shown: {dropped}; widen the terminal or choose --columns)"
        lines += textwrap.wrap(note, width, break_on_hyphens=False)
    return lines


def _total(widths: Sequence[int]) -> int:
    return sum(widths) + len(_GAP) * (len(widths) - 1)


def _shrink(columns: Sequence[Column], widths: list[int], width: int, kind: str, floor: int) -> None:
    """Narrow the columns that shrink by ``kind`` (down to ``floor``) until the first ``len(columns)`` fit."""
    for index, column in enumerate(columns):
        excess = _total(widths[: len(columns)]) - width
        if excess <= 0:
            return
        if column.shrink == kind:
            widths[index] = max(min(widths[index], floor), widths[index] - excess)


def _line(cells: Sequence[str], columns: Sequence[Column], widths: Sequence[int]) -> str:
    parts = []
    for cell, column, size in zip(cells, columns, widths, strict=False):
        text = shorten(cell, size, middle=column.shrink == "middle")
        parts.append(text.rjust(size) if column.right else text.ljust(size))
    return _GAP.join(parts).rstrip()


def shorten(text: str, size: int, *, middle: bool = False) -> str:
    """``text`` cut to ``size`` characters with an ellipsis, in the middle or at the end."""
    if len(text) <= size:
        return text
    if size <= len(ELLIPSIS):
        return text[:size]
    room = size - len(ELLIPSIS)
    if not middle:
        return text[:room] + ELLIPSIS
    head = room // 2  # the end, where a node id's parameters are, gets the odd character
    return text[:head] + ELLIPSIS + text[len(text) - (room - head) :]


def common_prefix(node_ids: Sequence[str]) -> str:
    """The prefix all ``node_ids`` share, cut after a ``::`` or ``/`` (a module or folder)."""
    if not node_ids:
        return ""
    # Characters, not path parts: a node id is no path. min and max share what all share.
    first, last = min(node_ids), max(node_ids)
    size = 0
    while size < min(len(first), len(last)) and first[size] == last[size]:
        size += 1
    prefix = first[:size]
    cut = max(prefix.rfind("::") + 2 if "::" in prefix else 0, prefix.rfind("/") + 1)
    prefix = prefix[:cut]
    # Never leave a row with nothing to show.
    return "" if any(len(node_id) == len(prefix) for node_id in node_ids) else prefix


def human_size(size: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


# -- values -----------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A cell as a plain value: missing and NaN -> None, timestamps -> ISO 8601 UTC, numpy -> Python.

    Infinities stay floats (``load()`` has them too); NaN is None because the results frame
    cannot tell it from a missing value (a metric another run lacks is NaN there as well).
    """
    # Duck-typed, so that this per-cell call needs no pandas import.
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return None
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")  # float seconds carry no real nanoseconds
    if isinstance(value, float):
        return None if math.isnan(value) else float(value)
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        return value.item()  # numpy integers and booleans
    return value


def cell(value: Any, column: str) -> str:
    """A cell as people read it: short numbers, timestamps to the second, one line."""
    value = plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3g}" if column == "duration" else f"{value:.6g}"
    if isinstance(value, str) and column in ("started_at", "finished_at"):
        return value[:19].replace("T", " ")
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return " ".join(str(value).split()) if column != "error" else str(value).partition("\n")[0]


@dataclass
class Table:
    """Rows of plain values (None, bool, int, float, str, lists and dicts: see :func:`plain`) under their columns."""

    columns: list[Column]
    rows: list[list[Any]]


def results_column(name: str, numeric: bool) -> Column:
    """A column of the results table: numbers right; node ids shorten in the middle, free text at the end."""
    if name == "node_id":
        return Column(name, numeric, "middle")
    if name in ("status", "started_at", "finished_at") or numeric:
        return Column(name, numeric)
    return Column(name, numeric, "end")


# -- formats ----------------------------------------------------------------------------


def render(table: Table, fmt: str, width: int | None = None) -> str:
    """``table`` in format ``fmt`` (one of :data:`FORMATS`), ending with a newline."""
    if fmt == "text":
        return render_text(table, width)
    renderers = {"markdown": render_markdown, "latex": render_latex, "csv": render_csv, "json": render_json}
    if fmt in renderers:
        return renderers[fmt](table)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _cells(table: Table) -> list[list[str]]:
    names = [column.header for column in table.columns]
    return [[cell(value, name) for value, name in zip(row, names, strict=True)] for row in table.rows]


def render_text(table: Table, width: int | None = None) -> str:
    """An aligned table that fits ``width``; node ids lose their shared module prefix first."""
    if not table.rows:
        return "(no runs match)\n"
    rows = _cells(table)
    lines = []
    names = [column.header for column in table.columns]
    if "node_id" in names:
        index = names.index("node_id")
        prefix = common_prefix([row[index] for row in rows])
        if prefix:
            lines.append(shorten(f"node ids below start with {prefix}", width or terminal_width(), middle=True))
            for row in rows:
                row[index] = row[index][len(prefix) :]
    lines += text_table(table.columns, rows, width)
    return "\n".join(lines) + "\n"


def markdown_escape(text: str) -> str:
    """``text`` for a markdown table cell: ``\\`` and ``|`` escaped, so a cell never splits."""
    return text.replace("\\", "\\\\").replace("|", "\\|")


def markdown_table(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> list[str]:
    """Lines of a GitHub-flavoured markdown table (numbers aligned right), every cell escaped."""
    lines = ["| " + " | ".join(markdown_escape(column.header) for column in columns) + " |"]
    lines.append("| " + " | ".join("---:" if column.right else "---" for column in columns) + " |")
    lines += ["| " + " | ".join(markdown_escape(text) for text in row) + " |" for row in rows]
    return lines


def render_markdown(table: Table) -> str:
    """A GitHub-flavoured markdown table (``|`` escaped, one line per row)."""
    return "\n".join(markdown_table(table.columns, _cells(table))) + "\n"


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (``&`` -> ``\\&``, ``\\`` -> ``\\textbackslash{}``...)."""
    return _LATEX_PATTERN.sub(lambda match: _LATEX_SPECIALS[match.group()], text)


def render_latex(table: Table) -> str:
    """A ``tabular`` environment (plain LaTeX, no package needed), every cell escaped."""
    spec = "".join("r" if column.right else "l" for column in table.columns)
    lines = [f"\\begin{{tabular}}{{{spec}}}", "\\hline"]
    lines.append(" & ".join(latex_escape(column.header) for column in table.columns) + " \\\\")
    lines.append("\\hline")
    lines += [" & ".join(latex_escape(text) for text in row) + " \\\\" for row in _cells(table)]
    lines += ["\\hline", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def json_value(value: Any) -> Any:
    """``value`` as strict JSON holds it: NaN -> null, infinities -> ``"Infinity"`` / ``"-Infinity"``.

    JSON has no infinity; those strings are what ``float()`` in Python and ``Number()`` in
    JavaScript read back. Lists and mappings (parameters) are converted all the way down.
    """
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return value if math.isfinite(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, list):
        return [json_value(item) for item in value]
    if isinstance(value, dict):
        return {key: json_value(item) for key, item in value.items()}
    return value


def _records(table: Table) -> list[dict[str, Any]]:
    names = [column.header for column in table.columns]
    return [{name: plain(value) for name, value in zip(names, row, strict=True)} for row in table.rows]


def render_json(table: Table) -> str:
    """A JSON list with one object per run; missing values and NaN are null, infinities the strings
    ``"Infinity"`` and ``"-Infinity"`` (see :func:`json_value`), timestamps ISO 8601 UTC."""
    return json.dumps(json_value(_records(table)), indent=2, allow_nan=False, default=str) + "\n"


def render_csv(table: Table) -> str:
    """CSV with a header row; missing values and NaN are empty, infinities ``inf`` and ``-inf``
    (as pandas and Python's ``float()`` read them), timestamps ISO 8601 UTC."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(column.header for column in table.columns)
    for record in _records(table):
        writer.writerow("" if value is None else _csv_value(value) for value in record.values())
    return buffer.getvalue()


def _csv_value(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value
