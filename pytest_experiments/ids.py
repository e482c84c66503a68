"""Ids of sessions and runs: sortable and unique without coordination. Dependency-free, so that
an xdist controller can name its session without loading the run handle."""

from __future__ import annotations

import functools
import os
import secrets
import time

__all__ = ["new_id"]


def new_id() -> str:
    """A sortable, unique id: UTC time to the second, then 48 random bits.

    The random part keeps ids unique when many processes start runs in the same
    microsecond, which a timestamp alone cannot.
    """
    return _utc_second(int(time.time())) + "-" + _random_hex()


#: Random bytes drawn ahead (one system call for many ids), 6 for each id.
_POOL_IDS = 512
_pool = b""
_taken = 0


def _random_hex() -> str:
    """12 hex digits from the operating system's random source, as ``secrets.token_hex(6)``."""
    global _pool, _taken
    if _taken >= len(_pool):
        _pool, _taken = secrets.token_bytes(6 * _POOL_IDS), 0
    start, _taken = _taken, _taken + 6
    return _pool[start:_taken].hex()


def _forget_pool() -> None:
    """A forked child draws its own bytes: the parent's would give both the same ids."""
    global _pool, _taken
    _pool, _taken = b"", 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


@functools.lru_cache(maxsize=2)
def _utc_second(seconds: int) -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(seconds))
