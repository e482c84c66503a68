"""The run model: what a run can be, and the plain records the recorder and the stores exchange.

One place for every named set of states: a run's :data:`Status`, a comparison's
:data:`Verdict` and resume's :data:`Category` of a collected experiment. Records are plain
(named tuples and dataclasses of builtin values): no pytest, no pandas, nothing a store or the
xdist channel cannot carry. The user's handle on a run in flight is
:class:`pytest_experiments.Run`; what is read back is a :class:`RunRecord`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple, get_args, overload

# -- run statuses ---------------------------------------------------------------------------

#: What a run can be. ``running`` is only ever seen while a run is in flight; a ``running``
#: run whose process is gone reads back as ``interrupted``. ``paused`` (``xp.pause()``) is not
#: done: ``--xp-resume`` continues it, the same run.
Status = Literal["passed", "failed", "error", "skipped", "xfailed", "xpassed", "paused", "interrupted", "running"]
#: Every :data:`Status`, in the order tables show them.
STATUSES: tuple[Status, ...] = get_args(Status)
#: The statuses of a run that is done: resume runs its grid point again only for changed code.
DONE_STATUSES: frozenset[str] = frozenset({"passed", "xfailed", "xpassed"})

# -- comparison verdicts, per metric of a run ----------------------------------------------

Verdict = Literal["regressed", "improved", "ok", "shown", "new", "not run"]
REGRESSED: Final = "regressed"
IMPROVED: Final = "improved"
OK: Final = "ok"
SHOWN: Final = "shown"  # no rule: shown, never judged
NEW: Final = "new"  # no baseline entry with these parameters
NOT_RUN: Final = "not run"  # a baseline entry that nothing compared was run for

# -- resume categories: a collected experiment, from its latest run in the store -----------

Category = Literal[
    "never run",
    "done",
    "done with older code",
    "code changed",
    "failed",
    "error",
    "interrupted",
    "paused",
    "skipped",
    "running elsewhere",
]
NEVER_RUN: Final = "never run"
DONE: Final = "done"
DONE_OLDER_CODE: Final = "done with older code"  # kept: --xp-rerun-changed is off
CODE_CHANGED: Final = "code changed"  # runs: --xp-rerun-changed is on
FAILED: Final = "failed"
ERROR: Final = "error"
INTERRUPTED: Final = "interrupted"
PAUSED: Final = "paused"  # xp.pause(): resume continues the run
SKIPPED: Final = "skipped"
RUNNING_ELSEWHERE: Final = "running elsewhere"

# -- records --------------------------------------------------------------------------------


class RunStart(NamedTuple):
    """What is known of a run when it starts: written at once as a ``running`` row."""

    run_id: str
    session_id: str
    node_id: str
    module: str
    experiment: str
    param_hash: str
    params: dict[str, Any]
    started_at: float
    worker: str
    host: str
    pid: int
    dir: str  # relative to the store root, so a moved store stays valid
    #: Tells processes apart across containers that share a hostname (Linux pid namespace).
    pid_namespace: str = ""
    #: When process ``pid`` started (``liveness.process_start``): tells it from a later one with the same pid.
    pid_started: str = ""


class MetricPoint(NamedTuple):
    """One logged value of a metric series, in logging order."""

    name: str
    seq: int
    step: int | None
    value: float


#: Tags are short: a key of at most this many characters, a value of at most :data:`TAG_VALUE_MAX`.
TAG_KEY_MAX = 64
TAG_VALUE_MAX = 256


def tag_problem(key: object, value: object) -> str | None:
    """What is wrong with the tag ``key=value`` (None when it is fine): keys and values are short
    strings, and a key holds no ``=`` (``pytest-experiments tag RUN key=value`` could not name it)."""
    if not isinstance(key, str) or not key or len(key) > TAG_KEY_MAX or "=" in key or not key.isprintable():
        return f"a tag key must be a non-empty printable string of at most {TAG_KEY_MAX} characters without '=', not {key!r:.80}"
    if not isinstance(value, str) or len(value) > TAG_VALUE_MAX:
        shown = type(value).__name__ if not isinstance(value, str) else f"{len(value)} characters"
        return f"tag {key!r}: a value must be a string of at most {TAG_VALUE_MAX} characters, not {shown}"
    return None


class Artifact(NamedTuple):
    """A file in a run folder: logged through the run handle (``kind`` says how), or found there."""

    #: Its path inside the run folder, with ``/`` between folders.
    name: str
    size: int
    #: From the name's suffix (``mimetypes``), e.g. ``image/png``; None when unknown.
    media_type: str | None
    #: ``file``, ``figure``, ``image``, ``text`` or ``dict`` when logged by ``xp.log_*``; None
    #: for a file written straight into ``xp.dir``.
    kind: str | None = None


class Note(NamedTuple):
    """A note added to a run afterwards (``pytest-experiments note``)."""

    at: float
    text: str


class SeriesPoint(NamedTuple):
    """One logged point of one run's metric, as :meth:`Store.points` reads them."""

    run_id: str
    metric: str
    seq: int
    step: int | None
    value: float


