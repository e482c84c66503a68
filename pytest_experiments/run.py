"""The run handle: what the ``xp`` fixture gives a test and what run hooks receive."""

from __future__ import annotations

import contextlib
import math
import operator
import os
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

# Submodules by their full name: ``from package import module`` would take the copy a finished
# in-process (pytester) session left as the package's attribute, and keep that session alive.
import pytest_experiments.artifacts as artifacts
from pytest_experiments.ids import new_id as new_id  # re-exported: where run ids come from
from pytest_experiments.model import Artifact, Continuation, MetricPoint, RunEnd, RunStart, tag_problem
from pytest_experiments.store.rundirs import inside
from pytest_experiments.values import as_number, safe_repr, to_json_value, too_large

# Stores keep integers in 64 bits.
_STEP_RANGE = range(-(2**63), 2**63)


def _checked_metric(where: str, name: object, value: object) -> tuple[str, float]:
    """(name, value as a float), or the TypeError / ValueError that says what is wrong."""
    __tracebackhide__ = True
    if not isinstance(name, str) or not name:
        raise TypeError(f"{where}: a metric name must be a non-empty string, not {safe_repr(name)[:60]}")
    number = as_number(value)
    if number is None:
        if too_large(value):
            raise ValueError(f"{where}({name!r}): value is an int too large for a float (beyond 1.8e308)")
        raise TypeError(f"{where}({name!r}): value must be a real number, not {type(value).__name__}")
    return name, number


def _checked_step(where: str, step: object) -> int | None:
    """``step`` as an int (None stays None), or the TypeError / ValueError that says what is wrong."""
    __tracebackhide__ = True
    if step is None:
        return None
    if isinstance(step, bool):
        raise TypeError(f"{where}: step must be an integer, not bool")
    number: int | float
    try:  # ints and numpy ints, exactly (through a float, 2**62 + 1 would change)
        number = operator.index(step)  # type: ignore[arg-type]
    except TypeError:
        found = as_number(step)
        if found is None:
            raise TypeError(f"{where}: step must be an integer, not {type(step).__name__}") from None
        number = found
    if isinstance(number, float):
        if not math.isfinite(number):
            raise ValueError(f"{where}: step must be a finite integer, not {number}")
        if not number.is_integer():
            raise TypeError(f"{where}: step must be an integer, not {number!r}")
        number = int(number)
    if number not in _STEP_RANGE:
        raise ValueError(f"{where}: step must fit in 64 bits (-2**63 to 2**63 - 1)")
    return number


