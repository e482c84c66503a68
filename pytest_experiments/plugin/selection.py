"""Resume, retry failures and grid status: which experiments run.

Every process decides from one snapshot of the store, taken by the controller before any
run starts and handed to xdist workers, so that all workers deselect exactly the same
items (xdist aborts when they collect different tests), including a worker that xdist
restarts late while the others are writing runs.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import pytest_experiments.plugin.xdist as xdist
from pytest_experiments.model import (
    CODE_CHANGED,
    DONE,
    DONE_OLDER_CODE,
    DONE_STATUSES,
    ERROR,
    FAILED,
    INTERRUPTED,
    NEVER_RUN,
    PAUSED,
    RUNNING_ELSEWHERE,
    SKIPPED,
    Category,
    GridKey,
    GridState,
)
from pytest_experiments.plugin.identity import is_experiment, point_key
from pytest_experiments.plugin.settings import SelectionOptions
from pytest_experiments.store import Store, store_exists
from pytest_experiments.store.location import shown
from pytest_experiments.tables import Column, text_table

_CATEGORY_OF_STATUS: dict[str, Category] = {
    "failed": FAILED,
    "error": ERROR,
    "interrupted": INTERRUPTED,
    "paused": PAUSED,
    "skipped": SKIPPED,
    "running": RUNNING_ELSEWHERE,
}
# A paused run is not done (resume continues it), nor a failure (retry-failed leaves it).
_TO_RESUME: frozenset[Category] = frozenset({NEVER_RUN, INTERRUPTED, PAUSED, SKIPPED, CODE_CHANGED})
_TO_RETRY: frozenset[Category] = frozenset({FAILED, ERROR, INTERRUPTED})


@dataclass
class Snapshot:
    """The latest status and code hash of every grid point in the store, at one moment: the
    store's :class:`~pytest_experiments.model.GridSnapshot`, taken once by the controller and
    sent to xdist workers as it is (:meth:`to_wire`)."""

    #: The store's mark at that moment (:attr:`GridSnapshot.mark`): what claims are "after".
    mark: int = 0
    #: grid point -> (live status, code sha256 or None) of its latest run
    states: dict[GridKey, GridState] = field(default_factory=dict)

    @classmethod
    def take(cls, store_path: Path | str, lease: float, artifacts: Path | None = None) -> Snapshot:
        """Read the store at ``store_path`` in one read (an absent store is an empty snapshot);
        ``artifacts``: a server store's artefacts folder, whose journals it folds first."""
        if not store_exists(store_path):
            return cls()
        with Store.open(store_path, lease=lease, artifacts=artifacts) as store:
            states, mark = store.grid_snapshot()
        return cls(mark, states)

    def to_wire(self) -> bytes:
        """Compact bytes for the xdist channel (100,000 grid points: about 1.3 MB)."""
        names: dict[tuple[str, str], int] = {}
        codes: dict[str | None, int] = {}
        rows = [
            [names.setdefault((module, experiment), len(names)), digest, status, codes.setdefault(code, len(codes))]
            for (module, experiment, digest), (status, code) in self.states.items()
        ]
        payload = {"mark": self.mark, "names": list(names), "codes": list(codes), "rows": rows}
        return zlib.compress(json.dumps(payload, separators=(",", ":")).encode(), 6)

    @classmethod
    def from_wire(cls, data: bytes) -> Snapshot:
        """The snapshot :meth:`to_wire` sent."""
        payload = json.loads(zlib.decompress(data))
        names = [tuple(name) for name in payload["names"]]
        codes = payload["codes"]
        statuses: dict[str, str] = {}
        states = {
            (*names[name], digest): (statuses.setdefault(status, status), codes[code])
            for name, digest, status, code in payload["rows"]
        }
        return cls(payload["mark"], states)


def categorise(state: tuple[str, str | None] | None, current_code: str | None, rerun_changed: bool) -> Category:
    """The category of a grid point whose latest run is ``state``."""
    if state is None:
        return NEVER_RUN
    status, code = state
    if status in DONE_STATUSES:
        if current_code is not None and code is not None and code != current_code:
            return CODE_CHANGED if rerun_changed else DONE_OLDER_CODE
        return DONE
    return _CATEGORY_OF_STATUS.get(status, NEVER_RUN)


#: What runs, by (--xp-resume, --xp-retry-failed).
_TO_RUN = {
    (True, True): _TO_RESUME | _TO_RETRY,
    (True, False): _TO_RESUME,
    (False, True): _TO_RETRY,
    (False, False): frozenset(),  # --xp-status alone: runs nothing anyway
}


