"""Command-line options and ini keys, resolved once into :class:`Settings`."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_experiments import locate
from pytest_experiments.selection import SelectionOptions
from pytest_experiments.sqlite_store import DEFAULT_LEASE_S


@dataclass(frozen=True)
class Settings:
    """The plugin's options, resolved once (command line > environment > ini > default)."""

    store_path: Path
    #: xdist's worker id (``gw0``...) or ``main``.
    worker: str
    selection: SelectionOptions
    #: Seconds after which a session without a heartbeat counts as dead.
    lease: float


def lease_seconds(text: str) -> float:
    """Parse a lease: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds, e.g. 300")
    return value


def add_options(parser: pytest.Parser) -> None:
    """Register every ``--xp-*`` option (one group) and ``xp_*`` ini key."""
    group = parser.getgroup("experiments", "experiments (pytest-experiments)")
    group.addoption(
        "--xp-store",
        dest="xp_store",
        metavar="PATH",
        default=None,
        help=f"folder of the experiment store (default: ${locate.ENV_VAR}, else the xp_store ini key, "
        "else <rootdir>/.experiments)",
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
    parser.addini(locate.INI_KEY, "folder of the experiment store, relative to the ini file", default="")
    parser.addini("xp_resume", "always resume (as --xp-resume)", type="bool", default=False)
    parser.addini("xp_rerun_changed", "with resume, rerun done runs of changed code", type="bool", default=False)
    parser.addini("xp_lease", "seconds without heartbeat after which a session is dead", default="")


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
    return Settings(store_path=store_path, worker=worker, selection=selection, lease=lease)
