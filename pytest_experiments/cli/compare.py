"""The ``baseline`` and ``compare`` subcommands of ``pytest-experiments``: a stored session
against a baseline file, or two sessions against each other, after the fact.

The command-line side only: rules, baseline files and verdicts are
:mod:`pytest_experiments.comparison` (shared with ``--xp-baseline``, ``plugin/baseline.py``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from pytest_experiments.cli.common import CLIError, opened_store, store_at
from pytest_experiments.comparison import (
    BaselineError,
    Entry,
    Rule,
    RuleError,
    compare_entries,
    markdown_report,
    noise_parameter_problem,
    parse_rules,
    read_baseline,
    read_saved_baseline,
    save_baseline,
    text_report,
    unreported_line,
    unreported_rules,
)
from pytest_experiments.model import REGRESSED
from pytest_experiments.store import locate, store_exists

_BASELINE_EXAMPLE = """FILE is merged into: its entries of grid points without a passed run here are kept.

example:
  pytest-experiments baseline save experiments/baseline.json --experiment test_train
"""
_COMPARE_EXAMPLE = """BASE and NEW are each a baseline file, a store folder (its latest runs) or a
session id (or a unique prefix of one) in the store. NEW defaults to the store's latest runs.
Rules come from --rule, else the xp_compare ini key. A metric with a rule that is NaN or
missing in NEW regressed; baseline entries NEW has no run of are listed as "not run".
Exit code 1 when anything regressed, 0 otherwise, 2 for an error, 141 when the reader
of the output went away (| head).

examples:
  pytest-experiments compare experiments/baseline.json
  pytest-experiments compare baseline.json --rule "acc higher 0.01" --rule "loss lower 5%" --format markdown
  pytest-experiments compare 20261101-120000-3f2a 20261102-090000-77b1 --over seed
"""


def register(subparsers: Any) -> None:
    """Add ``baseline save`` and ``compare`` to the command line."""
    baseline = subparsers.add_parser(
        "baseline",
        help="write a baseline file from the latest passed runs",
        epilog=_BASELINE_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = baseline.add_subparsers(dest="baseline_action", required=True, metavar="save")
    save = actions.add_parser(
        "save",
        help="write FILE from the latest passed run of each grid point",
        epilog=_BASELINE_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    save.add_argument("file", type=Path, metavar="FILE")
    save.add_argument("--experiment", action="append", help="only this experiment function (repeatable)")
    save.set_defaults(handler=save_baseline_command)

    compare = subparsers.add_parser(
        "compare",
        help="compare two sets of runs metric by metric; exit 1 on a regression",
        epilog=_COMPARE_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    compare.add_argument("base", metavar="BASE")
    compare.add_argument("new", metavar="NEW", nargs="?")
    compare.add_argument(
        "--rule", action="append", default=[], metavar="RULE", help="e.g. 'acc higher 0.01' (repeatable)"
    )
    compare.add_argument(
        "--over", action="append", default=[], metavar="PARAM", help="judge groups of seeds (repeatable)"
    )
    compare.add_argument("--alpha", type=float, default=0.05, help="significance level for --over (default 0.05)")
    compare.add_argument("--format", choices=("text", "markdown"), default="text")
    compare.set_defaults(handler=compare_command)


def save_baseline_command(args: argparse.Namespace) -> int:
    """``baseline save FILE``: merge the latest passed run of each grid point into FILE."""
    try:
        read_saved_baseline(args.file)  # before reading the store: a bad FILE is the first thing to say
    except BaselineError as exc:
        raise CLIError(f"cannot save the baseline: {exc}") from None
    with opened_store(args) as store:
        runs = store.runs(experiment=args.experiment, status="passed")
    if not runs:
        raise CLIError("no passed run to save; run the experiments first (or check --experiment)")
    try:
        update = save_baseline(args.file, (Entry.of_run(run) for run in runs))
    except (OSError, BaselineError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CLIError(f"cannot save the baseline {args.file}: {reason}; choose another FILE") from None
    print(update.summary())
    return 0


def _entries(source: str, args: argparse.Namespace) -> tuple[list[Entry], str]:
    """The runs named by ``source`` (file, store folder or session id) and a description."""
    path = Path(os.path.expanduser(source))
    if path.is_file():
        try:
            return list(read_baseline(path).values()), f"baseline {path}"
        except BaselineError as exc:
            raise CLIError(str(exc)) from None
    if path.is_dir():
        if not store_exists(path):
            raise CLIError(f"{path} is a folder but not an experiment store")
        with store_at(path) as store:
            return [Entry.of_run(run) for run in store.runs()], f"latest runs of {path}"
    with opened_store(args) as store:
        sessions = [session.session_id for session in store.sessions() if session.session_id.startswith(source)]
        if len(sessions) != 1:
            what = "no file, store or session" if not sessions else f"{len(sessions)} sessions"
            raise CLIError(f"{source!r} matches {what}; give a baseline file, a store folder or a session id")
        runs = store.runs(session_id=sessions[0])
    return [Entry.of_run(run) for run in runs], f"session {sessions[0]}"


def _new_entries(entries: list[Entry], base: dict[str, Entry]) -> list[Entry]:
    """NEW's runs to compare: a run reporting no metric is left out, unless the baseline has
    metrics for it (a run that stopped reporting them regressed; it is not "not run")."""
    return [entry for entry in entries if entry.metrics or (entry.node_id in base and base[entry.node_id].metrics)]


def _check_over(over: list[str], rules: dict[str, Rule], entries: list[Entry]) -> None:
    """``--over`` and every rule's ``over=`` name a parameter of some run."""
    known = {name for entry in entries for name in entry.params}
    problem = noise_parameter_problem(over, rules.values(), known, "--over")
    if problem is not None:
        raise CLIError(problem)


