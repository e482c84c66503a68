"""The ``watch`` subcommand: the runs in flight, with their latest metrics, elapsed time and
steps, refreshed in place.

Built on the store's reading API only (``Store.runs`` for the runs in flight, ``Store.points``
for their logged points, in one query), so it shows whatever the store holds of a running run:
every point a writer has made visible to readers. In a terminal each snapshot overwrites the
last (ANSI: cursor home, clear to the end of each line and of the screen; no curses needed);
when stdout is not a terminal each snapshot is printed as plain lines, one block per refresh.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from pytest_experiments.cli.common import CLIError, add_subcommand, duration_text, print_lines, store_at, store_path
from pytest_experiments.model import RunRecord, SeriesPoint
from pytest_experiments.tables import Column, terminal_width, text_table

#: ANSI sequences: cursor to the top left; clear to the end of the line; to the end of the screen.
HOME, CLEAR_LINE, CLEAR_BELOW = "\x1b[H", "\x1b[K", "\x1b[J"
DEFAULT_INTERVAL_S = 2.0


def interval_seconds(text: str) -> float:
    """Parse ``--interval``: a number of seconds, at least 0.1."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0.1):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds of at least 0.1, e.g. 2")
    return value


def register(subparsers: Any) -> None:
    """Add ``watch``."""
    watch = add_subcommand(
        subparsers, "watch", "the running runs with their latest metrics, elapsed time and steps, refreshed in place",
        "examples:\n  pytest-experiments watch\n  pytest-experiments watch --experiment test_train --interval 5\n"
        "  pytest-experiments watch --once      # one snapshot, then exit (for scripts)",
    )  # fmt: skip
    watch.add_argument(
        "--experiment",
        action="append",
        metavar="NAME",
        help="only this experiment function, or module::name (repeatable)",
    )
    watch.add_argument("--once", action="store_true", help="print one snapshot and exit (status 0)")
    watch.add_argument(
        "--interval",
        type=interval_seconds,
        default=DEFAULT_INTERVAL_S,
        metavar="S",
        help=f"seconds between refreshes (default {DEFAULT_INTERVAL_S:g})",
    )
    watch.set_defaults(handler=watch_command)


def watch_command(args: argparse.Namespace) -> int:
    """``watch``: one snapshot with ``--once``, else a snapshot every ``--interval`` seconds until Ctrl-C."""
    path = store_path(args)
    if args.once:
        print_lines(snapshot(path, args.experiment, width=terminal_width()))
        return 0
    in_place = sys.stdout.isatty()
    try:
        while True:
            try:
                lines = snapshot(path, args.experiment, width=terminal_width(), interval=args.interval)
            except CLIError as exc:  # no store yet: a watch may start before the sweep does
                lines = [f"xp watch: {exc}", f"(waiting; refreshed every {args.interval:g} s, Ctrl-C to stop)"]
            (write_in_place if in_place else write_plain)(sys.stdout, lines)
            time.sleep(args.interval)
    except KeyboardInterrupt:
        if in_place:
            sys.stdout.write("\n")
        return 0


def write_in_place(stream: TextIO, lines: Sequence[str]) -> None:
    """Overwrite the terminal's screen with ``lines``: no flicker, nothing left of a longer snapshot."""
    stream.write(HOME + "".join(f"{line}{CLEAR_LINE}\n" for line in lines) + CLEAR_BELOW)
    stream.flush()


def write_plain(stream: TextIO, lines: Sequence[str]) -> None:
    """``lines`` as they are, then an empty line between one snapshot and the next."""
    stream.write("".join(f"{line}\n" for line in lines) + "\n")
    stream.flush()


def snapshot(
    path: Path | str, experiments: Sequence[str] | None, *, width: int, interval: float | None = None
) -> list[str]:
    """The lines of one look at the store: the runs in flight, their points read in one query."""
    with store_at(path) as store:
        running = [run for run in store.runs(history=True, status="running") if _selected(run, experiments)]
        points = store.points([run.run_id for run in running]) if running else []
        location = store.location
    return render(running, points, location, time.time(), width=width, interval=interval, experiments=experiments)


def _selected(run: RunRecord, experiments: Sequence[str] | None) -> bool:
    return not experiments or run.experiment in experiments or f"{run.module}::{run.experiment}" in experiments


def render(
    running: Sequence[RunRecord],
    points: Sequence[SeriesPoint],
    location: str,
    now: float,
    *,
    width: int,
    interval: float | None = None,
    experiments: Sequence[str] | None = None,
) -> list[str]:
    """The snapshot's lines: a header, then a row per run in flight (oldest first) with its
    elapsed time, latest step, points logged and each metric's latest value."""
    when = time.strftime("%H:%M:%S", time.gmtime(now))
    which = f" of {', '.join(experiments)}" if experiments else ""
    header = f"xp watch: {len(running)} running{which} in {location} at {when} UTC"
    if interval is not None:
        header += f" (every {interval:g} s, Ctrl-C to stop)"
    if not running:
        return [header, "no run in flight"]
    latest, steps, counts = _latest_points(points)
    continued = any(run.metadata.get("continued") for run in running)
    columns = [
        Column("run", shrink="middle"),
        Column("elapsed", right=True),
        Column("step", right=True),
        Column("points", right=True),
        Column("worker"),
        *([Column("continued", right=True)] if continued else []),
        Column("metrics", shrink="end"),
    ]
    rows = []
    for run in sorted(running, key=lambda run: (run.started_at, run.run_id)):
        metrics = {**run.metrics, **latest.get(run.run_id, {})}
        step = steps.get(run.run_id)
        row = [
            run.node_id,
            duration_text(max(0.0, now - run.started_at)),
            "-" if step is None else str(step),
            str(counts.get(run.run_id, 0)),
            f"{run.worker}@{run.host}",
            *([str(run.metadata.get("continued", 0))] if continued else []),
            "  ".join(f"{name}={_number(value)}" for name, value in sorted(metrics.items())),
        ]
        rows.append(row)
    return [header, *text_table(columns, rows, width)]


def _latest_points(
    points: Sequence[SeriesPoint],
) -> tuple[dict[str, dict[str, float]], dict[str, int], dict[str, int]]:
    """Per run: each metric's latest value (by logging order), the highest step, how many points."""
    latest: dict[str, dict[str, float]] = {}
    seqs: dict[tuple[str, str], int] = {}
    steps: dict[str, int] = {}
    counts: dict[str, int] = {}
    for point in points:
        key = (point.run_id, point.metric)
        if point.seq >= seqs.get(key, -1):
            seqs[key] = point.seq
            latest.setdefault(point.run_id, {})[point.metric] = point.value
        if point.step is not None:
            steps[point.run_id] = max(point.step, steps.get(point.run_id, point.step))
        counts[point.run_id] = counts.get(point.run_id, 0) + 1
    return latest, steps, counts


def _number(value: float) -> str:
    return f"{value:.6g}"
