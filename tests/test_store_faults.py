"""A store that fails while a session writes it: a full disk, damage, a heartbeat that cannot
be written. Each is one line, the session stops cleanly, and the store never holds a run as
passed that it does not hold as passed.

The faults are real: a small tmpfs mounted for the test (root) and filled up, garbage written
over the database's pages by another process. Inner sessions are real ``python -m pytest``
processes, with and without xdist; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import Processes

from pytest_experiments import Store
from pytest_experiments.store.journal import records

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="tmpfs mounts and Linux process groups"),
    pytest.mark.usefixtures("clean_env"),
]

# The names a store may hold; anything else left behind (a *.tmp, a -journal) is litter.
STORE_FILES = {
    ".gitignore",
    "experiments.sqlite",
    "experiments.sqlite-wal",
    "experiments.sqlite-shm",
    "runs",
    "journals",
}

FILL = """
import os
from pathlib import Path

DISK = Path(os.environ["XP_TEST_DISK"])
MARKS = Path(os.environ["XP_TEST_MARKS"])


def fill():
    \"\"\"Write DISK/filler until the filesystem has not a byte left.\"\"\"
    descriptor = os.open(DISK / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 16, 1 << 12, 1):
            while True:
                try:
                    os.write(descriptor, b"x" * size)
                except OSError:
                    break
    finally:
        os.close(descriptor)
"""

# Where the disk fills up (XP_TEST_MODE): before the store exists, between two runs, inside a
# run whose final write then fails, inside a run that prints (xp-capture's stdout.txt fails), or
# after the last run (closing the session in the store fails).
DISK_FULL_GRID = """
import os

import pytest
from conftest import MARKS, fill

MODE = os.environ["XP_TEST_MODE"]


def test_0_before_any_run():
    if MODE == "creating":
        fill()


@pytest.mark.experiment
def test_a():
    (MARKS / "ran-a").write_text("")
    return {"value": 1}


def test_b_between_runs():
    if MODE == "starting":
        fill()


@pytest.mark.experiment
@pytest.mark.parametrize("i", range(4))
def test_c(i):
    (MARKS / f"ran-c{i}").write_text("")
    if i == 1 and MODE in ("finishing", "capturing"):
        fill()
        if MODE == "capturing":
            print("some output the run folder has no room for")
        else:  # a record longer than what is left of the journal's last page: its write fails
            return {"value": i, "padding": "x" * 20_000}
    return {"value": i}


def test_z_after_every_run():
    if MODE == "closing":
        fill()
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB filesystem (tmpfs) for the store, unmounted afterwards. Needs root: fails otherwise."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(disk)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.fail(f"cannot mount a small tmpfs for the store (run the suite as root): {done.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=False)


def private_tmp(pytester: pytest.Pytester) -> Path:
    """A temporary folder of the session's own (``TMPDIR``): its stop flags (see StoreHandle) are
    not mixed with those of the tests running beside it under xdist."""
    folder = pytester.path / "tmp"
    folder.mkdir(exist_ok=True)
    return folder


def stop_flags(folder: Path) -> set[str]:
    """The session stop flags left in ``folder``."""
    return {name for name in os.listdir(folder) if name.startswith("pytest-experiments-")}


def latest_statuses(store: Path) -> dict[str, str]:
    with Store.open(store, readonly=True) as opened:
        return {run.node_id: run.status for run in opened.runs()}


def one_line_failure(output: str, message: str) -> None:
    """``message`` reported, always on one line, and nothing from the plugin's insides."""
    assert message in output, output
    assert "INTERNALERROR" not in output, output
    assert "Traceback" not in output, output
    assert "cannot rollback" not in output, output
    assert "During handling" not in output, output
    # A process whose heartbeat thread met the full disk first (opening the store, under xdist
    # before its first run was written) says so too, the same line inside: on one line as well.
    heartbeat = re.escape("xp: cannot renew this session's heartbeat (")
    for line in output.splitlines():
        if "xp: " in line and message in line:
            assert re.search(rf"xp: ({heartbeat})?{re.escape(message)}; free some space", line), line


