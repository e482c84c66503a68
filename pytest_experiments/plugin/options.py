"""The ``--xp-*`` options and ``xp_*`` ini keys: their declarations and value checks.

Imported by every pytest session that has the plugin installed, so it holds declarations only
(their values are resolved by :mod:`settings`, on first use) and imports nothing of the package.

PYTEST_DONT_REWRITE (start-up: see :mod:`pytest_experiments.plugin`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_experiments.plugin.sharding import Shard

# The names :mod:`pytest_experiments.store.locate` reads, written out here for the help texts:
# importing the store package at start-up would cost every session (tests/test_unused.py keeps
# the two in step).
STORE_ENV_VAR = "PYTEST_XP_STORE"
STORE_INI_KEY = "xp_store"
ARTIFACTS_ENV_VAR = "PYTEST_XP_ARTIFACTS"
ARTIFACTS_INI_KEY = "xp_artifacts"
DEFAULT_LEASE_S = 300.0


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


#: Options whose value is a path, with the name of that value in messages.
PATH_OPTIONS = {
    "--xp-store": "PATH",
    "--xp-artifacts": "PATH",
    "--xp-baseline": "FILE",
    "--xp-save-baseline": "FILE",
    "--xp-report-md": "FILE",
    "--xp-html": "FILE",
}


def check_path_tokens(args: Sequence[str]) -> None:
    """Refuse a path option written as two tokens (``--xp-store /data/store``).

    pytest looks for the rootdir and the ini file before any plugin's options exist, so
    it takes the second token for a test path: an existing path outside the project
    changes the rootdir, the ini file and every node id (resume then finds nothing done).
    No plugin can redo that choice, so the form is refused whether the path exists or not
    (a script must not break on its second run, once the store exists).
    """
    for index, token in enumerate(map(str, args)):
        if token == "--":  # what follows is test paths only
            return
        if token in PATH_OPTIONS:
            value = str(args[index + 1]) if index + 1 < len(args) else ""
            shown = value if value and not value.startswith("-") else PATH_OPTIONS[token]
            raise pytest.UsageError(
                f"xp: write {token}={shown} as one token: given as two, pytest takes {shown} for a test path "
                "when it looks for the rootdir and ini file, which changes every node id"
            )


def _shard_option(text: str) -> Shard | str:
    """Parse --xp-shard (the sharding module is loaded only when the option is given)."""
    from pytest_experiments.plugin.sharding import shard_option

    return shard_option(text)


def add_options(parser: pytest.Parser) -> None:
    """Register every ``--xp-*`` option (one group) and ``xp_*`` ini key."""
    group = parser.getgroup("experiments", "experiments (pytest-experiments)")
    group.addoption(
        "--xp-store",
        dest="xp_store",
        metavar="PATH|URL",
        default=None,
        help=f"folder of the experiment store, or a PostgreSQL store's URL postgresql://user@host/db (default: "
        f"${STORE_ENV_VAR}, else the xp_store ini key, else <rootdir>/.experiments)",
    )
    group.addoption(
        "--xp-artifacts",
        dest="xp_artifacts",
        metavar="PATH",
        default=None,
        help="with a PostgreSQL store: the folder of its run folders, on a filesystem every host sees (default: "
        f"${ARTIFACTS_ENV_VAR}, else the xp_artifacts ini key, else <rootdir>/.experiments-artifacts)",
    )
    group.addoption(
        "--xp-resume",
        dest="xp_resume",
        action="store_true",
        default=None,
        help="skip experiments whose latest run with the same parameters passed (xfailed/xpassed too); "
        "run the rest. Failed runs are kept (see --xp-retry-failed)",
    )
    group.addoption(
        "--xp-retry-failed",
        dest="xp_retry_failed",
        action="store_true",
        default=False,
        help="run only experiments whose latest run failed, errored or was interrupted (like --lf)",
    )
    group.addoption(
        "--xp-rerun-changed",
        dest="xp_rerun_changed",
        action="store_true",
        default=None,
        help="with --xp-resume: a done run whose experiment's code has changed since counts as not done",
    )
    group.addoption(
        "--xp-status",
        dest="xp_status",
        action="store_true",
        default=False,
        help="collect, run nothing, and print each experiment's grid by status (-v: the node ids)",
    )
    group.addoption(
        "--xp-lease",
        dest="xp_lease",
        metavar="SECONDS",
        type=lease_seconds,
        default=None,
        help=f"a running run whose session sent no heartbeat for this long counts as interrupted, on any host "
        f"(default {DEFAULT_LEASE_S:.0f})",
    )
    group.addoption(
        "--xp-baseline",
        dest="xp_baseline",
        metavar="FILE",
        default=None,
        help="compare each run's metrics with this baseline file; a regression beyond tolerance fails the test",
    )
    group.addoption(
        "--xp-save-baseline",
        dest="xp_save_baseline",
        metavar="FILE",
        default=None,
        help="at the end of the session, write a baseline file from this session's passed runs",
    )
    group.addoption(
        "--xp-compare-rule",
        dest="xp_compare_rule",
        metavar="RULE",
        action="append",
        type=compare_rule,
        default=[],
        help="a comparison rule, e.g. 'acc higher 0.01' or 'loss lower 5%%' (repeatable; adds to the xp_compare ini key)",
    )
    group.addoption(
        "--xp-compare-over",
        dest="xp_compare_over",
        metavar="PARAM",
        action="append",
        default=[],
        help="compare groups of runs that differ only in PARAM (e.g. seed), with a significance test (repeatable)",
    )
    group.addoption(
        "--xp-alpha",
        dest="xp_alpha",
        metavar="LEVEL",
        type=alpha_level,
        default=None,
        help="significance level of seed-group comparisons (default 0.05)",
    )
    group.addoption(
        "--xp-report-md",
        dest="xp_report_md",
        metavar="FILE",
        default=None,
        help="write the baseline comparison as a markdown table (for a CI job summary)",
    )
    group.addoption(
        "--xp-worker-threads",
        dest="xp_worker_threads",
        metavar="N",
        type=thread_count,
        default=None,
        help="under -n: start each xdist worker with OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS... "
        "set to N (auto: CPUs / workers), unless any of them is set already",
    )
    group.addoption(
        "--xp-shard",
        dest="xp_shard",
        metavar="K/N",
        type=_shard_option,
        default=None,
        help="run only shard K of N (0-based) of the selected tests, split by grid point; auto: this SLURM "
        "array task's (SLURM_ARRAY_TASK_ID, _COUNT, _MIN)",
    )
    group.addoption(
        "--xp-html",
        dest="xp_html",
        metavar="FILE",
        default=None,
        help="at the end of the session, write the HTML report of the latest runs of the experiments it ran",
    )
    parser.addini(STORE_INI_KEY, "folder of the experiment store (relative to the ini file), or a URL", default="")
    parser.addini(ARTIFACTS_INI_KEY, "a PostgreSQL store's folder of run folders, relative to the ini file", default="")
    parser.addini(
        "xp_compare", "comparison rules, one per line: '<metric> higher|lower <tolerance>[%]'", type="linelist"
    )
    parser.addini("xp_alpha", "significance level of seed-group comparisons", default="")
    parser.addini("xp_resume", "always resume (as --xp-resume)", type="bool", default=False)
    parser.addini("xp_rerun_changed", "with resume, rerun done runs of changed code", type="bool", default=False)
    parser.addini("xp_lease", "seconds without heartbeat after which a session is dead", default="")
    parser.addini("xp_worker_threads", "threads per xdist worker: N or auto (as --xp-worker-threads)", default="")


def worker_threads(config: pytest.Config) -> int | str | None:
    """--xp-worker-threads, else the ini key; None: leave the thread variables alone."""
    threads: int | str | None = config.getoption("xp_worker_threads")
    ini_threads = str(config.getini("xp_worker_threads")).strip()
    if threads is None and ini_threads:
        try:
            threads = thread_count(ini_threads)
        except argparse.ArgumentTypeError as exc:
            raise pytest.UsageError(f"xp: ini key xp_worker_threads: {exc}") from None
    return threads


#: Every option's ``dest`` and every ini key (tests/test_unused.py keeps them in step with
#: :func:`add_options`).
OPTION_DESTS = (
    "xp_store",
    "xp_artifacts",
    "xp_resume",
    "xp_retry_failed",
    "xp_rerun_changed",
    "xp_status",
    "xp_lease",
    "xp_baseline",
    "xp_save_baseline",
    "xp_compare_rule",
    "xp_compare_over",
    "xp_alpha",
    "xp_report_md",
    "xp_worker_threads",
    "xp_shard",
    "xp_html",
)
INI_KEYS = (
    STORE_INI_KEY,
    ARTIFACTS_INI_KEY,
    "xp_compare",
    "xp_alpha",
    "xp_resume",
    "xp_rerun_changed",
    "xp_lease",
    "xp_worker_threads",
)


def given(config: pytest.Config) -> bool:
    """Whether the session sets any option or ini key of the plugin.

    If so, the options are resolved (and a bad value refused) at configuration, before anything
    runs; if not, there is nothing to check, and they are resolved when the first experiment is
    collected (a plain session never resolves them).
    """
    return any(getattr(config.option, dest, None) not in (None, False, []) for dest in OPTION_DESTS) or any(
        config.getini(key) for key in INI_KEYS
    )
