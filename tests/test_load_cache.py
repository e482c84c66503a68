"""``load()`` keeps its frames beside the store (``frames/cache.py``): a frame read back from its
side file equals, column for column, dtype for dtype and value for value, the frame built row
by row from the records; a side file is never read once the runs changed, nor when it is torn,
foreign or pickled; a store that cannot keep one (running runs, journals not folded, an older
schema read without migrating, a folder that cannot be written) loads as before.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sqlite3
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from backends import Backend
from frames_reference import reference_runs_frame
from test_columnar import fill
from test_store_contract import HOST, run_end, run_start, session_start

from pytest_experiments import Store, load
from pytest_experiments.frames import cache
from pytest_experiments.store.journal import JournalWriter
from pytest_experiments.store.liveness import Process, pid_namespace, process_start
from pytest_experiments.store.sqlite import DB_NAME
from pytest_experiments.store.sqlite_files import SIDE_DIR

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="liveness reads /proc")

FILES = {False: "load-latest.npz", True: "load-history.npz"}


def finished_fill(store: Store, dead_pid: tuple[int, str]) -> None:
    """``fill``'s tricky runs (nested, None beside NaN, booleans, ints beside floats, text
    that looks like numbers, non-ASCII...), with its running runs ended: a store that keeps frames."""
    fill(store, dead_pid)
    for record in store.runs(history=True):
        if record.status in ("running", "interrupted"):
            store.finish_run(run_end(record.run_id, "failed", error_type="Stopped", error_message="by the test"))


def expected(store: Store, history: bool) -> pd.DataFrame:
    return reference_runs_frame(store.runs(history=history), metadata=False)


def kept(root: Path, history: bool) -> pd.DataFrame | None:
    """The frame the side file holds for the store's current runs, or None (what ``load()`` would read)."""
    with Store.open(root, readonly=True) as store:
        token = store.change_token()
    if token is None:
        return None
    return read_kept(root / SIDE_DIR / FILES[history], cache._key(token, history))


def read_kept(path: Path, key: str) -> pd.DataFrame | None:
    """The frame the side file ``path`` holds under ``key``, or None."""
    meta = cache._read_meta(path)
    found = None if meta is None or meta.get("key") != key else cache._read(path, meta)
    return None if found is None else found[0]


@pytest.fixture
def root(tmp_path: Path, dead_pid: tuple[int, str]) -> Path:
    location = tmp_path / "store"
    with Store.open(location, create=True, lease=10) as store:
        finished_fill(store, dead_pid)
    return location


@pytest.mark.parametrize("storage", ["pyarrow", "python"])
@pytest.mark.parametrize("history", [False, True], ids=["latest", "history"])
def test_a_kept_frame_equals_the_frame_built_from_records(root: Path, history: bool, storage: str) -> None:
    if storage == "pyarrow":
        pytest.importorskip("pyarrow")
    # Text held by Arrow's buffers or by Python strings: each is read back its own way.
    with pd.option_context("mode.string_storage", storage):
        with Store.open(root, readonly=True) as store:
            reference = expected(store, history)
        built = load(root, history=history)
        assert (root / SIDE_DIR / FILES[history]).is_file()
        read_back = kept(root, history)
        assert read_back is not None
        again = load(root, history=history)
    for frame in (built, read_back, again):
        pd.testing.assert_frame_equal(frame, reference, check_exact=True)
    if storage == "python":
        assert any(isinstance(dtype, pd.StringDtype) and dtype.storage == "python" for dtype in again.dtypes)
    assert again["params.nested"].dtype == object  # mappings, None beside them
    assert again["params.name"].tolist().count("é☃ x") == 1


def test_every_change_to_the_runs_makes_the_kept_frames_unread(root: Path) -> None:
    def check() -> None:
        for history in (False, True):
            frame = load(root, history=history)
            with Store.open(root, readonly=True) as store:
                pd.testing.assert_frame_equal(frame, expected(store, history), check_exact=True)
            assert kept(root, history) is not None  # kept again, for the runs as they are now

    check()
    session = session_start("later")
    start = run_start(session, "new", started_at=time.time(), params={"lr": 0.5})
    with Store.open(root) as store:
        store.record_session(session)
        store.start_run(start)
        assert store.change_token() is None  # a run stored as running: nothing kept meanwhile
        store.finish_run(run_end(start.run_id, metrics={"loss": 0.125}))
    check()
    with Store.open(root) as store:
        store.set_tags(start.run_id, {"model": "changed"})
    check()
    with Store.open(root) as store:
        store.delete_runs([start.run_id])
    check()
    # A hand edit too (the token is drawn by triggers): the frame shows it.
    with contextlib.closing(sqlite3.connect(root / DB_NAME)) as db, db:
        db.execute("UPDATE runs SET metrics = '{\"loss\": 9.5}' WHERE experiment = 'test_i'")
    check()
    assert 9.5 in load(root, history=True)["metrics.loss"].tolist()


