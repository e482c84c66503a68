"""Who may use a store, and what a store folder is: read-only users, readers beside writers,
symlinks, foreign folders.

Permissions are real: the suite runs as root, so a user who cannot write is ``nobody``
(``setpriv``), in a folder under ``/tmp`` that others may read (``/tmp/pytest-of-root`` is 0700).
Writers hold real SQLite locks in other processes; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import TIMEOUT, Processes, inner_env

from pytest_experiments import Store
from pytest_experiments.store.sqlite_files import SIDE_DIR

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="setpriv, chattr and Linux permissions"),
    pytest.mark.usefixtures("clean_env"),
]

NOBODY = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups")

GRID = """
import pytest


@pytest.mark.experiment
@pytest.mark.parametrize("i", range(3))
def test_point(xp, i):
    xp.log_metric("loss", 1.0 / (i + 1))
    return {"value": i}
"""

# Adds one finished run (node id ``extra.py::test_extra``) through the store API, then
# (argv[2]) "close"s, "wait"s with the connection open until ``release`` appears, or is "kill"ed.
WRITER = """
import os
import signal
import sys
import time
from pathlib import Path

from pytest_experiments import Store
from pytest_experiments.model import RunEnd, RunStart, SessionStart

store_path, then = Path(sys.argv[1]), sys.argv[2]
store = Store.open(store_path)
now = time.time()
store.record_session(SessionStart("extra-session", now, "host", os.getpid(), {}))
store.start_run(RunStart("extra-run", "extra-session", "extra.py::test_extra", "extra.py", "test_extra",
                         "0" * 16, {}, now, "main", "host", os.getpid(), "runs/test_extra/extra-run"))
store.finish_run(RunEnd("extra-run", "passed", now, 0.0, None, {"loss": 0.5}, [], {}, {}))
Path("written").write_text("")
if then == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
deadline = time.monotonic() + 60
while then == "wait" and not Path("release").exists() and time.monotonic() < deadline:
    time.sleep(0.01)
store.close()
"""

# Holds the write lock (BEGIN IMMEDIATE, with a write pending) until ``release`` appears.
# argv[2] == "wal": first commits a change, so that the store has a live WAL to read.
LOCKER = """
import sqlite3
import sys
import time
from pathlib import Path

connection = sqlite3.connect(Path(sys.argv[1]) / "experiments.sqlite", isolation_level=None)
if sys.argv[2] == "wal":
    connection.execute("UPDATE sessions SET metadata = metadata")
connection.execute("BEGIN IMMEDIATE")
connection.execute("UPDATE sessions SET heartbeat_at = heartbeat_at")
Path("locked").write_text("")
deadline = time.monotonic() + 60
while not Path("release").exists() and time.monotonic() < deadline:
    time.sleep(0.01)
connection.execute("COMMIT")
connection.close()
"""

# Every read-only command of the CLI and load(), in one interpreter; prints their results as JSON.
READERS = """
import contextlib
import io
import json
import sys

from pytest_experiments.cli import main
from pytest_experiments.frames import load

store, out = sys.argv[1], sys.argv[2]
commands = {
    "status": ["status"],
    "runs": ["runs", "--history", "--format", "csv"],
    "sessions": ["sessions"],
    "export": ["export", "-o", f"{out}/runs.csv"],
    "compare": ["compare", store],
}
results = {}
for name, args in commands.items():
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([*args, "--store", store])
    results[name] = [code, stdout.getvalue() + stderr.getvalue()]
frame = load(store, history=True)
run_id = frame["run_id"].iloc[0]
stdout, stderr = io.StringIO(), io.StringIO()
with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
    results["show"] = [main(["show", run_id, "--store", store]), stdout.getvalue() + stderr.getvalue()]