def compare_command(args: argparse.Namespace) -> int:
    """``compare BASE [NEW]``: print the comparison; 1 when anything regressed."""
    over = [name for value in args.over for name in value.split(",") if name]  # as --xp-compare-over
    try:
        rules = parse_rules(args.rule or locate.ini_lines("xp_compare"), over)
    except RuleError as exc:
        raise CLIError(str(exc)) from None
    if not 0 < args.alpha < 1:
        raise CLIError(f"--alpha {args.alpha} is not between 0 and 1; e.g. 0.05")
    base_runs, base_name = _entries(args.base, args)
    base = [entry for entry in base_runs if entry.metrics]
    if args.new is None:
        with opened_store(args) as store:
            new_runs = [Entry.of_run(run) for run in store.runs()]
        new_name = f"latest runs of {store.root}"
    else:
        new_runs, new_name = _entries(args.new, args)
    by_node = {entry.node_id: entry for entry in base}
    new = _new_entries(new_runs, by_node)
    for entries, name in ((base, base_name), (new, new_name)):
        if not entries and not name.startswith("baseline "):  # an empty baseline file is fine: all runs are new
            raise CLIError(f"nothing to compare in the {name}: no run with metrics; run some experiments first")
    _check_over(over, rules, base + new)
    try:
        verdicts = compare_entries(new, by_node, rules, args.alpha)
    except RuleError as exc:
        raise CLIError(str(exc)) from None
    unreported = unreported_rules(rules.values(), new)
    if args.format == "markdown":
        print(f"Comparing {new_name} with {base_name}\n")
        print(markdown_report(verdicts, unreported), end="")
    else:
        print(f"comparing {new_name} with {base_name}")
        for line in text_report(verdicts):
            print(line)
        unjudged = unreported_line(unreported)
        if unjudged:
            print(unjudged)
    regressed = sum(1 for verdict in verdicts if verdict.verdict == REGRESSED)
    if not rules:
        print("no comparison rules (--rule or the xp_compare ini key): metrics are shown, not judged")
    return 1 if regressed else 0
