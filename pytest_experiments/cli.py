"""The ``pytest-experiments`` command line (also ``python -m pytest_experiments``).

Results from the shell without writing pandas: ``status``, ``runs`` (alias ``table``),
``show``, ``export``, ``sessions`` and ``gc``; ``baseline`` and ``compare`` come from
:mod:`pytest_experiments.compare_cli`. Each subcommand is a ``handler(args) -> int``. A user
mistake or an unusable store raises :class:`CLIError`, which :func:`main` prints as one
line (exit code 2), never as a traceback. ``runs``/``export`` live in :mod:`results_cli` (the only
part importing pandas) and ``show`` in :mod:`show_cli`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pytest_experiments.locate import find_store
from pytest_experiments.records import STATUSES, RunRecord
from pytest_experiments.server_url import is_server_url
from pytest_experiments.store import Store, StoreError
from pytest_experiments.tables import Column, grid, human_size

PROG = "pytest-experiments"
#: Exit code when stdout's reader went away (128 + SIGPIPE, as a shell reports ``yes | head``).
BROKEN_PIPE = 141
# A live run is never deleted under the process recording it.
_GC_STATUSES = tuple(status for status in STATUSES if status != "running")


class CLIError(Exception):
    """A user mistake or an unusable store; the message says what is wrong, then what to do."""


# -- the store --------------------------------------------------------------------------


def store_path(args: argparse.Namespace) -> Path | str:
    """``--store`` (a folder, or a server store's URL, kept as it is), else the store pytest would
    use from the current directory."""
    given = getattr(args, "store", None)
    if given and is_server_url(given):
        return str(given)
    return Path(os.path.expanduser(given)).absolute() if given else find_store()


def opened_store(args: argparse.Namespace, *, write: bool = False) -> contextlib.AbstractContextManager[Store]:
    """The store of ``args``, closed afterwards; a missing or unusable one is a :class:`CLIError`.

    Read-only unless ``write``: reading needs only read permission, creates no file and
    never waits for a process writing the store.
    """
    return store_at(store_path(args), write=write)


@contextlib.contextmanager
def store_at(path: Path | str, *, write: bool = False) -> Iterator[Store]:
    """The store at ``path`` (read-only unless ``write``), closed afterwards; a missing or
    unusable one is a :class:`CLIError`."""
    if isinstance(path, Path) and not path.exists():
        raise CLIError(f"no experiment store at {path}; run some experiments first, or give --store PATH")
    try:
        store = Store.open(path, readonly=not write)
    except StoreError as exc:
        raise CLIError(str(exc).replace("--xp-store", "--store")) from None
    try:
        yield store
    finally:
        store.close()


def no_runs(store: Store) -> CLIError:
    """The error for a store that holds no run."""
    return CLIError(f"the store at {store.location} has no runs yet; run some experiments first")


def plural(count: int, word: str) -> str:
    """``1 run``, ``2 runs``."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def utc_time(timestamp: float | None) -> str:
    """A UTC time to the second."""
    return "" if timestamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(timestamp))


