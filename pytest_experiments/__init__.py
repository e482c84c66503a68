"""pytest-experiments: experiments as parametrised pytest tests, every run recorded.

Importing this package stays light (no pandas): :func:`load` imports pandas when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_experiments.model import RunRecord, SessionRecord
from pytest_experiments.run import ExperimentSession, Run, SessionSummary
from pytest_experiments.store import Store, StoreError

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    import pandas

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
    "open_store",
]


def open_store(store: str | Path | None = None) -> Store:
    """Open an existing store; ``None`` finds it as pytest would from the current directory."""
    from pytest_experiments.store.locate import find_store

    return Store.open(find_store() if store is None else store)


def load(
    store: str | Path | None = None,
    *,
    experiment: str | Iterable[str] | None = None,
    status: str | Iterable[str] | None = None,
    history: bool = False,
) -> pandas.DataFrame:
    """Load recorded runs into a pandas DataFrame (see :func:`pytest_experiments.frames.load`).

    ``experiment``: function names or ``module::name``; ``status``: run statuses (an
    unknown one is a ``ValueError`` listing them); ``history``: every run, not only the
    latest of each grid point.
    """
    from pytest_experiments.frames import load as load_frame

    return load_frame(store, experiment=experiment, status=status, history=history)
