"""The ``runs`` (alias ``table``) and ``export`` subcommands: the results table, filtered and sorted.

The only part of the command line that imports pandas, and only when run.
"""

from __future__ import annotations

import argparse
import difflib
import fnmatch
import importlib
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_experiments import tables
from pytest_experiments.cli.common import CLIError, add_subcommand, no_runs, opened_store, plural
from pytest_experiments.model import STATUSES, RunRecord

if TYPE_CHECKING:
    import pandas as pd

# Columns the human formats show unless --columns says otherwise (params.* and metrics.* go in between).
_LEAD_COLUMNS = ("node_id", "status")
_TAIL_COLUMNS = ("duration", "started_at", "run_id", "error")


def register(subparsers: Any) -> None:
    """Add ``runs`` (alias ``table``) and ``export``."""
    runs = add_subcommand(
        subparsers, "runs", "the results table: the latest run of each grid point", _RUNS_EXAMPLE, aliases=["table"]
    )
    _add_selection(runs)
    runs.add_argument("--columns", metavar="COLS", help="comma-separated columns or patterns, e.g. node_id,params.*")
    runs.add_argument(
        "--format", default="text", metavar="FORMAT", help=f"one of {', '.join(tables.FORMATS)} (default: text)"
    )
    runs.set_defaults(handler=runs_command)

    export = add_subcommand(
        subparsers, "export", "write the results table with every column to a file",
        "The format follows the suffix: .csv, .json or .parquet (needs pyarrow).\n\nexample:\n"
        "  pytest-experiments export -o results.parquet --history --status passed",
    )  # fmt: skip
    export.add_argument("-o", "--output", required=True, metavar="FILE", help="a .csv, .json or .parquet file")
    _add_selection(export)
    export.set_defaults(handler=export_command)


def _add_selection(parser: argparse.ArgumentParser) -> None:
    """The options ``runs`` and ``export`` share: which runs, in what order."""
    parser.add_argument("--history", action="store_true", help="every run, not only the latest per grid point")
    parser.add_argument(
        "--experiment", action="append", metavar="NAME", help="only this experiment function (repeatable)"
    )
    parser.add_argument("--status", action="append", choices=STATUSES, help="only runs with this status (repeatable)")
    parser.add_argument("--where", metavar="EXPR", help='a pandas query, e.g. "params.lr > 0.01 and metrics.acc > 0.9"')
    parser.add_argument("--sort", metavar="COLS", help="sort by these columns; -COL descends (write --sort=-COL)")


_RUNS_EXAMPLE = """\
text, markdown and latex show node id, status, parameters, metrics, duration, start, run id, error;
csv and json every column. --where is a pandas query; dotted names work as written.

examples:
  pytest-experiments runs --experiment test_train --status passed
  pytest-experiments runs --where "params.lr > 0.01 and metrics.acc > 0.9" --sort=-metrics.acc
  pytest-experiments runs --columns node_id,params.*,metrics.acc --format markdown
  pytest-experiments table --history --format json
"""


_LITERAL = re.compile(r"""('(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"|`[^`]*`)""")
_DOTTED = re.compile(r"(?<![\w.@`])[A-Za-z_]\w*(?:\.\w+)+")