def duration_text(seconds: float | None) -> str:
    """``0.5 s``, ``3 min 07 s``, ``2 h 05 min``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.3g} s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def folder_size(path: Path) -> int:
    """Bytes in the files below ``path`` (0 when it does not exist)."""
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                continue  # removed meanwhile
    return total


def print_lines(lines: Iterable[str]) -> None:
    """Write ``lines`` to stdout in one go."""
    sys.stdout.write("".join(f"{line}\n" for line in lines))


# -- status -----------------------------------------------------------------------------


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
    database = sum(path.stat().st_size for path in root.glob("experiments.sqlite*") if path.is_file())
    folders = folder_size(root / "runs")
    recorded = sum(sum(session.counts.values()) for session in sessions)
    print_lines(
        [
            f"store {store.location}",
            f"{plural(recorded, 'run')} in {plural(len(sessions), 'session')}, latest of "
            f"{plural(len(latest), 'grid point')} below; {human_size(database + folders)} on disk "
            f"(database {human_size(database)}, run folders {human_size(folders)})",
            "",
            *grid(columns, rows),
        ]
    )
    return 0


# -- sessions ---------------------------------------------------------------------------


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
    print_lines(grid(columns, rows))
    return 0


# -- gc ---------------------------------------------------------------------------------


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
        doomed = runs_to_delete(runs, args.keep, args.status or ())
        if not doomed:
            print(f"nothing to delete among {plural(len(runs), 'run')}")
            return 0
        size = human_size(sum(folder_size(run.dir) for run in doomed))
        if not args.dry_run:
            store.delete_runs(run.run_id for run in doomed)
    verb = "would delete" if args.dry_run else "deleted"
    columns = [Column("run"), Column("status"), Column("started (UTC)"), Column("node id", shrink="middle")]
    rows = [[run.run_id, run.status, utc_time(run.started_at), run.node_id] for run in doomed]
    print_lines(
        [
            f"{verb} {plural(len(doomed), 'run')} of {len(runs)} and their run folders ({size}):",
            *grid(columns, rows),
            *(["dry run: nothing was deleted"] if args.dry_run else []),
        ]
    )
    return 0


# -- the parser -------------------------------------------------------------------------


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return number


class Parser(argparse.ArgumentParser):
    """An argument parser whose every (sub)command takes ``--store``, so it may come before or after the subcommand.

    Subparsers inherit the class (argparse's ``parser_class`` defaults to the parent's),
    nested ones (``baseline save``) included. In a subcommand the option defaults to
    ``SUPPRESS``, so that it never overwrites a ``--store`` given before the subcommand.
    """

    def __init__(self, *args: Any, store_default: Any = argparse.SUPPRESS, **kwargs: Any) -> None:
        kwargs.setdefault("conflict_handler", "resolve")  # a subcommand defining --store itself wins
        super().__init__(*args, **kwargs)
        self.add_argument(
            "--store",
            metavar="PATH",
            default=store_default,
            help="the store folder (default: as pytest finds it: PYTEST_XP_STORE, the xp_store ini key, "
            "else .experiments in the rootdir)",
        )


def add_subcommand(subparsers: Any, name: str, summary: str, example: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` shows ``summary`` and ``example``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=summary,
        description=summary[0].upper() + summary[1:] + ".",
        epilog=example,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The ``pytest-experiments`` argument parser with every subcommand."""
    # Imported here: they import this module (CLIError, opened_store...).
    from pytest_experiments import __version__, compare_cli, merge_cli, results_cli, show_cli

    parser = Parser(
        prog=PROG,
        store_default=None,
        description="Look at recorded experiment runs from the shell.",
        epilog="examples:\n  pytest-experiments status\n  pytest-experiments runs --where 'metrics.acc > 0.9'\n"
        "  pytest-experiments show 20261123-1824",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")

    status = add_subcommand(
        subparsers, "status", "each experiment's latest runs by status, and the store's size",
        "example:\n  pytest-experiments status --store path/to/.experiments",
    )  # fmt: skip
    status.set_defaults(handler=status_command)

    results_cli.register(subparsers)
    show_cli.register(subparsers)

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

    compare_cli.register(subparsers)
    merge_cli.register(subparsers)  # issue 10: merge SRC... --into DST
    return parser


def _one_line(message: str) -> str:
    """Whatever the message holds (an SQLite error, a pandas one), the user gets one line."""
    return " ".join(message.split())


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code (2 for a user error, with one line on stderr).

    Output cut short by its reader (``pytest-experiments compare ... | head``) ends the command
    quietly with 141, what a shell reports for a command killed by SIGPIPE: never 1, which
    ``compare`` returns for a regression, and the same for every subcommand.
    """
    try:
        code = _run(argv)
        sys.stdout.flush()  # here, not at exit: a closed pipe must surface in this try
    except BrokenPipeError:
        # Python ignores SIGPIPE; the write failed. stdout goes to devnull so the exit flush cannot fail again.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE
    return code


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version or a usage error: argparse has printed it
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(handler(args))
    except (CLIError, StoreError) as exc:
        message = str(exc).replace("--xp-store", "--store")
    except sqlite3.DatabaseError as exc:
        message = f"cannot read the store database ({exc}); move the damaged store away or give --store PATH"
    except KeyboardInterrupt:
        return 130
    print(f"{PROG}: error: {_one_line(message)}", file=sys.stderr)
    return 2
