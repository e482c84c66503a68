"""The self-contained HTML report (``pytest-experiments report``, ``pytest --xp-html``).

No pytest and no pandas here: the plugin and the command line both call :func:`write_report`.
One file with everything in it: no network at view time; the script and style are this
package's own files (``report.js``, ``report.css``), the data is embedded as JSON, images as
``data:`` URIs (see :mod:`.artifacts` for the size caps).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pytest_experiments.model import RunRecord
from pytest_experiments.report.gather import gather, select_runs
from pytest_experiments.report.page import render
from pytest_experiments.store import Store

__all__ = ["build_report", "select_runs", "write_report"]


def build_report(
    store: Store, records: Sequence[RunRecord], *, compare: Sequence[str] = (), title: str = "Experiment report"
) -> str:
    """The HTML page showing ``records`` (read further from ``store``); ``compare``: run ids it opens side by side."""
    return render(gather(store, records, compare=compare, title=title))


def write_report(
    path: Path,
    store: Store,
    records: Sequence[RunRecord],
    *,
    compare: Sequence[str] = (),
    title: str = "Experiment report",
) -> None:
    """Write the report of ``records`` to ``path`` atomically (a reader never sees half a page)."""
    from pytest_experiments.comparison import write_text_atomically

    write_text_atomically(path, build_report(store, records, compare=compare, title=title))