def test_nothing_is_kept_while_a_run_is_stored_as_running(tmp_path: Path, dead_pid: tuple[int, str]) -> None:
    location = tmp_path / "store"
    with Store.open(location, create=True, lease=10) as store:
        fill(store, dead_pid)  # its runs stored as running: live statuses are judged at each read
        assert store.change_token() is None
    load(location)
    load(location, history=True)
    assert not (location / SIDE_DIR).exists()


@pytest.mark.parametrize(
    "damage",
    ["truncated", "garbage", "empty", "pickled column", "other lengths", "other key"],
)
def test_a_torn_foreign_or_pickled_file_is_never_read_and_is_replaced(root: Path, damage: str) -> None:
    load(root, history=True)
    path = root / SIDE_DIR / FILES[True]
    whole = path.read_bytes()
    with Store.open(root, readonly=True) as store:
        key = cache._key(store.change_token() or "", True)
        reference = expected(store, True)
    meta = {"key": key, "rows": len(reference), "columns": [["run_id", "json", "object"]]}
    encoded = np.frombuffer(cache.json.dumps(meta).encode(), dtype=np.uint8)
    if damage == "truncated":
        path.write_bytes(whole[: len(whole) // 2])
    elif damage == "garbage":
        path.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "pickled column":  # what numpy would unpickle: refused by allow_pickle=False
        np.savez(path, meta=encoded, **{"c0.data": np.array([{"x": 1}] * len(reference), dtype=object)})
    elif damage == "other lengths":
        np.savez(path, meta=encoded, **{"c0.data": np.frombuffer(b'["a"]', dtype=np.uint8)})
    else:  # a whole file of other runs
        with zipfile.ZipFile(path) as archive:
            stored = cache.json.loads(np.load(archive.open("meta.npy"), allow_pickle=False).tobytes())
        stored["key"] = stored["key"].replace("sqlite", "other")
        arrays = dict(np.load(path, allow_pickle=False))
        arrays["meta"] = np.frombuffer(cache.json.dumps(stored).encode(), dtype=np.uint8)
        np.savez(path, **arrays)
    assert read_kept(path, key) is None
    pd.testing.assert_frame_equal(load(root, history=True), reference, check_exact=True)
    assert kept(root, True) is not None  # replaced by a whole one


def test_a_reader_that_cannot_keep_the_frame_loads_as_before(root: Path) -> None:
    (root / SIDE_DIR).write_text("not a folder")  # no side file can be written under it
    with Store.open(root, readonly=True) as store:
        reference = expected(store, False)
    for _ in range(2):
        pd.testing.assert_frame_equal(load(root), reference, check_exact=True)
    assert sorted(path.name for path in root.iterdir()) == sorted([".gitignore", DB_NAME, "runs", SIDE_DIR])


def test_an_older_store_read_without_migrating_keeps_nothing(root: Path) -> None:
    with contextlib.closing(sqlite3.connect(root / DB_NAME)) as db, db:
        for event in ("insert", "update", "renamed", "delete"):
            db.execute(f"DROP TRIGGER runs_changed_{event}")
        db.execute("DROP TABLE change_log")
        db.execute("PRAGMA user_version=5")  # the schema before side files
    with Store.open(root, readonly=True) as store:
        assert store.change_token() is None
        reference = expected(store, True)
    pd.testing.assert_frame_equal(load(root, history=True), reference, check_exact=True)
    assert not (root / SIDE_DIR).exists()
    with Store.open(root) as store:  # a writer opening it without create does not migrate either
        assert store.change_token() is None
    with Store.open(root, create=True) as store:  # the plugin's writer migrates it
        assert store.change_token() is not None
    load(root, history=True)
    assert kept(root, True) is not None


def test_unfolded_journal_records_keep_nothing(tmp_path: Path) -> None:
    location = tmp_path / "store"
    session = session_start("journalled")
    start = run_start(session, 0, started_at=time.time())
    with Store.open(location, create=True) as store:
        store.record_session(session)
    pid = os.getpid()
    journal = JournalWriter(location, Process(HOST, pid, pid_namespace(), process_start(pid)), session.session_id)
    journal.start(start)
    journal.end(run_end(start.run_id))
    journal.close()
    with Store.open(location, readonly=True) as reader:  # it cannot fold: it lays the records over the store
        assert reader.change_token() is None
        frame = load(reader)
    assert frame["run_id"].tolist() == [start.run_id]
    assert not (location / SIDE_DIR).exists()
    with Store.open(location) as writer:  # a writer folds them: then the frame is kept
        assert writer.change_token() is not None
        pd.testing.assert_frame_equal(load(writer), frame, check_exact=True)
    assert kept(location, False) is not None


def test_both_backends_keep_frames(backend: Backend, dead_pid: tuple[int, str]) -> None:
    """SQLite beside its database; a server store in its artefacts root, with no change token
    (it tells what changed since instead: tests/test_postgres_load_cache.py)."""
    with backend.open(create=True, lease=10) as store:
        finished_fill(store, dead_pid)
        folder = store.side_folder
        assert folder is not None
        assert (store.change_token() is not None) == (backend.kind == "sqlite")
        for history in (False, True):
            pd.testing.assert_frame_equal(load(store, history=history), expected(store, history), check_exact=True)
        assert sorted(path.name for path in folder.iterdir()) == sorted(FILES.values())


def test_nan_and_none_stay_apart_in_kept_object_columns(tmp_path: Path) -> None:
    location = tmp_path / "store"
    session = session_start("s")
    with Store.open(location, create=True) as store:
        store.record_session(session)
        for point, value in enumerate([math.nan, None, True, [1, {"a": None}], "x", 2**70, -0.0]):
            start = run_start(session, point, started_at=time.time() + point, params={"p": value})
            store.start_run(start)
            store.finish_run(run_end(start.run_id))
    built = load(location, history=True)
    again = load(location, history=True)
    assert kept(location, True) is not None
    pd.testing.assert_frame_equal(again, built, check_exact=True)
    values: list[Any] = again["params.p"].tolist()
    assert math.isnan(values[0])
    assert values[1] is None
    assert values[2] is True
    assert values[3] == [1, {"a": None}]
    assert values[5] == 2**70
    assert math.copysign(1, values[6]) == -1


@pytest.mark.parametrize("storage", ["pyarrow", "python"])
def test_text_holding_nul_loads_the_same_kept_or_not(tmp_path: Path, storage: str) -> None:
    if storage == "pyarrow":
        pytest.importorskip("pyarrow")
    location = tmp_path / "store"
    session = session_start("s")
    with Store.open(location, create=True) as store:
        store.record_session(session)
        for point, name in enumerate(["a\x00b", "", "\x00", "é"]):
            start = run_start(session, point, started_at=time.time() + point, params={"name": name})
            store.start_run(start)
            store.finish_run(run_end(start.run_id))
    with pd.option_context("mode.string_storage", storage):
        built = load(location, history=True)
        again = load(location, history=True)
    pd.testing.assert_frame_equal(again, built, check_exact=True)
    assert again["params.name"].tolist() == ["a\x00b", "", "\x00", "é"]


def test_a_store_copied_elsewhere_loads_its_own_folders(root: Path, tmp_path: Path) -> None:
    """The ``dir`` column is absolute: a copy of the store (its kept frames too) has the same
    runs, but its run folders are its own (the change token names the store's folder), so the
    frame kept for the original is not read."""
    original = load(root, history=True)
    assert kept(root, history=True) is not None
    copy = tmp_path / "elsewhere" / "store"
    shutil.copytree(root, copy)
    copied = load(copy, history=True)
    assert set(original["run_id"]) == set(copied["run_id"])
    assert all(Path(folder).is_relative_to(copy) for folder in copied["dir"])
    assert all(Path(folder).is_relative_to(root) for folder in load(root, history=True)["dir"])


# A writer of a kept frame that stops half-way through its file (its part written, then blocked
# on its stdin), to be killed there: a SIGKILL runs no cleanup, as for a frame keeper killed with
# its cluster job.
KILLED_WRITER = """
import sys
import numpy as np
from pytest_experiments import load
from pytest_experiments.frames import cache

def half_then_wait(file, **arrays):
    file.write(b"PK" + bytes(4096))
    file.flush()
    print("writing", flush=True)
    sys.stdin.read()

cache.np.savez = half_then_wait
load(sys.argv[1], history=True)
"""


def test_a_part_left_by_a_writer_killed_while_writing_is_removed_once_stale(root: Path) -> None:
    import signal
    import subprocess

    side = root / SIDE_DIR
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "writing\n"  # the part is on disk, the writer blocked
        writer.send_signal(signal.SIGKILL)
        assert writer.wait(timeout=60) == -signal.SIGKILL
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.communicate()
    (left,) = side.glob(f"{FILES[True]}.*.tmp")
    fresh = side / f"{FILES[True]}.999999-00000000.tmp"  # another writer's, at work now
    fresh.write_bytes(b"PK")
    load(root, history=True)
    assert left.exists()  # an hour is not over: it may still be its writer's
    an_hour_ago = time.time() - cache._PARTIAL_STALE_S - 60
    os.utime(left, (an_hour_ago, an_hour_ago))
    with sqlite3.connect(root / DB_NAME) as db:  # a change: the next load() writes the file again
        db.execute("UPDATE runs SET duration = duration + 1 WHERE rowid = (SELECT min(rowid) FROM runs)")

    load(root, history=True)

    assert not left.exists()
    assert fresh.exists()
    assert kept(root, True) is not None
