"""Recorded runs as a pandas DataFrame, and a frame as a table to print. The only package that imports pandas."""

from __future__ import annotations

from collections.abc import Iterable
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pytest_experiments.frames import cache
from pytest_experiments.frames.build import BASE_COLUMNS, columns_frame, param_column, param_lists
from pytest_experiments.model import STATUSES, RunColumns, RunRecord, SeriesPoints
from pytest_experiments.store import Store
from pytest_experiments.store.columns import gc_paused
from pytest_experiments.store.locate import artifacts_for, find_store
from pytest_experiments.tables import Table, plain, results_column

__all__ = ["BASE_COLUMNS", "columns_frame", "load", "load_series", "results_table", "runs_frame"]


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
        with gc_paused():
            return _frame(store, names, statuses, history, metadata)
    location = find_store() if store is None else store
    with Store.open(location, readonly=True, artifacts=artifacts_for(location)) as opened, gc_paused():
        return _frame(opened, names, statuses, history, metadata)


def _frame(
    store: Store, names: list[str] | None, statuses: list[str] | None, history: bool, metadata: bool
) -> pd.DataFrame:
    """The frame of :func:`load`; without a selection, kept beside the store for the next call
    (:mod:`pytest_experiments.frames.cache`)."""

    def build() -> pd.DataFrame:
        return columns_frame(_columns(store, names, statuses, history, metadata), metadata=metadata)

    if names is None and statuses is None and not metadata:
        return cache.cached(store, history, build)
    return build()


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
    # Every run: the points of all runs, without a list of run ids for the store to look each up in.
    every = history and names is None and statuses is None
    if isinstance(store, Store):
        with gc_paused():
            return _series_frame(store, _columns(store, names, statuses, history, False), metrics, every)
    location = find_store() if store is None else store
    with Store.open(location, readonly=True, artifacts=artifacts_for(location)) as opened, gc_paused():
        return _series_frame(opened, _columns(opened, names, statuses, history, False), metrics, every)


def _series_frame(store: Store, runs: RunColumns, metrics: list[str] | None, every: bool = False) -> pd.DataFrame:
    position = {run_id: row for row, run_id in enumerate(runs.run_id)}
    # The points of runs not among these (written since they were read) are dropped below.
    points = SeriesPoints.of(store.points(None if every else runs.run_id, metrics))
    # Each point's run (-1: not one of these runs), then the points in the runs' order; the
    # sort is stable, so each run's points keep the store's metric and logging order.
    owner = np.array([position.get(run_id, -1) for run_id in points.run_id], dtype=np.int64)
    kept = np.flatnonzero(owner >= 0)
    order = kept[np.argsort(owner[kept], kind="stable")]
    of_run = owner[order]
    # The run-level columns once per run that has points, then repeated per point by pandas:
    # a column's dtype is decided from the same values either way.
    with_points, of_point = np.unique(of_run, return_inverse=True)  # in the runs' order: of_run is sorted
    used = runs.take(with_points.tolist())
    data: dict[str, Any] = {"run_id": used.run_id, "node_id": used.node_id, "experiment": used.experiment}
    for name, values in param_lists(used).items():
        data[f"params.{name}"] = param_column(values)
    frame: pd.DataFrame = pd.DataFrame(data).take(of_point).reset_index(drop=True)
    rows = order.tolist()
    frame["metric"] = _taken(points.metric, rows)
    frame["step"] = pd.array(_taken(points.step, rows), dtype="Int64")
    frame["value"] = pd.Series(_taken(points.value, rows), dtype="float64")
    return frame


def _taken(values: list[Any], rows: list[int]) -> list[Any]:
    """``values`` at positions ``rows``, as a list."""
    return list(itemgetter(*rows)(values)) if len(rows) > 1 else [values[row] for row in rows]


def _names(experiment: str | Iterable[str] | None) -> list[str] | None:
    return None if experiment is None else [experiment] if isinstance(experiment, str) else list(experiment)


def _statuses(status: str | Iterable[str] | None) -> list[str] | None:
    statuses = None if status is None else [status] if isinstance(status, str) else list(status)
    unknown = [value for value in statuses or () if value not in STATUSES]
    if unknown:
        raise ValueError(f"unknown status {unknown[0]!r}; statuses are {', '.join(STATUSES)}")
    return statuses


def _columns(
    store: Store, names: list[str] | None, statuses: list[str] | None, history: bool, metadata: bool
) -> RunColumns:
    """The store's runs of the experiments ``names`` (function names or ``module::name``), as columns."""
    if names is None:
        return store.run_columns(status=statuses, history=history, metadata=metadata)
    # The store filters by function name; a module given with it is checked here.
    functions = sorted({name.rpartition("::")[2] for name in names})
    wanted = set(names)
    runs = store.run_columns(experiment=functions, status=statuses, history=history, metadata=metadata)
    kept = [
        row
        for row, (module, experiment) in enumerate(zip(runs.module, runs.experiment, strict=True))
        if experiment in wanted or f"{module}::{experiment}" in wanted
    ]
    return runs if len(kept) == len(runs) else runs.take(kept)


def runs_frame(records: list[RunRecord], *, metadata: bool = False) -> pd.DataFrame:
    """Build the frame of :func:`load` from run records."""
    return columns_frame(RunColumns.of(records, metadata=metadata), metadata=metadata)


def results_table(frame: pd.DataFrame) -> Table:
    """``frame`` (a results frame, or some of its columns) as a :class:`~pytest_experiments.tables.Table`."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    columns = [
        results_column(name, is_numeric_dtype(frame[name].dtype) and not is_bool_dtype(frame[name].dtype))
        for name in frame.columns
    ]
    rows = [[plain(value) for value in row] for row in frame.itertuples(index=False, name=None)]
    return Table(columns, rows)
