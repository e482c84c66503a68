"""The pytest plugin (``pytest11`` entry point ``experiments``): what every session loads.

Installed but unused, the plugin is invisible: a session whose collection holds no experiment
never looks at the store, runs no collector or session hook, installs no signal handler, and
imports no module of the package but this one and the package's lazy ``__init__``. pytest
rewrites the asserts of every module of a plugin's distribution as it imports it, so each
module imported here costs every session start-up time (``benchmarks/startup.py``: a module
costs about as much as everything it holds): this module therefore holds, in four sections,
all that a plain session needs, and nothing else:

- the ``--xp-*`` options and ``xp_*`` ini keys: declarations and value checks (resolved by
  :mod:`settings` on first use);
- the ``xp`` / ``xp_run`` / ``xp_dir`` fixtures;
- the collection hooks: a ``grid`` mark becomes parameters (:mod:`grid`), the grid points of one
  function must be distinct (:mod:`identity`), and the first experiment collected turns the
  plugin on (:mod:`activation`);
- the wiring: markers, configuration, and the hook specifications (:mod:`hookspecs`), added
  when a plugin or conftest implements one of our hooks or when the plugin turns on.

Everything else is imported and registered by :mod:`activation`, once collection finds an
experiment (in each process that collects one; under xdist the controller learns it from its
workers, through :mod:`xdist`), or at configuration by the options that ask for the store.

PYTEST_DONT_REWRITE: pytest rewrites the asserts of a plugin's modules as it imports them,
which without its cache (``PYTHONDONTWRITEBYTECODE``, read-only installs) means walking each
module's syntax tree in Python on every run; this module has no assert to rewrite and says so
with this marker, which pytest reads before the walk.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from pathlib import Path

    from _pytest.nodes import Node

    from pytest_experiments.plugin.recorder import ItemRun
    from pytest_experiments.plugin.store_access import StoreHandle
    from pytest_experiments.run import Run


# -- options: declarations and value checks ---------------------------------------------------

# The names :mod:`pytest_experiments.store.locate` reads, written out here for the help texts:
# importing the store package at start-up would cost every session (tests/test_unused.py keeps
# the two in step).
STORE_ENV_VAR = "PYTEST_XP_STORE"
STORE_INI_KEY = "xp_store"
#: Whether a session that recorded many runs keeps ``load()``'s frames after it ends.
KEEP_FRAMES_INI_KEY = "xp_keep_frames"
ARTIFACTS_ENV_VAR = "PYTEST_XP_ARTIFACTS"
ARTIFACTS_INI_KEY = "xp_artifacts"
DEFAULT_LEASE_S = 300.0


def _parsed_by(name: str) -> Callable[[str], Any]:
    """An option's value parser: :mod:`option_values` is imported only when the option is given."""

    def parse(text: str) -> Any:
        import pytest_experiments.plugin.option_values as option_values

        return getattr(option_values, name)(text)

    parse.__name__ = name  # argparse names a value's type in its messages
    return parse


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
        type=_parsed_by("lease_seconds"),
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
        type=_parsed_by("compare_rule"),
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
        type=_parsed_by("alpha_level"),
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
        type=_parsed_by("thread_count"),
        default=None,
        help="under -n: start each xdist worker with OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS... "
        "set to N (auto: CPUs / workers), unless any of them is set already",
    )
    group.addoption(
        "--xp-shard",
        dest="xp_shard",
        metavar="K/N",
        type=_parsed_by("shard_option"),
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
    parser.addini(
        "xp_gc_freeze",
        "keep what collection built out of the garbage collector's full passes while experiments run (big grids)",
        type="bool",
        default=False,
    )
    parser.addini(
        KEEP_FRAMES_INI_KEY,
        "after a session that recorded 1000 runs or more, keep load()'s frames beside the store in the background",
        type="bool",
        default=True,
    )


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
    "xp_gc_freeze",
    KEEP_FRAMES_INI_KEY,
)
#: Ini keys that tune how experiments run: setting them asks for no store.
_TUNING_KEYS = frozenset({"xp_gc_freeze", KEEP_FRAMES_INI_KEY})