class RunPaused(BaseException):
    """Raised by :meth:`Run.pause` to end the test's body; the run is stored as ``paused``.

    A ``BaseException``, as pytest's own skip is: an ``except Exception`` in the body does not
    swallow it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Tags(MutableMapping[str, str]):
    """A run's tags: short strings (keys up to 64 characters without ``=``, values up to 256),
    checked as they are set, so a bad tag fails where it is written, not when the run is saved."""

    def __init__(self, initial: Mapping[str, str] | None = None) -> None:
        self._tags: dict[str, str] = {}
        if initial:  # every run makes one, empty
            self.update(initial)

    def __setitem__(self, key: str, value: str) -> None:
        __tracebackhide__ = True
        problem = tag_problem(key, value)
        if problem is not None:
            kind = TypeError if not isinstance(key, str) or not isinstance(value, str) else ValueError
            raise kind(f"xp.tags: {problem}")
        self._tags[key] = value

    def __getitem__(self, key: str) -> str:
        return self._tags[key]

    def __delitem__(self, key: str) -> None:
        del self._tags[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tags)

    def __len__(self) -> int:
        return len(self._tags)

    def __repr__(self) -> str:
        return f"Tags({self._tags!r})"

    def copy(self) -> dict[str, str]:
        """The tags as a plain dict (``dict(tags)`` goes through the mapping's methods, one by one)."""
        return self._tags.copy()


class Run:
    """One run of an experiment: its identity, parameters, and what it records.

    The ``xp`` fixture returns it to the test; ``pytest_experiments_run_start`` and
    ``pytest_experiments_run_end`` hooks receive it. ``metadata`` is saved with the run,
    so hooks and tests may add JSON-friendly values to it.
    """

    # What every run starts with, unchanged by most: class attributes until a run sets its own
    # (immutable values only), so that each new run does not assign them one by one.
    finished_at: float | None = None
    #: Set once the outcome is known: one of the statuses in ``records.STATUSES``.
    status: str | None = None
    #: The test function's return value (None until it returned).
    result: Any = None
    stdout = ""
    stderr = ""
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    code_source: str | None = None
    code_sha256: str | None = None
    _dir: Path | None = None
    #: The sequence number of the next metric point (a continued run's series goes on).
    _seq = 0
    _stream: Callable[[str, str, int, int | None, float], None] | None = None
    #: How many times this run was continued before this attempt: 0 the first time.
    continued = 0
    #: Set by :meth:`pause`: the run ends ``paused``, with this reason.
    pause_reason: str | None = None

    def __init__(
        self,
        *,
        run_id: str,
        session_id: str,
        node_id: str,
        module: str,
        experiment: str,
        params: dict[str, Any],
        param_hash: str,
        stored_params: dict[str, Any],
        store_root: Path,
        relative_dir: str,
        worker: str,
        host: str,
        pid: int,
        pid_namespace: str = "",
        pid_started: str = "",
        function: Callable[..., Any] | None,
    ) -> None:
        self.id = run_id
        self.session_id = session_id
        self.node_id = node_id
        self.module = module
        self.experiment = experiment
        #: The parameter values the test was called with (the objects themselves).
        self.params = params
        self.param_hash = param_hash
        self.stored_params = stored_params
        self.worker = worker
        self.host = host
        self.pid = pid
        self.pid_namespace = pid_namespace
        #: When process ``pid`` started (tells it from a later process given the same pid).
        self.pid_started = pid_started
        #: The experiment function (for hooks that inspect the code).
        self.function = function
        self.started_at = time.time()
        self.metadata: dict[str, Any] = {}
        #: Each metric's latest value.
        self.metrics: dict[str, float] = {}
        self.logged_params: dict[str, Any] = {}
        self._store_root = store_root
        self._relative_dir = relative_dir
        #: Points logged without a journal (a Run made outside a session); the recorder streams
        #: them to its journal instead, so a run of a million points keeps none in memory.
        self._points: list[MetricPoint] = []
        self._tags = Tags()
        self._artifacts: dict[str, Artifact] = {}

    @property
    def run_id(self) -> str:
        """The run's unique id (also ``run.id``)."""
        return self.id

    @property
    def dir(self) -> Path:
        """The run's own folder inside the store, created on first use; files there are artefacts."""
        if self._dir is None:
            path = inside(self._store_root, self._relative_dir)
            path.mkdir(parents=True, exist_ok=True)
            self._dir = path
        return self._dir

    @property
    def tags(self) -> Tags:
        """Short strings saved with the run (``xp.tags["model"] = "resnet"``), shown as ``tags.*``
        columns by ``load()``; ``pytest-experiments tag`` changes them afterwards."""
        return self._tags

    @tags.setter
    def tags(self, value: Mapping[str, str]) -> None:
        __tracebackhide__ = True
        self._tags = Tags(value)

    # -- files --------------------------------------------------------------------------
    def _registered(self, *logged: Artifact) -> Path:
        for artifact in logged:
            self._artifacts[artifact.name] = artifact
        return self.dir / logged[0].name

    def log_artifact(self, src: str | os.PathLike[str] | bytes, name: str | None = None) -> Path:
        """Copy the file ``src`` (a path) into the run folder, or write ``src`` (bytes) there, as
        ``name`` (default: the file's own name; a path inside the run folder such as
        ``plots/a.png``); register its size and media type. Returns where it went.

        A ``str`` is a path (text goes through :meth:`log_text`). Files written straight into
        :attr:`dir` are artefacts too; logging only adds what a listing cannot know.
        """
        __tracebackhide__ = True
        return self._registered(artifacts.write_file(self.dir, src, name))

    def log_text(self, name: str, text: str) -> Path:
        """Write ``text`` (UTF-8) into the run folder as ``name`` (``.txt`` added without a suffix)."""
        __tracebackhide__ = True
        return self._registered(artifacts.write_text(self.dir, name, text))

    def log_dict(self, name: str, mapping: Mapping[str, Any]) -> Path:
        """Write ``mapping`` as JSON into the run folder as ``name`` (``.json`` added without a suffix)."""
        __tracebackhide__ = True
        return self._registered(artifacts.write_dict(self.dir, name, mapping))

    def log_figure(self, figure: Any, name: str) -> Path:
        """Save a matplotlib Figure or Axes as ``name.png`` and ``name.svg`` and close it (a sweep
        does not pile up figures), or a plotly figure as the HTML fragment ``name.html`` (without
        plotly.js). Returns the PNG's (or the fragment's) path; anything else is a ``TypeError``."""
        __tracebackhide__ = True
        return self._registered(*artifacts.write_figure(self.dir, figure, name))

    def log_image(self, name: str, image: Any) -> Path:
        """Save a PIL image or a numpy array (H x W gray, H x W x 3 RGB, H x W x 4 RGBA; floats in
        0..1, integers in 0..255) as the PNG ``name``; an array needs Pillow or matplotlib."""
        __tracebackhide__ = True
        return self._registered(artifacts.write_image(self.dir, name, image))

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        """Record ``value`` for metric ``name``; with ``step``, as one point of a series.

        The run's value of a metric is the last one logged. A value that is not a real
        number (or too large for a float) and a step that is not an integer of 64 bits
        raise a ``TypeError`` or ``ValueError``, and nothing is logged.
        """
        __tracebackhide__ = True
        # The common case (a float, an int step or none) checked inline: a point costs a few µs.
        if (
            type(value) is float
            and type(name) is str
            and name
            and (step is None or (type(step) is int and -(2**63) <= step < 2**63))
        ):
            self._log((name, value), step)
            return
        self._log(_checked_metric("xp.log_metric", name, value), _checked_step(f"xp.log_metric({name!r})", step))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Record several metrics at once (same rules as :meth:`log_metric`; one bad entry logs none)."""
        __tracebackhide__ = True
        if not isinstance(metrics, Mapping):
            raise TypeError(
                f"xp.log_metrics: expects a mapping of metric names to numbers, not {type(metrics).__name__}"
            )
        checked = [_checked_metric("xp.log_metrics", name, value) for name, value in metrics.items()]
        step = _checked_step("xp.log_metrics", step)
        for metric in checked:
            self._log(metric, step)

    def _log(self, metric: tuple[str, float], step: int | None) -> None:
        name, number = metric
        seq = self._seq
        self._seq = seq + 1
        if self._stream is not None:
            self._stream(self.id, name, seq, step, number)
        else:
            self._points.append(MetricPoint(name, seq, step, number))
        self.metrics[name] = number

    def stream_points(self, write: Callable[[str, str, int, int | None, float], None]) -> None:
        """Hand every point logged from now on (and those kept so far) to ``write(run_id, name,
        seq, step, value)``, which makes it durable; none is kept in memory any more."""
        for point in self._points:
            write(self.id, point.name, point.seq, point.step, point.value)
        self._points.clear()
        self._stream = write

    def log_param(self, name: str, value: Any) -> None:
        """Record a derived parameter; it is shown with the others but is not part of the run's identity."""
        __tracebackhide__ = True
        if not isinstance(name, str) or not name:
            raise TypeError(f"xp.log_param: a parameter name must be a non-empty string, not {name!r}")
        if name in self.params:
            raise ValueError(
                f"xp.log_param({name!r}): {name!r} is already a parameter of this run; log it under another name"
            )
        self.logged_params[name] = to_json_value(value)

    def pause(self, reason: str = "") -> NoReturn:
        """End the test's body here: the run is stored as ``paused``, with ``reason``.

        A paused run is not done: ``pytest --xp-resume`` runs it again as the same run (same
        id, same :attr:`dir`, its metric series continued), with :attr:`continued` one more.
        Write what the next attempt needs into :attr:`dir` first::

            if time.monotonic() > deadline:
                save_checkpoint(model, xp.dir / "checkpoint.pt")
                xp.pause("time budget used up")
        """
        __tracebackhide__ = True
        if not isinstance(reason, str):
            raise TypeError(f"xp.pause: reason must be a string, not {type(reason).__name__}")
        self.pause_reason = reason
        raise RunPaused(reason)

    def continue_from(self, continuation: Continuation) -> None:
        """Make this handle the next attempt of the run ``continuation`` reopened (the recorder's)."""
        self.id = continuation.run_id
        self._relative_dir = continuation.dir
        self._dir = None
        self.continued = continuation.continued
        self._seq = continuation.next_seq
        self.metrics.update(continuation.metrics)
        self.logged_params.update(continuation.logged_params)
        self.metadata["continued"] = continuation.continued

    @contextlib.contextmanager
    def time_block(self, name: str) -> Iterator[None]:
        """Time the ``with`` block; its seconds are added to ``metadata["timing"][name]``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            timing = self.metadata.setdefault("timing", {})
            timing[name] = timing.get(name, 0.0) + time.perf_counter() - start

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.node_id} {self.status or 'running'}>"

    # -- conversion to store records (used by the recorder) -----------------------------
    def start_record(self) -> RunStart:
        """The ``running`` row written before the body starts."""
        return RunStart(
            run_id=self.id,
            session_id=self.session_id,
            node_id=self.node_id,
            module=self.module,
            experiment=self.experiment,
            param_hash=self.param_hash,
            params=self.stored_params,
            started_at=self.started_at,
            worker=self.worker,
            host=self.host,
            pid=self.pid,
            dir=self._relative_dir,
            pid_namespace=self.pid_namespace,
            pid_started=self.pid_started,
        )

    def end_record(self, result_json: Any) -> RunEnd:
        """The completed row; ``result_json`` is the return value already made JSON-safe."""
        finished = self.finished_at if self.finished_at is not None else time.time()
        return RunEnd(
            run_id=self.id,
            status=self.status or "interrupted",
            finished_at=finished,
            duration=finished - self.started_at,
            result=result_json,
            metrics=dict(self.metrics),
            points=list(self._points),
            logged_params=dict(self.logged_params),
            metadata=to_json_value(self.metadata),
            code_sha256=self.code_sha256,
            code_source=self.code_source,
            error_type=self.error_type,
            error_message=self.error_message,
            traceback=self.traceback,
            tags=self._tags.copy() or None,
            artifacts=tuple(self._artifacts.values()),
        )


@dataclass
class ExperimentSession:
    """One pytest invocation, as seen by the session hooks (on the xdist controller only).

    Its row in the store is a :class:`~pytest_experiments.model.SessionStart` when written and a
    :class:`~pytest_experiments.SessionRecord` when read back.
    """

    id: str
    started_at: float
    #: Where runs are recorded.
    store_path: Path | str
    #: The pytest config of the invocation.
    config: Any
    #: Saved once for the whole session (git state, host, packages, command line...).
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SessionSummary:
    """What a session recorded, given to ``pytest_experiments_session_finish``."""

    #: Runs recorded by this session, by status.
    counts: dict[str, int]
    store_path: Path | str
    exitstatus: int

    @property
    def total(self) -> int:
        """How many runs the session recorded."""
        return sum(self.counts.values())