@pytest.mark.parametrize(
    ("mode", "xdist"),
    [
        ("creating", ()),
        ("starting", ()),
        ("finishing", ()),
        ("capturing", ()),
        ("finishing", ("-n", "2")),
        ("capturing", ("-n", "2")),
        ("closing", ()),
    ],
)
def test_full_disk_stops_the_session_with_one_line(
    pytester: pytest.Pytester, procs: Processes, small_disk: Path, mode: str, xdist: tuple[str, ...]
) -> None:
    pytester.makeconftest(FILL)
    pytester.makepyfile(test_disk=DISK_FULL_GRID)
    store = small_disk / "store"
    tmp = private_tmp(pytester)
    env = {"XP_TEST_DISK": str(small_disk), "XP_TEST_MARKS": str(pytester.path), "XP_TEST_MODE": mode}
    env["TMPDIR"] = str(tmp)

    code, output = procs.run("-v", f"--xp-store={store}", *xdist, **env)

    # Runs not recorded stop the session; a session that cannot be closed in the store ends as it was.
    # Runs are written to the journal first: a full disk shows when a journal's write needs a new
    # page, or when the store takes the journal in (a fold, every second and at the end), so where
    # the session stops depends on the filesystem and the clock; never an internal error.
    if mode in ("creating", "capturing") or (mode == "finishing" and not xdist):
        assert code == pytest.ExitCode.INTERRUPTED, output
    elif mode == "closing":
        assert code == pytest.ExitCode.OK, output
    else:
        assert code in (pytest.ExitCode.OK, pytest.ExitCode.INTERRUPTED), output
    one_line_failure(output, f"no space left on device while writing {store}")
    assert stop_flags(tmp) == set()
    assert not list(small_disk.rglob("*.tmp"))
    if store.exists():
        assert set(os.listdir(store)) <= STORE_FILES
    (small_disk / "filler").unlink()
    ran = {path.name for path in pytester.path.glob("ran-*")}
    if mode == "creating":
        assert ran == set()
    elif mode == "closing":
        assert f"\nxp: no space left on device while writing {store}; free some space" in output
        assert set(latest_statuses(store).values()) == {"passed"}
    elif mode == "starting":
        assert "ran-a" in ran
        assert latest_statuses(store)["test_disk.py::test_a"] == "passed"
    else:
        # The run whose final write failed is reported as an error, and never stored as passed.
        # Which run that is depends on the filesystem: a journal's record may still fit in the
        # last page of its file after the disk filled up (then it is stored, and durable).
        failed = re.search(r"ERROR test_disk.py::(test_c\[\d\]) - xp: no space left", output)
        assert failed or xdist, output
        if not failed:
            pass  # under xdist the store's fold may find the full disk first: no run errors
        elif latest_statuses(store)[f"test_disk.py::{failed[1]}"] != "interrupted":
            raise AssertionError(output)
        if not xdist:
            assert failed
            last = int(failed[1][-2])
            assert ran == {"ran-a", *(f"ran-c{i}" for i in range(last + 1))}  # and the session stopped there

    # Space freed: the store works, and resuming runs exactly what is not stored as done.
    code, output = procs.run(f"--xp-store={store}", "--xp-resume", **env | {"XP_TEST_MODE": "none"})
    assert code == 0, output
    assert set(latest_statuses(store).values()) == {"passed"}
    assert len(latest_statuses(store)) == 5


# Source of empty_wal(database), for the inner scripts below.
EMPTY_WAL = """
import sqlite3
import time


def empty_wal(database):
    \"\"\"Everything into the database file, and a WAL of no size: the next write must grow it
    (a WAL checkpointed earlier is written over from its start, and needs no more space), and
    every later read meets what is in the file.\"\"\"
    connection = sqlite3.connect(database, timeout=30, isolation_level=None)
    deadline = time.monotonic() + 30
    while connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
        assert time.monotonic() < deadline, "readers kept the checkpoint from finishing"
        time.sleep(0.01)
    connection.close()
"""

