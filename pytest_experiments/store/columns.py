"""Runs read column-wise: what the backends share to give ``load()`` its columns fast.

A listing of 100,000 runs spent most of its time per row: a record object, four
``json.loads`` calls and a pathlib join each. Here each column is one list, the JSON of all
rows is decoded in one call, run folders are joined to the root as text, and liveness is
judged only for the runs stored as ``running``. No SQL and no driver: the backends read the
rows (:data:`LISTED` says their layout) and hand them over, or their fields already as lists
(SQLite joins each text field of all runs into one text: :func:`run_columns_of`).
"""

from __future__ import annotations

import contextlib
import gc
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import compress, pairwise
from operator import itemgetter
from pathlib import Path
from typing import Any

from pytest_experiments.model import RunColumns
from pytest_experiments.store.base import StoreError
from pytest_experiments.store.liveness import Liveness, Process

#: The fields of a row as the backends read them for :func:`run_columns`, in order. ``params``,
#: ``logged_params``, ``metrics`` and ``tags`` are the stored JSON objects as text; ``process``
#: is NULL, or for a run stored as ``running`` a JSON array ``[host, pid, pid namespace, pid
#: start, session heartbeat, session finished]`` (what liveness judges it from); ``metadata``
#: the stored JSON, or NULL when it is not asked for. Each field its own: the database does not
#: join them into one text per run, which Python would then make a list of and transpose.
LISTED = (
    "run_id", "session_id", "node_id", "module", "experiment", "status", "started_at", "finished_at",
    "duration", "worker", "dir", "error_type", "error_message", "params", "logged_params", "metrics",
    "tags", "process", "metadata",
)  # fmt: skip

# Where run_columns_of finds the JSON objects of a run (decoded first), its metadata and its start.
_JSON_OBJECTS_AT = tuple(map(LISTED.index, ("params", "logged_params", "metrics", "tags")))
_METADATA_AT = LISTED.index("metadata")
_STARTED_AT = LISTED.index("started_at")

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
    fields: Sequence[Any] | None = None,
) -> RunColumns:
    """The runs of ``rows`` (laid out as :data:`LISTED`, in the store's order of writing them)
    as columns, kept where their live status is in ``status`` (all when None); or given as their
    ``fields`` instead (:func:`run_columns_of`).

    Ordered as :meth:`Store.runs` orders them: by start time, then (``latest``) by run id or
    else in the order of ``rows``. Sorted here rather than by the database, whose sort of
    whole rows cost more than the rest of reading them.
    """
    options: dict[str, Any] = {"root": root, "liveness": liveness, "latest": latest, "metadata": metadata}
    columns, _ = run_columns_with(rows, **options) if fields is None else run_columns_of(fields, **options)
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
    fields = [list(column) for column in zip(*rows, strict=True)]
    return run_columns_of(fields, root=root, liveness=liveness, latest=latest, metadata=metadata)


@dataclass(frozen=True)
class JsonArray:
    """One JSON field of every row as a single JSON array (the database joined them): decoded
    as it is, without a text per row to join first."""

    text: str
    rows: int


def run_columns_of(
    fields: Sequence[Any], *, root: Path, liveness: Liveness, latest: bool, metadata: bool = False
) -> tuple[RunColumns, list[list[Any]]]:
    """:func:`run_columns_with` of rows given as their fields, a list of values each (laid out as
    :data:`LISTED`, then the further fields), in the store's order of writing them; a JSON field
    may be a :class:`JsonArray` instead."""
    values = list(fields)
    for at in _JSON_OBJECTS_AT:
        values[at] = _decoded(values[at], dict)
    values[_METADATA_AT] = _decoded(values[_METADATA_AT], None) if metadata else None
    order = _order(values[_STARTED_AT], values[0], latest)
    if order is not None:  # every field in the order of the runs (two runs at least: else no order)
        pick = itemgetter(*order)
        values = [None if column is None else list(pick(column)) for column in values]
    (run_id, session_id, node_id, module, experiment, stored, started_at, finished_at, duration, worker,
     folder, error_type, error_message, params, logged_params, metrics, tags, process, found,
     *extra) = values  # fmt: skip
    statuses = _live_statuses(stored, process, liveness)
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
        params=params,
        logged_params=logged_params,
        metrics=metrics,
        tags=tags,
        metadata=found,
    )
    return columns, extra


def _decoded(texts: list[str] | JsonArray, kind: type | None) -> list[Any]:
    """The JSON ``texts`` of one field of the rows decoded (each a ``kind``, when given), or the
    :class:`StoreError` of a store holding other text (written by hand, or damaged)."""
    try:
        decoded = json.loads(texts.text) if isinstance(texts, JsonArray) else decode_all(texts)
    except (ValueError, TypeError) as exc:  # TypeError: NULL, where the schema allows none
        raise StoreError(f"the store holds a run whose JSON fields cannot be read ({exc}); delete that run") from None
    rows = texts.rows if isinstance(texts, JsonArray) else len(texts)
    # Text joined into one array could spill into its neighbours: one value per row, of the kind.
    # Checked a set at a time, not a row at a time (an ``isinstance`` per row cost 0.05 s at 100,000).
    if (
        not isinstance(decoded, list)
        or len(decoded) != rows
        or (kind is not None and decoded and set(map(type, decoded)) != {kind})
    ):
        raise StoreError("the store holds a run whose parameters, metrics, tags or metadata are not JSON objects")
    return decoded


def _order(started: list[float], run_ids: list[str], by_run_id: bool) -> list[int] | None:
    """The positions of the runs by start time, then by run id (``by_run_id``) or else as they
    came (a stable sort); None when they came in that order."""
    # Most often runs are written in the order they start: told by sorting the times alone (a
    # pass over sorted data) rather than sorting positions by a key (40 ms at 100,000 runs).
    if started == sorted(started) and (not by_run_id or len(set(started)) == len(started)):
        return None
    order = sorted(range(len(started)), key=started.__getitem__)
    if by_run_id and any(started[first] == started[second] for first, second in pairwise(order)):
        keys = list(zip(started, run_ids, strict=True))
        order = sorted(range(len(started)), key=keys.__getitem__)
    if all(position == row for position, row in enumerate(order)):
        return None
    return order


def _live_statuses(stored: list[str], processes: list[str | None], liveness: Liveness) -> list[str]:
    """``stored`` with ``running`` read as ``interrupted`` where the run's process (JSON) is gone."""
    if processes.count(None) == len(processes):  # most often: no run stored as running
        return stored
    now = time.time()
    statuses = stored
    for row, text in enumerate(processes):
        if text is None:  # only runs stored as running carry one
            continue
        process = _decoded([text], list)[0]
        if len(process) != 6:
            raise StoreError("the store holds a running run whose process cannot be read")
        host, pid, namespace, started, heartbeat, finished = process
        if not liveness.is_live(Process(host, pid, namespace, started), heartbeat, finished, now):
            if statuses is stored:
                statuses = list(stored)
            statuses[row] = "interrupted"
    return statuses
