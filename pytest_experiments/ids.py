"""Ids of sessions and runs: sortable and unique without coordination. Dependency-free, so that
an xdist controller can name its session without loading the run handle."""

from __future__ import annotations

import functools
import secrets
import time

__all__ = ["new_id"]


def new_id() -> str:
    """A sortable, unique id: UTC time to the second, then 48 random bits.

    The random part keeps ids unique when many processes start runs in the same
    microsecond, which a timestamp alone cannot.
    """
    return _utc_second(int(time.time())) + "-" + secrets.token_hex(6)


@functools.lru_cache(maxsize=2)
def _utc_second(seconds: int) -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(seconds))