class SeriesPoints(Sequence[SeriesPoint]):
    """Logged points as :meth:`Store.points` reads them: one list per field (what
    ``load_series()`` builds its frame from without a Python object per point), and also a
    sequence of :class:`SeriesPoint` (indexing, iteration and ``==`` with a list of them)."""

    __slots__ = ("metric", "run_id", "seq", "step", "value")

    def __init__(
        self,
        run_id: list[str],
        metric: list[str],
        seq: list[int],
        step: list[int | None],
        value: list[float],
    ) -> None:
        if not len(run_id) == len(metric) == len(seq) == len(step) == len(value):
            raise ValueError("the columns of SeriesPoints must have the same length")
        self.run_id = run_id
        self.metric = metric
        self.seq = seq
        self.step = step
        self.value = value

    @classmethod
    def of(cls, points: Iterable[SeriesPoint]) -> SeriesPoints:
        """``points`` (any iterable of :class:`SeriesPoint`) as columns."""
        if isinstance(points, SeriesPoints):
            return points
        columns = [list(column) for column in zip(*points, strict=True)] or [[], [], [], [], []]
        return cls(*columns)

    def __len__(self) -> int:
        return len(self.run_id)

    @overload
    def __getitem__(self, index: int) -> SeriesPoint: ...
    @overload
    def __getitem__(self, index: slice) -> list[SeriesPoint]: ...
    def __getitem__(self, index: int | slice) -> SeriesPoint | list[SeriesPoint]:
        if isinstance(index, slice):
            return list(self)[index]
        return SeriesPoint(self.run_id[index], self.metric[index], self.seq[index], self.step[index], self.value[index])

    def __iter__(self) -> Iterator[SeriesPoint]:
        return map(SeriesPoint._make, zip(self.run_id, self.metric, self.seq, self.step, self.value, strict=True))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SeriesPoints | list | tuple):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable columns, as a list

    def __repr__(self) -> str:
        return f"SeriesPoints({list(self)!r})"


class RunEnd(NamedTuple):
    """The outcome of a run, written when it finishes."""

    run_id: str
    status: str
    finished_at: float
    duration: float
    result: Any
    metrics: dict[str, float]
    points: list[MetricPoint]
    logged_params: dict[str, Any]
    metadata: dict[str, Any]
    code_sha256: str | None = None
    code_source: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    #: ``xp.tags``: merged into the tags the run may already have (set by ``pytest-experiments tag``).
    tags: dict[str, str] | None = None
    #: Files logged through the run handle (``xp.log_artifact`` ...).
    artifacts: tuple[Artifact, ...] = ()


class Continuation(NamedTuple):
    """A run reopened to be continued (:meth:`Store.continue_run`): what its new attempt needs of it."""

    run_id: str
    #: Its folder, relative to the store root (the same folder as before).
    dir: str
    #: How many times the run has been continued, this time included (1 the first time).
    continued: int
    #: The sequence number its next metric point takes: series are appended, never overwritten.
    next_seq: int
    #: Its metrics' latest values and its logged parameters so far.
    metrics: dict[str, float]
    logged_params: dict[str, Any]


class Attempt(NamedTuple):
    """One attempt of a run (:meth:`Store.attempts`): the first, then one per continuation."""

    session_id: str
    started_at: float
    finished_at: float | None
    #: How the attempt ended (``paused``, ``interrupted``...), ``running`` while in flight.
    status: str
    #: Why: the pause's reason, or the error of an interrupted or failed attempt; "" when none.
    reason: str
    worker: str
    host: str
    pid: int


@dataclass(frozen=True)
class SessionStart:
    """A pytest invocation's row as first written, by whichever process records its first run
    (the session hooks' :class:`~pytest_experiments.ExperimentSession` is the user's view of it)."""

    session_id: str
    started_at: float
    host: str
    pid: int
    metadata: dict[str, Any]


@dataclass
class RunRecord:
    """A stored run, as read back.

    ``dir`` is absolute; ``status`` is ``interrupted`` for a ``running`` run whose
    process is known to be dead. ``metadata`` holds the run's own metadata; ``session``
    (filled by :meth:`Store.run` only) the metadata shared by its whole session. ``tags`` and
    ``notes`` come with every listing; ``artifacts`` (the registry joined with a listing of
    the run folder) only with :meth:`Store.run`.
    """

    run_id: str
    session_id: str
    node_id: str
    module: str
    experiment: str
    param_hash: str
    params: dict[str, Any]
    logged_params: dict[str, Any]
    status: str
    started_at: float
    finished_at: float | None
    duration: float | None
    worker: str
    host: str
    pid: int
    dir: Path
    metrics: dict[str, float]
    error_type: str | None
    error_message: str | None
    code_sha256: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    traceback: str | None = None
    code_source: str | None = None
    session: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)
    artifacts: list[Artifact] = field(default_factory=list)

    @property
    def error(self) -> str | None:
        """``"Type: message"`` of a failed or errored run, else None."""
        if self.error_type is None:
            return None
        return f"{self.error_type}: {self.error_message}" if self.error_message else self.error_type


