"""The frame keeper (``frame_keeper.py``): a session that recorded many runs leaves, once its
last process closes, ``load()``'s frames kept beside the store, so that the first ``load()``
after it reads them instead of building them; ``xp_keep_frames = false`` keeps nothing; a
store with runs still running keeps nothing (the frame would be stale at once); one keeper
works on a store and one waits, at most.

The keeper runs after the session, detached from it: the tests wait for it to end through its
pid (``pidfd_open``, which any process may wait on), never by sleeping.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from backends import make_backend
from frames_reference import reference_runs_frame
from test_store_contract import run_end, run_start, session_start

from pytest_experiments import Store, load
from pytest_experiments.frames import build, cache, patch
from pytest_experiments.plugin.store_access import KEEPER
from pytest_experiments.store.children import KEEPER_LOCK, KEEPER_QUEUE_LOCK, lock_keeper, python_command
from pytest_experiments.store.sqlite_files import SIDE_DIR

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(os, "pidfd_open"), reason="waits on keepers by pidfd (Linux)"
)

FILES = ("load-latest.npz", "load-history.npz")
LOCKS = {KEEPER_LOCK, KEEPER_QUEUE_LOCK}
WAIT_S = 120.0

# A keeper after a session of a few runs, as after one of KEEP_FRAMES_FROM (1000) or more; and a
# folding process from the first run on, as in a session that records for over FOLDER_AFTER_S.
CONFTEST = """
import pytest_experiments.plugin.store_access as access

access.KEEP_FRAMES_FROM = 1
access.FOLD_EVERY_S = access.FOLDER_EVERY_S = access.FOLDER_AFTER_S = 0.0
access.THREAD_FOLDS_AFTER_S = 3600.0
"""

MODULE = """
import pytest

@pytest.mark.experiment
@pytest.mark.parametrize("lr", [0.1, 0.01])
@pytest.mark.parametrize("seed", range({seeds}))
def test_train(lr, seed, xp):
    xp.tags["kind"] = "grid"
    return {{"loss": lr * (seed + 1), "steps": seed}}
"""


def keepers_of(location: str) -> list[int]:
    """The pids of the frame keepers working on the store at ``location``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if KEEPER.encode() in command and location.encode() in command:
            found.append(int(pid))
    return found


def wait_for_keepers(location: str) -> int:
    """Wait for every keeper of the store at ``location`` to end; how many there were. The
    session starts its keeper before it ends, so after it the keeper exists."""
    pids = keepers_of(location)
    for pid in pids:
        try:
            descriptor = os.pidfd_open(pid)
        except ProcessLookupError:
            continue  # ended already
        try:
            ready, _, _ = select.select([descriptor], [], [], WAIT_S)
            assert ready, f"the keeper {pid} still works after {WAIT_S} s"
        finally:
            os.close(descriptor)
    return len(pids)


def never_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make building a frame from the store fail: what loads now was kept."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("load() built the frame: it was not kept")

    monkeypatch.setattr(build, "columns_frame", refuse)
    monkeypatch.setattr(patch, "columns_frame", refuse)
    monkeypatch.setattr(cache.patch, "described", refuse)


@pytest.mark.parametrize("args", [(), ("-n", "2")], ids=["no-xdist", "xdist"])
def test_the_first_load_after_a_session_reads_the_frames_its_writer_kept(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_grid=MODULE.format(seeds=15))
    store = pytester.path / "store"

    result = pytester.runpytest_subprocess(f"--xp-store={store}", "-p", "no:randomly", *args)

    result.assert_outcomes(passed=30)
    assert wait_for_keepers(str(store)) <= 1  # one for the session (under xdist too), maybe done already
    assert {path.name for path in (store / SIDE_DIR).iterdir()} - LOCKS == set(FILES)
    with Store.open(store, readonly=True) as reader:
        expected = {history: reference_runs_frame(reader.runs(history=history)) for history in (False, True)}
    never_built(monkeypatch)
    for history in (False, True):
        frame = load(store, history=history)
        pd.testing.assert_frame_equal(frame, expected[history], check_exact=True)
        assert len(frame) == 30


def test_a_second_session_leaves_the_kept_frames_patched_to_its_runs(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_grid=MODULE.format(seeds=10))
    store = pytester.path / "store"
    pytester.runpytest_subprocess(f"--xp-store={store}", "-p", "no:randomly").assert_outcomes(passed=20)
    wait_for_keepers(str(store))
    pytester.makepyfile(test_grid=MODULE.format(seeds=12))

    result = pytester.runpytest_subprocess(f"--xp-store={store}", "-p", "no:randomly")

    result.assert_outcomes(passed=24)
    assert wait_for_keepers(str(store)) <= 1
    with Store.open(store, readonly=True) as reader:
        expected = {history: reference_runs_frame(reader.runs(history=history)) for history in (False, True)}
    never_built(monkeypatch)
    assert len(load(store)) == 24
    assert len(load(store, history=True)) == 44
    for history in (False, True):
        pd.testing.assert_frame_equal(load(store, history=history), expected[history], check_exact=True)


