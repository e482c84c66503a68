"""Recorded runs as a pandas DataFrame, and a frame as a table to print. The only module that imports pandas."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from pytest_experiments.model import STATUSES, RunRecord
from pytest_experiments.store import Store
from pytest_experiments.store.locate import artifacts_for, find_store
from pytest_experiments.tables import Table, plain, results_column

#: The columns every frame has, in order; ``params.<name>`` and ``metrics.<name>`` follow,
#: then ``error``.
BASE_COLUMNS = (
    "run_id", "node_id", "experiment", "module", "status", "started_at", "finished_at",
    "duration", "session_id", "worker", "dir",
)  # fmt: skip


def load(
    store: str | Path | Store | None = None,
    *,
    experiment: str | Iterable[str] | None = None,
    status: str | Iterable[str] | None = None,
    history: bool = False,
    metadata: bool = False,
) -> pd.DataFrame:
    """Recorded runs as a DataFrame.

    One row per grid point (module, experiment function and parameter hash) holding its
    latest run, or with ``history=True`` one row per run, oldest first. ``store=None``
    finds the store as pytest would from the current directory. Columns: ``run_id``,
    ``node_id``, ``experiment``, ``module``, ``status``, ``started_at`` / ``finished_at``
    (tz-aware UTC), ``duration`` (seconds), ``session_id``, ``worker``, ``dir`` (absolute
    path of the run folder), ``params.<name>``, ``metrics.<name>``, ``tags.<name>`` (when any
    run has tags) and ``error``; with ``metadata=True`` also each run's metadata, flattened
    (``metadata.timing.call``, ``metadata.attempt``...).

    ``experiment`` takes function names (``test_train``, ``TestNet.test_fit`` for a method)
    or ``module::name`` (``experiments/test_mod.py::test_train``), as the command line does;
    ``status`` takes run statuses (an unknown one is a ``ValueError`` listing them).
    """
    names = _names(experiment)
    statuses = _statuses(status)
    if isinstance(store, Store):
        return runs_frame(_runs(store, names, statuses, history), metadata=metadata)
    location = find_store() if store is None else store
    with Store.open(location, readonly=True, artifacts=artifacts_for(location)) as opened:
        return runs_frame(_runs(opened, names, statuses, history), metadata=metadata)


def load_series(
    store: str | Path | Store | None = None,
    *,
    metric: str | Iterable[str] | None = None,
    experiment: str | Iterable[str] | None = None,
    status: str | Iterable[str] | None = None,
    history: bool = False,
) -> pd.DataFrame:
    """Every logged point of the selected runs' metric series, one row per point.

    Columns: ``run_id``, ``node_id``, ``experiment``, ``params.<name>``, ``metric``, ``step``
    (nullable ``Int64``: a point logged without a step has none) and ``value``; rows by run (as
    :func:`load` orders them), metric and logging order. The runs are those :func:`load` gives
    for the same ``experiment``, ``status`` and ``history``; ``metric`` keeps only these metrics.
    Only logged points (``xp.log_metric``) are series: a metric only returned by the test is a
    column of :func:`load`. All points come from the store in one query.
    """
    names = _names(experiment)
    statuses = _statuses(status)
    metrics = None if metric is None else [metric] if isinstance(metric, str) else list(metric)
    if isinstance(store, Store):
        return _series_frame(store, _runs(store, names, statuses, history), metrics)
    location = find_store() if store is None else store
    with Store.open(location, readonly=True, artifacts=artifacts_for(location)) as opened:
        return _series_frame(opened, _runs(opened, names, statuses, history), metrics)


def _series_frame(store: Store, records: list[RunRecord], metrics: list[str] | None) -> pd.DataFrame:
    by_id = {record.run_id: record for record in records}
    order = {run_id: position for position, run_id in enumerate(by_id)}
    points = [point for point in store.points(list(by_id), metrics) if point.run_id in by_id]
    points.sort(key=lambda point: order[point.run_id])  # stable: metric and logging order kept
    params: dict[str, list[Any]] = {}
    for row, point in enumerate(points):
        record = by_id[point.run_id]
        _spread(params, {**record.params, **record.logged_params}, row)
    count = len(points)
    data: dict[str, Any] = {
        "run_id": [point.run_id for point in points],
        "node_id": [by_id[point.run_id].node_id for point in points],
        "experiment": [by_id[point.run_id].experiment for point in points],
    }
    for name, values in params.items():
        data[f"params.{name}"] = _param_column(_pad(values, count, None))
    data["metric"] = [point.metric for point in points]
    data["step"] = pd.array([point.step for point in points], dtype="Int64")
    data["value"] = pd.Series([point.value for point in points], dtype="float64")
    frame: pd.DataFrame = pd.DataFrame(data)
    return frame


def _names(experiment: str | Iterable[str] | None) -> list[str] | None:
    return None if experiment is None else [experiment] if isinstance(experiment, str) else list(experiment)


def _statuses(status: str | Iterable[str] | None) -> list[str] | None:
    statuses = None if status is None else [status] if isinstance(status, str) else list(status)
    unknown = [value for value in statuses or () if value not in STATUSES]
    if unknown:
        raise ValueError(f"unknown status {unknown[0]!r}; statuses are {', '.join(STATUSES)}")
    return statuses


def _runs(store: Store, names: list[str] | None, statuses: list[str] | None, history: bool) -> list[RunRecord]:
    """The store's runs of the experiments ``names`` (function names or ``module::name``)."""
    if names is None:
        return store.runs(status=statuses, history=history)
    # The store filters by function name; a module given with it is checked here.
    functions = sorted({name.rpartition("::")[2] for name in names})
    wanted = set(names)
    return [
        record
        for record in store.runs(experiment=functions, status=statuses, history=history)
        if record.experiment in wanted or f"{record.module}::{record.experiment}" in wanted
    ]


