"""pytest-experiments: experiments as parametrised pytest tests, every run recorded.

Importing this package stays light (no pandas): :func:`load` imports pandas when called.
The names below are imported on first use: pytest imports this package with the plugin in
every session, and rewrites the asserts of each module of it that is imported.

PYTEST_DONT_REWRITE (start-up: see :mod:`pytest_experiments.plugin`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_experiments.model import RunRecord, SessionRecord
    from pytest_experiments.reading import load, load_series, open_store
    from pytest_experiments.run import ExperimentSession, Run, SessionSummary
    from pytest_experiments.store import Store, StoreError

# Public name -> the module defining it.
_LAZY = {
    "load": "reading",
    "load_series": "reading",
    "open_store": "reading",
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
