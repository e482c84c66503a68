"""What a report shows, gathered from a store into plain JSON-ready data (no HTML here).

The page's script reads this data; its shape is the contract between the two:
``{"title", "generated", "store", "compare", "experiments", "sessions", "runs"}``,
each run a dict of ``id``, ``node``, ``exp`` (``module::function``), ``status``, ``params``,
``metrics``, ``series``, ``meta``, ``tags``, ``error``, ``traceback``, ``files``... (see
:func:`run_data`). Every number that JSON cannot hold (NaN, infinities) becomes a string.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

from pytest_experiments.model import RunRecord, SessionRecord
from pytest_experiments.report.files import Budget, files_data, has_files
from pytest_experiments.store import Store

#: Parameter names taken for repetitions of one configuration: plots then show their mean and interval.
SEED_NAMES = ("seed", "random_state", "rng", "repeat", "repetition", "replicate", "trial", "rep")
#: Points of one series kept in the report; a longer series is thinned evenly (first and last kept).
SERIES_POINTS = 500
#: Statuses of a run whose traceback the report shows (one extra read per such run).
_ERROR_STATUSES = frozenset({"failed", "error", "xpassed", "xfailed"})


def experiment_key(record: RunRecord) -> str:
    """``module::function``: an experiment's name, unique in the store."""
    return f"{record.module}::{record.experiment}"


def select_runs(
    store: Store,
    *,
    experiments: Sequence[str] | None = None,
    history: bool = False,
    status: Sequence[str] | None = None,
) -> list[RunRecord]:
    """The runs a report shows: the latest of each grid point (every run with ``history``).

    ``experiments`` takes function names or ``module::function``, as the command line does.
    """
    if not experiments:
        return store.runs(history=history, status=status or None)
    wanted = set(experiments)
    functions = sorted({name.rpartition("::")[2] for name in wanted})
    return [
        record
        for record in store.runs(experiment=functions, history=history, status=status or None)
        if record.experiment in wanted or experiment_key(record) in wanted
    ]


def gather(
    store: Store, records: Sequence[RunRecord], *, compare: Sequence[str] = (), title: str = "Experiment report"
) -> dict[str, Any]:
    """The report's data for ``records`` (read further from ``store``); ``compare``: run ids to open side by side."""
    budget = Budget()
    series = all_series(store, [record.run_id for record in records])
    runs = [run_data(store, record, series.get(record.run_id, {}), budget) for record in records]
    sessions = _sessions(store, {record.session_id for record in records})
    return {
        "title": title,
        "generated": time.time(),
        "store": store.location,
        "compare": list(compare),
        "experiments": experiments_data(records, sessions),
        "sessions": sessions,
        "runs": runs,
    }


def run_data(store: Store, record: RunRecord, series: dict[str, list[list[Any]]], budget: Budget) -> dict[str, Any]:
    """One run as the page reads it (``series``: from :func:`all_series`, JSON-safe already)."""
    detailed = None
    # One more read for a run with a traceback or files to show: most runs of a sweep have neither.
    if (record.status in _ERROR_STATUSES and record.error_type is not None) or has_files(record.dir):
        detailed = store.run(record.run_id)
    data: dict[str, Any] = json_safe(
        {
            "id": record.run_id,
            "node": record.node_id,
            "exp": experiment_key(record),
            "status": record.status,
            "started": record.started_at,
            "finished": record.finished_at,
            "duration": record.duration,
            "session": record.session_id,
            "worker": record.worker,
            "host": record.host,
            "params": {**record.params, **record.logged_params},
            "metrics": record.metrics,
            "meta": record.metadata,
            "tags": record.tags,
            "notes": [{"at": note.at, "text": note.text} for note in record.notes],
            "error": record.error,
            "traceback": detailed.traceback if detailed is not None else None,
            "files": files_data(record.dir, detailed.artifacts, budget) if detailed is not None else [],
        }
    )
    data["series"] = series
    return data


def all_series(store: Store, run_ids: Sequence[str]) -> dict[str, dict[str, list[list[Any]]]]:
    """Per run, each metric logged more than once as ``[step, value]`` pairs, in one read.

    A point logged without a step gets its index in the series. The hot loop of a large
    report (half a million points at 10,000 runs): points come grouped by run and metric.
    """
    grouped: dict[str, dict[str, list[list[Any]]]] = {}
    current: list[list[Any]] = []
    last: tuple[str, str] | None = None
    isfinite = math.isfinite
    for run_id, metric, _, step, value in store.points(run_ids) if run_ids else ():
        if last != (run_id, metric):
            last = (run_id, metric)
            current = grouped.setdefault(run_id, {}).setdefault(metric, [])
        current.append([len(current) if step is None else step, value if isfinite(value) else json_safe(value)])
    for metrics in grouped.values():
        for name in [name for name, points in metrics.items() if len(points) < 2]:
            del metrics[name]  # one value is no series
        for name, points in metrics.items():
            metrics[name] = thin(points, SERIES_POINTS)
    return grouped


def thin(points: list[list[Any]], limit: int) -> list[list[Any]]:
    """At most ``limit`` of ``points``, evenly spaced, the first and the last kept."""
    if len(points) <= limit:
        return points
    last = len(points) - 1
    picked = sorted({round(index * last / (limit - 1)) for index in range(limit)})
    return [points[index] for index in picked]


def _sessions(store: Store, wanted: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The sessions of the report's runs: when, where, the git commit and the command."""
    wanted = set(wanted)
    return {session.session_id: session_data(session) for session in store.sessions() if session.session_id in wanted}


def session_data(session: SessionRecord) -> dict[str, Any]:
    """What the page shows of a session."""
    git = session.metadata.get("git") or {}
    safe: dict[str, Any] = json_safe(
        {
            "started": session.started_at,
            "finished": session.finished_at,
            "host": session.host,
            "exitstatus": session.exitstatus,
            "commit": git.get("commit") if isinstance(git, dict) else None,
            "branch": git.get("branch") if isinstance(git, dict) else None,
            "dirty": git.get("dirty") if isinstance(git, dict) else None,
            "command": session.metadata.get("command"),
        }
    )
    return safe


def experiments_data(records: Sequence[RunRecord], sessions: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per experiment, in order of first run: counts by status, total time, commits, its parameters and metrics."""
    groups: dict[str, list[RunRecord]] = {}
    for record in records:
        groups.setdefault(experiment_key(record), []).append(record)
    return [_experiment(key, group, sessions) for key, group in groups.items()]


def _experiment(key: str, group: list[RunRecord], sessions: dict[str, dict[str, Any]]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    values: dict[str, set[str]] = {}
    metrics: dict[str, None] = {}
    for record in group:
        counts[record.status] = counts.get(record.status, 0) + 1
        for name, value in {**record.params, **record.logged_params}.items():
            values.setdefault(name, set()).add(repr(value))
        metrics.update(dict.fromkeys(record.metrics))
    varied = [name for name, seen in values.items() if len(seen) > 1]
    seeds = [name for name in varied if name.lower() in SEED_NAMES or "seed" in name.lower()]
    commits = {sessions.get(record.session_id, {}).get("commit") for record in group}
    return {
        "key": key,
        "module": group[0].module,
        "name": group[0].experiment,
        "runs": len(group),
        "counts": counts,
        "time": sum(record.duration or 0.0 for record in group),
        "commits": sorted(commit for commit in commits if commit),
        "params": list(values),
        "varied": varied,
        "seed": seeds[0] if seeds else None,
        "metrics": list(metrics),
    }


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float as the string ``nan``, ``inf`` or ``-inf`` (JSON has none)."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value
