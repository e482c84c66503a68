"""The ``pytest-experiments`` command line (also ``python -m pytest_experiments``).

Results from the shell without writing pandas, one module per command group: ``status``
(:mod:`.status`), ``runs`` (alias ``table``) and ``export`` (:mod:`.results`, the only part
that imports pandas, and only when run), ``summary`` (:mod:`.summary`), ``show`` (:mod:`.show`),
``tag`` and ``note`` (:mod:`.annotate`), ``sessions``, ``gc`` and ``delete`` (:mod:`.sessions`),
``baseline`` and ``compare`` (:mod:`.compare`), ``merge`` (:mod:`.merge`), ``report`` (:mod:`.report`), ``watch``
(:mod:`.watch`). Each module has a
``register(subparsers)``; each subcommand is a ``handler(args) -> int``. A user mistake or an
unusable store raises :class:`~pytest_experiments.cli.common.CLIError`, which :func:`main`
prints as one line (exit code 2), never as a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from pytest_experiments import __version__
from pytest_experiments.cli import annotate, compare, merge, report, results, sessions, show, status, summary, watch
from pytest_experiments.cli.common import PROG, CLIError, Parser
from pytest_experiments.store import StoreError, is_database_error

#: Exit code when stdout's reader went away (128 + SIGPIPE, as a shell reports ``yes | head``).
BROKEN_PIPE = 141


def build_parser() -> argparse.ArgumentParser:
    """The ``pytest-experiments`` argument parser with every subcommand, in the order ``--help`` lists them."""
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
    for command in (status, watch, results, summary, show, annotate, sessions, compare, merge, report):
        command.register(subparsers)
    return parser


def _one_line(message: str) -> str:
    """Whatever the message holds (a database error, a pandas one), the user gets one line."""
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
    except Exception as exc:
        if not is_database_error(exc):
            raise
        message = f"cannot read the store database ({exc}); move the damaged store away or give --store PATH"
    except KeyboardInterrupt:
        return 130
    print(f"{PROG}: error: {_one_line(message)}", file=sys.stderr)
    return 2
