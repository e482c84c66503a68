"""Finished sessions and runs as whole records, read through any :class:`Store` and written
into another by :meth:`Store.add_copies` (``pytest-experiments merge``). No pytest, no pandas."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_experiments.model import Artifact, Attempt, MetricPoint, Note, RunRecord, SessionRecord
from pytest_experiments.values import dumps, storable_text

if TYPE_CHECKING:
    from pytest_experiments.store import Store


@dataclass(frozen=True)
class SessionCopy:
    """A session as stored (its heartbeat is not copied: a copied session is over)."""

    session_id: str
    started_at: float
    finished_at: float | None
    host: str
    pid: int
    exitstatus: int | None
    metadata: dict[str, Any]


@dataclass(frozen=True)
class RunCopy:
    """A finished run with everything a store holds of it."""

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
    #: The run folder relative to the store root (POSIX separators).
    dir: str
    metrics: dict[str, float]
    result: Any
    metadata: dict[str, Any]
    code_sha256: str | None
    code_source: str | None
    error_type: str | None
    error_message: str | None
    traceback: str | None
    #: Each metric's series, metric by metric (the order across metrics is not kept).
    points: tuple[MetricPoint, ...]
    tags: dict[str, str] = field(default_factory=dict)
    notes: tuple[Note, ...] = ()
    #: What the source's registry holds (files only found in the folder come with the folder).
    artifacts: tuple[Artifact, ...] = ()
    #: A continued run's earlier attempts (``Store.attempts`` without the current one).
    attempts: tuple[Attempt, ...] = ()

    def fingerprint(self) -> str:
        """The run's content as text, to tell "the same run again" from "another run with its id"
        (NaN metrics compare equal here, as they do not as floats)."""
        return json.dumps(asdict(self), sort_keys=True, default=str, allow_nan=True)


def session_copy(record: SessionRecord) -> SessionCopy:
    """The copy of a session read from a store."""
    return SessionCopy(
        record.session_id, record.started_at, record.finished_at, record.host, record.pid, record.exitstatus,
        record.metadata,
    )  # fmt: skip


def run_copy(store: Store, listed: RunRecord) -> RunCopy:
    """The copy of the run ``listed`` (from ``store.runs()``): read whole, with its series."""
    record = store.run(listed.run_id)
    # A metric set without a series (a hook writing ``run.metrics``) reads as one point without a
    # step, and is copied as such: it reads back the same.
    points = [
        MetricPoint(name, seq, step, value)
        for name in sorted(record.metrics)
        for seq, (step, value) in enumerate(store.metric_series(record.run_id, name))
    ]
    relative = os.path.relpath(record.dir, store.root).replace(os.sep, "/")
    return RunCopy(
        record.run_id, record.session_id, record.node_id, record.module, record.experiment, record.param_hash,
        record.params, record.logged_params, record.status, record.started_at, record.finished_at,
        record.duration, record.worker, record.host, record.pid, relative, record.metrics, record.result,
        record.metadata, record.code_sha256, record.code_source, record.error_type, record.error_message,
        record.traceback, tuple(points), dict(record.tags), tuple(record.notes),
        tuple(artifact for artifact in record.artifacts if artifact.kind is not None),
        tuple(store.attempts(record.run_id)[:-1]),
    )  # fmt: skip


def session_row(session: SessionCopy) -> tuple[Any, ...]:
    """The values of a copied session's row: session_id, started_at, finished_at, heartbeat_at, host,
    pid, exitstatus, metadata (the order of both backends' statements)."""
    heartbeat = session.finished_at if session.finished_at is not None else session.started_at
    return (
        session.session_id, session.started_at, session.finished_at, heartbeat, session.host, session.pid,
        session.exitstatus, dumps(session.metadata),
    )  # fmt: skip


def run_row(run: RunCopy) -> tuple[Any, ...]:
    """The values of a copied run's row: run_id, session_id, node_id, module, experiment, param_hash,
    params, logged_params, status, started_at, finished_at, duration, worker, host, pid, dir,
    code_sha256, metrics, result, metadata, error_type, error_message, traceback, tags, notes."""
    return (
        run.run_id, run.session_id, storable_text(run.node_id), storable_text(run.module), run.experiment,
        run.param_hash, dumps(run.params), dumps(run.logged_params), run.status, run.started_at, run.finished_at,
        run.duration, run.worker, run.host, run.pid, run.dir, run.code_sha256, dumps(run.metrics), dumps(run.result),
        dumps(run.metadata), storable_text(run.error_type), storable_text(run.error_message),
        storable_text(run.traceback), dumps(run.tags), dumps([list(note) for note in run.notes]),
    )  # fmt: skip
