"""The ``summary`` subcommand: each metric's mean, spread and 95% interval per group of runs.

Groups are an experiment and its parameters but the ``--over`` ones (``seed`` by default); the
statistics are :mod:`pytest_experiments.summaries`'. Rendered by :mod:`pytest_experiments.tables`
in the formats of ``runs``.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from typing import Any

from pytest_experiments import tables
from pytest_experiments.cli.common import CLIError, add_subcommand, no_runs, opened_store
from pytest_experiments.cli.results import apply_where, select_records
from pytest_experiments.model import STATUSES, RunRecord
from pytest_experiments.summaries import Summary, summarise

_EXAMPLE = """\
Runs group by experiment and every parameter but the --over ones; each metric gets its count,
mean, standard deviation (n - 1) and 95% interval of the mean (Student's t). Passed runs only,
unless --status says otherwise; NaN values are left out.

examples:
  pytest-experiments summary
  pytest-experiments summary --over seed --over fold --experiment test_fit --format markdown
  pytest-experiments summary --metric test.mse --where "params.lr < 0.1" --format latex
"""


def register(subparsers: Any) -> None:
    """Add ``summary``."""
    summary = add_subcommand(
        subparsers, "summary", "mean, standard deviation and confidence interval of each metric over seeds", _EXAMPLE
    )
    summary.add_argument(
        "--over", action="append", metavar="PARAM", help="a parameter to average over (repeatable; default: seed)"
    )
    summary.add_argument("--experiment", action="append", metavar="NAME", help="only this experiment (repeatable)")
    summary.add_argument("--metric", action="append", metavar="NAME", help="only this metric (repeatable)")
    summary.add_argument(
        "--status", action="append", choices=STATUSES, help="runs with this status (repeatable; default: passed)"
    )
    summary.add_argument("--history", action="store_true", help="every run, not only the latest per grid point")
    summary.add_argument("--where", metavar="EXPR", help="a pandas query on the runs table, as for `runs`")
    summary.add_argument(
        "--format", default="text", metavar="FORMAT", help=f"one of {', '.join(tables.FORMATS)} (default: text)"
    )
    summary.set_defaults(handler=summary_command)


def _records(args: argparse.Namespace) -> list[RunRecord]:
    with opened_store(args) as store:
        runs = store.runs(history=args.history)
    if not runs:
        raise no_runs(store)
    records = select_records(runs, args.experiment, args.status or ["passed"])
    if args.where and records:
        from pytest_experiments.frames import runs_frame  # pandas: only for --where

        kept = set(apply_where(runs_frame(records), args.where)["run_id"])
        records = [record for record in records if record.run_id in kept]
    return records


def summary_table(summaries: list[Summary]) -> tables.Table:
    """One row per experiment, group and metric; the group's parameters as ``params.*`` columns."""
    names: list[str] = []
    for summary in summaries:
        names += [name for name in summary.group if name not in names]
    columns = [tables.results_column("experiment", False)]
    columns += [tables.results_column(f"params.{name}", False) for name in names]
    columns += [tables.results_column("metric", False)]
    columns += [tables.results_column(name, True) for name in ("n", "mean", "std", "ci95_low", "ci95_high")]
    rows = [
        [
            summary.experiment, *(tables.plain(summary.group.get(name)) for name in names), summary.metric,
            summary.count, summary.mean, summary.std, summary.low, summary.high,
        ]
        for summary in summaries
    ]  # fmt: skip
    return tables.Table(columns, rows)


def summary_command(args: argparse.Namespace) -> int:
    """``summary``: the statistics table in one of :data:`tables.FORMATS`."""
    if args.format not in tables.FORMATS:
        close = difflib.get_close_matches(args.format, tables.FORMATS, n=1)
        hint = f"did you mean {close[0]}?" if close else f"choose one of {', '.join(tables.FORMATS)}"
        raise CLIError(f"unknown format {args.format!r}; {hint}")
    records = _records(args)
    summaries = summarise(records, set(args.over or ["seed"]), set(args.metric) if args.metric else None)
    if args.metric and not summaries and records:
        known = sorted({metric for record in records for metric in record.metrics})
        raise CLIError(f"no metric {args.metric[0]!r} in the selected runs; metrics: {', '.join(known[:20])}")
    sys.stdout.write(tables.render(summary_table(summaries), args.format))
    return 0
