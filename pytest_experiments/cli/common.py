"""What every subcommand of ``pytest-experiments`` shares: its error, its store, its parser, its wording."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pytest_experiments.store import Store, StoreError, store_exists
from pytest_experiments.store.locate import artifacts_for, find_store
from pytest_experiments.store.server_url import is_server_url

PROG = "pytest-experiments"


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


def opened_store(
    args: argparse.Namespace, *, write: bool = False, upgrade: bool = False
) -> contextlib.AbstractContextManager[Store]:
    """The store of ``args``, closed afterwards; a missing or unusable one is a :class:`CLIError`.

    Read-only unless ``write``: reading needs only read permission, creates no file and
    never waits for a process writing the store. ``upgrade`` (with ``write``): an existing
    store of an older schema is migrated, as a recording session would (tags and notes need it).
    """
    return store_at(store_path(args), write=write, upgrade=upgrade)


@contextlib.contextmanager
def store_at(path: Path | str, *, write: bool = False, upgrade: bool = False) -> Iterator[Store]:
    """The store at ``path`` (read-only unless ``write``; migrated with ``upgrade``), closed
    afterwards; a missing or unusable one is a :class:`CLIError`."""
    if isinstance(path, Path) and not path.exists():
        raise CLIError(f"no experiment store at {path}; run some experiments first, or give --store PATH")
    try:
        # create= migrates; it never creates a store here: only one that exists is opened so.
        create = write and upgrade and store_exists(path)
        store = Store.open(path, readonly=not write, create=create, artifacts=artifacts_for(path))
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


# -- the parser -------------------------------------------------------------------------


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
