"""The ``report`` subcommand: the self-contained HTML report of the store's runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pytest_experiments.cli.common import CLIError, add_subcommand, no_runs, opened_store, plural
from pytest_experiments.cli.results import apply_where, select_records
from pytest_experiments.cli.show import find_run
from pytest_experiments.model import STATUSES, RunRecord
from pytest_experiments.store import Store

_EXAMPLE = """\
One HTML file that opens from disk with no network: a summary per experiment, the results
table (sortable, filterable), plots of each metric against each varied parameter and over
steps, every run's details and files (images embedded, up to 2 MB each), and a side-by-side
comparison of runs selected in the table. RUN is a run id, a unique prefix of one, or a node id.

examples:
  pytest-experiments report -o report.html
  pytest-experiments report --experiment test_train --where "params.lr > 0.01"
  pytest-experiments report --compare 20261123-182434-16a4 20261123-182501-9c2e
"""


def register(subparsers: Any) -> None:
    """Add ``report``."""
    report = add_subcommand(subparsers, "report", "write the runs as one self-contained HTML report", _EXAMPLE)
    report.add_argument("-o", "--output", default="report.html", metavar="FILE", help="default: report.html")
    report.add_argument("--experiment", action="append", metavar="NAME", help="only this experiment (repeatable)")
    report.add_argument("--status", action="append", choices=STATUSES, help="only runs with this status (repeatable)")
    report.add_argument("--where", metavar="EXPR", help='a pandas query, e.g. "params.lr > 0.01"')
    report.add_argument("--history", action="store_true", help="every run, not only the latest per grid point")
    report.add_argument("--compare", nargs="+", metavar="RUN", help="open on these runs side by side (two or more)")
    report.add_argument("--title", default="Experiment report", help="the page's title")
    report.set_defaults(handler=report_command)


def report_command(args: argparse.Namespace) -> int:
    """``report``: write the HTML report and say where."""
    from pytest_experiments.comparison import output_path_problem
    from pytest_experiments.report import write_report

    target = Path(args.output)
    problem = output_path_problem(target)
    if problem is not None:
        raise CLIError(f"{problem}; choose another -o path")
    if args.compare is not None and len(args.compare) < 2:
        raise CLIError("--compare needs two or more runs; give another RUN")
    with opened_store(args) as store:
        records = _records(store, args)
        compare = [find_run(store, ref) for ref in args.compare or ()]
        shown = {record.run_id for record in records}
        # A compared run outside the selection (an older run of the same point) comes along.
        records += [store.run(run_id) for run_id in dict.fromkeys(compare) if run_id not in shown]
        try:
            write_report(target, store, records, compare=compare, title=args.title)
        except OSError as exc:
            raise CLIError(f"cannot write {target}: {exc.strerror or exc}; choose another -o path") from None
    print(f"wrote {target} ({plural(len(records), 'run')})")
    return 0


def _records(store: Store, args: argparse.Namespace) -> list[RunRecord]:
    """The runs the options select: experiment and status, then ``--where`` on their table."""
    runs = store.runs(history=args.history)
    if not runs:
        raise no_runs(store)
    records = select_records(runs, args.experiment, args.status)
    if args.where:
        from pytest_experiments.frames import runs_frame  # pandas: only for --where

        kept = set(apply_where(runs_frame(records), args.where)["run_id"])
        records = [record for record in records if record.run_id in kept]
    if not records and not args.compare:
        raise CLIError("no run matches the selection; loosen --experiment, --status or --where")
    return records
