"""The ``sessions``, ``gc`` and ``delete`` subcommands: the store's sessions, and deleting runs.

``gc`` deletes by age (``--keep N``) or status, ``delete`` by run, session, status or a query;
both never delete a run in flight (``running`` by the liveness rules), and print and delete
through :func:`delete_listed`.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

from pytest_experiments.cli.common import (
    CLIError,
    add_subcommand,
    duration_text,
    folder_size,
    no_runs,
    opened_store,
    plural,
    print_lines,
    utc_time,
)
from pytest_experiments.cli.results import apply_where, select_records
from pytest_experiments.cli.show import find_run
from pytest_experiments.model import STATUSES, RunRecord
from pytest_experiments.store import Store
from pytest_experiments.tables import Column, human_size, text_table

# A live run is never deleted under the process recording it.
_GC_STATUSES = tuple(status for status in STATUSES if status != "running")


def register(subparsers: Any) -> None:
    """Add ``sessions`` and ``gc``."""
    sessions = add_subcommand(
        subparsers, "sessions", "one line per pytest session: when, how long, runs by status, git commit",
        "example:\n  pytest-experiments sessions",
    )  # fmt: skip
    sessions.set_defaults(handler=sessions_command)

    gc = add_subcommand(
        subparsers, "gc", "delete old or unwanted runs and their run folders",
        "With both options, runs chosen by either go.\n\nexamples:\n"
        "  pytest-experiments gc --keep 3 --dry-run\n  pytest-experiments gc --status interrupted --status error",
    )  # fmt: skip
    gc.add_argument("--keep", type=_positive, metavar="N", help="keep the N latest runs of each grid point")
    gc.add_argument("--status", action="append", choices=_GC_STATUSES, help="delete runs with this status (repeatable)")
    gc.add_argument("--dry-run", action="store_true", help="only print what would be deleted")
    gc.set_defaults(handler=gc_command)

    delete = add_subcommand(
        subparsers, "delete", "delete chosen runs and their run folders (never a run in flight)",
        "Runs matching every option given go (of all runs, not only the latest per grid point).\n\n"
        "examples:\n  pytest-experiments delete 20261123-1824 20261123-1901 --dry-run\n"
        "  pytest-experiments delete --session 20261123-182434-16a4 --status failed\n"
        "  pytest-experiments delete --where 'params.lr > 0.5'",
    )  # fmt: skip
    delete.add_argument(
        "runs", metavar="RUN", nargs="*", help="a run id, a unique prefix, or a node id (its latest run)"
    )
    delete.add_argument("--session", action="append", metavar="ID", help="runs of this session (repeatable)")
    delete.add_argument("--status", action="append", choices=_GC_STATUSES, help="runs with this status (repeatable)")
    delete.add_argument("--experiment", action="append", metavar="NAME", help="runs of this experiment (repeatable)")
    delete.add_argument("--where", metavar="EXPR", help='a pandas query on the runs table, e.g. "params.lr > 0.5"')
    delete.add_argument("--dry-run", action="store_true", help="only print what would be deleted")
    delete.set_defaults(handler=delete_command)


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return number


def sessions_command(args: argparse.Namespace) -> int:
    """``sessions``: one line per pytest session, oldest first."""
    with opened_store(args) as store:
        sessions = store.sessions()
    if not sessions:
        raise no_runs(store)
    rows = []
    for session in sessions:
        counts = ", ".join(f"{session.counts[status]} {status}" for status in STATUSES if session.counts.get(status))
        git = session.metadata.get("git")
        commit = str(git.get("commit") or "")[:7] if isinstance(git, dict) else ""
        if commit and isinstance(git, dict) and git.get("dirty"):
            commit += " (dirty)"
        elapsed = None if session.finished_at is None else session.finished_at - session.started_at
        exitstatus = "" if session.exitstatus is None else str(session.exitstatus)
        rows.append([
            utc_time(session.started_at), duration_text(elapsed), str(sum(session.counts.values())), counts or "-",
            exitstatus, commit, session.session_id,
        ])  # fmt: skip
    columns = [
        Column("started (UTC)"),
        Column("took", right=True),
        Column("runs", right=True),
        Column("by status", shrink="end"),
        Column("exit", right=True),
        Column("git"),
        Column("session"),
    ]
    print_lines(text_table(columns, rows))
    return 0


def runs_to_delete(runs: list[RunRecord], keep: int | None, statuses: Iterable[str]) -> list[RunRecord]:
    """Runs beyond the ``keep`` latest of their grid point, and runs with one of ``statuses``.

    ``runs`` is oldest first; a ``running`` run (still in flight) is never chosen.
    """
    doomed = {run.run_id for run in runs if run.status in set(statuses)}
    if keep is not None:
        points: dict[tuple[str, str, str], list[RunRecord]] = {}
        for run in runs:
            points.setdefault((run.module, run.experiment, run.param_hash), []).append(run)
        for point_runs in points.values():
            ordered = sorted(point_runs, key=lambda run: run.started_at)
            doomed.update(run.run_id for run in ordered[: max(0, len(ordered) - keep)])
    return [run for run in runs if run.run_id in doomed and run.status != "running"]


def gc_command(args: argparse.Namespace) -> int:
    """``gc``: delete old runs (``--keep N``) and runs by status, with their folders."""
    if args.keep is None and not args.status:
        raise CLIError("say what to delete: --keep N (latest runs per grid point) and/or --status STATUS")
    with opened_store(args, write=True) as store:
        runs = store.runs(history=True)
        if not runs:
            raise no_runs(store)
        return delete_listed(store, runs, runs_to_delete(runs, args.keep, args.status or ()), args.dry_run)


def delete_command(args: argparse.Namespace) -> int:
    """``delete``: the runs matching every criterion given, with their folders; never one in flight."""
    if not (args.runs or args.session or args.status or args.experiment or args.where):
        raise CLIError("say what to delete: run ids, --session ID, --status STATUS, --experiment NAME or --where EXPR")
    with opened_store(args, write=True) as store:
        runs = store.runs(history=True)
        if not runs:
            raise no_runs(store)
        chosen = _matching(store, runs, args)
        in_flight = [run for run in chosen if run.status == "running"]
        if in_flight:
            print(
                f"left alone: {plural(len(in_flight), 'run')} in flight ({', '.join(r.run_id for r in in_flight[:3])})"
            )
        return delete_listed(store, runs, [run for run in chosen if run.status != "running"], args.dry_run)


def _matching(store: Store, runs: list[RunRecord], args: argparse.Namespace) -> list[RunRecord]:
    """The runs every given criterion of ``delete`` selects."""
    chosen = runs
    if args.runs:
        ids = {find_run(store, ref) for ref in args.runs}
        chosen = [run for run in chosen if run.run_id in ids]
    if args.session:
        known = {run.session_id for run in runs}
        unknown = [session for session in args.session if session not in known]
        if unknown:
            raise CLIError(f"no session {unknown[0]!r} in the store; `pytest-experiments sessions` lists them")
        chosen = [run for run in chosen if run.session_id in set(args.session)]
    chosen = select_records(chosen, args.experiment, args.status)
    if args.where and chosen:
        from pytest_experiments.frames import runs_frame  # pandas: only for --where

        kept = set(apply_where(runs_frame(chosen), args.where)["run_id"])
        chosen = [run for run in chosen if run.run_id in kept]
    return chosen


def delete_listed(store: Store, runs: list[RunRecord], doomed: list[RunRecord], dry_run: bool) -> int:
    """Delete ``doomed`` (of ``runs``) with their folders, or with ``dry_run`` only say what would go."""
    if not doomed:
        print(f"nothing to delete among {plural(len(runs), 'run')}")
        return 0
    size = human_size(sum(folder_size(run.dir) for run in doomed))
    if not dry_run:
        store.delete_runs(run.run_id for run in doomed)
    verb = "would delete" if dry_run else "deleted"
    columns = [Column("run"), Column("status"), Column("started (UTC)"), Column("node id", shrink="middle")]
    rows = [[run.run_id, run.status, utc_time(run.started_at), run.node_id] for run in doomed]
    print_lines(
        [
            f"{verb} {plural(len(doomed), 'run')} of {len(runs)} and their run folders ({size}):",
            *text_table(columns, rows),
            *(["dry run: nothing was deleted"] if dry_run else []),
        ]
    )
    return 0
