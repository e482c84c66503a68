"""The ``tag`` and ``note`` subcommands: annotate a run after the fact."""

from __future__ import annotations

import argparse
from typing import Any

from pytest_experiments.cli.common import CLIError, add_subcommand, opened_store
from pytest_experiments.cli.show import find_run
from pytest_experiments.model import tag_problem


def register(subparsers: Any) -> None:
    """Add ``tag`` and ``note``."""
    tag = add_subcommand(
        subparsers, "tag", "set or remove tags of a run (key=value; key= removes the tag)",
        "RUN is a run id, a unique prefix of one, or a node id (its latest run).\n\nexamples:\n"
        "  pytest-experiments tag 20261123-1824 reviewed=yes model=resnet\n"
        "  pytest-experiments tag 'test_fit.py::test_fit[lr=0.1]' reviewed=",
    )  # fmt: skip
    tag.add_argument("run", metavar="RUN", help="a run id, a unique prefix, or a node id")
    tag.add_argument("tags", metavar="KEY=VALUE", nargs="+", type=_tag, help="a tag to set; KEY= removes it")
    tag.set_defaults(handler=tag_command)

    note = add_subcommand(
        subparsers, "note", "add a note to a run",
        'example:\n  pytest-experiments note 20261123-1824 "diverged after step 40: lr too high"',
    )  # fmt: skip
    note.add_argument("run", metavar="RUN", help="a run id, a unique prefix, or a node id")
    note.add_argument("text", metavar="TEXT", help="the note")
    note.set_defaults(handler=note_command)


def _tag(text: str) -> tuple[str, str | None]:
    """``key=value`` -> (key, value); ``key=`` -> (key, None), which removes the tag."""
    key, equals, value = text.partition("=")
    if not equals:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (write KEY= to remove a tag)")
    problem = tag_problem(key, value)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return key, value or None


def tag_command(args: argparse.Namespace) -> int:
    """``tag RUN key=value ...``: merge the tags into the run's, print them all."""
    with opened_store(args, write=True, upgrade=True) as store:
        run_id = find_run(store, args.run)
        tags = store.set_tags(run_id, dict(args.tags))
    shown = ", ".join(f"{key}={value}" for key, value in sorted(tags.items())) or "(none)"
    print(f"run {run_id} tags: {shown}")
    return 0


def note_command(args: argparse.Namespace) -> int:
    """``note RUN TEXT``: add a note to the run."""
    if not args.text.strip():
        raise CLIError("the note is empty; write the note as the last argument, in quotes")
    with opened_store(args, write=True, upgrade=True) as store:
        run_id = find_run(store, args.run)
        count = len(store.run(run_id).notes)
        store.add_note(run_id, args.text)
    print(f"run {run_id}: note {count + 1} added")
    return 0