def given(config: pytest.Config) -> bool:
    """Whether the session sets any option or ini key of the plugin.

    If so, the options are resolved (and a bad value refused) at configuration, before anything
    runs; if not, there is nothing to check, and they are resolved when the first experiment is
    collected (a plain session never resolves them).
    """
    return any(getattr(config.option, dest, None) not in (None, False, []) for dest in OPTION_DESTS) or any(
        config.getini(key) for key in INI_KEYS if key not in _TUNING_KEYS
    )


# -- fixtures -------------------------------------------------------------------------------

#: The run an item is running, with what the recorder keeps of it: set in its setup, removed
#: once its teardown is reported (the only per-run entry in an item's stash). Defined here,
#: where every session imports it: the recorder is imported once an experiment is collected.
# (The stash keys of this module are annotated, not subscripted: an annotation is never evaluated,
# so no typing alias is made at start-up.)
ITEM_RUN_KEY: pytest.StashKey[ItemRun] = pytest.StashKey()


def _current_run(request: pytest.FixtureRequest) -> Run:
    current: ItemRun | None = request.node.stash.get(ITEM_RUN_KEY, None)
    if current is None:
        pytest.fail("xp: no experiment run for this test (is pytest-experiments disabled?)", pytrace=False)
    return current.run


@pytest.fixture
def xp(request: pytest.FixtureRequest) -> Run:
    """The current experiment run: log metrics and parameters, add metadata, write artefacts.

    Example::

        def test_train(xp, lr):
            for epoch in range(10):
                xp.log_metric("loss", train_one_epoch(lr), step=epoch)
            (xp.dir / "model.txt").write_text("...")
            return {"accuracy": 0.93}
    """
    return _current_run(request)


@pytest.fixture
def xp_run(request: pytest.FixtureRequest) -> Run:
    """The current experiment run, as ``xp``: for suites where ``xp`` is a fixture of their own
    (the array namespace of array-API code)."""
    return _current_run(request)


@pytest.fixture
def xp_dir(request: pytest.FixtureRequest) -> Path:
    """The run's own folder inside the store (``xp.dir``); files written there are its artefacts."""
    return _current_run(request).dir


# -- collection: the only hooks of a session before the plugin is on -------------------------

# The fixtures and marks that may make a test an experiment (the exact rule: ``identity.is_experiment``).
_RUN_FIXTURES = ("xp", "xp_run", "xp_dir")
_MARKS = ("experiment", "grid")


def experiment_candidates(items: Iterable[pytest.Item]) -> Iterator[pytest.Function]:
    """The items that may be experiments, lazily: a cheap necessary condition for
    :func:`identity.is_experiment` (one of its fixtures, or one of its marks on the item or a node
    above it). Each node above the items is looked at once, not once per item (as
    ``get_closest_marker`` would, for each mark): this runs for every collected test."""
    marked: dict[int, bool] = {}  # by id(node): the nodes outlive this generator

    def parent_marked(node: Node | None) -> bool:
        if node is None:
            return False
        found = marked.get(id(node))
        if found is None:
            found = marked[id(node)] = _has_mark(node) or parent_marked(node.parent)
        return found

    for item in items:
        if isinstance(item, pytest.Function):
            names = item.fixturenames
            if any(name in names for name in _RUN_FIXTURES) or _has_mark(item) or parent_marked(item.parent):
                yield item


def _has_mark(node: Node) -> bool:
    return any(mark.name in _MARKS for mark in node.own_markers)


@pytest.hookimpl
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Grids are made at collection, before anything is active.
    if metafunc.definition.get_closest_marker("grid") is None:
        return
    from pytest_experiments.plugin.grid import generate_grid

    generate_grid(metafunc)


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(collector: pytest.Module | pytest.Class, name: str, obj: object) -> Any:
    result = yield
    if isinstance(result, list) and len(result) > 1:
        functions = [item for item in result if isinstance(item, pytest.Function)]
        if next(experiment_candidates(functions), None) is not None:
            from pytest_experiments.plugin.identity import check_distinct

            check_distinct(functions)
    return result


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    if ACTIVE_KEY in config.stash or STARTED_KEY not in config.stash:
        return  # on already, or configured for --help / --version
    candidates = experiment_candidates(session.items)
    first = next(candidates, None)
    if first is None:
        return
    from pytest_experiments.plugin.identity import is_experiment

    if is_experiment(first) or any(is_experiment(item) for item in candidates):
        from pytest_experiments.plugin.activation import activate

        activate(config, collected=True, session=session)