HEARTBEAT_GRID = (
    """
import sqlite3
import time

import pytest
from conftest import fill, DISK

from pytest_experiments import Store
from pytest_experiments.plugin import HANDLE_KEY


def written(handle):
    \"\"\"Whether the writes made around a run's start are in the store: the session's metadata
    (under xdist the controller adds it once a worker reports the session's first experiment)
    and this run's row (the journal's first fold, by the heartbeat thread). A full disk would
    stop either, and the session with it, before the heartbeat could fail.\"\"\"
    with Store.open(handle.path, readonly=True) as store:
        if not any(s.session_id == handle.session.session_id and s.metadata for s in store.sessions()):
            return False
    connection = sqlite3.connect(handle.path / "experiments.sqlite", timeout=30)
    try:
        return connection.execute("SELECT count(*) FROM runs").fetchone()[0] > 0
    finally:
        connection.close()

"""
    + EMPTY_WAL
    + """


@pytest.mark.experiment
def test_long_run(request):
    handle = request.config.stash[HANDLE_KEY]
    deadline = time.monotonic() + 30
    while not written(handle):
        assert time.monotonic() < deadline, "the session's metadata or the run's start never came"
        time.sleep(0.01)
    empty_wal(handle.path / "experiments.sqlite")
    fill()
    while handle.heartbeat_trouble is None:  # the heartbeat thread has tried, and failed
        assert time.monotonic() < deadline, "the heartbeat never failed"
        time.sleep(0.01)
    (DISK / "filler").unlink()
    return {"value": 1}
"""
)


@pytest.mark.parametrize(
    "args", [(), ("-n", "2"), ("-W", "error::pytest.PytestWarning")], ids=["no-xdist", "xdist", "warnings-are-errors"]
)
def test_heartbeat_that_cannot_be_written_is_reported(
    pytester: pytest.Pytester, procs: Processes, small_disk: Path, args: tuple[str, ...]
) -> None:
    pytester.makeconftest(FILL)
    pytester.makepyfile(test_beat=HEARTBEAT_GRID)
    store = small_disk / "store"
    env = {"XP_TEST_DISK": str(small_disk), "XP_TEST_MARKS": str(pytester.path)}

    code, output = procs.run(f"--xp-store={store}", "--xp-lease=0.2", *args, **env)

    warning = f"xp: cannot renew this session's heartbeat (no space left on device while writing {store}; "
    assert warning in output, output
    assert "other hosts sharing the store may take its running runs for dead" in output
    assert "INTERNALERROR" not in output, output
    assert latest_statuses(store) == {"test_beat.py::test_long_run": "passed"}
    if "-W" in args:  # the warning is an error of the run's teardown, as any warning would be
        assert code == pytest.ExitCode.TESTS_FAILED, output
        assert f"PytestExperimentsWarning: {warning}" in output
    else:
        assert code == pytest.ExitCode.OK, output


# -- damage found while writing --------------------------------------------------------

# Run by the experiment in a process of its own: closing a descriptor of the database in the
# process recording it would drop SQLite's locks there.
DAMAGE = (
    EMPTY_WAL
    + """
import sys

database = sys.argv[1]
empty_wal(database)  # every later read meets the damage
with open(database, "r+b") as file:
    size = file.seek(0, 2)
    file.seek(4096)
    file.write(bytes((i * 131 + 7) % 251 for i in range(size - 4096)))  # page 1 (the schema) is left
"""
)

