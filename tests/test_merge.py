"""``pytest-experiments merge SRC... --into DST``: stores written per shard merged into one, against
real stores (SQLite sources; SQLite and PostgreSQL destinations)."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from backends import Backend

from pytest_experiments import Store
from pytest_experiments.cli import main
from pytest_experiments.model import MetricPoint, RunEnd, RunStart, SessionStart
from pytest_experiments.store.copies import run_copy
from pytest_experiments.store.merge import merge

pytestmark = pytest.mark.usefixtures("clean_env")

SWEEP = """
    import pytest

    @pytest.mark.grid(a=list(range(6)), b=["x", "y"])
    def test_fit(xp, a, b):
        for step in range(3):
            xp.log_metric("loss", a / (step + 1), step=step)
        xp.log_metric("odd", float("nan") if a == 3 else a)
        xp.log_param("double", 2 * a)
        if a % 2:
            (xp.dir / "model.txt").write_text(f"{a}{b}")
        assert a != 5 or b == "x"
        return {"a": a, "b": b}
"""
POINTS = 12


@pytest.fixture
def shards(pytester: pytest.Pytester) -> list[Path]:
    """Three stores, one per shard of the sweep."""
    pytester.makepyfile(test_sweep=SWEEP)
    stores = [pytester.path / f"task-{index}" for index in range(3)]
    for index, store in enumerate(stores):
        pytester.runpytest(f"--xp-shard={index}/3", f"--xp-store={store}", "-p", "no:randomly")
    return stores


def copies(location: str | Path, **options: object) -> dict[str, str]:
    """Run id -> the run's whole content, as the merge compares it."""
    with Store.open(location, readonly=True, **options) as store:  # type: ignore[arg-type]
        return {run.run_id: run_copy(store, run).fingerprint() for run in store.runs(history=True)}


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative path -> sha256 of its bytes)."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def run_folders(root: Path) -> dict[str, str]:
    return {name: digest for name, digest in tree(root).items() if name.startswith("runs/")}


def test_merge_copies_every_run_once_with_its_folder(shards: list[Path], tmp_path: Path) -> None:
    into = tmp_path / "merged"
    assert main(["merge", *map(str, shards), "--into", str(into)]) == 0
    expected: dict[str, str] = {}
    for store in shards:
        expected.update(copies(store))
    assert len(expected) == POINTS
    assert copies(into) == expected  # every field, series and code included
    folders: dict[str, str] = {}
    for store in shards:
        folders.update(run_folders(store))
    assert folders
    assert run_folders(into) == folders
    with Store.open(into, readonly=True) as merged:
        assert {session.session_id for session in merged.sessions()} == {
            session.session_id for store in shards for session in Store.open(store, readonly=True).sessions()
        }
        assert merged.metric_series(next(iter(expected)), "loss")[0][0] == 0
        assert len(merged.runs()) == POINTS  # one grid, each point once


def test_merging_again_adds_nothing(shards: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    into = tmp_path / "merged"
    assert main(["merge", str(shards[0]), str(shards[1]), "--into", str(into)]) == 0
    capsys.readouterr()
    assert main(["merge", *map(str, shards), "--into", str(into)]) == 0
    added = len(copies(shards[2]))
    assert f"{added} run{'s' if added != 1 else ''} added, {POINTS - added} already there" in capsys.readouterr().out
    before = copies(into)
    assert main(["merge", *map(str, shards), "--into", str(into)]) == 0
    assert "0 runs added, 12 already there" in capsys.readouterr().out
    assert copies(into) == before
    with sqlite3.connect(into / "experiments.sqlite") as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == POINTS


def make_live_run(store: Path) -> None:
    """A run in flight: this process's, with a fresh heartbeat."""
    with Store.open(store, create=True) as writer:
        session = SessionStart("live-session", time.time(), os.uname().nodename, os.getpid(), {})
        writer.record_session(session)
        start = RunStart("20990101-000000-aaaaaaaaaaaa", session.session_id, "test_x.py::test_x", "test_x.py",
                         "test_x", "0" * 64, {}, time.time(), "main", session.host, os.getpid(), "runs/test_x/r")  # fmt: skip
        writer.start_run(start)


def newer_schema(store: Path) -> None:
    with sqlite3.connect(store / "experiments.sqlite") as db:
        db.execute("PRAGMA user_version=99")


def conflicting(store: Path) -> None:
    with sqlite3.connect(store / "experiments.sqlite") as db:
        db.execute("UPDATE runs SET metrics = '{\"loss\": 1e9}' WHERE rowid = 1")


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda store: (store / "experiments.sqlite").write_bytes(b"not a database" * 100), "not a pytest-experiments"),
        (newer_schema, "newer than this pytest-experiments reads"),
        (make_live_run, "runs still in flight"),
        (conflicting, "with different contents"),
    ],
    ids=["not-a-store", "newer-schema", "run-in-flight", "same-id-other-contents"],
)
def test_a_refused_source_leaves_the_destination_untouched(
    shards: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], spoil: object, message: str
) -> None:
    into = tmp_path / "merged"
    assert main(["merge", str(shards[0]), "--into", str(into)]) == 0
    before = tree(into)
    bad = tmp_path / "bad"
    shutil.copytree(shards[1] if spoil is not conflicting else shards[0], bad)
    spoil(bad)  # type: ignore[operator]
    capsys.readouterr()
    assert main(["merge", str(shards[2]), str(bad), "--into", str(into)]) == 2
    error = capsys.readouterr().err
    assert message in error
    assert error.endswith("nothing was merged\n")
    assert error.count("\n") == 1
    assert tree(into) == before


