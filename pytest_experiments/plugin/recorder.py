"""The life cycle of one run, in the process that runs it.

setup (tryfirst)     the run is written as ``running`` (to the journal; claimed in the store
                     with resume / retry) and ``run_start`` hooks are called, before any
                     fixture, so a crash at any later point leaves evidence
call (wrapper)       the test function is wrapped for the call, its return value kept as the
                     result (sync or async, whoever runs it)
makereport           the setup / call / teardown reports are observed; before the teardown
                     report is shown: status, ``run_end`` hooks, and the completed run is
                     written in one record (a failed write turns that report into an error)
protocol (wrapper)   an interrupt stores ``interrupted``

A store that cannot be written (full, damaged, read-only...) stops the session with one line,
and nothing more is written to it (see :class:`StoreHandle`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import os
import socket
import time
import unittest  # pytest imports it already
import warnings
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from types import MethodType
from typing import TYPE_CHECKING, Any

import pytest

# Submodules by their full name: ``from package import module`` would take the copy a finished
# in-process (pytester) session left as the package's attribute, and keep that session alive.
import pytest_experiments.plugin.xdist as xdist
from pytest_experiments.model import Continuation
from pytest_experiments.plugin import ITEM_RUN_KEY
from pytest_experiments.plugin.collectors import BUILTIN_TYPES
from pytest_experiments.plugin.gc_freeze import freeze_collected
from pytest_experiments.plugin.identity import grid_point, is_experiment, volatile_parameters
from pytest_experiments.plugin.pausing import Continuing, call_interrupt_hook, mark_paused, pause_skip
from pytest_experiments.plugin.store_access import StoreHandle, describe
from pytest_experiments.run import Run, RunPaused, new_id
from pytest_experiments.store import StoreError
from pytest_experiments.store.liveness import pid_namespace, process_start
from pytest_experiments.store.rundirs import relative_run_dir, within
from pytest_experiments.values import metrics_from_result, to_json_value

if TYPE_CHECKING:
    from pluggy import HookCaller

#: The run claimed for this item before its protocol started (resume / retry), until its setup.
#: (Its type by name: typing keeps ``StashKey[Run]`` in a cache, and with it this copy of ``Run``,
#: whose module an in-process session imported, and through it that session.)
CLAIMED_KEY = pytest.StashKey["Run"]()
#: What a claim of several points decided for an item ahead of its turn: the run claimed for it,
#: or why another session has its grid point.
DECIDED_KEY = pytest.StashKey["Run | str"]()
#: The most grid points asked for in one claim (see :meth:`Recorder._decide`).
MAX_CLAIM_WINDOW = 64


@dataclass
class ItemRun:
    """What the recorder keeps of the run an item is running, from its setup until its teardown
    is reported (under :data:`ITEM_RUN_KEY`, then removed: a session of 100,000 runs does not
    keep each one's reports and result alive)."""

    run: Run
    #: The phase reports so far, by phase ("setup", "call", "teardown").
    reports: dict[str, pytest.TestReport] = field(default_factory=dict)
    #: The return value as stored (JSON-safe), once the call returned one.
    result: Any = None


class PytestExperimentsWarning(pytest.PytestWarning):
    """A warning about what pytest-experiments could record."""


def derive_status(reports: dict[str, pytest.TestReport]) -> tuple[str, pytest.TestReport | None]:
    """The run's status from its phase reports, and the report holding its error if any."""
    # Outcomes compared, not the reports' properties: this runs for every run.
    setup, call, teardown = reports.get("setup"), reports.get("call"), reports.get("teardown")
    if setup is not None:
        if setup.outcome == "failed":
            return "error", setup
        if setup.outcome == "skipped":
            return ("xfailed" if hasattr(setup, "wasxfail") else "skipped"), None
    if call is None:
        return "interrupted", None
    if call.outcome == "skipped":
        return ("xfailed" if hasattr(call, "wasxfail") else "skipped"), None
    if call.outcome == "failed":
        return "failed", call
    if teardown is not None and teardown.outcome == "failed":
        return "error", teardown
    return ("xpassed" if hasattr(call, "wasxfail") else "passed"), None


class Recorder:
    """Records every experiment that runs in this process (the session's side is
    :class:`~pytest_experiments.plugin.session.SessionLifecycle`, on the controller)."""

    def __init__(
        self, store: StoreHandle, worker: str, claim_after: int | None = None, continuing: Continuing | None = None
    ) -> None:
        self._store = store
        self._worker = worker
        #: With resume / retry: claim each run in the store, skipping what another session
        #: runs, or started after the snapshot with this mark.
        self._claim_after = claim_after
        #: With claims: which grid points' paused (or interrupted) latest runs are continued.
        self._continuing = continuing
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self._pid_namespace = pid_namespace()
        self._pid_started = process_start(self._pid)
        self._warned_volatile: set[tuple[str, str]] = set()
        #: Grid points not run because another session had them, by reason ("done in session ...").
        self.taken: Counter[str] = Counter()
        #: How many grid points the next claim asks for (see :meth:`_decide`).
        self._window = 1
        #: Each item's place in the session's order (see :meth:`_ahead`), once claims need it.
        self._places: dict[int, int] | None = None
        #: ``item.ihook`` by the item's path (see :meth:`_hooks`).
        self._hook_callers: dict[Path, Any] = {}
        # The recorder's own view of the item in flight, in attributes: an item's stash is a few
        # Python calls a lookup, and the phases of every run look it up a dozen times. The stash
        # still holds the item's run (ITEM_RUN_KEY) for the fixtures and the other plugins.
        #: The item whose protocol started last, and whether it is an experiment.
        self._protocol_item: pytest.Item | None = None
        self._protocol_experiment = False
        #: The item whose run is in flight (from its setup until the run is stored), and that run.
        self._running_item: pytest.Item | None = None
        self._running: ItemRun | None = None
        #: How many times an item's protocol started a run, by ``id(item)`` (the session keeps its
        #: items): a rerun plugin runs the protocol again, and each attempt is a run, numbered.
        self._attempts: dict[int, int] = {}
        #: A test function's stand-in that keeps its return value (None: the function hands its
        #: caller nothing to keep), made once per function and parent (see :meth:`_keeper`).
        self._keepers: dict[tuple[Callable[..., Any], int], Callable[..., Any] | None] = {}
        #: The run in flight and its item while its test function is called (for its stand-in).
        self._calling: tuple[ItemRun, pytest.Function] | None = None

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # No experiment to run in this process: step aside, so that every other test runs
        # without paying for our per-test hooks.
        if not any(is_experiment(item) for item in session.items):
            session.config.pluginmanager.unregister(self)
            self._report_to_controller(session)
        else:
            freeze_collected(session.config)

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self._report_to_controller(session)

    def _report_to_controller(self, session: pytest.Session) -> None:
        xdist.report_recorded(session.config, self._store.recorded, self.taken)

    # Named pytest_*: pytest registers no other method of a plugin, whatever its specname.
    @pytest.hookimpl(tryfirst=True, specname="pytest_runtest_protocol")
    def pytest_xp_before_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
        """Before anything of an experiment runs (one hook for both: this runs for every test).

        Once the store failed (in any process of the session), no experiment starts: the session
        stops, the item not run and nothing reported, as the items after ``-x`` stops a session.

        With resume / retry: the grid point is claimed here; one that another session has is not
        run at all (no setup, no report: as deselected), only counted for the summary. A claim
        that fails is left to the setup, which reports it.
        """
        experiment = is_experiment(item)
        # Decided once per protocol, for the hooks that follow (a marker added after collection,
        # by a collection hook of the suite's, is seen: this is after collection).
        self._protocol_item, self._protocol_experiment = item, experiment
        if not experiment:
            return None
        failure = self._store.failure
        if failure is not None:
            _stop(item.session, failure)
            return True
        if self._claim_after is None:
            return None
        assert isinstance(item, pytest.Function)
        decided = item.stash.get(DECIDED_KEY, None)
        if decided is None:
            try:
                decided = self._decide(item)
            except StoreError:
                return None
        else:
            del item.stash[DECIDED_KEY]
        if isinstance(decided, Run):
            item.stash[CLAIMED_KEY] = decided
            return None
        self.taken[decided] += 1
        return True

    def _decide(self, item: pytest.Function) -> Run | str:
        """Claim ``item``'s grid point, or say who has it; may decide some items after it too.

        Resumers sharing a grid meet runs of points others took, in stretches (each goes through
        the grid in order, from its own place): one claim asks for this point and, after one that
        was taken, for more and more of the points that come next, up to the first free one, which
        costs one round trip for the lot on a server store. Only in a process that runs the
        session's items in order: an xdist worker runs the ones it is sent, and a point claimed
        for an item it never gets would be run by nobody in this session.
        """
        after = self._claim_after
        assert after is not None
        statuses = self._continue_statuses(item)
        if statuses:  # the claim continues the paused (or interrupted) run: the same run
            run = self._new_run(item)
            taken_by = self._store.use(lambda store: store.continue_run(run.start_record(), after, statuses))
            if isinstance(taken_by, Continuation):
                run.continue_from(taken_by)
                taken_by = None
            return run if taken_by is None else taken_by
        items = [item, *self._ahead(item)] if self._worker == "main" else [item]
        runs = [self._new_run(candidate) for candidate in items]
        starts = [run.start_record() for run in runs]
        outcomes = self._store.use(lambda store: store.claim_first(starts, after))
        refused = sum(outcome is not None for outcome in outcomes)
        self._window = min(2 * refused + 1, MAX_CLAIM_WINDOW)
        for candidate, run, outcome in zip(items[1:], runs[1:], outcomes[1:], strict=False):
            candidate.stash[DECIDED_KEY] = run if outcome is None else outcome
        return runs[0] if outcomes[0] is None else outcomes[0]

    def _ahead(self, item: pytest.Function) -> list[pytest.Function]:
        """The experiments that come after ``item`` in the session's order, undecided, within the window."""
        if self._window < 2:
            return []
        items = item.session.items
        if self._places is None:
            self._places = {id(each): place for place, each in enumerate(items)}
        place = self._places.get(id(item))
        if place is None:
            return []
        ahead: list[pytest.Function] = []
        for candidate in items[place + 1 :]:
            if len(ahead) == self._window - 1:
                break
            if isinstance(candidate, pytest.Function) and is_experiment(candidate):
                if DECIDED_KEY in candidate.stash or self._continue_statuses(candidate):
                    break  # decided by an earlier claim (so is what follows it), or claimed by continuing
                ahead.append(candidate)
        return ahead

    def _continue_statuses(self, item: pytest.Function) -> tuple[str, ...]:
        """The statuses of ``item``'s latest run that its claim continues (none: a new run)."""
        return self._continuing.statuses(item) if self._continuing is not None else ()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if not (self._protocol_experiment if item is self._protocol_item else is_experiment(item)):
            return
        assert isinstance(item, pytest.Function)
        claimed = None
        if self._claim_after is not None:
            claimed = item.stash.get(CLAIMED_KEY, None)
            if claimed is not None:
                del item.stash[CLAIMED_KEY]
        run = claimed or self._new_run(item)
        # A rerun plugin (pytest-rerunfailures) runs the whole protocol again: each attempt
        # is a run of its own, numbered, and keeps nothing of the attempt before.
        attempt = self._attempts[id(item)] = self._attempts.get(id(item), 0) + 1
        run.metadata["attempt"] = attempt
        taken_by = None if claimed is not None else self._start(item, run)
        if taken_by is not None:
            # A rerun's attempt whose point another session took meanwhile. A plain tryfirst
            # hook, not a wrapper: a skip raised from a setup wrapper breaks the logging plugin's teardown.
            pytest.skip(taken_by)
        run.stream_points(self._store.point_writer())  # each point durable as it is logged
        current = item.stash[ITEM_RUN_KEY] = ItemRun(run)
        self._running_item, self._running = item, current
        call_run_hook(self._hooks(item).pytest_experiments_run_start, run)

    def _item_run(self, item: pytest.Item) -> ItemRun | None:
        """The run ``item`` is running (None: none, or it was stored already)."""
        if item is self._running_item:
            return self._running
        return item.stash.get(ITEM_RUN_KEY, None)

    def _hooks(self, item: pytest.Item) -> Any:
        """``item.ihook``, once per file: pytest works it out on every access (the conftest
        modules that apply to the item's path), and a hook caller reads its plugins as it calls."""
        path = item.path
        hooks = self._hook_callers.get(path)
        if hooks is None:
            hooks = self._hook_callers[path] = item.ihook
        return hooks

    def _new_run(self, item: pytest.Function) -> Run:
        """A new run of ``item`` (not written yet)."""
        point = grid_point(item)
        run_id = new_id()
        return Run(
            run_id=run_id,
            session_id=self._store.session.session_id,
            node_id=item.nodeid,
            module=point.module,
            experiment=point.experiment,
            params=point.params,
            param_hash=point.param_hash,
            stored_params=point.stored_params,
            store_root=self._store.root,
            relative_dir=relative_run_dir(point.experiment, run_id),
            worker=self._worker,
            host=self._host,
            pid=self._pid,
            pid_namespace=self._pid_namespace,
            pid_started=self._pid_started,
            function=getattr(item, "function", None),
        )

    def _start(self, item: pytest.Item, run: Run) -> str | None:
        """Write the run as ``running`` (with resume: claim it; a reason when another session has it).

        A store failure errors this test with one line and stops the session.
        """
        record = run.start_record()
        after = self._claim_after
        try:
            if after is None:
                self._store.record_start(record)  # to the journal: a write, no transaction
                return None
            return self._store.use(lambda store: store.claim_run(record, after))
        except StoreError as exc:
            failure = str(exc)
        _stop(item.session, failure)
        pytest.fail(f"xp: {failure}", pytrace=False)  # outside the except: no chained exception shown

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        # The test function is swapped for one that keeps its return value and returns None,
        # for the call only: whoever calls it (pytest, pytest-asyncio's runner, anyio's) calls
        # ours, and pytest has no non-None return to warn about.
        current = self._item_run(item)
        keeper = None
        if current is not None and isinstance(item, pytest.Function):
            function = item.obj
            keeper = self._keeper(item, function)
        if keeper is None:
            try:
                return (yield)
            except RunPaused as paused:
                raise pause_skip(paused.reason) from None
        assert current is not None
        assert isinstance(item, pytest.Function)
        item.obj = keeper
        self._calling = (current, item)
        try:
            return (yield)
        except RunPaused as paused:  # xp.pause(): the body stopped on purpose
            raise pause_skip(paused.reason) from None
        finally:
            item.obj = function
            self._calling = None

    def _keeper(self, item: pytest.Function, function: Callable[..., Any]) -> Callable[..., Any] | None:
        """``function``'s stand-in for the call, which keeps what it returns for the run in flight
        (:attr:`_calling`); None when whoever calls it keeps nothing to give (see :func:`_returns_to_caller`).

        A module's test function is wrapped once, not once per run (wrapping copies the function's
        attributes). A test method is a bound method of its item's own instance: wrapped per run,
        and never kept (it would keep the instance alive).
        """
        kept = not isinstance(function, MethodType)
        # By parent too: a static method of a TestCase returns to nobody, the same function in a
        # module to pytest. (The session keeps its collectors: their ids stay theirs.)
        key = (function, id(item.parent))
        if kept and key in self._keepers:
            return self._keepers[key]
        keeper = _keeping_result(function, self._keep_calling_result) if _returns_to_caller(item) else None
        if kept:
            self._keepers[key] = keeper
        return keeper

    def _keep_calling_result(self, result: Any) -> None:
        calling = self._calling
        if calling is not None:  # None: the stand-in was called outside a call phase of ours
            self._keep_result(calling[0], calling[1], result)

    def _keep_result(self, current: ItemRun, item: pytest.Function, result: Any) -> None:
        """Store the return value as best it can; warnings are issued here, inside the test's own call.

        Whatever the value, the test's outcome stays its own: the conversions never raise.
        """
        run = current.run
        run.result = result
        notes: list[str] = []
        current.result = to_json_value(result, notes)
        skipped: list[str] = []
        run.metrics.update(metrics_from_result(result, skipped))
        problems = _result_problems(notes, skipped)
        if problems:
            self._warn(f"{item.nodeid}: {problems}")
        # Only a repr can hold a memory address, and plain parameters have none.
        volatile = [] if run.stored_params is run.params else volatile_parameters(item)
        for name in volatile:
            if (run.experiment, name) not in self._warned_volatile:
                self._warned_volatile.add((run.experiment, name))
                self._warn(
                    f"{run.experiment}: parameter {name!r} is stored as a repr holding a memory address, "
                    "which changes every session: its runs can never count as done; give it an id or a plain value"
                )

    @staticmethod
    def _warn(message: str) -> None:
        warnings.warn(PytestExperimentsWarning(message), stacklevel=1)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        report = yield
        # _item_run inlined: this runs for each phase of every test.
        current = self._running if item is self._running_item else item.stash.get(ITEM_RUN_KEY, None)
        if current is not None:
            current.reports[report.when] = report
            if self._worker != "main":  # under xdist the controller learns of experiments from their reports
                xdist.tag_experiment_report(report)
            if report.when == "call" and report.skipped and current.run.pause_reason is not None:
                mark_paused(report, current.run.pause_reason, item.config)
            elif call.excinfo is not None and isinstance(call.excinfo.value, RunPaused):
                report.longrepr = "xp: xp.pause() ends the test's body: call it there, not in a fixture or hook"
            if report.failed and call.excinfo is not None:
                run = current.run
                if run.error_type is None:
                    run.error_type = call.excinfo.typename
                    run.error_message = str(call.excinfo.value)
            # Completed before its last report is shown: when the final write fails, that
            # report says so, and no run shows as passed that the store does not hold as passed.
            if report.when == "teardown":
                self._finish_reported(item, report)
        return report

    def _finish_reported(self, item: pytest.Item, report: pytest.TestReport) -> None:
        try:
            self._finish(item, None)
            self._store.fold_if_due()
        except StoreError as exc:
            _stop(item.session, str(exc))
            _turn_into_error(report, f"xp: {exc}")
            return
        news = self._store.heartbeat_news()
        if news is not None:
            try:
                warnings.warn(PytestExperimentsWarning(f"xp: {news}"), stacklevel=1)
            except Warning as exc:  # -W error: an error of this run's teardown, never an internal error
                _turn_into_error(report, f"{type(exc).__name__}: {exc}")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Any:
        try:
            outcome = yield
        except BaseException as exc:
            # KeyboardInterrupt, pytest.exit, a fatal error: the run never finished.
            current = self._item_run(item)
            if current is not None:
                run = current.run
                run.error_type = run.error_type or type(exc).__name__
                run.error_message = run.error_message or str(exc)
                call_interrupt_hook(item, run, exc)  # before it is stored: a checkpoint can be written
                with contextlib.suppress(StoreError):  # the interrupt goes on; the handle keeps the failure
                    self._finish(item, "interrupted")
            raise
        if self._item_run(item) is not None:  # another plugin ran the protocol without a teardown report
            try:
                self._finish(item, None)
            except StoreError as exc:
                _stop(item.session, str(exc))
        return outcome

    def _finish(self, item: pytest.Item, forced_status: str | None) -> None:
        current = self._item_run(item)
        assert current is not None
        run, reports = current.run, current.reports
        status, failing = derive_status(reports)
        if status == "skipped" and run.pause_reason is not None:
            status = "paused"
        run.status = forced_status or status
        if failing is not None:
            run.traceback = failing.longreprtext
        elif run.status not in ("failed", "error", "interrupted"):
            run.error_type = run.error_message = None
            if run.status == "paused":
                reason = run.pause_reason
            elif run.status == "passed":  # only a teardown can have skipped (or else the run did)
                teardown = reports.get("teardown")
                reason = _skip_reason(reports) if teardown is not None and teardown.outcome == "skipped" else None
            else:
                reason = _skip_reason(reports)
            if reason:
                run.metadata["reason"] = reason
        last = reports.get("teardown") or reports.get("call") or reports.get("setup")
        if last is not None and last.sections:  # none: nothing captured (each property joins them anew)
            run.stdout, run.stderr = last.capstdout, last.capstderr
        call = reports.get("call")
        if call is not None:
            run.metadata.setdefault("timing", {})["call"] = call.duration
        run.finished_at = time.time()
        try:
            self._run_end_hooks(item, run)
        finally:
            # Stored even when a run_end hook raised: the run's results are never lost.
            end = run.end_record(current.result)
            del item.stash[ITEM_RUN_KEY]  # the run ended: nothing of it stays on the item
            if item is self._running_item:
                self._running_item = self._running = None
            self._store.record_end(end)

    def _run_end_hooks(self, item: pytest.Item, run: Run) -> None:
        try:
            call_run_hook(self._hooks(item).pytest_experiments_run_end, run)
        except OSError as exc:
            # A run folder that cannot be written (a full disk under xp-capture's stdout.txt)
            # is the store failing: one line, and the session stops.
            # A full disk may show only when a file is closed, without a file name: then the
            # journal's write that follows would have taken the last bytes of its page.
            full = exc.filename is None and exc.errno in (errno.ENOSPC, errno.EDQUOT)
            if not full and (exc.filename is None or not within(self._store.root, str(exc.filename))):
                raise
            message = describe(exc, self._store.path)
            self._store.fail(message)
            raise StoreError(message) from None


def call_run_hook(hook: HookCaller, run: Run) -> None:
    """``hook(run=run)``, for a run hook (``pytest_experiments_run_start`` / ``_end``).

    In most sessions only the built-in collectors implement it (``xp-code``, ``xp-capture``):
    then they are called directly, in pluggy's order, which saves pluggy's dispatch (about 2 µs
    a call, 7% of what recording a trivial run adds). Any other implementation (a conftest's, a
    plugin's) and pluggy calls the hook as usual. The direct call is not seen by hook-call
    monitoring (``pytester``'s hook recorder, ``--debug``); a call through pluggy is.
    """
    implementations = hook.get_hookimpls()
    for implementation in implementations:
        if type(implementation.plugin) not in BUILTIN_TYPES:
            hook(run=run)
            return
    # Plain implementations in pluggy's list run last to first (no wrapper: all are ours).
    for implementation in reversed(implementations):
        implementation.function(run=run)


def _returns_to_caller(item: pytest.Function) -> bool:
    """Whether the item's test function hands its return value to whoever calls it.

    Not under unittest (``TestCase`` runs the method itself and drops what it returns), nor
    under hypothesis (``@given`` calls the function itself and forbids a return value).
    """
    parent = item.parent  # not item.cls, which walks every parent: this runs for every run
    if isinstance(parent, pytest.Class) and issubclass(parent.obj, unittest.TestCase):
        return False
    function = item.obj
    return not getattr(function, "is_hypothesis_test", False) and not inspect.isasyncgenfunction(function)


def _keeping_result(function: Callable[..., Any], keep: Callable[[Any], None]) -> Callable[..., Any]:
    """``function`` (sync or async, its signature kept) returning None, its result given to ``keep``."""
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def keeping_async(*args: Any, **kwargs: Any) -> None:
            keep(await function(*args, **kwargs))

        return keeping_async

    @functools.wraps(function)
    def keeping(*args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        if inspect.isawaitable(result):
            return result  # a coroutine from a sync function: pytest says what is wrong with it
        keep(result)
        return None

    return keeping


def _stop(session: pytest.Session, message: str) -> None:
    """Stop the session after this test (as ``-x`` does), saying why."""
    if not session.shouldstop:
        session.shouldstop = f"xp: {message}"


def _turn_into_error(report: pytest.TestReport, message: str) -> None:
    """Make a teardown report an error showing ``message`` (added to its own error if it has one)."""
    if report.failed:
        report.sections.append(("pytest-experiments", message))
    else:
        report.outcome = "failed"
        report.longrepr = message


def _result_problems(notes: list[str], too_large: list[str]) -> str | None:
    """What could not be kept of a return value as it was, in one sentence (None: everything was)."""
    problems = []
    if notes:
        shown = "; ".join(note if len(note) <= 60 else note[:57] + "..." for note in notes[:3])
        more = f" and {len(notes) - 3} more" if len(notes) > 3 else ""
        problems.append(f"returned values JSON cannot hold, stored as best it can: {shown}{more}")
    if too_large:
        names = ", ".join(map(repr, too_large))
        problems.append(f"{names} too large for a float: kept in the result, not as metrics")
    return "; ".join(problems) or None


def _skip_reason(reports: dict[str, pytest.TestReport]) -> str | None:
    for report in reports.values():
        wasxfail = getattr(report, "wasxfail", None)
        if wasxfail:
            return str(wasxfail)
        if report.outcome == "skipped" and isinstance(report.longrepr, tuple):
            return str(report.longrepr[2])
    return None
