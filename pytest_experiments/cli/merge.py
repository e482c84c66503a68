"""``pytest-experiments merge SRC... --into DST``: the command over :mod:`pytest_experiments.store.merge`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pytest_experiments.store.server_url import is_server_url


def register(subparsers: Any) -> None:
    """Add the ``merge`` subcommand."""
    from pytest_experiments.cli.common import add_subcommand

    parser = add_subcommand(
        subparsers, "merge", "merge stores written separately (one per node or array task) into one, run folders included",
        "Every source is checked first: a source that is not a store, is damaged or still has runs in flight\n"
        "changes nothing. Merging the same stores again adds nothing.\n\nexamples:\n"
        "  pytest-experiments merge stores/task-* --into .experiments\n"
        "  pytest-experiments merge node1/.experiments node2/.experiments --into postgresql://db/xp "
        "--artifacts /shared/xp-artifacts",
    )  # fmt: skip
    parser.add_argument("sources", nargs="+", metavar="SRC", help="a store folder (or a server store's URL)")
    parser.add_argument("--into", required=True, metavar="DST", help="the store to merge into (created if needed)")
    parser.add_argument(
        "--artifacts", metavar="PATH", help="a server store destination's folder of run folders (as --xp-artifacts)"
    )
    parser.set_defaults(handler=merge_command)


def _location(text: str) -> str | Path:
    return text if is_server_url(text) else Path(text).expanduser().absolute()


def merge_command(args: argparse.Namespace) -> int:
    """Merge, then say what was added."""
    from pytest_experiments.cli.common import CLIError, plural
    from pytest_experiments.store import StoreError
    from pytest_experiments.store.merge import merge, shown

    if args.artifacts is not None and not is_server_url(args.into):
        raise CLIError("--artifacts is for a server store destination: an SQLite store keeps its run folders inside it")
    sources = [_location(source) for source in args.sources]
    for source in sources:
        if isinstance(source, Path) and not source.exists():
            raise CLIError(f"no experiment store at {source}; check the path")
    try:
        report = merge(sources, _location(args.into), artifacts=args.artifacts)
    except StoreError as exc:
        raise CLIError(f"{str(exc).replace('--xp-store', '--into')}; nothing was merged") from None
    print(
        f"merged {plural(report.sources, 'store')} into {shown(args.into)}: {plural(report.added, 'run')} added, "
        f"{report.present} already there; {plural(report.sessions, 'session')}, "
        f"{plural(report.folders, 'run folder')} copied"
    )
    return 0