class Selection:
    """Deselects what resume / retry say not to run, and reports it (see module doc)."""

    def __init__(
        self, config: pytest.Config, options: SelectionOptions, snapshot: Snapshot, store_path: Path | str
    ) -> None:
        self._config = config
        self.options = options
        self.snapshot = snapshot
        self._store_path = store_path
        self._code_hashes: dict[object, str | None] = {}
        #: category -> how many experiments collected in this process fall in it
        self.counts: Counter[str] = Counter()
        #: category -> node ids, kept for ``--xp-status -v`` only
        self.node_ids: dict[str, list[str]] = {}
        #: (module, experiment) -> Counter of categories, for --xp-status
        self.per_experiment: dict[tuple[str, str], Counter[str]] = {}
        self.deselected = 0
        self.summary: str | None = None
        #: Items other options (``--sw``, ``-k``, ``-m``...) deselected before this selection.
        self._others_deselected: list[pytest.Item] | None = []
        #: How many of those this selection would have run.
        self.left_out = 0

    def _current_code(self, item: pytest.Function) -> str | None:
        """sha256 of the experiment function's code as collected now (once per function)."""
        from pytest_experiments.plugin.collectors import function_hash

        key = (id(item.parent), item.originalname)  # nodes hash in Python: their id is faster
        if key not in self._code_hashes:
            self._code_hashes[key] = function_hash(item.function)
        return self._code_hashes[key]

    @pytest.hookimpl
    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        if self._others_deselected is not None:
            self._others_deselected.extend(items)

    def _category(self, item: pytest.Function) -> Category:
        state = self.snapshot.states.get(point_key(item))
        code = self._current_code(item) if state is not None and state[0] in DONE_STATUSES else None
        return categorise(state, code, self.options.rerun_changed)

    def _count_left_out(self, runnable: frozenset[str]) -> None:
        """What this selection would run that other options deselected first: ``--sw`` skips
        everything before its last failure, failed experiments included, which the summary says."""
        others, self._others_deselected = self._others_deselected or [], None  # ours are not theirs
        self.left_out = sum(
            1
            for item in others
            if isinstance(item, pytest.Function) and is_experiment(item) and self._category(item) in runnable
        )

    @pytest.hookimpl(trylast=True)  # after -k / -m / --sw have deselected their share
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        # The hot loop of resume: 100,000 items take well under a second (benchmarks/resume.py).
        status_mode, rerun_changed, states = self.options.status, self.options.rerun_changed, self.snapshot.states
        runnable = _TO_RUN[(self.options.resume, self.options.retry_failed)]
        self._count_left_out(runnable)
        plain_tests_run = not (self.options.retry_failed and not self.options.resume and not status_mode)
        tally: Counter[tuple[str, str, Category]] = Counter()
        selected: list[pytest.Item] = []
        deselected: list[pytest.Item] = []
        for item in items:
            if not is_experiment(item):
                (selected if plain_tests_run else deselected).append(item)
                continue
            assert isinstance(item, pytest.Function)
            key = point_key(item)
            state = states.get(key)
            # The code hash only matters for done runs (older code or not).
            code = self._current_code(item) if state is not None and state[0] in DONE_STATUSES else None
            category = categorise(state, code, rerun_changed)
            tally[key[0], key[1], category] += 1
            if status_mode:
                self.node_ids.setdefault(category, []).append(item.nodeid)
            (selected if status_mode or category in runnable else deselected).append(item)
        for (module, experiment, category), count in tally.items():
            self.counts[category] += count
            self.per_experiment.setdefault((module, experiment), Counter())[category] += count
        if deselected:
            self.deselected = len(deselected)
            config.hook.pytest_deselected(items=deselected)
            items[:] = selected
        self.summary = self.describe(len(selected))

    def describe(self, selected: int) -> str:
        """One line: what runs, what is kept, and why."""
        count = self.counts
        to_run = [NEVER_RUN, INTERRUPTED, PAUSED, SKIPPED, CODE_CHANGED]
        mode = "resume"
        if self.options.retry_failed:
            mode = "resume + retry-failed" if self.options.resume else "retry-failed"
            to_run = [*to_run, FAILED, ERROR] if self.options.resume else [FAILED, ERROR, INTERRUPTED]
        running = [f"{count[c]} {c}" for c in to_run if count.get(c)]
        done = count.get(DONE, 0) + count.get(DONE_OLDER_CODE, 0)
        line = f"xp: {mode}: {done} done, {sum(count.get(c, 0) for c in to_run)} to run"
        line += f" ({', '.join(running)})" if running else ""
        kept = count.get(FAILED, 0) + count.get(ERROR, 0)
        if kept and not self.options.retry_failed:
            line += f"; {kept} failed kept (--xp-retry-failed)"
        if count.get(RUNNING_ELSEWHERE):
            line += f"; {count[RUNNING_ELSEWHERE]} running in another session"
        if self.left_out:
            line += f"; {self.left_out} more to run deselected by other options"
            if self._config.getoption("stepwise", False):
                line += " (--sw skips what precedes its last failure; --sw-reset runs them)"
        if count.get(DONE_OLDER_CODE):
            older = ", ".join(
                f"{experiment}: {counts[DONE_OLDER_CODE]}"
                for (_, experiment), counts in sorted(self.per_experiment.items())
                if counts.get(DONE_OLDER_CODE)
            )
            line += f"; {count[DONE_OLDER_CODE]} done with older code ({older}; --xp-rerun-changed reruns them)"
        if selected == 0:
            line += "; nothing left to run"
        return line

    @pytest.hookimpl
    def pytest_report_collectionfinish(self, config: pytest.Config) -> list[str] | None:
        if self.options.status:
            return self.status_table(config.get_verbosity())
        if self.summary is not None and config.get_verbosity() >= -1:
            return [self.summary]
        return None

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool | None:
        return True if self.options.status else None  # --xp-status runs nothing

    def status_table(self, verbosity: int) -> list[str]:
        """The ``--xp-status`` report: per experiment function, its grid by status."""
        if not self.per_experiment:
            return [f"xp status: no experiments collected (store: {shown(self._store_path)})"]
        columns = {
            "grid": (
                DONE,
                DONE_OLDER_CODE,
                CODE_CHANGED,
                FAILED,
                ERROR,
                INTERRUPTED,
                PAUSED,
                SKIPPED,
                RUNNING_ELSEWHERE,
                NEVER_RUN,
            ),
            "done": (DONE, DONE_OLDER_CODE, CODE_CHANGED),
            "failed": (FAILED,),
            "error": (ERROR,),
            "interrupted": (INTERRUPTED,),
            "paused": (PAUSED,),
            "skipped": (SKIPPED,),
            "running": (RUNNING_ELSEWHERE,),
            "never run": (NEVER_RUN,),
            "older code": (DONE_OLDER_CODE, CODE_CHANGED),
        }
        rows = [
            ["::".join(key), *(str(sum(counts[c] for c in categories)) for categories in columns.values())]
            for key, counts in sorted(self.per_experiment.items())
        ]
        header = [Column("experiment"), *(Column(title, right=True) for title in columns)]
        lines = [f"xp status (store: {shown(self._store_path)})", *text_table(header, rows, width=0)]
        if verbosity > 0:
            for category, node_ids in sorted(self.node_ids.items()):
                lines.append(f"{category}:")
                lines.extend(f"  {node_id}" for node_id in node_ids)
        return lines


