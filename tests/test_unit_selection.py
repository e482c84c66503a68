"""Unit tests, no pytest session: the resume decision and the snapshot sent to xdist workers."""

from __future__ import annotations

import json
import zlib

import pytest

from pytest_experiments.model import (
    CODE_CHANGED,
    DONE,
    DONE_OLDER_CODE,
    ERROR,
    FAILED,
    INTERRUPTED,
    NEVER_RUN,
    PAUSED,
    RUNNING_ELSEWHERE,
    SKIPPED,
    STATUSES,
    Category,
)
from pytest_experiments.plugin.selection import _TO_RUN, Snapshot, categorise


@pytest.mark.parametrize(
    ("state", "current_code", "rerun_changed", "expected"),
    [
        (None, "c1", False, NEVER_RUN),
        (("passed", "c1"), "c1", False, DONE),
        (("xfailed", "c1"), "c1", False, DONE),
        (("xpassed", None), "c1", False, DONE),  # no code recorded: nothing to compare
        (("passed", "c0"), None, False, DONE),  # code of today unknown
        (("passed", "c0"), "c1", False, DONE_OLDER_CODE),
        (("passed", "c0"), "c1", True, CODE_CHANGED),
        (("failed", "c0"), "c1", True, FAILED),  # code only matters for done runs
        (("error", "c1"), "c1", False, ERROR),
        (("interrupted", "c1"), "c1", False, INTERRUPTED),
        (("skipped", "c1"), "c1", False, SKIPPED),
        (("running", "c1"), "c1", False, RUNNING_ELSEWHERE),
        (("a status of a newer version", "c1"), "c1", False, NEVER_RUN),
    ],
)
def test_the_category_of_a_grid_point(
    state: tuple[str, str | None] | None, current_code: str | None, rerun_changed: bool, expected: Category
) -> None:
    assert categorise(state, current_code, rerun_changed) == expected


def test_what_runs_by_resume_and_retry() -> None:
    resume, retry = _TO_RUN[True, False], _TO_RUN[False, True]
    assert resume == {NEVER_RUN, INTERRUPTED, PAUSED, SKIPPED, CODE_CHANGED}  # a paused run is continued
    assert PAUSED not in retry  # a pause is no failure
    assert retry == {FAILED, ERROR, INTERRUPTED}
    assert _TO_RUN[True, True] == resume | retry
    assert _TO_RUN[False, False] == frozenset()
    for runs in _TO_RUN.values():  # never: what is done, or running in another session
        assert not runs & {DONE, DONE_OLDER_CODE, RUNNING_ELSEWHERE}


def test_every_stored_status_has_a_category() -> None:
    for status in STATUSES:
        assert categorise((status, "c"), "c", False) != NEVER_RUN


SNAPSHOT = Snapshot(
    7,
    {
        ("test_a.py", "test_train", "abc"): ("passed", "c0de"),
        ("test_a.py", "test_train", "def"): ("failed", None),
        ("test_b.py", "test_eval", "abc"): ("running", "c0de"),
    },
)
#: The wire format (zlib-compressed): names and code hashes once each, rows referring to them.
WIRE = (
    '{"mark":7,"names":[["test_a.py","test_train"],["test_b.py","test_eval"]],"codes":["c0de",null],'
    '"rows":[[0,"abc","passed",0],[0,"def","failed",1],[1,"abc","running",0]]}'
)


def test_the_snapshot_wire_format_is_golden() -> None:
    assert zlib.decompress(SNAPSHOT.to_wire()).decode() == WIRE
    assert Snapshot.from_wire(zlib.compress(WIRE.encode())) == SNAPSHOT


def test_the_snapshot_round_trips_in_builtin_types() -> None:
    assert Snapshot.from_wire(SNAPSHOT.to_wire()) == SNAPSHOT
    assert Snapshot.from_wire(Snapshot().to_wire()) == Snapshot()
    assert isinstance(SNAPSHOT.to_wire(), bytes)  # what execnet carries
    json.loads(zlib.decompress(SNAPSHOT.to_wire()))  # plain JSON inside, never a pickle
