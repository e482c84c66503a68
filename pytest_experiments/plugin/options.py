"""Command-line options and ini keys, resolved once into :class:`Settings`."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple

import pytest

from pytest_experiments.store import DEFAULT_LEASE_S, locate

if TYPE_CHECKING:
    from pytest_experiments.comparison import Rule
    from pytest_experiments.plugin.sharding import Shard


# NamedTuples rather than frozen dataclasses: this module is imported in every pytest session,
# and a NamedTuple class costs a sixth of a dataclass to create (start-up, issue 8).
class SelectionOptions(NamedTuple):
    """The ``--xp-resume`` / ``--xp-retry-failed`` / ``--xp-rerun-changed`` / ``--xp-status`` flags."""

    resume: bool = False
    retry_failed: bool = False
    rerun_changed: bool = False
    status: bool = False

    @property
    def active(self) -> bool:
        """Whether any selection is asked for (a snapshot is needed)."""
        return self.resume or self.retry_failed or self.status

    @property
    def claims(self) -> bool:
        """Whether runs are claimed in the store before they start (two sessions split the work)."""
        return self.resume or self.retry_failed


class Settings(NamedTuple):
    """The plugin's options, resolved once (command line > environment > ini > default)."""

    #: The store: a folder (SQLite) or a server store's URL (``postgresql://...``, a ``str``).
    store_path: Path | str
    #: xdist's worker id (``gw0``...) or ``main``.
    worker: str
    selection: SelectionOptions
    #: Seconds after which a session without a heartbeat counts as dead.
    lease: float
    comparison: ComparisonOptions
    #: --xp-worker-threads: threads per xdist worker (a number or "auto"), None to leave them alone.
    worker_threads: int | str | None = None
    #: --xp-shard: the part of the grid this process runs (``auto`` already resolved), None for all.
    shard: Shard | None = None
    #: --xp-html: where the controller writes the HTML report at the end of the session, None for nowhere.
    html: Path | None = None
    #: --xp-artifacts: where a server store's run folders live; None: not given.
    artifacts: Path | None = None
    #: A server store's run folders when none is given: ``<rootdir>/.experiments-artifacts``.
    default_artifacts: Path | None = None

    @property
    def server_store(self) -> bool:
        """Whether the store is a server store (a URL), whose run folders live outside it."""
        return isinstance(self.store_path, str)

    @property
    def artifacts_root(self) -> Path | None:
        """What ``Store.open`` takes as ``artifacts``: for a server store the folder given, else
        ``<rootdir>/.experiments-artifacts``; None for a store folder (run folders inside it)."""
        return (self.artifacts or self.default_artifacts) if self.server_store else None


