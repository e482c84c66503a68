"""The plugin's options resolved once into :class:`Settings` (command line > environment > ini >
default), on first use: when an option asks for the store at configuration, or when the first
experiment is collected. A plain session never loads this module (start-up, issue 8)."""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple

import pytest

# Submodules by their full name: ``from package import module`` would take the copy a finished
# in-process (pytester) session left as the package's attribute, and keep that session alive.
import pytest_experiments.store.locate as locate
from pytest_experiments.plugin.option_values import alpha_level, lease_seconds
from pytest_experiments.plugin.xdist import worker_threads
from pytest_experiments.store import DEFAULT_LEASE_S

if TYPE_CHECKING:
    from pytest_experiments.comparison import Rule
    from pytest_experiments.plugin.sharding import Shard

SETTINGS_KEY = pytest.StashKey["Settings"]()


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


def settings_of(config: pytest.Config) -> Settings:
    """This session's settings, resolved on first use; a bad value is a ``pytest.UsageError``."""
    settings = config.stash.get(SETTINGS_KEY, None)
    if settings is None:
        settings = config.stash[SETTINGS_KEY] = read_settings(config)
    return settings


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
        worker_threads(config),
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


def _all_arguments(config: pytest.Config) -> list[str]:
    """The arguments pytest parsed, in its order: the ini file's addopts, PYTEST_ADDOPTS, the command line."""
    return [
        *config.getini("addopts"),
        *shlex.split(os.environ.get("PYTEST_ADDOPTS", "")),
        *config.invocation_params.args,
    ]


def configure_from_settings(config: pytest.Config) -> None:
    """Act on the options given (any ``--xp-*`` option or ``xp_*`` ini key) at configuration:
    refuse a path option written as two tokens and bad values, then set up a shard, and turn
    the plugin on for the options that ask for the store."""
    check_path_tokens(_all_arguments(config))
    settings = settings_of(config)
    if settings.selection.status:
        config.option.dist = "no"  # like --collect-only: collect in this process, run nothing
    if settings.shard is not None:
        # --xp-shard: a pure filter on every item (plain tests too), the same in every process.
        from pytest_experiments.plugin.sharding import Sharding

        config.pluginmanager.register(Sharding(settings.shard), "xp-shard")
    if settings.selection.active or settings.comparison.active:
        # The user asked for the store (resume, retry, status, comparisons): check it now.
        from pytest_experiments.plugin.activation import activate

        activate(config)
    elif getattr(config.option, "dist", "no") != "no":
        import pytest_experiments.plugin.xdist as xdist

        if xdist.starts_workers(config):
            xdist.controller(config)
