"""Reading a store from Python: :func:`open_store`, :func:`load` and :func:`load_series`, the
package's own functions (``pytest_experiments.load``...). Importing this module imports
neither pandas nor the store: each function imports what it needs when called."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas

    from pytest_experiments.store import Store


def open_store(store: str | Path | None = None) -> Store:
    """Open an existing store; ``None`` finds it as pytest would from the current directory."""
    from pytest_experiments.store import Store
    from pytest_experiments.store.locate import artifacts_for, find_store

    location = find_store() if store is None else store
    return Store.open(location, artifacts=artifacts_for(location))


def load(
    store: str | Path | None = None,
    *,
    experiment: str | Iterable[str] | None = None,
    status: str | Iterable[str] | None = None,
    history: bool = False,
    metadata: bool = False,
) -> pandas.DataFrame:
    """Load recorded runs into a pandas DataFrame (see :func:`pytest_experiments.frames.load`).

    ``experiment``: function names or ``module::name``; ``status``: run statuses (an
    unknown one is a ``ValueError`` listing them); ``history``: every run, not only the
    latest of each grid point; ``metadata``: add each run's metadata as ``metadata.*`` columns.
    """
    from pytest_experiments.frames import load as load_frame

    return load_frame(store, experiment=experiment, status=status, history=history, metadata=metadata)


def load_series(
    store: str | Path | None = None,
    *,
    metric: str | Iterable[str] | None = None,
    experiment: str | Iterable[str] | None = None,
    status: str | Iterable[str] | None = None,
    history: bool = False,
) -> pandas.DataFrame:
    """Every logged point of the selected runs' metrics, one row per point: ``run_id``, ``node_id``,
    ``experiment``, ``params.*``, ``metric``, ``step``, ``value`` (see
    :func:`pytest_experiments.frames.load_series`)."""
    from pytest_experiments.frames import load_series as load_points

    return load_points(store, metric=metric, experiment=experiment, status=status, history=history)