@dataclass
class RunColumns:
    """Runs read as columns, what ``load()`` builds its frame from: item ``i`` of every list
    is run ``i``, oldest first as :meth:`Store.runs` orders them.

    The fields are those of :class:`RunRecord` that the frame shows: ``status`` is the live
    one (``interrupted`` for a ``running`` run whose process is gone), ``dir`` the run
    folder's absolute path as text, and the JSON fields decoded. ``metadata`` is None unless
    asked for (``Store.run_columns(metadata=True)``).
    """

    run_id: list[str]
    session_id: list[str]
    node_id: list[str]
    module: list[str]
    experiment: list[str]
    status: list[str]
    started_at: list[float]
    finished_at: list[float | None]
    duration: list[float | None]
    worker: list[str]
    dir: list[str]
    error_type: list[str | None]
    error_message: list[str | None]
    params: list[dict[str, Any]]
    logged_params: list[dict[str, Any]]
    metrics: list[dict[str, Any]]
    tags: list[dict[str, str]]
    metadata: list[dict[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.run_id)

    @classmethod
    def of(cls, records: Sequence[RunRecord], *, metadata: bool = False) -> RunColumns:
        """``records`` as columns (the command line's frames, and a store without a faster way)."""
        return cls(
            run_id=[record.run_id for record in records],
            session_id=[record.session_id for record in records],
            node_id=[record.node_id for record in records],
            module=[record.module for record in records],
            experiment=[record.experiment for record in records],
            status=[record.status for record in records],
            started_at=[record.started_at for record in records],
            finished_at=[record.finished_at for record in records],
            duration=[record.duration for record in records],
            worker=[record.worker for record in records],
            dir=[str(record.dir) for record in records],
            error_type=[record.error_type for record in records],
            error_message=[record.error_message for record in records],
            params=[record.params for record in records],
            logged_params=[record.logged_params for record in records],
            metrics=[record.metrics for record in records],
            tags=[record.tags for record in records],
            metadata=[record.metadata for record in records] if metadata else None,
        )

    def take(self, rows: Sequence[int]) -> RunColumns:
        """The runs at positions ``rows``, in that order."""
        taken: dict[str, Any] = {}
        for column in fields(self):
            values = getattr(self, column.name)
            taken[column.name] = None if values is None else [values[row] for row in rows]
        return RunColumns(**taken)


@dataclass
class SessionRecord:
    """A stored session with its run counts by status, as read back (``Store.sessions()``)."""

    session_id: str
    started_at: float
    finished_at: float | None
    host: str
    pid: int
    exitstatus: int | None
    metadata: dict[str, Any]
    counts: dict[str, int]


#: A grid point's identity: (module, experiment, parameter hash).
GridKey = tuple[str, str, str]
#: What resume needs of a grid point's latest run: (live status, code sha256 or None).
GridState = tuple[str, "str | None"]


class GridSnapshot(NamedTuple):
    """What resume decides from: every grid point's latest run, read at one moment."""

    states: dict[GridKey, GridState]
    #: The store's position at that moment: every run started later is "after" it for
    #: :meth:`Store.claim_run`. Assigned by the store itself, never a clock.
    mark: int


@dataclass
class RunChanges:
    """What a store gives a reader that keeps a frame of its runs and patches it later
    (``load()``'s kept frames): the runs changed since a point of the store's change sequence,
    or every run, read in one snapshot with that snapshot's place in the sequence.

    ``columns`` holds the runs (changed since ``since``, or all of them), ordered as
    :meth:`Store.run_columns` orders them, with each one's ``rowid`` (the store's order of
    writing, which breaks ties of start time) and ``param_hash`` (its grid point with the module
    and the experiment). ``removed`` is every run id changed since ``since`` that no longer
    exists. ``seq`` and ``token`` place the snapshot: ``seq`` is what a later reader asks for
    the changes since, ``token`` :meth:`Store.change_token`'s text, and ``mark`` the random mark
    of change number ``marked`` (SQLite: ``seq`` itself), which a later reader finds again in
    :attr:`marks` when, and only when, its store still holds that very change.
    """

    since: int | str | None
    seq: int | str
    token: str
    mark: str
    #: The store as :attr:`token` names it, without its state: what a kept frame must be of.
    place: str
    columns: RunColumns
    rowid: list[int]
    param_hash: list[str]
    removed: list[str] = field(default_factory=list)
    #: The change whose mark :attr:`mark` is; None: change :attr:`seq`.
    marked: int | None = None
    #: The marks the store holds for the sequence numbers the caller asked about.
    marks: dict[int, str] = field(default_factory=dict)