class ComparisonOptions(NamedTuple):
    """``--xp-baseline`` and friends: what to compare runs with, and how."""

    baseline: Path | None = None
    save_baseline: Path | None = None
    report_md: Path | None = None
    #: Rules by metric from the xp_compare ini key and --xp-compare-rule (markers add their own).
    rules: Mapping[str, Rule] = MappingProxyType({})
    #: Parameters that are noise (seeds): --xp-compare-over.
    over: tuple[str, ...] = ()
    alpha: float = 0.05

    @property
    def active(self) -> bool:
        """Whether the comparison plugin is needed at all."""
        return bool(self.baseline or self.save_baseline or self.report_md)


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
        f"${locate.ENV_VAR}, else the xp_store ini key, else <rootdir>/.experiments)",
    )
    group.addoption(
        "--xp-artifacts",
        dest="xp_artifacts",
        metavar="PATH",
        default=None,
        help="with a PostgreSQL store: the folder of its run folders, on a filesystem every host sees (default: "
        f"${locate.ARTIFACTS_ENV_VAR}, else the xp_artifacts ini key, else <rootdir>/.experiments-artifacts)",
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
    parser.addini(locate.INI_KEY, "folder of the experiment store (relative to the ini file), or a URL", default="")
    parser.addini(
        locate.ARTIFACTS_INI_KEY, "a PostgreSQL store's folder of run folders, relative to the ini file", default=""
    )
    parser.addini(
        "xp_compare", "comparison rules, one per line: '<metric> higher|lower <tolerance>[%]'", type="linelist"
    )
    parser.addini("xp_alpha", "significance level of seed-group comparisons", default="")
    parser.addini("xp_resume", "always resume (as --xp-resume)", type="bool", default=False)
    parser.addini("xp_rerun_changed", "with resume, rerun done runs of changed code", type="bool", default=False)
    parser.addini("xp_lease", "seconds without heartbeat after which a session is dead", default="")
    parser.addini("xp_worker_threads", "threads per xdist worker: N or auto (as --xp-worker-threads)", default="")


def read_settings(config: pytest.Config) -> Settings:
    """Resolve the options; a bad value or combination is a ``pytest.UsageError``."""
    ini_dir = config.inipath.parent if config.inipath else config.rootpath
    store_path = locate.resolve(
        config.getoption("xp_store"),
        config.getini(locate.INI_KEY),
        ini_dir,
        config.rootpath,
        config.invocation_params.dir,
    )
    # From workerinput, not PYTEST_XDIST_WORKER: a pytest started inside a worker inherits that variable.
    workerinput = getattr(config, "workerinput", None)
    worker = str(workerinput["workerid"]) if workerinput is not None else "main"
    rerun_changed_flag = config.getoption("xp_rerun_changed")
    resume = bool(config.getoption("xp_resume") or config.getini("xp_resume"))
    if rerun_changed_flag and not resume:
        raise pytest.UsageError("xp: --xp-rerun-changed only applies with --xp-resume; add --xp-resume")
    selection = SelectionOptions(
        resume=resume,
        retry_failed=bool(config.getoption("xp_retry_failed")),
        rerun_changed=bool(rerun_changed_flag or config.getini("xp_rerun_changed")),
        status=bool(config.getoption("xp_status")),
    )
    lease = config.getoption("xp_lease")
    if lease is None:
        ini_lease = str(config.getini("xp_lease")).strip()
        try:
            lease = lease_seconds(ini_lease) if ini_lease else DEFAULT_LEASE_S
        except argparse.ArgumentTypeError as exc:
            raise pytest.UsageError(f"xp: ini key xp_lease: {exc}") from None
    shard = None
    if config.getoption("xp_shard") is not None:
        from pytest_experiments.plugin.sharding import resolve

        shard = resolve(config.getoption("xp_shard"))
    comparison = _comparison(config)
    html = _html_output(config)
    artifacts = locate.resolve_artifacts(
        config.getoption("xp_artifacts"), config.getini(locate.ARTIFACTS_INI_KEY), ini_dir, config.invocation_params.dir
    )
    return Settings(
        store_path,
        worker,
        selection,
        lease,
        comparison,
        _worker_threads(config),
        shard,
        html,
        artifacts,
        config.rootpath / locate.DEFAULT_ARTIFACTS_DIRNAME,
    )


def _html_output(config: pytest.Config) -> Path | None:
    """--xp-html, checked on the controller (which writes it) before anything runs."""
    value = config.getoption("xp_html")
    if not value:
        return None
    path = locate.absolute(value, config.invocation_params.dir)
    if getattr(config, "workerinput", None) is None:
        from pytest_experiments.comparison import output_path_problem

        problem = output_path_problem(path)
        if problem is not None:
            raise pytest.UsageError(f"xp: --xp-html: {problem}")
    return path


def _worker_threads(config: pytest.Config) -> int | str | None:
    threads: int | str | None = config.getoption("xp_worker_threads")
    ini_threads = str(config.getini("xp_worker_threads")).strip()
    if threads is None and ini_threads:
        try:
            threads = thread_count(ini_threads)
        except argparse.ArgumentTypeError as exc:
            raise pytest.UsageError(f"xp: ini key xp_worker_threads: {exc}") from None
    return threads


def _comparison(config: pytest.Config) -> ComparisonOptions:
    base = config.invocation_params.dir

    def path(option: str) -> Path | None:
        value = config.getoption(option)
        return None if not value else locate.absolute(value, base)

    over = tuple(name for value in config.getoption("xp_compare_over") for name in value.split(",") if name)
    lines = [*config.getini("xp_compare"), *config.getoption("xp_compare_rule")]
    rules: dict[str, Rule] = {}
    if lines:  # imported here: sessions that compare nothing never load the comparison code
        from pytest_experiments.comparison import RuleError, parse_rules

        try:
            rules = parse_rules(lines, over)
        except RuleError as exc:
            raise pytest.UsageError(f"xp: ini key xp_compare: {exc}") from None
    alpha = config.getoption("xp_alpha")
    if alpha is None:
        ini_alpha = str(config.getini("xp_alpha")).strip()
        try:
            alpha = alpha_level(ini_alpha) if ini_alpha else 0.05
        except argparse.ArgumentTypeError as exc:
            raise pytest.UsageError(f"xp: ini key xp_alpha: {exc}") from None
    options = ComparisonOptions(path("xp_baseline"), path("xp_save_baseline"), path("xp_report_md"), rules, over, alpha)
    if getattr(config, "workerinput", None) is None and options.active:  # the controller writes them
        _check_outputs(options)
    return options


def _check_outputs(options: ComparisonOptions) -> None:
    """Files written at the end of the session must be writable from the start: a sweep
    must not run for hours and then fail to write its report (nothing is created here)."""
    from pytest_experiments.comparison import BaselineError, output_path_problem, read_saved_baseline

    if options.report_md is not None:
        problem = output_path_problem(options.report_md)
        if problem is not None:
            raise pytest.UsageError(f"xp: --xp-report-md: {problem}")
    if options.save_baseline is not None:
        try:
            read_saved_baseline(options.save_baseline)
        except BaselineError as exc:
            raise pytest.UsageError(f"xp: --xp-save-baseline: {exc}") from None
