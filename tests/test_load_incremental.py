"""``load()`` after a change patches its kept frame with the runs changed since (``frames/patch.py``)
rather than building it again: the patched frame equals, column for column, dtype for dtype and
value for value (None apart from NaN), the frame built row by row from the records, after every
kind of change (new runs, runs re-run, updated, tagged through the command line, continued,
deleted, merged in; new columns; values whose types change a column's dtype), and a store that
is not the one the frame was kept of (restored from an older copy) is built, never patched.

The stores are real SQLite stores written through the public store API, the command line or
the plugin (pytester sessions); ``patched`` watches which loads were patches without changing them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from frames_reference import reference_runs_frame
from test_load_cache import finished_fill
from test_pause import TRAINING
from test_store_contract import HOST, run_end, run_start, session_start

from pytest_experiments import Store, load
from pytest_experiments.cli import main
from pytest_experiments.frames import cache, patch
from pytest_experiments.store.journal import JournalWriter
from pytest_experiments.store.liveness import Process, pid_namespace, process_start
from pytest_experiments.store.merge import merge
from pytest_experiments.store.sqlite import DB_NAME, RUN_COLUMNS_BUT_SEQ
from pytest_experiments.store.sqlite_files import SIDE_DIR

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="liveness reads /proc")

NAN = math.nan


@pytest.fixture
def patched(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """One entry per patch tried since the test began: True when it gave the frame, False when it
    gave up (and the frame was built)."""
    return watch_patches(monkeypatch)


def watch_patches(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The list of :func:`patched`, filled from now on."""
    tried: list[bool] = []
    original = patch.patch

    def watched(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        tried.append(result is not None)
        return result

    monkeypatch.setattr(patch, "patch", watched)
    return tried


@pytest.fixture
def root(tmp_path: Path, dead_pid: tuple[int, str]) -> Path:
    """A store of ``fill``'s tricky runs, all finished."""
    location = tmp_path / "store"
    with Store.open(location, create=True, lease=10) as store:
        finished_fill(store, dead_pid)
    return location


def check(root: Path) -> None:
    """Both frames of ``root`` equal the frames built from its records, and are kept."""
    for history in (False, True):
        frame = load(root, history=history)
        with Store.open(root, readonly=True) as store:
            reference = reference_runs_frame(store.runs(history=history), metadata=False)
        check_frame(frame, reference)
    for history in (False, True):
        assert load(root, history=history) is not None


def check_frame(frame: pd.DataFrame, reference: pd.DataFrame) -> None:
    """``frame`` is ``reference``: columns, dtypes and values, None apart from NaN and 1 from 1.0."""
    pd.testing.assert_frame_equal(frame, reference, check_exact=True)
    assert list(frame.columns) == list(reference.columns)
    # Values that compare equal but are not the same (None beside NaN, 1 beside 1.0).
    for name in frame.columns:
        if frame[name].dtype == object:
            assert [_kind(value) for value in frame[name]] == [_kind(value) for value in reference[name]], name


def _kind(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return type(value).__name__


@contextlib.contextmanager
def session(root: Path, name: str) -> Iterator[tuple[Store, Any]]:
    """A writer of ``root`` and a session recorded in it, finished at the end."""
    started = session_start(name)
    with Store.open(root, create=True) as store:
        store.record_session(started)
        yield store, started
        store.finish_session(started.session_id, time.time(), 0)


def record(store: Store, started: Any, point: object, **fields: Any) -> str:
    """A finished run of ``point`` (``experiment``, ``params``, ``run_id`` as ``run_start`` takes them)."""
    options = {key: fields.pop(key) for key in ("experiment", "module", "params", "run_id") if key in fields}
    start = run_start(started, point, started_at=fields.pop("started_at", time.time()), **options)
    store.start_run(start)
    store.finish_run(run_end(start.run_id, fields.pop("status", "passed"), **fields))
    return start.run_id


def test_new_runs_are_patched_in(root: Path, patched: list[bool]) -> None:
    check(root)
    with session(root, "later") as (store, started):
        record(store, started, 0, params={"lr": 0.3, "seed": 1, "flag": True, "s": "1.0", "x": NAN}, metrics={"loss": 0.1})  # fmt: skip
        record(store, started, "fresh", params={"lr": 0.5, "seed": 7}, metrics={"loss": 0.2, "brand_new": 3})
        record(store, started, "ints3", experiment="test_i", params={"i": 5}, metrics={"m": 4})
    check(root)
    assert patched == [True, True]


def test_a_big_kept_frame_is_written_back_once_enough_changed(
    root: Path, patched: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big frame's file is patched as it is by each call with every run changed since it was
    written, and written back once those are a share of its rows (here: 3 runs; the store is
    small, so the size from which this holds is lowered)."""
    path = root / SIDE_DIR / "load-history.npz"
    check(root)
    rows = len(load(root, history=True))
    monkeypatch.setattr(cache, "_REWRITTEN_FROM", 1)
    monkeypatch.setattr(cache, "_REWRITE_SHARE", 2.5 / rows)
    written = path.stat().st_ino
    for point in range(3):
        with session(root, f"later-{point}") as (store, started):
            record(store, started, f"new-{point}", params={"lr": 0.1 * point}, metrics={"loss": point})
        frame = load(root, history=True)
        with Store.open(root, readonly=True) as store:
            check_frame(frame, reference_runs_frame(store.runs(history=True), metadata=False))
        assert (path.stat().st_ino == written) == (point < 2), point  # written back at the third run
    assert patched == [True, True, True]
    load(root, history=True)  # read as written back: no patch
    assert patched == [True, True, True]


def test_updated_runs_tags_and_notes_through_the_command_line(root: Path, patched: list[bool]) -> None:
    check(root)
    with Store.open(root, readonly=True) as store:
        runs = store.runs(history=True)
    older, newest = runs[0].run_id, runs[-1].run_id
    assert main(["--store", str(root), "tag", older, "reviewed=yes", "model=changed"]) == 0
    check(root)
    assert main(["--store", str(root), "note", newest, "looked at it"]) == 0
    check(root)
    assert main(["--store", str(root), "tag", older, "reviewed="]) == 0  # the only one: its column goes
    check(root)
    assert patched == [True, True] * 3


def test_a_hand_edit_is_patched_in(root: Path, patched: list[bool]) -> None:
    check(root)
    with contextlib.closing(sqlite3.connect(root / DB_NAME)) as db, db:
        db.execute("UPDATE runs SET metrics = '{\"loss\": 9.5}', status = 'failed' WHERE experiment = 'test_i'")
    check(root)
    assert patched == [True, True]
    assert 9.5 in load(root, history=True)["metrics.loss"].tolist()
    with contextlib.closing(sqlite3.connect(root / DB_NAME)) as db, db:
        db.execute("UPDATE runs SET run_id = 'renamed' WHERE run_id = 'aa-second'")  # the old id is gone
    check(root)
    assert patched == [True] * 4
    assert "renamed" in load(root)["run_id"].tolist()


@pytest.mark.parametrize(
    ("values", "name"),
    [
        ([1.5], "i"),  # an Int64 column gets a float: float64
        (["text"], "i"),  # ... a string: object
        ([None], "i"),  # ... None: still Int64
        ([7], "lr"),  # a float column gets an int: still float64
        ([True], "lr"),  # ... a bool: object
        ([2**60], "i"),  # a large int beside ints
        ([{"nested": [1]}], "s"),  # a string column gets a mapping
        ([NAN], "s"),  # ... NaN
        ([None], "s"),  # ... None
        ([1, 2.5], "flag"),  # a bool column gets numbers
        ([None], "flag"),
        (["x", "y"], "new"),  # a new column
        ([1, None], "new"),
    ],
)
def test_a_change_of_a_column_dtype_gives_the_built_dtype(
    root: Path, patched: list[bool], values: list[Any], name: str
) -> None:
    check(root)
    with session(root, "typed") as (store, started):
        for index, value in enumerate(values):
            record(store, started, f"typed{index}", experiment="test_i", params={name: value}, metrics={name: 1.0})
    check(root)
    assert patched == [True, True]


def test_only_the_runs_of_a_column_of_one_type_go(root: Path, patched: list[bool]) -> None:
    """A column whose float values all belonged to runs now re-run with ints becomes Int64 in
    the latest frame: the types left decide, not those the kept frame had."""
    with session(root, "mixed") as (store, started):
        record(store, started, "a", experiment="test_m", params={"v": 1.5})
        record(store, started, "b", experiment="test_m", params={"v": 2})
    check(root)
    assert load(root)["params.v"].dtype == "float64"
    with session(root, "ints") as (store, started):
        record(store, started, "a", experiment="test_m", params={"v": 3})
    check(root)
    assert load(root)["params.v"].dtype == "Int64"
    assert load(root, history=True)["params.v"].dtype == "float64"
    assert patched == [True, True]


def test_deleted_runs(root: Path, patched: list[bool]) -> None:
    check(root)
    with Store.open(root, readonly=True) as store:
        latest = store.runs()
        every = store.runs(history=True)
    older = next(run.run_id for run in every if run.run_id not in {run.run_id for run in latest})
    with Store.open(root) as store:
        store.delete_runs([older])  # not the latest of its grid point: both frames patched
    check(root)
    assert patched == [True, True]
    with Store.open(root) as store:
        store.delete_runs([latest[-1].run_id])  # the latest of its grid point: what came before it is unknown
    check(root)
    assert patched == [True, True, False, True]


def test_patches_upon_patches_keep_each_run_s_grid_point(root: Path, patched: list[bool]) -> None:
    """A patch of the latest frame that leaves some changed runs out (older than their grid
    point's newest) notes the grid points of those it holds, which the next patch goes by."""
    check(root)
    with session(root, "first") as (store, started):
        record(store, started, "g1", experiment="test_g", run_id="g1-old", started_at=time.time() - 100)
        record(store, started, "g1", experiment="test_g", run_id="g1-new")
        record(store, started, "g2", experiment="test_g", run_id="g2-first")
    check(root)
    with session(root, "second") as (store, started):
        record(store, started, "g2", experiment="test_g", run_id="g2-second")
        record(store, started, "g1", experiment="test_g", run_id="g1-newest")
    check(root)
    assert sorted(load(root).query("experiment == 'test_g'")["run_id"]) == ["g1-newest", "g2-second"]
    assert patched == [True] * 4


def test_runs_deleted_through_the_command_line(root: Path, patched: list[bool]) -> None:
    check(root)
    with session(root, "again") as (store, started):
        record(store, started, 0, metrics={"loss": 0.05})  # test_x point 0 has three runs now
    check(root)
    assert main(["--store", str(root), "gc", "--keep", "1"]) == 0  # the older runs go, the latest stay
    check(root)
    assert main(["--store", str(root), "delete", "--status", "failed"]) == 0  # latest ones among them
    check(root)
    assert patched == [True, True, True, True, False, True]


def test_a_rerun_that_started_earlier_than_the_newest_does_not_replace_it(root: Path, patched: list[bool]) -> None:
    check(root)
    with session(root, "late") as (store, started):
        record(store, started, 0, started_at=time.time() - 10**6, metrics={"loss": 42.0})
    check(root)
    assert 42.0 not in load(root)["metrics.loss"].tolist()
    assert patched == [True, True]


def test_runs_at_the_same_instant_order_as_built(root: Path, patched: list[bool]) -> None:
    check(root)
    at = time.time()
    with session(root, "ties") as (store, started):
        for name in ("run-zz", "run-aa", "run-mm"):
            record(store, started, name, experiment="test_t", run_id=name, started_at=at)
        record(store, started, "same", experiment="test_v", run_id="mm-third", started_at=at, metrics={"v": 3.0})
    check(root)
    assert patched == [True, True]


def test_running_runs_are_built_then_patched_once_finished(root: Path, patched: list[bool]) -> None:
    check(root)
    started = session_start("running")
    start = run_start(started, "live", experiment="test_z", started_at=time.time())
    with Store.open(root, create=True, lease=10) as store:
        store.record_session(started)
        store.start_run(start)
        for history in (False, True):  # live statuses: built, nothing kept or patched
            with Store.open(root, readonly=True) as reader:
                reference = reference_runs_frame(reader.runs(history=history), metadata=False)
            pd.testing.assert_frame_equal(load(root, history=history), reference, check_exact=True)
        assert patched == []
        store.finish_run(run_end(start.run_id, metrics={"loss": 0.5}))
    check(root)
    assert patched == [True, True]


def test_merged_runs(root: Path, tmp_path: Path, patched: list[bool]) -> None:
    check(root)
    other = tmp_path / "other"
    with session(other, "elsewhere") as (store, started):
        record(store, started, "merged", params={"lr": 0.7}, metrics={"loss": 0.3}, tags={"from": "other"})
    merge([other], root)
    check(root)
    assert patched == [True, True]


def test_a_store_restored_from_an_older_copy_is_built(root: Path, tmp_path: Path, patched: list[bool]) -> None:
    copy = tmp_path / "copy.sqlite"
    check(root)
    shutil.copy(root / DB_NAME, copy)
    with session(root, "first") as (store, started):
        record(store, started, "one", metrics={"loss": 1.0})
    check(root)  # kept after that session's change
    shutil.copy(copy, root / DB_NAME)  # the database as before it, the kept frames as after
    for suffix in ("-wal", "-shm"):
        (root / f"{DB_NAME}{suffix}").unlink(missing_ok=True)
    with session(root, "second") as (store, started):  # as many changes again, other ones
        record(store, started, "two", metrics={"loss": 2.0})
        record(store, started, "three", metrics={"loss": 3.0})
    check(root)
    assert patched == [True, True]  # the first session only: the restored store never patched


def test_an_older_store_migrates_and_its_frames_are_built_then_patched(root: Path, patched: list[bool]) -> None:
    with contextlib.closing(sqlite3.connect(root / DB_NAME)) as db, db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(runs)")]
    assert sorted(RUN_COLUMNS_BUT_SEQ) == sorted(set(columns) - {"seq"})  # every change to a run is counted
    check(root)
    with session(root, "more") as (store, started):
        record(store, started, "more", metrics={"loss": 1.0})
    check(root)
    assert patched == [True, True]


@pytest.mark.usefixtures("clean_env")
def test_runs_paused_then_continued_by_plugin_sessions(pytester: pytest.Pytester, patched: list[bool]) -> None:
    """Sessions of the plugin: runs paused, then continued by ``--xp-resume`` as the same runs
    (their rows updated: status, times, metrics, session), then done; another grid point added."""
    pytester.makepyfile(test_train=TRAINING)
    root = pytester.path / ".experiments"
    assert pytester.runpytest().ret == 0
    check(root)
    assert set(load(root)["status"]) == {"paused"}
    for _ in range(2):
        assert pytester.runpytest("--xp-resume").ret == 0
        check(root)
    assert set(load(root)["status"]) == {"passed"}
    pytester.makepyfile(test_more="def test_more(xp):\n    xp.log_param('n_more', 1)\n    return {'more': 1.0}\n")
    assert pytester.runpytest().ret == 0
    check(root)
    assert patched == [True, True] * 3


def test_journal_records_are_patched_in_once_folded(root: Path, patched: list[bool]) -> None:
    check(root)
    started = session_start("journalled")
    start = run_start(started, "journalled", started_at=time.time(), params={"lr": 0.9})
    with Store.open(root, create=True) as store:
        store.record_session(started)
    pid = os.getpid()
    journal = JournalWriter(root, Process(HOST, pid, pid_namespace(), process_start(pid)), started.session_id)
    journal.start(start)
    journal.end(run_end(start.run_id, metrics={"loss": 0.75}))
    journal.close()
    with Store.open(root, readonly=True) as reader:  # records not folded: built, nothing patched
        assert start.run_id in load(reader, history=True)["run_id"].tolist()
    assert patched == []
    with Store.open(root) as writer:  # a writer folds them: a change like any other
        assert writer.change_token() is not None
    check(root)
    assert patched == [True, True]


@pytest.mark.parametrize("damage", ["signatures", "codes", "names"])
def test_notes_that_do_not_fit_their_frame_are_never_used(root: Path, patched: list[bool], damage: str) -> None:
    check(root)
    path = root / SIDE_DIR / "load-history.npz"
    arrays = dict(np.load(path, allow_pickle=False))
    meta = json.loads(arrays["meta"].tobytes())
    if damage == "signatures":
        arrays["n.sig.params"] = arrays["n.sig.params"] + 1000
    elif damage == "codes":
        arrays["n.code0"] = arrays["n.code0"][:-1]
    else:
        meta["notes"]["names"]["params"] = []
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    with session(root, "after") as (store, started):
        record(store, started, "after", metrics={"loss": 1.0})
    check(root)
    assert patched.count(True) == 1  # the latest frame; the history one built


def test_many_changes_are_built_not_patched(root: Path, patched: list[bool]) -> None:
    check(root)
    with session(root, "many") as (store, started):
        for index in range(cache._FEW_CHANGES + 1):
            record(store, started, f"many{index}", metrics={"loss": float(index)})
    check(root)
    assert patched == []


POOL: list[Callable[[random.Random], Any]] = [
    lambda rng: rng.randint(-5, 5),
    lambda rng: rng.random(),
    lambda rng: NAN,
    lambda rng: None,
    lambda rng: rng.random() < 0.5,
    lambda rng: rng.choice(["a", "1.0", "é☃", ""]),
    lambda rng: 2**60,
    lambda rng: {"k": [1, None]},
    lambda rng: [1, "x"],
]


@pytest.mark.parametrize("seed", range(8))
def test_random_changes_give_the_built_frames(root: Path, seed: int, patched: list[bool]) -> None:
    """Sessions of a few random changes each: runs re-run or new, with parameters, metrics and
    tags of random names and types; tags changed; runs deleted."""
    random_rounds(root, seed, 12, check, session)
    assert patched.count(True) >= len(patched) // 2  # most were patches


def random_rounds(
    target: Any,
    seed: int,
    rounds: int,
    check: Callable[[Any], None],
    session: Callable[[Any, str], contextlib.AbstractContextManager[tuple[Store, Any]]],
) -> None:
    """``rounds`` sessions of :func:`random_changes` (from ``seed``) in the store at ``target``,
    each opened by ``session``, its frames checked by ``check`` before and after each."""
    rng = random.Random(seed)
    check(target)
    for round_ in range(rounds):
        with session(target, f"r{round_}") as (store, started):
            random_changes(store, started, rng, f"r{round_}")
        check(target)


def random_changes(store: Store, started: Any, rng: random.Random, prefix: str) -> None:
    """A few random changes in ``store`` (its session ``started``): 1-4 runs re-run or new (run
    ids ``prefix-N``), with parameters, metrics and tags of random names and types; maybe a
    run's tags changed, maybe a run deleted."""
    for index in range(rng.randint(1, 4)):
        kind = rng.choice(POOL[:6]) if rng.random() < 0.8 else rng.choice(POOL)
        params = {rng.choice("pqr"): kind(rng) for _ in range(rng.randint(0, 2))}
        metrics = {rng.choice(["loss", "acc", "m"]): rng.random() for _ in range(rng.randint(0, 2))}
        tags = {rng.choice(["t1", "t2"]): rng.choice(["x", "y"])} if rng.random() < 0.3 else {}
        record(
            store, started, rng.randint(0, 6), experiment=rng.choice(["test_a", "test_b"]), run_id=f"{prefix}-{index}",
            params=params, metrics=metrics, tags=tags, started_at=time.time() - rng.choice([0, 0, 5000]),
            status=rng.choice(["passed", "passed", "failed"]),
        )  # fmt: skip
    runs = store.runs(history=True)
    if rng.random() < 0.4:
        store.set_tags(rng.choice(runs).run_id, {rng.choice(["t1", "t3"]): rng.choice(["z", None])})
    if rng.random() < 0.2:
        store.delete_runs([rng.choice(runs).run_id])