def test_a_refused_source_creates_no_destination(shards: list[Path], tmp_path: Path) -> None:
    newer_schema(shards[1])
    assert main(["merge", str(shards[0]), str(shards[1]), "--into", str(tmp_path / "merged")]) == 2
    assert not (tmp_path / "merged").exists()


def test_a_folder_left_by_an_interrupted_merge_is_replaced(shards: list[Path], tmp_path: Path) -> None:
    into = tmp_path / "merged"
    folders = run_folders(shards[0]) or run_folders(shards[1])
    source = shards[0] if run_folders(shards[0]) else shards[1]
    leftover = into / Path(next(iter(folders))).parent
    leftover.mkdir(parents=True)
    (leftover / "half-copied").write_text("x")
    merge([source], into)
    assert run_folders(into) == folders


def recorded_store(root: Path, tag: str, count: int) -> Path:
    """A store with one session of ``count`` finished runs, with series and run folders, written
    through the Store API (no pytester here: a test using it drops at teardown the modules first
    imported during it, and psycopg's C extension then raises the first import's exceptions)."""
    session = SessionStart(f"session-{tag}", 1.0e9, "node", 1, {"tag": tag})
    with Store.open(root, create=True) as store:
        store.record_session(session)
        for index in range(count):
            run_id = f"20010909-014640-{tag}{index:05x}"
            start = RunStart(run_id, session.session_id, f"test_m.py::test_f[{tag}{index}]", "test_m.py", "test_f",
                             f"{tag}{index:063x}"[:64], {"i": index}, 1.0e9 + index, "main", "node", 1,
                             f"runs/test_f/{run_id}")  # fmt: skip
            store.start_run(start)
            (root / start.dir).mkdir(parents=True)
            (root / start.dir / "out.txt").write_text(run_id)
            points = [MetricPoint("loss", seq, seq, 1 / (seq + 1)) for seq in range(3)]
            store.finish_run(RunEnd(run_id, "passed", 1.0e9 + index + 0.5, 0.5, {"i": index}, {"loss": 1 / 3},
                                    points, {}, {"k": index}, "c0de", "def test_f(): pass"))  # fmt: skip
        store.finish_session(session.session_id, 1.0e9 + count, 0)
    return root


def test_merge_into_any_backend(tmp_path: Path, backend: Backend) -> None:
    sources = [recorded_store(tmp_path / f"node-{tag}", tag, 4) for tag in "ab"]
    report = merge(sources, backend.location, artifacts=backend.artifacts)
    assert (report.added, report.present, report.folders) == (8, 0, 8)
    expected: dict[str, str] = {}
    for store in sources:
        expected.update(copies(store))
    options = {"artifacts": backend.artifacts} if backend.artifacts is not None else {}
    assert copies(backend.location, **options) == expected
    root = backend.artifacts if backend.artifacts is not None else Path(backend.location)
    assert {**run_folders(sources[0]), **run_folders(sources[1])} == run_folders(root)
    again = merge(sources, backend.location, artifacts=backend.artifacts)
    assert (again.added, again.present) == (0, 8)
