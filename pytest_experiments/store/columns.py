"""Runs read column-wise: what the backends share to give ``load()`` its columns fast.

A listing of 100,000 runs spent most of its time per row: a record object, four
``json.loads`` calls and a pathlib join each. Here each column is one list, the JSON of all
rows is decoded in one call, run folders are joined to the root as text, and liveness is
judged only for the runs stored as ``running``. No SQL and no driver: the backends read the
rows (:data:`LISTED` says their layout) and hand them over.
"""

from __future__ import annotations

import contextlib
import gc
import json
import time
from collections.abc import Iterator, Sequence
from itertools import compress, pairwise
from pathlib import Path
from typing import Any

from pytest_experiments.model import RunColumns
from pytest_experiments.store.base import StoreError
from pytest_experiments.store.liveness import Liveness, Process

#: The fields of a row as the backends read them for :func:`run_columns`, in order. ``values``
#: is one JSON array per run: ``[params, logged_params, metrics, tags, process, metadata?]``,
#: ``process`` being null, or for a run stored as ``running`` ``[host, pid, pid namespace,
#: pid start, session heartbeat, session finished]`` (what liveness judges it from).
LISTED = (
    "run_id", "session_id", "node_id", "module", "experiment", "status", "started_at", "finished_at",
    "duration", "worker", "dir", "error_type", "error_message", "values",
)  # fmt: skip

# What makes pathlib normalise a relative folder (with "\x00" around each): an empty one, an
# absolute one, "." parts, doubled or trailing "/". Without any, ``root / dir`` is plain text.
_NOT_PLAIN = ("\x00\x00", "\x00/", "\x00./", "\x00.\x00", "//", "/./", "/.\x00", "/\x00")


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while the body runs (and back on after, if it was).

    Reading many runs creates millions of tuples, dicts and lists, none in a cycle; the
    collector, triggered every few hundred of them, would traverse everything alive again
    and again: reading 100,000 runs took twice as long with it.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def decode_all(texts: Sequence[str]) -> list[Any]:
    """Each of ``texts`` (JSON) decoded, in one ``json.loads`` call: the per-call cost of
    decoding a row at a time is more than the decoding itself."""
    decoded: list[Any] = json.loads(f"[{','.join(texts)}]") if texts else []
    return decoded


def absolute_dirs(root: Path, relative: Sequence[str]) -> list[str]:
    """``str(root / path)`` for each of ``relative``, as one string operation when every
    path is plain (what the stores write: ``runs/<experiment>/<run id>``)."""
    joined = "\x00" + "\x00".join(relative) + "\x00"
    if joined.count("\x00") == len(relative) + 1 and not any(part in joined for part in _NOT_PLAIN):
        base = str(root)
        prefix = base if base.endswith("/") else f"{base}/"
        return [prefix + path for path in relative]
    return [str(root / path) for path in relative]


def run_columns(
    rows: Sequence[Sequence[Any]],
    *,
    root: Path,
    liveness: Liveness,
    latest: bool,
    status: set[str] | None = None,
    metadata: bool = False,
) -> RunColumns:
    """The runs of ``rows`` (laid out as :data:`LISTED`, in the store's order of writing them)
    as columns, kept where their live status is in ``status`` (all when None).

    Ordered as :meth:`Store.runs` orders them: by start time, then (``latest``) by run id or
    else in the order of ``rows``. Sorted here rather than by the database, whose sort of
    whole rows cost more than the rest of reading them.
    """
    columns, _ = run_columns_with(rows, root=root, liveness=liveness, latest=latest, metadata=metadata)
    if status is None:
        return columns
    kept = [value in status for value in columns.status]
    return columns if all(kept) else columns.take(list(compress(range(len(kept)), kept)))


def run_columns_with(
    rows: Sequence[Sequence[Any]], *, root: Path, liveness: Liveness, latest: bool, metadata: bool = False
) -> tuple[RunColumns, list[list[Any]]]:
    """:func:`run_columns` of ``rows`` whose fields go on past :data:`LISTED`, and those further
    fields as columns in the same order (the row id and grid point a kept frame is patched by)."""
    if not rows:
        return RunColumns.of([], metadata=metadata), []
    rows = _sorted(rows, latest)
    (run_id, session_id, node_id, module, experiment, stored, started_at, finished_at, duration, worker,
     folder, error_type, error_message, values, *extra) = (list(column) for column in zip(*rows, strict=True))  # fmt: skip
    decoded = list(zip(*_decoded_values(values, 6 if metadata else 5), strict=True))
    statuses = _live_statuses(stored, decoded[4], liveness)
    columns = RunColumns(
        run_id=run_id,
        session_id=session_id,
        node_id=node_id,
        module=module,
        experiment=experiment,
        status=statuses,
        started_at=started_at,
        finished_at=finished_at,
        duration=duration,
        worker=worker,
        dir=absolute_dirs(root, folder),
        error_type=error_type,
        error_message=error_message,
        params=list(decoded[0]),
        logged_params=list(decoded[1]),
        metrics=list(decoded[2]),
        tags=list(decoded[3]),
        metadata=list(decoded[5]) if metadata else None,
    )
    return columns, extra


def _decoded_values(texts: list[str], width: int) -> list[Any]:
    """The ``values`` arrays of the rows, each of ``width`` items, or the :class:`StoreError` of a
    store holding text that is not such an array (written by hand, or damaged)."""
    try:
        decoded = decode_all(texts)
    except ValueError as exc:
        raise StoreError(f"the store holds a run whose JSON fields cannot be read ({exc}); delete that run") from None
    # Text joined into one array could spill into its neighbours: each row must be one array.
    # Checked a set at a time, not a row at a time (an ``isinstance`` per row cost 0.05 s at 100,000).
    if len(decoded) != len(texts) or (
        decoded and (set(map(type, decoded)) != {list} or set(map(len, decoded)) != {width})
    ):
        raise StoreError("the store holds a run whose parameters, metrics, tags or metadata are not JSON objects")
    return decoded


def _sorted(rows: Sequence[Sequence[Any]], by_run_id: bool) -> Sequence[Sequence[Any]]:
    """``rows`` by start time, then by run id (``by_run_id``) or else as they came (a stable sort)."""
    started = [row[6] for row in rows]
    # Most often runs are written in the order they start: told by sorting the times alone (a
    # pass over sorted data) rather than sorting positions by a key (40 ms at 100,000 runs).
    if started == sorted(started) and (not by_run_id or len(set(started)) == len(started)):
        return rows
    order = sorted(range(len(rows)), key=started.__getitem__)
    if by_run_id and any(started[first] == started[second] for first, second in pairwise(order)):
        keys = [(row[6], row[0]) for row in rows]
        order = sorted(range(len(rows)), key=keys.__getitem__)
    if all(position == row for position, row in enumerate(order)):
        return rows
    return [rows[row] for row in order]


def _live_statuses(stored: list[str], processes: Sequence[Any], liveness: Liveness) -> list[str]:
    """``stored`` with ``running`` read as ``interrupted`` where the run's process is gone."""
    now = time.time()
    statuses = stored
    for row, process in enumerate(processes):
        if process is None:  # only runs stored as running carry one
            continue
        host, pid, namespace, started, heartbeat, finished = process
        if not liveness.is_live(Process(host, pid, namespace, started), heartbeat, finished, now):
            if statuses is stored:
                statuses = list(stored)
            statuses[row] = "interrupted"
    return statuses
