"""The report as one HTML file: the page's style and script (package data, written for this
project) and the gathered data, embedded as JSON.

The data sits in a ``<script type="application/json">`` block: the browser never runs it, and
``<``, ``>`` and ``&`` are written as JSON escapes, so no value can close the block or open a
comment. The script builds the page from it with ``textContent`` only (never ``innerHTML``):
every value a user gave (parameters, ids, metric names, tags, notes, error text, file names)
is shown as text.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any

#: The page's HTML around the data: nothing of it comes from a user but the escaped title.
_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="pytest-experiments">
<title>{title}</title>
<style>
{style}
</style>
</head>
<body>
<header><h1 id="title">{title}</h1><p id="subtitle"></p>
<nav aria-label="Report sections"><a href="#">Overview</a> <a href="#results">Results</a>
<a href="#plots">Plots</a> <a id="compare-link" href="#compare">Comparison</a></nav></header>
<main id="main"><noscript>This report needs JavaScript to show its data (embedded in this file).</noscript></main>
<script type="application/json" id="xp-data">{data}</script>
<script>
{script}
</script>
</body>
</html>
"""


def embedded_json(data: Any) -> str:
    """``data`` as JSON that is safe inside a ``<script>`` block: ``<``, ``>`` and ``&`` escaped."""
    text = json.dumps(data, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    # JSON allows any of them escaped; "</script" and "<!--" can then never appear.
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def render(data: dict[str, Any]) -> str:
    """The whole HTML page for gathered ``data`` (see :mod:`.gather`)."""
    return _PAGE.format(
        title=html.escape(str(data.get("title", "Experiment report"))),
        style=_asset("report.css"),
        data=embedded_json(data),
        script=_asset("report.js"),
    )
