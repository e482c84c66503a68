"""The ``status`` subcommand: each experiment function's latest runs by status, and the store's size."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from pytest_experiments.cli.common import (
    add_subcommand,
    folder_size,
    no_runs,
    opened_store,
    plural,
    print_lines,
    utc_time,
)
from pytest_experiments.model import STATUSES, RunRecord
from pytest_experiments.tables import Column, human_size, text_table


def register(subparsers: Any) -> None:
    """Add ``status``."""
    status = add_subcommand(
        subparsers, "status", "each experiment's latest runs by status, and the store's size",
        "example:\n  pytest-experiments status --store path/to/.experiments",
    )  # fmt: skip
    status.set_defaults(handler=status_command)


def status_command(args: argparse.Namespace) -> int:
    """``status``: each experiment function's latest runs by status, and the store's size."""
    with opened_store(args) as store:
        latest = store.runs()
        sessions = store.sessions()
        root = store.root
    if not latest:
        raise no_runs(store)
    by_experiment: dict[str, list[RunRecord]] = {}
    for run in latest:
        by_experiment.setdefault(f"{run.module}::{run.experiment}", []).append(run)
    statuses = [status for status in STATUSES if any(run.status == status for run in latest)]
    columns = [
        Column("experiment", shrink="middle"),
        Column("grid points", right=True),
        *(Column(status, right=True) for status in statuses),
        Column("last run (UTC)"),
    ]
    rows = []
    for name, runs in sorted(by_experiment.items()):
        counts = Counter(run.status for run in runs)
        last = max(run.finished_at or run.started_at for run in runs)
        rows.append([name, str(len(runs)), *(str(counts[status]) for status in statuses), utc_time(last)])
    database = store.database_size()
    folders = folder_size(root / "runs")
    recorded = sum(sum(session.counts.values()) for session in sessions)
    print_lines(
        [
            f"store {store.location}",
            f"{plural(recorded, 'run')} in {plural(len(sessions), 'session')}, latest of "
            f"{plural(len(latest), 'grid point')} below; {human_size(database + folders)} on disk "
            f"(database {human_size(database)}, run folders {human_size(folders)})",
            "",
            *text_table(columns, rows),
        ]
    )
    return 0
