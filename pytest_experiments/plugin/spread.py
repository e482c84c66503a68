"""Where a resuming session starts in its grid: concurrent resumers spread over it.

Sessions resuming one store at once (an array of cluster jobs started together) would all
begin with the first remaining point and meet at every claim after it: each point would cost
every other session a claim that fails. Each session therefore runs its items rotated by an
offset derived from its session id: the sessions start at different places and mostly claim
points nobody else is after. A rotation, not a shuffle: items of one module stay together
(their module-scoped fixtures are set up once, give or take one).

Every process of one session (each xdist worker, and the controller that collects first under
``--xp-resume``) rotates by the same offset, from the session id the controller hands to its
workers, so their collections stay identical, as xdist requires. Registered as ``xp-spread``:
``-p no:xp-spread`` keeps pytest's order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator

import pytest


def rotation(session_id: str, count: int) -> int:
    """The offset a session of this id starts at, in a list of ``count`` items."""
    if count < 2:
        return 0
    digest = hashlib.sha256(session_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def rotated(items: list[pytest.Item], session_id: str) -> list[pytest.Item]:
    """``items`` rotated by this session's offset."""
    offset = rotation(session_id, len(items))
    return items[offset:] + items[:offset]


class Spread:
    """Rotates the session's items (after every deselection) by its session's offset."""

    def __init__(self, session_id: str) -> None:
        self._session_id = session_id

    @pytest.hookimpl(wrapper=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> Generator[None, None, None]:
        yield
        items[:] = rotated(items, self._session_id)
