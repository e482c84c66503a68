"""The store layer: where runs are recorded and read back. No pytest, no pandas.

Everything outside this package speaks to :class:`Store` and the few functions exported here,
never to a backend's module, its files or its driver.

The names are imported on first use: the plugin imports one small module of this package
(``locate``) in every pytest session, and a session without experiments should not pay for
the rest (pytest rewrites the asserts of each module it imports).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_experiments.store.base import Store, StoreError
    from pytest_experiments.store.location import (
        Location,
        check_location,
        describe_failure,
        is_database_error,
        store_exists,
    )

#: A session that has not renewed its heartbeat for this long is dead, whatever host it ran on
#: (see :mod:`liveness`). Here, not there: the options' defaults need it in every session.
DEFAULT_LEASE_S = 300.0

# Public name -> the module of this package defining it.
_LAZY = {
    "Store": "base",
    "StoreError": "base",
    "Location": "location",
    "check_location": "location",
    "describe_failure": "location",
    "is_database_error": "location",
    "store_exists": "location",
}

__all__ = [
    "DEFAULT_LEASE_S",
    "Location",
    "Store",
    "StoreError",
    "check_location",
    "describe_failure",
    "is_database_error",
    "store_exists",
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
