"""The frames of ``load()`` and ``load_series()`` as built before columnar reads, row by row from
``Store.runs()`` records: the reference the columnar frames must equal exactly (columns, dtypes,
values). Kept verbatim from pytest-experiments before the change, bar names.

Imported as ``from frames_reference import ...`` (pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from pytest_experiments.model import RunRecord
from pytest_experiments.store import Store

BASE_COLUMNS = (
    "run_id", "node_id", "experiment", "module", "status", "started_at", "finished_at",
    "duration", "session_id", "worker", "dir",
)  # fmt: skip


def reference_runs(store: Store, names: list[str] | None, statuses: list[str] | None, history: bool) -> list[RunRecord]:
    """The runs ``load()`` chose, through ``Store.runs()``."""
    if names is None:
        return store.runs(status=statuses, history=history)
    functions = sorted({name.rpartition("::")[2] for name in names})
    wanted = set(names)
    return [
        record
        for record in store.runs(experiment=functions, status=statuses, history=history)
        if record.experiment in wanted or f"{record.module}::{record.experiment}" in wanted
    ]


def reference_series_frame(store: Store, records: list[RunRecord], metrics: list[str] | None) -> pd.DataFrame:
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
    return pd.DataFrame(data)


def reference_runs_frame(records: list[RunRecord], *, metadata: bool = False) -> pd.DataFrame:
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
    return pd.DataFrame(data)


def _flattened(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(_flattened(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _spread(target: dict[str, list[Any]], values: dict[str, Any], row: int) -> None:
    for name, value in values.items():
        column = target.setdefault(name, [])
        if len(column) < row:
            column.extend([None] * (row - len(column)))
        column.append(value)


def _param_column(values: list[Any]) -> Any:
    present = [value for value in values if value is not None]
    if present and all(isinstance(value, int) and not isinstance(value, bool) for value in present):
        return pd.array(values, dtype="Int64")
    return values


def _pad(values: list[Any], count: int, fill: Any) -> list[Any]:
    padded = [fill if value is None else value for value in values]
    return padded + [fill] * (count - len(values))
