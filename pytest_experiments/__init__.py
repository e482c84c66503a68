"""pytest-experiments: experiments as parametrised pytest tests, every run recorded.

Importing this package stays light (no pandas): :func:`load` imports pandas when called.
The names below are imported on first use: pytest imports this package with the plugin in
every session, and rewrites the asserts of each module of it that is imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    import pandas

    from pytest_experiments.model import RunRecord, SessionRecord
    from pytest_experiments.run import ExperimentSession, Run, SessionSummary
    from pytest_experiments.store import Store, StoreError

# Public name -> the module defining it.
_LAZY = {
    "RunRecord": "model",
    "SessionRecord": "model",
    "ExperimentSession": "run",
    "Run": "run",
    "SessionSummary": "run",
    "Store": "store",
    "StoreError": "store",
}

__version__ = "0.1.0"

__all__ = [
    "ExperimentSession",
    "Run",
    "RunRecord",
    "SessionRecord",
    "SessionSummary",
    "Store",
    "StoreError",
    "__version__",
    "load",
    "load_series",
    "open_store",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


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