def runs_frame(records: list[RunRecord], *, metadata: bool = False) -> pd.DataFrame:
    """Build the frame of :func:`load` from run records."""
    columns: dict[str, list[Any]] = {name: [] for name in BASE_COLUMNS}
    params: dict[str, list[Any]] = {}
    metrics: dict[str, list[Any]] = {}
    tags: dict[str, list[Any]] = {}
    meta: dict[str, list[Any]] = {}
    for row, record in enumerate(records):
        columns["run_id"].append(record.run_id)
        columns["node_id"].append(record.node_id)
        columns["experiment"].append(record.experiment)
        columns["module"].append(record.module)
        columns["status"].append(record.status)
        columns["started_at"].append(record.started_at)
        columns["finished_at"].append(record.finished_at)
        columns["duration"].append(record.duration)
        columns["session_id"].append(record.session_id)
        columns["worker"].append(record.worker)
        columns["dir"].append(str(record.dir))
        _spread(params, {**record.params, **record.logged_params}, row)
        _spread(metrics, record.metrics, row)
        _spread(tags, record.tags, row)
        if metadata:
            _spread(meta, _flattened(record.metadata), row)
    count = len(records)
    data: dict[str, Any] = dict(columns)
    data["started_at"] = pd.to_datetime(pd.Series(columns["started_at"], dtype="float64"), unit="s", utc=True)
    data["finished_at"] = pd.to_datetime(pd.Series(columns["finished_at"], dtype="float64"), unit="s", utc=True)
    data["duration"] = pd.Series(columns["duration"], dtype="float64")
    for name, values in params.items():
        data[f"params.{name}"] = _param_column(_pad(values, count, None))
    for name, values in metrics.items():
        data[f"metrics.{name}"] = pd.Series(_pad(values, count, float("nan")), dtype="float64")
    for name, values in tags.items():
        data[f"tags.{name}"] = _pad(values, count, None)
    for name, values in meta.items():
        data[f"metadata.{name}"] = _param_column(_pad(values, count, None))
    data["error"] = [record.error for record in records]
    frame: pd.DataFrame = pd.DataFrame(data)
    return frame


def _flattened(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level, keys joined with ``.`` (``{"timing": {"call": 1}}`` -> ``timing.call``)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(_flattened(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _spread(target: dict[str, list[Any]], values: dict[str, Any], row: int) -> None:
    """Append ``values`` to per-name columns, padding columns first seen at ``row``."""
    for name, value in values.items():
        column = target.setdefault(name, [])
        if len(column) < row:
            column.extend([None] * (row - len(column)))
        column.append(value)


def _param_column(values: list[Any]) -> Any:
    """Integers stay integers (nullable ``Int64``) where other experiments lack the parameter."""
    present = [value for value in values if value is not None]
    if present and all(isinstance(value, int) and not isinstance(value, bool) for value in present):
        return pd.array(values, dtype="Int64")
    return values


def _pad(values: list[Any], count: int, fill: Any) -> list[Any]:
    padded = [fill if value is None else value for value in values]
    return padded + [fill] * (count - len(values))


def results_table(frame: pd.DataFrame) -> Table:
    """``frame`` (a results frame, or some of its columns) as a :class:`~pytest_experiments.tables.Table`."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    columns = [
        results_column(name, is_numeric_dtype(frame[name].dtype) and not is_bool_dtype(frame[name].dtype))
        for name in frame.columns
    ]
    rows = [[plain(value) for value in row] for row in frame.itertuples(index=False, name=None)]
    return Table(columns, rows)