def test_xp_keep_frames_false_leaves_no_keeper_and_no_frame(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_grid=MODULE.format(seeds=5))
    store = pytester.path / "store"

    result = pytester.runpytest_subprocess(f"--xp-store={store}", "-p", "no:randomly", "-o", "xp_keep_frames=false")

    result.assert_outcomes(passed=10)
    assert keepers_of(str(store)) == []
    assert not (store / SIDE_DIR).exists()


def test_a_session_of_fewer_runs_than_keep_frames_from_starts_no_keeper(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_grid=MODULE.format(seeds=2))
    store = pytester.path / "store"

    result = pytester.runpytest_subprocess(f"--xp-store={store}", "-p", "no:randomly")

    result.assert_outcomes(passed=4)
    assert keepers_of(str(store)) == []
    assert not (store / SIDE_DIR).exists()


def record(store: Store, *, passed: int = 0, running: int = 0) -> None:
    """Record ``passed`` finished runs (``p0``...) and ``running`` started ones (``r0``..., by this
    process, which lives: running) in one session of ``store``."""
    session = session_start("s1")
    store.record_session(session)
    for point in range(passed):
        store.start_run(run_start(session, point, run_id=f"p{point}"))
        store.finish_run(run_end(f"p{point}", "passed"))
    for point in range(running):
        store.start_run(run_start(session, passed + point, run_id=f"r{point}"))


def test_a_store_with_a_running_run_keeps_no_frame_until_it_ends(tmp_path: Path) -> None:
    location = tmp_path / "store"
    with Store.open(location, create=True) as store:
        record(store, passed=1, running=1)

        assert cache.keep(store, history=False) is False
        assert cache.keep(store, history=True) is False
        assert not (location / SIDE_DIR).exists()

        store.finish_run(run_end("r0", "passed"))
        assert cache.keep(store, history=False) is True
        assert cache.keep(store, history=True) is True
    assert sorted(path.name for path in (location / SIDE_DIR).iterdir()) == sorted(FILES)


def test_a_keeper_keeps_a_postgresql_stores_frames_in_its_artifacts_folder(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, postgres_database: str
) -> None:
    pg = make_backend("postgresql", pytester.path, postgres_database)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_grid=MODULE.format(seeds=5))

    result = pytester.runpytest_subprocess(
        f"--xp-store={pg.location}", f"--xp-artifacts={pg.artifacts}", "-p", "no:randomly"
    )

    result.assert_outcomes(passed=10)
    assert wait_for_keepers(pg.location) <= 1
    assert pg.artifacts is not None
    (side,) = (pg.artifacts / SIDE_DIR).iterdir()
    assert sorted(path.name for path in side.iterdir()) == sorted([KEEPER_LOCK, *FILES])
    with pg.open(readonly=True) as reader:
        expected = reference_runs_frame(reader.runs(history=True))
        never_built(monkeypatch)
        pd.testing.assert_frame_equal(load(reader, history=True), expected, check_exact=True)


def _keeper(location: Path) -> subprocess.Popen[bytes]:
    """A keeper on the store at ``location``, as a session starts one that could not take the lock."""
    return subprocess.Popen(python_command(KEEPER, [str(location)]), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_one_keeper_works_one_waits_and_a_third_ends_at_once(tmp_path: Path) -> None:
    location = tmp_path / "store"
    with Store.open(location, create=True) as store:
        record(store, passed=3)
    side = location / SIDE_DIR
    working = lock_keeper(side, wait=True)  # this test is the keeper at work
    assert working is not None
    waiting = _keeper(location)
    try:
        deadline = time.monotonic() + WAIT_S
        while (probe := lock_keeper(side, wait=False, name=KEEPER_QUEUE_LOCK)) is not None:
            os.close(probe)  # the queue is free: the keeper has not taken it yet
            assert waiting.poll() is None, waiting.communicate()[1]
            assert time.monotonic() < deadline, "the keeper never queued"
            time.sleep(0.01)

        third = _keeper(location)
        _, errors = third.communicate(timeout=WAIT_S)
        assert third.returncode == 0, errors  # ended at once, the lock still held here: the waiting one keeps
        assert waiting.poll() is None
        assert not (side / FILES[0]).exists()
    finally:
        os.close(working)

    _, errors = waiting.communicate(timeout=WAIT_S)
    assert waiting.returncode == 0, errors
    assert sorted(path.name for path in side.iterdir()) == sorted([KEEPER_LOCK, KEEPER_QUEUE_LOCK, *FILES])
    assert len(load(location, history=True)) == 3


def test_a_keeper_of_a_store_with_a_running_run_ends_keeping_nothing(tmp_path: Path) -> None:
    location = tmp_path / "store"
    with Store.open(location, create=True) as store:
        record(store, running=1)

        keeper = _keeper(location)
        _, errors = keeper.communicate(timeout=WAIT_S)

        assert keeper.returncode == 1, errors
        assert not (location / SIDE_DIR).exists()
        store.finish_run(run_end("r0", "passed"))
    keeper = _keeper(location)
    _, errors = keeper.communicate(timeout=WAIT_S)
    assert keeper.returncode == 0, errors
    assert {path.name for path in (location / SIDE_DIR).iterdir()} - LOCKS == set(FILES)
