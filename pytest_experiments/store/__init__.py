"""The store layer: where runs are recorded and read back. No pytest, no pandas.

Everything outside this package speaks to :class:`Store` and the few functions exported here,
never to a backend's module, its files or its driver.
"""

from __future__ import annotations

from pytest_experiments.store.base import DEFAULT_LEASE_S, Store, StoreError
from pytest_experiments.store.location import (
    Location,
    check_location,
    describe_failure,
    is_database_error,
    store_exists,
)

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