# -- wiring -----------------------------------------------------------------------------------

HANDLE_KEY: pytest.StashKey[StoreHandle] = pytest.StashKey()
#: When this process's session started (configure time): the session itself is made on first use.
#: Its presence also says the plugin is configured (not for ``--help`` / ``--version``).
STARTED_KEY: pytest.StashKey[float] = pytest.StashKey()
#: Set once the plugin is active in this process (see :mod:`activation`).
ACTIVE_KEY: pytest.StashKey[bool] = pytest.StashKey()

#: The hooks of :mod:`hookspecs`, by name: a plugin or conftest that implements one gets the
#: specifications added as it registers (tests/test_unused.py keeps the two in step).
HOOK_NAMES = (
    "pytest_experiments_run_start",
    "pytest_experiments_run_end",
    "pytest_experiments_run_interrupt",
    "pytest_experiments_session_start",
    "pytest_experiments_session_finish",
)
_HOOK_NAME_SET = frozenset(HOOK_NAMES)


def add_hookspecs(manager: pytest.PytestPluginManager) -> None:
    """Add the ``pytest_experiments_*`` hook specifications (once): when a plugin implements
    one of them, and when the plugin is turned on (before it calls them)."""
    if not getattr(manager.hook, HOOK_NAMES[0], None) or not getattr(manager.hook, HOOK_NAMES[0]).has_spec():
        import pytest_experiments.plugin.hookspecs as hookspecs

        manager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_plugin_registered(plugin: object, manager: pytest.PytestPluginManager) -> None:
    # Historic: also called for the plugins registered before this one. A hook implemented
    # before its specification is checked when the specification is added, and pytest
    # refuses unknown hooks only once collection is over: conftests of subfolders are in time.
    # pluggy makes a hook caller for every hook a plugin implements as it registers the plugin:
    # one set operation, where asking each plugin for each name would raise and catch.
    if not _HOOK_NAME_SET.isdisjoint(vars(manager.hook)):
        add_hookspecs(manager)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "experiment(compare=None, continue_runs=False): record each run of this test as an experiment run; "
        "continue_runs=True: --xp-resume continues its interrupted runs as paused ones",
    )
    config.addinivalue_line(
        "markers",
        "grid(name=values, ..., where=None): parametrise over the cartesian product of the axes, "
        "filtered by where(**point); several grid marks give the union of their grids",
    )
    if config.getoption("help", False) or config.getoption("version", False):
        return
    config.stash[STARTED_KEY] = time.time()
    if given(config):
        from pytest_experiments.plugin.settings import configure_from_settings

        configure_from_settings(config)
    elif getattr(config.option, "dist", "no") != "no":
        # The controller does not collect: its workers tell it when they meet an experiment.
        import pytest_experiments.plugin.xdist as xdist

        if xdist.starts_workers(config):
            xdist.controller(config)


#: What pytest and pluggy look at in this module: its hooks and fixtures. Both scan
#: ``dir(plugin)`` when the plugin registers, at a cost per name (pytest unwraps each name's
#: object in search of a hidden fixture), in every session; the module's other names (the option
#: parsers, the keys, its imports) are none of their business (tests/test_unused.py keeps the
#: list whole).
_PLUGIN_NAMES = (
    "pytest_addoption",
    "pytest_collection_finish",
    "pytest_configure",
    "pytest_generate_tests",
    "pytest_plugin_registered",
    "pytest_pycollect_makeitem",
    "xp",
    "xp_dir",
    "xp_run",
)


def __dir__() -> list[str]:
    return list(_PLUGIN_NAMES)
