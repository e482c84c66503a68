"""The value parsers of the ``--xp-*`` options (argparse ``type=``), and of the ini keys that
take the same values. Imported only when such an option or key is given: the start-up module
(:mod:`pytest_experiments.plugin`) names each by a lazy stand-in. Each raises
``argparse.ArgumentTypeError`` with a message that says what a good value looks like.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_experiments.plugin.sharding import Shard


def alpha_level(text: str) -> float:
    """Parse a significance level: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a significance level between 0 and 1, e.g. 0.05")
    return value


def compare_rule(text: str) -> str:
    """Check a comparison rule's syntax when the option is parsed."""
    from pytest_experiments.comparison import RuleError, parse_rule

    try:
        parse_rule(text)
    except RuleError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def lease_seconds(text: str) -> float:
    """Parse a lease: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds, e.g. 300")
    return value


def thread_count(text: str) -> int | str:
    """Parse threads per worker: a positive integer or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of threads: write a positive integer or auto")
    return value


def shard_option(text: str) -> Shard | str:
    """Parse ``--xp-shard`` (see :mod:`sharding`, loaded only for this option)."""
    import pytest_experiments.plugin.sharding as sharding

    return sharding.shard_option(text)