def _unknown_column(name: str, columns: Sequence[str]) -> CLIError:
    close = difflib.get_close_matches(name, columns, n=4, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"columns: {', '.join(columns[:30])}"
    return CLIError(f"unknown column {name!r}; {hint}")


def quote_dotted(expression: str, columns: Sequence[str]) -> str:
    """``params.lr > 0.1`` -> ``\\`params.lr\\` > 0.1``: dotted column names as pandas' query wants them.

    String literals and names already in backticks are left alone; a ``params.`` or
    ``metrics.`` name that is no column is a :class:`CLIError` naming close matches.
    """
    dotted = sorted((name for name in columns if "." in name), key=len, reverse=True)

    def quote(match: re.Match[str]) -> str:
        token = match.group()
        for name in dotted:  # longest first: ``metrics.val.acc`` before ``metrics.val``
            if token == name or token.startswith(name + "."):
                return f"`{name}`{token[len(name) :]}"
        if token.split(".", 1)[0] in ("params", "metrics"):
            raise _unknown_column(token, columns)
        return token  # e.g. ``status.str.startswith``: a column's method

    parts = _LITERAL.split(expression)  # odd indices are the literals
    return "".join(part if index % 2 else _DOTTED.sub(quote, part) for index, part in enumerate(parts))


def apply_where(frame: pd.DataFrame, expression: str) -> pd.DataFrame:
    """Rows of ``frame`` matching a pandas query in which dotted column names work as written."""
    rewritten = quote_dotted(expression, list(frame.columns))
    try:
        selected: pd.DataFrame = frame.query(rewritten)
    except Exception as exc:  # pandas raises anything from SyntaxError to KeyError for a bad query
        raise CLIError(
            f"bad --where {expression!r}: {type(exc).__name__}: {exc}; "
            'write a pandas query such as "params.lr > 0.01 and metrics.acc > 0.9"'
        ) from None
    return selected


def pick_columns(frame: pd.DataFrame, spec: str) -> list[str]:
    """The columns named by ``a,b,params.*`` (shell-style patterns allowed), in that order."""
    names = list(frame.columns)
    chosen: list[str] = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        matches = [name for name in names if fnmatch.fnmatchcase(name, item)]
        if not matches:
            raise _unknown_column(item, names)
        chosen += [name for name in matches if name not in chosen]
    return chosen


def apply_sort(frame: pd.DataFrame, spec: str) -> pd.DataFrame:
    """``frame`` sorted by ``a,-b`` (``-``: descending); missing values last."""
    keys = [part.strip() for part in spec.split(",") if part.strip()]
    names = [key.lstrip("-") for key in keys]
    for name in names:
        if name not in frame.columns:
            raise _unknown_column(name, list(frame.columns))
    try:
        ordered: pd.DataFrame = frame.sort_values(
            names, ascending=[not key.startswith("-") for key in keys], na_position="last", kind="stable"
        )
    except TypeError as exc:
        raise CLIError(f"cannot sort by {spec!r}: {exc}; sort by a column of one type") from None
    return ordered


def default_columns(frame: pd.DataFrame) -> list[str]:
    """What people look for first: node id, status and metrics; then the parameters that the
    node ids do not already show, duration, start, run id and any error.

    A narrow terminal drops columns from the right, so metrics come before parameters, and a
    parameter every node id spells out (``lr=0.1`` in ``test_fit[lr=0.1-seed=0]``) is left out.
    """
    names = _by_first_row(frame)
    metrics = [name for name in names if name.startswith("metrics.")]
    params = [name for name in names if name.startswith("params.") and not _in_node_ids(frame, name)]
    tail = [name for name in _TAIL_COLUMNS if name != "error" or frame["error"].notna().any()]
    return [*_LEAD_COLUMNS, *metrics, *params, *tail]


def _by_first_row(frame: pd.DataFrame) -> list[str]:
    """The columns, those set in earlier rows first: the first experiment's metrics lead."""
    first = {
        name: frame[name].notna().to_numpy().argmax() if frame[name].notna().any() else len(frame)
        for name in frame.columns
    }
    return sorted(frame.columns, key=lambda name: first[name])  # stable: the frame's order otherwise


def grouped(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows grouped by experiment (module, then function name), each group in start order."""
    ordered: pd.DataFrame = frame.sort_values(["module", "experiment"], kind="stable")
    return ordered


def _in_node_ids(frame: pd.DataFrame, column: str) -> bool:
    """Whether each row's node id shows the row's value of ``column`` as ``name=value`` (or lacks it)."""
    name = column.removeprefix("params.")
    for node_id, value in zip(frame["node_id"], frame[column], strict=True):
        shown = tables.cell(value, column)
        if not shown:
            continue  # a parameter of another experiment
        _, bracket, ids = node_id.partition("[")
        padded = f"-{ids.removesuffix(']')}-"  # ``-`` separates the parameters of a grid id
        if not bracket or not any(f"-{name}={text}-" in padded for text in (shown, " ".join(str(value).split()))):
            return False
    return True


def select_records(runs: list[RunRecord], experiments: list[str] | None, statuses: list[str] | None) -> list[RunRecord]:
    """``runs`` of these experiments (names or ``module::name``; an unknown one is a :class:`CLIError`)
    and statuses."""
    if experiments:
        known = {run.experiment for run in runs} | {f"{run.module}::{run.experiment}" for run in runs}
        for name in experiments:
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.5)
                hint = f"did you mean {', '.join(close)}?" if close else "`pytest-experiments status` lists them"
                raise CLIError(f"no experiment {name!r} in the store; {hint}")
        wanted = set(experiments)
        runs = [run for run in runs if run.experiment in wanted or f"{run.module}::{run.experiment}" in wanted]
    if statuses:
        runs = [run for run in runs if run.status in statuses]
    return runs


def results_frame(args: argparse.Namespace) -> pd.DataFrame:
    """The table of ``runs`` and ``export``: latest runs (or ``--history``), filtered and sorted."""
    with opened_store(args) as store:
        runs = store.runs(history=args.history)
    if not runs:
        raise no_runs(store)
    from pytest_experiments.frames import runs_frame  # pandas: only once there is something to show

    frame = runs_frame(select_records(runs, args.experiment, args.status))
    if args.where:
        frame = apply_where(frame, args.where)
    if args.sort:
        frame = apply_sort(frame, args.sort)
    return frame


def runs_command(args: argparse.Namespace) -> int:
    """``runs``: the results table in one of :data:`tables.FORMATS`."""
    if args.format not in tables.FORMATS:
        close = difflib.get_close_matches(args.format, tables.FORMATS, n=1)
        hint = f"did you mean {close[0]}?" if close else f"choose one of {', '.join(tables.FORMATS)}"
        raise CLIError(f"unknown format {args.format!r}; {hint}")
    frame = results_frame(args)
    if args.format not in ("csv", "json") and not args.sort:
        frame = grouped(frame)  # for people; programs get load()'s order
    if args.columns:
        columns = pick_columns(frame, args.columns)
    elif args.format in ("csv", "json"):
        columns = list(frame.columns)  # for programs: everything
    else:
        columns = default_columns(frame)
    from pytest_experiments.frames import results_table

    sys.stdout.write(tables.render(results_table(frame[columns]), args.format))
    return 0


def _require_pyarrow() -> None:
    try:
        importlib.import_module("pyarrow")
    except ImportError:
        raise CLIError(
            "writing .parquet needs pyarrow, which is not installed; install pyarrow (pip install pyarrow) "
            "or export to .csv or .json"
        ) from None


def _parquet_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns mixing value types (a parameter that is a number here, a string there) as JSON text."""
    frame = frame.copy()
    for name in frame.columns:
        if frame[name].dtype != object:
            continue
        values = [tables.plain(value) for value in frame[name]]
        if len({type(value) for value in values if value is not None}) > 1 or any(
            isinstance(value, (list, dict)) for value in values
        ):
            frame[name] = [None if value is None else json.dumps(value, sort_keys=True) for value in values]
    return frame


def export_command(args: argparse.Namespace) -> int:
    """``export -o FILE``: the ``runs`` table with every column, as .csv, .json or .parquet."""
    target = Path(args.output)
    suffix = target.suffix.lower()
    if suffix not in (".csv", ".json", ".parquet"):
        raise CLIError(f"cannot export to {str(target)!r}: the file name must end in .csv, .json or .parquet")
    if suffix == ".parquet":
        _require_pyarrow()  # before loading anything
    frame = results_frame(args)
    try:
        if suffix == ".parquet":
            _parquet_ready(frame).to_parquet(target, index=False)
        else:
            from pytest_experiments.frames import results_table

            text = tables.render(results_table(frame), suffix[1:])
            target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CLIError(f"cannot write {target}: {exc.strerror or exc}; choose another -o path") from None
    print(f"exported {plural(len(frame), 'run')} ({len(frame.columns)} columns) to {target}")
    return 0