class SelectionExitStatus:
    """The exit status of a selection, on the controller (registered with the selection flags):
    nothing left to run is a success."""

    def __init__(self, options: SelectionOptions, selection: Selection) -> None:
        self._options = options
        self._selection = selection

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        # Nothing left to run is success, not pytest's "no tests collected" (5): cluster
        # scripts run under ``set -e``.
        nothing_left = exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and self._selection.deselected > 0
        if nothing_left or (self._options.status and exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.OK


class DeferredWorkers:
    """Under xdist, with ``--xp-resume`` / ``--xp-retry-failed``: the controller collects and
    selects before any worker starts, prints the plan at the start as without xdist, and
    starts no worker when nothing is left to run.

    xdist starts its workers at session start, before collection, and its controller never
    collects. So this plugin keeps xdist from setting up its session in ``pytest_configure``
    (xdist's runs after ours) and sets it up once the controller has collected, if anything
    is left. The workers then collect and select again, from the same snapshot, so they run
    exactly what the controller selected. The cost: one collection in the controller before
    the workers start theirs (see ``benchmarks/resume_xdist.py``).
    """

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._dist = str(config.option.dist)
        config.option.dist = "no"

    @staticmethod
    def wanted(config: pytest.Config) -> bool:
        """Whether xdist is about to distribute this session (its own test, on our options)."""
        return (
            xdist.has_xdist(config)
            and not config.getoption("collectonly")
            and config.getoption("dist", "no") != "no"
            and bool(config.getoption("tx", None))
        )

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # xdist decided in pytest_configure; from here on everyone sees the user's setting.
        self._config.option.dist = self._dist

    @pytest.hookimpl(wrapper=True)
    def pytest_collection(self, session: pytest.Session) -> Generator[None, object, object]:
        result = yield
        stops = session.testsfailed and not self._config.getoption("continue_on_collection_errors")
        if session.items and not stops:  # a failed collection stops here, as without xdist
            self._start_workers(session)
        return result

    def _start_workers(self, session: pytest.Session) -> None:
        """What xdist's ``pytest_configure`` and ``pytest_sessionstart`` would have done."""
        from xdist.dsession import DSession

        dsession = DSession(self._config)
        self._config.pluginmanager.register(dsession, "dsession")
        terminal = self._config.pluginmanager.get_plugin("terminalreporter")
        if terminal is not None:
            terminal.showfspath = False  # reports arrive from several workers, out of order
        dsession.pytest_sessionstart(session)
