"""Ids of sessions and runs: sortable and unique without coordination. Dependency-free, so that
an xdist controller can name its session without loading the run handle."""

from __future__ import annotations

import functools
import os
import time

__all__ = ["new_id"]


def new_id() -> str:
    """A sortable, unique id: UTC time to the second, then 48 random bits.

    The random part keeps ids unique when many processes start runs in the same
    microsecond, which a timestamp alone cannot.
    """
    return _utc_second(int(time.time())) + "-" + _random_hex()


#: Random bytes drawn ahead (one system call for many ids), 6 for each id, and the process
#: that drew them: a forked child draws its own (the parent's would give both the same ids).
# The fork is told by the pid, not by an ``os.register_at_fork`` handler: a handler can never be
# removed, and it holds this module's globals, whose ``__loader__`` is the assertion rewriter of
# the pytest session that imported it, and through it that session's config, items and plugins.
# pytester's in-process sessions import this module afresh each time (an xdist controller names
# its session with it, with or without experiments): each would leave a whole session alive for
# good, and every garbage collection after it slower (pytest-xdist's own suite: +27% CPU).
_POOL_IDS = 512
_pool = b""
_taken = 0
_pool_pid = 0


def _random_hex() -> str:
    """12 hex digits from the operating system's random source, as ``secrets.token_hex(6)``."""
    global _pool, _taken, _pool_pid
    if _taken >= len(_pool) or _pool_pid != os.getpid():
        # os.urandom is what secrets.token_bytes calls: one module fewer to import.
        _pool, _taken, _pool_pid = os.urandom(6 * _POOL_IDS), 0, os.getpid()
    start, _taken = _taken, _taken + 6
    return _pool[start:_taken].hex()


@functools.lru_cache(maxsize=2)
def _utc_second(seconds: int) -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(seconds))