results["load"] = [0, sorted(frame["node_id"])]
print(json.dumps(results))
"""


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A project folder that every user may read but only root may write, removed afterwards."""
    if os.geteuid() != 0:
        pytest.fail("these tests run a reader as another user (nobody): run the suite as root")
    base = Path(tempfile.mkdtemp(prefix="xp-shared-", dir="/tmp"))
    try:
        base.chmod(0o755)
        project = base / "project"
        project.mkdir(mode=0o755)
        (project / "test_grid.py").write_text(GRID)
        (project / "pytest.ini").write_text("[pytest]\n")
        output = base / "out"  # where nobody may write its exports
        output.mkdir()
        output.chmod(0o777)
        yield project
    finally:
        subprocess.run(["chattr", "-R", "-i", str(base)], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def shared_procs(shared_dir: Path) -> Iterator[Processes]:
    """Processes started in ``shared_dir``; leftovers are killed at teardown."""
    processes = Processes(shared_dir)
    try:
        yield processes
    finally:
        processes.cleanup()


def files(store: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``store``: owner and size (the database: and modification time)."""
    result = {}
    for path in sorted(store.rglob("*")):
        stat = path.lstat()
        changed = stat.st_mtime_ns if path.name == "experiments.sqlite" else 0
        result[str(path.relative_to(store))] = (stat.st_uid, stat.st_size, changed)
    return result


def record(procs: Processes, store: Path, *args: str) -> str:
    """A root session recording the grid into ``store``."""
    code, output = procs.run(f"--xp-store={store}", *args)
    assert code == 0, output
    return output


def read_all(procs: Processes, store: Path, prefix: tuple[str, ...] = (), timeout: float = TIMEOUT) -> dict[str, list]:
    """Every read-only command and load() on ``store`` (as ``prefix``'s user), each of which must succeed."""
    out = procs.cwd.parent / "out"
    out.mkdir(exist_ok=True)
    code, output = procs.finish(procs.start_script(READERS, str(store), str(out), prefix=prefix), timeout=timeout)
    assert code == 0, output
    results: dict[str, list] = json.loads(output.splitlines()[-1])
    for name, (status, text) in results.items():
        assert status == 0, (name, text)
    return results


# -- a user who cannot write ------------------------------------------------------------


@pytest.mark.parametrize("how", ["folder", "database", "immutable"])
def test_user_who_cannot_write_the_store_is_stopped_at_start(
    shared_dir: Path, shared_procs: Processes, how: str
) -> None:
    store = shared_dir / "store"
    record(shared_procs, store)
    database = store / "experiments.sqlite"
    if how == "database":
        store.chmod(0o777)  # anyone may create files in the folder, but the database is root's (0644)
    before = files(store)
    if how == "immutable":  # root, but the file cannot be written: chattr +i
        subprocess.run(["chattr", "+i", str(database)], check=True)
        prefix: tuple[str, ...] = ()
    else:
        prefix = NOBODY
    try:
        proc = shared_procs.start_script(
            "import sys, pytest; sys.exit(pytest.main(sys.argv[1:]))", "-p", "no:cacheprovider", f"--xp-store={store}",
            prefix=prefix,
        )  # fmt: skip
        code, output = shared_procs.finish(proc)
    finally:
        subprocess.run(["chattr", "-i", str(database)], check=True)
    assert code == pytest.ExitCode.USAGE_ERROR, output
    # Stopped once collection found the experiments, before any of them ran.
    [line] = [line for line in output.splitlines() if "xp:" in line]
    assert line.startswith("ERROR: xp: "), output
    assert output.strip().splitlines()[-1] == line
    assert "passed" not in output
    assert "not writable" in line
    assert str(store) in line
    assert files(store) == before  # nothing created (no -wal/-shm owned by nobody), nothing changed


@pytest.mark.parametrize("state", ["closed", "open", "killed"])
def test_reading_needs_only_read_permission(shared_dir: Path, shared_procs: Processes, state: str) -> None:
    """load() and every read-only command work for a user who may only read, and leave no file behind."""
    store = shared_dir / "store"
    record(shared_procs, store)
    if state != "closed":  # one more run, in the WAL: a live writer's, or a killed one's left over
        writer = shared_procs.start_script(WRITER, str(store), "wait" if state == "open" else "kill")
        shared_procs.wait_for(shared_dir / "written", writer)
        if state == "killed":
            assert writer.wait(timeout=TIMEOUT) == -signal.SIGKILL
        assert (store / "experiments.sqlite-wal").stat().st_size > 0
    before = files(store)

    results = read_all(shared_procs, store, prefix=NOBODY)

    expected = [f"test_grid.py::test_point[{i}]" for i in range(3)] + (
        [] if state == "closed" else ["extra.py::test_extra"]
    )
    assert results["load"][1] == sorted(expected)
    assert "extra.py::test_extra" in results["runs"][1] or state == "closed"
    assert files(store) == before  # no file created, owned by nobody or anyone
    if state == "open":
        (shared_dir / "release").write_text("")
        assert shared_procs.finish(writer)[0] == 0
    record(shared_procs, store)  # the owner still writes the store as before
    with Store.open(store, readonly=True) as opened:
        assert len(opened.runs(history=True)) == len(expected) + 3


def test_a_reader_who_is_not_the_owner_keeps_no_frames_even_where_it_could(
    shared_dir: Path, shared_procs: Processes
) -> None:
    """load() keeps its frames beside the store only for the store's owner: a folder anyone may
    write (0777) still gets no file owned by another user."""
    store = shared_dir / "store"
    record(shared_procs, store)
    store.chmod(0o777)
    before = files(store)
    for _ in range(2):
        results = read_all(shared_procs, store, prefix=NOBODY)
        assert results["load"][1] == [f"test_grid.py::test_point[{i}]" for i in range(3)]
    assert files(store) == before
    read_all(shared_procs, store)  # the owner's reads keep them
    assert (store / SIDE_DIR / "load-history.npz").stat().st_uid == 0


@pytest.mark.parametrize("wal", [False, True], ids=["store-at-rest", "store-with-live-wal"])
def test_reading_never_waits_for_a_writer(pytester: pytest.Pytester, procs: Processes, wal: bool) -> None:
    pytester.makepyfile(test_grid=GRID)
    store = pytester.path / "store"
    record(procs, store)
    locker = procs.start_script(LOCKER, str(store), "wal" if wal else "")
    procs.wait_for(pytester.path / "locked", locker)
    before = files(store)

    # The writer holds the lock until released, which comes after the readers: a reader that
    # waited for it would never finish (and fail at the bound below).
    results = read_all(procs, store, timeout=20)

    assert results["load"][1] == [f"test_grid.py::test_point[{i}]" for i in range(3)]
    # Nothing else written: only the frames load() keeps for the store's owner (this reader).
    after = files(store)
    assert {name: value for name, value in after.items() if name.split("/")[0] != SIDE_DIR} == before
    assert f"{SIDE_DIR}/load-history.npz" in after
    (pytester.path / "release").write_text("")
    code, output = procs.finish(locker)
    assert code == 0, output


def test_read_only_store_refuses_to_write(pytester: pytest.Pytester, procs: Processes) -> None:
    pytester.makepyfile(test_grid=GRID)
    store = pytester.path / "store"
    record(procs, store)
    with Store.open(store, readonly=True) as opened:
        [session] = opened.sessions()
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            opened.finish_session(session.session_id, 0.0, 0)
    with pytest.raises(ValueError, match="read-only cannot be created"):
        Store.open(pytester.path / "new", create=True, readonly=True)


# -- a damaged store ---------------------------------------------------------------------

SERIES = """
import pytest


@pytest.mark.experiment
@pytest.mark.parametrize("i", range(40))
def test_point(xp, i):
    for step in range(20):
        xp.log_metric("loss", 1.0 / (i + step + 1), step=step)
    return {"value": i}
"""


def damage_middle_page(database: Path, seed: int) -> None:
    """Garbage over one page in the middle of ``database`` (no connection has it open)."""
    data = bytearray(database.read_bytes())
    page = len(data) // 4096 // 2
    data[page * 4096 : (page + 1) * 4096] = random.Random(seed).randbytes(4096)
    database.write_bytes(bytes(data))


@pytest.mark.parametrize("xdist", [(), ("-n", "2")], ids=["no-xdist", "xdist"])
@pytest.mark.parametrize("seed", [1, 2])
def test_damaged_store_is_refused_at_start(pytester: pytest.Pytester, xdist: tuple[str, ...], seed: int) -> None:
    pytester.makepyfile(test_grid=SERIES)
    store = pytester.path / "store"
    pytester.runpytest("-p", "no:cacheprovider", f"--xp-store={store}").assert_outcomes(passed=40)
    database = store / "experiments.sqlite"
    assert not (store / "experiments.sqlite-wal").exists()  # all in the database file
    damage_middle_page(database, seed)
    before = (database.read_bytes(), database.stat().st_mtime_ns, sorted(os.listdir(store)))

    result = pytester.runpytest("-p", "no:cacheprovider", f"--xp-store={store}", *xdist)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    [line] = [line for line in result.stderr.lines if line.strip()]
    assert line.startswith(f"ERROR: xp: the store database {database} is damaged (")
    assert line.endswith("choose another --xp-store")
    assert "test_point" not in result.stdout.str()
    assert (database.read_bytes(), database.stat().st_mtime_ns, sorted(os.listdir(store))) == before


# -- symlinks ---------------------------------------------------------------------------


HOSTILE = """
import pytest


@pytest.mark.parametrize("name", ["../../x", "/abs", "..", "a/../../b"], ids=["up", "abs", "dotdot", "mixed"])
def test_hostile(xp, name):
    (xp.dir / "artefact.txt").write_text(name)
    return {"length": len(name)}
"""


def test_symlinked_runs_folder_is_followed(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """Run folders on scratch storage: ``runs/`` a symlink is followed, parameters still never escape."""
    pytester.makepyfile(test_hostile=HOSTILE)
    store = pytester.path / "store"
    store.mkdir()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (store / "runs").symlink_to(scratch, target_is_directory=True)

    for _ in range(2):
        result = pytester.runpytest("-p", "no:cacheprovider", f"--xp-store={store}")
        result.assert_outcomes(passed=4)
        assert "INTERNALERROR" not in result.stdout.str()

    artefacts = sorted(scratch.rglob("artefact.txt"))
    assert len(artefacts) == 8
    assert {path.parent.parent for path in artefacts} == {scratch / "test_hostile"}
    assert os.listdir(tmp_path) == ["scratch"]
    assert sorted(os.listdir(pytester.path)) == ["store", "test_hostile.py"]
    with Store.open(store, readonly=True) as opened:
        runs = opened.runs()
        assert {(run.dir / "artefact.txt").read_text() for run in runs} == {"../../x", "/abs", "..", "a/../../b"}
        assert all(run.dir.is_relative_to(store / "runs") for run in runs)

    # gc removes the old run folders through the symlink, and nothing else.
    from pytest_experiments.cli import main

    assert main(["gc", "--keep", "1", "--store", str(store)]) == 0
    assert len(list(scratch.rglob("artefact.txt"))) == 4
    assert (store / "runs").is_symlink()
    assert scratch.is_dir()


@pytest.mark.parametrize("where", ["store", "parent", "dangling", "runs"])
def test_symlink_that_leads_nowhere_stops_the_session(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # collection imports the module before the check
    pytester.makepyfile(test_grid=GRID)
    loop = pytester.path / "loop"
    loop.symlink_to(loop)  # points at itself
    store = pytester.path / "store"
    if where == "store":
        store = loop
    elif where == "parent":
        store = loop / "store"
    elif where == "dangling":
        store.symlink_to(pytester.path / "missing" / "store")
    else:  # scratch storage that is not there
        store.mkdir()
        (store / "runs").symlink_to(pytester.path / "nowhere")
    before = sorted(os.listdir(pytester.path))
    result = pytester.runpytest("-p", "no:cacheprovider", f"--xp-store={store}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    [line] = [line for line in result.stderr.lines if line.strip()]
    assert line.startswith("ERROR: xp: ")
    assert "symlink that cannot be followed" in line
    assert "test_point" not in result.stdout.str()
    assert sorted(os.listdir(pytester.path)) == before


# -- what a store folder is -------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, env=inner_env())
    return done.stdout


def test_project_folder_is_not_taken_for_a_store(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--xp-store .`` in a git repository: refused, nothing written, ``git status`` as it was."""
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # collection imports the module before the check
    pytester.makepyfile(test_grid=GRID)
    git(pytester.path, "init", "-q")
    git(pytester.path, "add", "test_grid.py")
    git(pytester.path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "grid")
    (pytester.path / "notes.txt").write_text("untracked work\n")
    status = git(pytester.path, "status", "--porcelain")
    before = files(pytester.path)

    result = pytester.runpytest("-p", "no:cacheprovider", "--xp-store=.")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    [line] = [line for line in result.stderr.lines if line.strip()]
    assert line.startswith(f"ERROR: xp: {pytester.path} is a folder holding other files (.git, notes.txt, ")
    assert "not an experiment store" in line
    assert files(pytester.path) == before
    assert git(pytester.path, "status", "--porcelain") == status


@pytest.mark.parametrize("contents", ["empty", "being-created"])
def test_empty_folder_or_one_being_created_is_a_store(pytester: pytest.Pytester, contents: str) -> None:
    pytester.makepyfile(test_grid=GRID)
    store = pytester.path / "store"
    store.mkdir()
    if contents == "being-created":  # what another process creating the store writes first
        (store / "runs").mkdir()
        (store / ".gitignore.12345.tmp").write_text("*\n")
    pytester.runpytest(f"--xp-store={store}").assert_outcomes(passed=3)
    assert (store / "experiments.sqlite").is_file()
