"""Every reader sees what the journals hold: a store as :meth:`Store.open` returns it.

A store that writes folds the journals into itself when it opens and before each read (only
the journals that grew since their last fold: a ``stat`` each). A read-only store cannot fold,
so it reads the part of each journal not folded yet and lays it over what the store returns:
runs that started (``running``, or ``interrupted`` once their writer is gone), their points and
latest metrics, and their ends.

Why the overlay is consistent without a lock: the folded offsets are read first, then the
journals from there, then the store. A record folded meanwhile is in both the journal part
and the store, and records are keyed (a run by its id, a point by run, metric and seq), so it
counts once; a journal removed meanwhile was folded to its end before, so the store holds it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_experiments.model import (
    Attempt,
    Continuation,
    GridKey,
    GridSnapshot,
    Note,
    RunChanges,
    RunColumns,
    RunEnd,
    RunRecord,
    RunStart,
    SeriesPoint,
    SeriesPoints,
    SessionRecord,
    SessionStart,
)
from pytest_experiments.store.base import Store
from pytest_experiments.store.copies import RunCopy, SessionCopy
from pytest_experiments.store.journal import journal_files, read_batch, writer_is_live
from pytest_experiments.values import RawJSON


@dataclasses.dataclass
class Tail:
    """What the journals hold beyond their folded offsets."""

    #: Runs started, with whether their writer is still live.
    starts: dict[str, tuple[RunStart, bool]] = dataclasses.field(default_factory=dict)
    ends: dict[str, RunEnd] = dataclasses.field(default_factory=dict)
    #: Points by run: (metric, seq, step, value), in logging order.
    points: dict[str, list[tuple[str, int, int | None, float]]] = dataclasses.field(default_factory=dict)
    latest: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    #: Function sources by hash: a journal writes one with the first run of it only.
    sources: dict[str, str] = dataclasses.field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.starts or self.ends or self.points)

    def touches(self, run_id: str) -> bool:
        return run_id in self.starts or run_id in self.ends or run_id in self.latest


def read_tail(store: Store) -> Tail:
    """The journals of ``store`` past their folded offsets."""
    tail = Tail()
    paths = journal_files(store.root)
    if not paths:
        return tail
    offsets = store.journal_offsets()
    for path in paths:
        offset = offsets.get(path.name, 0)
        try:
            if path.stat().st_size <= offset:
                continue
        except OSError:
            continue
        batch = read_batch(path, offset, limit=None)
        if not batch:
            continue
        live = writer_is_live(batch.writer, path, store._liveness)
        for start in batch.starts:
            tail.starts[start.run_id] = (start, live)
        for end in batch.ends:
            tail.ends[end.run_id] = end
            if end.code_sha256 is not None and end.code_source is not None:
                tail.sources[end.code_sha256] = end.code_source
        for run_id, name, seq, step, value in batch.points:
            tail.points.setdefault(run_id, []).append((name, seq, step, value))
            tail.latest.setdefault(run_id, {})[name] = value
    return tail


def _value(value: Any) -> Any:
    """A value as read from a journal: JSON text the fold passes on, decoded for a reader."""
    return value.decoded() if isinstance(value, RawJSON) else value


def _started(store: Store, start: RunStart, live: bool) -> RunRecord:
    return RunRecord(
        run_id=start.run_id,
        session_id=start.session_id,
        node_id=start.node_id,
        module=start.module,
        experiment=start.experiment,
        param_hash=start.param_hash,
        params=_value(start.params),
        logged_params={},
        status="running" if live else "interrupted",
        started_at=start.started_at,
        finished_at=None,
        duration=None,
        worker=start.worker,
        host=start.host,
        pid=start.pid,
        dir=store.root / start.dir,
        metrics={},
        error_type=None,
        error_message=None,
        code_sha256=None,
    )


def _overlaid(record: RunRecord, tail: Tail, full: bool) -> RunRecord:
    """``record`` with what the journals add: latest points, and its end."""
    latest = tail.latest.get(record.run_id)
    end = tail.ends.get(record.run_id)
    if latest is None and end is None:
        return record
    record = dataclasses.replace(record, metrics={**record.metrics, **(latest or {})})
    if end is None:
        return record
    record.status, record.finished_at, record.duration = end.status, end.finished_at, end.duration
    record.metrics = dict(_value(end.metrics))
    record.logged_params, record.metadata = _value(end.logged_params), _value(end.metadata)
    record.error_type, record.error_message, record.code_sha256 = end.error_type, end.error_message, end.code_sha256
    record.tags = {**record.tags, **(end.tags or {})}
    if full:
        record.result, record.traceback = _value(end.result), end.traceback
        record.code_source = end.code_source if end.code_source is not None else record.code_source
    return record


class JournalView(Store):
    """A store with its journals folded in (a writer) or laid over (a read-only reader)."""

    def __init__(self, inner: Store, *, readonly: bool) -> None:
        self.inner = inner
        self.root = inner.root
        self._liveness = inner._liveness
        self._readonly = readonly
        self.fold(ended=True)

    def __getattr__(self, name: str) -> Any:  # a backend's own attributes (database, lease...)
        return getattr(self.inner, name)

    @property
    def location(self) -> str:
        return self.inner.location

    def database_size(self) -> int:
        return self.inner.database_size()

    def fold(self, *, ended: bool = False) -> None:
        """Fold the journals that grew since their last fold (a writer only); with ``ended``,
        also those folded to their end whose writer is gone, which the fold removes."""
        if self._readonly:
            return
        paths = journal_files(self.root)
        if not paths:
            return
        offsets = self.inner.journal_offsets()
        chosen = []
        for path in paths:
            try:
                grown = path.stat().st_size > offsets.get(path.name, 0)
            except OSError:
                continue
            if grown or ended:
                chosen.append(path)
        if chosen:
            self.inner.fold_journals(chosen)

    def _tail(self) -> Tail:
        if not self._readonly:
            self.fold()
            return Tail()
        return read_tail(self.inner)

    # -- journals ---------------------------------------------------------------------
    def fold_journals(self, paths: Iterable[Path] | None = None) -> int:
        return self.inner.fold_journals(paths)

    def journal_offsets(self) -> dict[str, int]:
        return self.inner.journal_offsets()

    # -- writing: straight through ------------------------------------------------------
    def record_session(self, session: SessionStart) -> None:
        self.inner.record_session(session)

    def update_session_metadata(self, session_id: str, metadata: dict[str, Any]) -> None:
        self.inner.update_session_metadata(session_id, metadata)

    def start_run(self, start: RunStart) -> None:
        self.inner.start_run(start)

    def claim_run(self, start: RunStart, after: int) -> str | None:
        return self.inner.claim_run(start, after)

    def continue_run(self, start: RunStart, after: int, statuses: Collection[str]) -> str | Continuation | None:
        # A run continues from what the store holds: its end and every point it logged first.
        self.fold()
        return self.inner.continue_run(start, after, statuses)

    def attempts(self, run_id: str) -> list[Attempt]:
        self.fold()
        return self.inner.attempts(run_id)

    def heartbeat(self, session_id: str) -> None:
        self.inner.heartbeat(session_id)

    def finish_run(self, end: RunEnd) -> None:
        self.inner.finish_run(end)

    def finish_session(self, session_id: str, finished_at: float, exitstatus: int) -> None:
        self.fold()  # runs ended in a journal (a killed worker's too) are not interrupted
        self.inner.finish_session(session_id, finished_at, exitstatus)

    def set_tags(self, run_id: str, tags: Mapping[str, str | None]) -> dict[str, str]:
        self.fold()
        return self.inner.set_tags(run_id, tags)

    def add_note(self, run_id: str, text: str, at: float | None = None) -> Note:
        self.fold()
        return self.inner.add_note(run_id, text, at)

    def delete_runs(self, run_ids: Iterable[str]) -> int:
        self.fold()  # a run still in a journal would come back at its next fold
        return self.inner.delete_runs(run_ids)

    def add_copies(self, sessions: Sequence[SessionCopy], runs: Sequence[RunCopy]) -> int:
        return self.inner.add_copies(sessions, runs)

    def close(self) -> None:
        self.inner.close()

    # -- reading: the store, and the journals over it ------------------------------------
    def runs(
        self,
        *,
        experiment: str | Iterable[str] | None = None,
        status: str | Iterable[str] | None = None,
        history: bool = False,
        session_id: str | None = None,
    ) -> list[RunRecord]:
        tail = self._tail()
        if not tail:
            return self.inner.runs(experiment=experiment, status=status, history=history, session_id=session_id)
        names = None if experiment is None else ({experiment} if isinstance(experiment, str) else set(experiment))
        stored = self.inner.runs(experiment=names, history=history, session_id=session_id)
        records = {record.run_id: _overlaid(record, tail, False) for record in stored}
        for run_id, (start, live) in tail.starts.items():
            if run_id in records or (names is not None and start.experiment not in names):
                continue
            if session_id is not None and start.session_id != session_id:
                continue
            records[run_id] = _overlaid(_started(self, start, live), tail, False)
        chosen = list(records.values())
        if not history:  # the latest run of each grid point
            latest: dict[GridKey, RunRecord] = {}
            for record in sorted(chosen, key=lambda record: record.started_at):
                latest[(record.module, record.experiment, record.param_hash)] = record
            chosen = list(latest.values())
        if status is not None:
            wanted = {status} if isinstance(status, str) else set(status)
            chosen = [record for record in chosen if record.status in wanted]
        return sorted(chosen, key=lambda record: (record.started_at, record.run_id))

    def run_columns(
        self,
        *,
        experiment: str | Iterable[str] | None = None,
        status: str | Iterable[str] | None = None,
        history: bool = False,
        metadata: bool = False,
    ) -> RunColumns:
        if not self._tail():  # the usual case: the backend's column-wise read
            return self.inner.run_columns(experiment=experiment, status=status, history=history, metadata=metadata)
        return super().run_columns(experiment=experiment, status=status, history=history, metadata=metadata)

    def change_token(self) -> str | None:
        # Records not folded yet are runs the store's token does not cover.
        return None if self._tail() else self.inner.change_token()

    def run_changes(
        self, since: int | str | None = None, *, history: bool = False, marks: Sequence[int] = ()
    ) -> RunChanges | None:
        # As change_token(): records not folded yet are changes the store has not counted.
        return None if self._tail() else self.inner.run_changes(since, history=history, marks=marks)

    @property
    def side_folder(self) -> Path | None:
        return self.inner.side_folder

    def run(self, run_id: str) -> RunRecord:
        tail = self._tail()
        try:
            record = self.inner.run(run_id)
        except KeyError:
            if run_id not in tail.starts:
                raise
            start, live = tail.starts[run_id]
            record = _started(self, start, live)
        record = _overlaid(record, tail, True)
        sha = record.code_sha256
        if record.code_source is None and sha is not None:  # its journal wrote it with an earlier run
            record.code_source = tail.sources.get(sha) or self.inner.code_source(sha)
        return record

    def code_source(self, sha256: str) -> str | None:
        return self._tail().sources.get(sha256) or self.inner.code_source(sha256)

    def grid_snapshot(self) -> GridSnapshot:
        tail = self._tail()
        snapshot = self.inner.grid_snapshot()
        if not tail:
            return snapshot
        states = dict(snapshot.states)
        for record in self.runs(history=True):
            if record.run_id in tail.starts or record.run_id in tail.ends:
                key = (record.module, record.experiment, record.param_hash)
                states[key] = (record.status, record.code_sha256)
        return GridSnapshot(states, snapshot.mark)

    def points(self, run_ids: Sequence[str] | None = None, metrics: Sequence[str] | None = None) -> SeriesPoints:
        tail = self._tail()
        stored = self.inner.points(run_ids, metrics)
        if not tail.points:
            return stored
        runs = None if run_ids is None else set(run_ids)
        names = None if metrics is None else set(metrics)
        keyed = {(point.run_id, point.metric, point.seq): point for point in stored}
        for run_id, points in tail.points.items():
            if runs is not None and run_id not in runs:
                continue
            for name, seq, step, value in points:
                if names is None or name in names:
                    keyed.setdefault((run_id, name, seq), SeriesPoint(run_id, name, seq, step, value))
        return SeriesPoints.of(keyed[key] for key in sorted(keyed))

    def metric_series(self, run_id: str, name: str) -> list[tuple[int | None, float]]:
        tail = self._tail()
        if not tail.touches(run_id) and run_id not in tail.points:
            return self.inner.metric_series(run_id, name)
        series = [(point.step, point.value) for point in self.points([run_id], [name])]
        if series:
            return series
        record = self.run(run_id)  # KeyError for an unknown run
        return [(None, record.metrics[name])] if name in record.metrics else []

    def _session_counts(self, session_id: str | None) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for record in self.runs(history=True, session_id=session_id):
            per_session = counts.setdefault(record.session_id, {})
            per_session[record.status] = per_session.get(record.status, 0) + 1
        return counts

    def status_counts(self, session_id: str) -> dict[str, int]:
        tail = self._tail()
        if not tail:
            return self.inner.status_counts(session_id)
        return self._session_counts(session_id).get(session_id, {})

    def sessions(self) -> list[SessionRecord]:
        tail = self._tail()
        sessions = self.inner.sessions()
        if not tail:
            return sessions
        counts = self._session_counts(None)
        return [dataclasses.replace(session, counts=counts.get(session.session_id, {})) for session in sessions]