# The first body damages the store; under xdist (XP_TEST_PARTNER) it first waits until a body
# has started on the other worker, which then waits for the damage: that run started before the
# damage, and must not be completed after it.
DAMAGING_GRID = """
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

MARKS = Path(os.environ["XP_TEST_MARKS"])
DATABASE = Path(os.environ["XP_TEST_STORE"]) / "experiments.sqlite"
DAMAGE = {damage!r}

import pytest_experiments.plugin.store_access as access

# Folds only between runs, by the test thread, the first one FOLD_EVERY_S after the first run
# started: none by the heartbeat thread while a run damages the store (a commit of it between
# the damage's checkpoint and its writing would leave a WAL, which the last connection's
# checkpoint later writes over the damage).
access.FIRST_FOLD_AFTER_S = access.THREAD_FOLDS_AFTER_S = 3600.0
if os.environ.get("XP_TEST_FOLDER"):  # a folding process folds from the first run's end, and only it
    access.FOLD_EVERY_S = access.FOLDER_AFTER_S = 0.0


def wait_for(marker):
    deadline = time.monotonic() + 30
    while not (MARKS / marker).exists():
        assert time.monotonic() < deadline, f"no {{marker}}"
        time.sleep(0.01)


@pytest.mark.experiment
@pytest.mark.parametrize("i", range(12))
def test_point(i):
    (MARKS / f"ran-{{i}}").write_text("")
    try:
        os.close(os.open(MARKS / "damager", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        (MARKS / "partner").write_text("")
        wait_for("damaged")
        return {{"value": i}}
    if os.environ.get("XP_TEST_PARTNER"):
        wait_for("partner")
    subprocess.run([sys.executable, "-c", DAMAGE, str(DATABASE)], check=True, timeout=60)
    (MARKS / "damaged.sha256").write_text(hashlib.sha256(DATABASE.read_bytes()).hexdigest())
    (MARKS / "damaged").write_text("")
    return {{"value": i}}
"""


def _still_damaged(database: Path) -> bool:
    """Whether SQLite finds ``database`` damaged."""
    try:
        with contextlib.closing(sqlite3.connect(database)) as db:
            return db.execute("PRAGMA quick_check").fetchall() != [("ok",)]
    except sqlite3.DatabaseError:
        return True


@pytest.mark.parametrize(
    ("xdist", "folder"),
    [((), False), (("-n", "2"), False), ((), True)],
    ids=["no-xdist", "xdist", "found-by-the-folding-process"],
)
def test_damage_found_mid_session_stops_it_and_nothing_more_is_written(
    pytester: pytest.Pytester, procs: Processes, xdist: tuple[str, ...], folder: bool
) -> None:
    store = pytester.path / "store"
    pytester.makepyfile(test_grid=DAMAGING_GRID.format(damage=DAMAGE))
    tmp = private_tmp(pytester)
    env = {"XP_TEST_MARKS": str(pytester.path), "XP_TEST_STORE": str(store), "XP_TEST_PARTNER": "1" if xdist else ""}
    env["TMPDIR"] = str(tmp)
    env["XP_TEST_FOLDER"] = "1" if folder else ""

    code, output = procs.run(f"--xp-store={store}", *xdist, **env)

    # Runs are written to the journal; the damage is found when the store takes the journal in
    # (a fold, every second and at the session's end), which stops the session if it is still on.
    assert code in (pytest.ExitCode.OK, pytest.ExitCode.INTERRUPTED), output
    database = store / "experiments.sqlite"
    message = f"the store database {database} is damaged (database disk image is malformed); nothing more is written"
    assert message in output, output
    assert "INTERNALERROR" not in output, output
    assert "Traceback" not in output, output
    assert "During handling" not in output, output
    # Not a byte written since the damage was found: the WAL is empty. Without xdist the database
    # is exactly as the damage left it; under xdist the other worker's fold (every second, in a
    # thread) may have been committing as the damage was done, and its checkpoint may land after
    # it: then the damage is still there all the same.
    digest = hashlib.sha256(database.read_bytes()).hexdigest()
    if not xdist:
        assert digest == (pytester.path / "damaged.sha256").read_text()
    elif digest != (pytester.path / "damaged.sha256").read_text():
        assert _still_damaged(database)
    wal = store / "experiments.sqlite-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    # What ran after the damage is not lost: it stays in the journals, which were not folded.
    ran = len(list(pytester.path.glob("ran-*")))
    journaled = [line for path in (store / "journals").iterdir() for line in records(path) if line.startswith("S")]
    assert len(journaled) == ran
    assert stop_flags(tmp) == set()
