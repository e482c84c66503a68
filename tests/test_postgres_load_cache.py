"""``load()`` of a PostgreSQL store keeps its frames in the artefacts root and patches them with
the runs changed since (``frames/cache.py``, ``frames/patch.py``), as for SQLite: the frame it
gives equals, column for column, dtype for dtype and value for value, the frame built row by
row from the records, after every kind of change.

What is particular to a server store, each done for real on the test server: transactions that
commit in another order than they changed runs (a reader must still see each change once it
is committed), a change log pruned past what a kept frame saw, a store dropped and made again
under the same name, runs stored as running, an older schema read without migrating, and a
reader without an artefacts root (which creates none).
"""

from __future__ import annotations

import contextlib
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from backends import Backend, make_backend
from psycopg import sql
from test_load_cache import expected, finished_fill
from test_load_incremental import check_frame, random_rounds, record, watch_patches
from test_store_contract import run_start, session_start

from pytest_experiments import Store, load
from pytest_experiments.store import postgres_sql
from pytest_experiments.store.rundirs import SIDE_DIR

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="liveness reads /proc")

FILES = ("load-latest.npz", "load-history.npz")


@pytest.fixture
def pg(tmp_path: Path, postgres_database: str, dead_pid: tuple[int, str]) -> Backend:
    """A PostgreSQL store of ``fill``'s tricky runs, all finished."""
    backend = make_backend("postgresql", tmp_path, postgres_database)
    with backend.open(create=True, lease=10) as store:
        finished_fill(store, dead_pid)
    return backend


@pytest.fixture
def patched(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """One entry per patch tried: True when it gave the frame, False when it gave up."""
    return watch_patches(monkeypatch)


def check(pg: Backend) -> None:
    """Both frames of ``pg`` equal the frames built from its records, and are kept."""
    with pg.open(readonly=True) as store:
        for history in (False, True):
            check_frame(load(store, history=history), expected(store, history))
        folder = store.side_folder
    assert folder is not None
    assert sorted(path.name for path in folder.iterdir()) == sorted(FILES)


@contextlib.contextmanager
def session(pg: Backend, name: str) -> Iterator[tuple[Store, Any]]:
    """A writer of ``pg`` and a session recorded in it, finished at the end."""
    started = session_start(name)
    with pg.open(create=True) as store:
        store.record_session(started)
        yield store, started
        store.finish_session(started.session_id, time.time(), 0)


@contextlib.contextmanager
def out_of_order(pg: Backend) -> Iterator[tuple[str, str]]:
    """Two runs of ``pg`` tagged by two transactions: the first run's first, then the second's,
    which commits at once; the first commits as the block ends."""
    with pg.open(readonly=True) as store:
        first, second = (record.run_id for record in store.runs(history=True)[:2])
    set_tags = sql.SQL("UPDATE {} SET tags = %s WHERE run_id = %s").format(runs_table(pg))
    with connect(pg) as late, connect(pg) as early:
        late.execute(set_tags, ('{"order": "committed last"}', first))
        early.execute(set_tags, ('{"order": "committed first"}', second))
        early.commit()
        yield first, second
        late.commit()


def connect(pg: Backend) -> psycopg.Connection[Any]:
    """A connection of its own to the test database, outside any store (not in autocommit)."""
    return psycopg.connect(pg.database_url)


def runs_table(pg: Backend) -> sql.Composed:
    return sql.SQL("{}").format(sql.Identifier(pg.schema, "runs"))


def test_frames_are_kept_in_the_artifacts_root_then_patched(pg: Backend, patched: list[bool]) -> None:
    check(pg)
    assert patched == []  # built, the first time
    check(pg)
    assert patched == []  # nothing changed: read as kept, no patch
    with session(pg, "more") as (store, started):
        record(store, started, "new", params={"lr": 0.5}, metrics={"loss": 0.25})
        record(store, started, 0, metrics={"loss": 0.125})  # a grid point run again
    check(pg)
    assert patched == [True, True]
    with pg.open() as store:
        runs = store.runs(history=True)
        store.set_tags(runs[0].run_id, {"best": "yes"})
        store.add_note(runs[1].run_id, "looked at")
        store.delete_runs([runs[2].run_id])
    check(pg)
    # The latest frame gives up on a grid point's newest run deleted (the run that is newest now
    # may be one it never held) and is built; the history frame is patched.
    assert patched == [True, True, False, True]


def test_hand_edits_are_patched_in(pg: Backend, patched: list[bool]) -> None:
    """Changes made by hand in SQL, not through the store: logged by the triggers all the same
    (a run renamed is gone under its old id)."""
    check(pg)
    with pg.open(readonly=True) as store:
        renamed, edited, deleted = (record.run_id for record in store.runs(history=True)[:3])
    runs = runs_table(pg)
    with connect(pg) as editor:
        editor.execute(sql.SQL("UPDATE {} SET run_id = 'renamed-by-hand' WHERE run_id = %s").format(runs), (renamed,))
        editor.execute(sql.SQL("UPDATE {} SET status = 'failed' WHERE run_id = %s").format(runs), (edited,))
        editor.execute(sql.SQL("DELETE FROM {} WHERE run_id = %s").format(runs), (deleted,))
    check(pg)
    with pg.open(readonly=True) as store:
        frame = load(store, history=True).set_index("run_id")
    assert renamed not in frame.index
    assert deleted not in frame.index
    assert "renamed-by-hand" in frame.index
    assert frame.loc[edited, "status"] == "failed"
    assert True in patched


def test_a_transaction_that_commits_after_a_load_is_patched_in(pg: Backend, patched: list[bool]) -> None:
    """The first transaction changes a run (and draws the first number in the change log), a
    second one changes another and commits; a load then sees the second only. Once the first
    commits, the next load holds its change too: its number was lower than one the frame had seen."""
    check(pg)
    with out_of_order(pg) as (first, second):
        check(pg)
        with pg.open(readonly=True) as store:
            assert load(store).set_index("run_id").loc[second, "tags.order"] == "committed first"
            assert "committed last" not in load(store, history=True)["tags.order"].tolist()
    check(pg)
    with pg.open(readonly=True) as store:
        assert load(store, history=True).set_index("run_id").loc[first, "tags.order"] == "committed last"
    assert len(patched) >= 4
    assert all(patched)


def test_a_change_log_pruned_past_a_kept_frame_builds_it_again(
    pg: Backend, patched: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    check(pg)
    with session(pg, "pruned away") as (store, started):
        record(store, started, "gone from the log", metrics={"loss": 0.5})
    monkeypatch.setattr(postgres_sql, "CHANGES_KEPT", 1)
    with pg.open(create=True):  # a writer opening the store prunes the log: that session's changes go
        pass
    check(pg)
    assert patched == []  # built again, never patched from a log missing changes
    monkeypatch.setattr(postgres_sql, "CHANGES_KEPT", 250_000)
    with session(pg, "after") as (store, started):
        record(store, started, "after", metrics={"loss": 0.75})
    # Patched again, or built once more while a transaction older than the pruning one (another
    # test's, anywhere on the server) kept the snapshots' xmin below it.
    check(pg)
    assert False not in patched


def test_a_change_pruned_before_a_reader_saw_it_builds_the_frame_again(
    pg: Backend, patched: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction changes a run, another commits after it, a load sees the second only;
    the first commits, and the log is pruned up to the first's change but not the second's,
    which the kept frame noted as its last: that frame cannot be patched, and is built."""
    with out_of_order(pg) as (first, _):
        check(pg)
    log = sql.SQL("{}").format(sql.Identifier(pg.schema, "change_log"))
    with connect(pg) as reader:
        newest, late_change = reader.execute(
            sql.SQL("SELECT (SELECT max(seq) FROM {0}), (SELECT max(seq) FROM {0} WHERE run_id = %s)").format(log),
            (first,),
        ).fetchone()  # type: ignore[misc]
    monkeypatch.setattr(postgres_sql, "CHANGES_KEPT", newest - late_change)
    tried = len(patched)
    with pg.open(create=True):  # a writer opening the store prunes the log up to that change
        pass
    check(pg)
    assert patched[tried:] == []
    with pg.open(readonly=True) as store:
        assert load(store, history=True).set_index("run_id").loc[first, "tags.order"] == "committed last"


def test_a_store_made_again_under_the_same_name_is_built_not_patched(
    pg: Backend, patched: list[bool], dead_pid: tuple[int, str]
) -> None:
    check(pg)
    with connect(pg) as admin:
        admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(pg.schema)))
    with session(pg, "again") as (store, started):  # a few changes, fewer than the first store's
        record(store, started, "only", params={"lr": 0.1}, metrics={"loss": 0.5})
    check(pg)
    with pg.open(readonly=True) as store:
        assert len(load(store, history=True)) == 1
    assert patched == []


def test_runs_stored_as_running_keep_nothing_until_they_end(pg: Backend, patched: list[bool]) -> None:
    check(pg)
    started = session_start("live")
    with pg.open(create=True) as writer:
        writer.record_session(started)
        start = run_start(started, "live", started_at=time.time())
        writer.start_run(start)  # this process runs it: live
        with pg.open(readonly=True) as reader:
            assert reader.run_changes() is None
            frame = load(reader, history=True)
            check_frame(frame, expected(reader, True))
            assert frame.set_index("run_id").loc[start.run_id, "status"] == "running"
        writer.finish_session(started.session_id, time.time(), 0)  # ends it: interrupted
    check(pg)
    assert patched == [True, True]


def test_an_older_store_read_without_migrating_keeps_nothing(pg: Backend) -> None:
    pg.set_schema_version(4)
    with pg.open(readonly=True) as store:
        assert store.side_folder is None
        assert store.run_changes() is None
        for history in (False, True):
            check_frame(load(store, history=history), expected(store, history))
    assert pg.artifacts is not None
    assert not (pg.artifacts / SIDE_DIR).exists()


def test_a_role_that_may_not_read_the_change_log_loads_as_before(pg: Backend) -> None:
    """A reader's role granted the store's tables before schema 5 added the change log: its
    ``load()`` builds the frames each time, and keeps none."""
    role = f"xp_reader_{secrets.token_hex(4)}"
    tables = ("store_version", "sessions", "code", "runs", "metric_points", "artifacts", "run_attempts", "journals")
    with connect(pg) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        admin.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(pg.schema), sql.Identifier(role)))
        for table in tables:
            admin.execute(
                sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(pg.schema, table), sql.Identifier(role))
            )
    try:
        # The test server trusts every connection: the role's name in the URL is enough.
        as_role = pg.location.replace("postgresql://postgres@", f"postgresql://{role}@", 1)
        assert as_role != pg.location
        with Store.open(as_role, readonly=True, artifacts=pg.artifacts) as store:
            assert store.run_changes() is None
            for history in (False, True):
                check_frame(load(store, history=history), expected(store, history))
        assert pg.artifacts is not None
        assert not (pg.artifacts / SIDE_DIR).exists()
    finally:
        with connect(pg) as admin:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_reader_without_the_artifacts_root_creates_none(pg: Backend, tmp_path: Path) -> None:
    elsewhere = tmp_path / "not here"
    with Store.open(pg.location, readonly=True, artifacts=elsewhere) as store:
        assert store.side_folder is None
        for history in (False, True):
            check_frame(load(store, history=history), expected(store, history))
    assert not elsewhere.exists()


def test_stores_sharing_an_artifacts_root_keep_their_own_frames(
    pg: Backend, postgres_database: str, tmp_path: Path, dead_pid: tuple[int, str]
) -> None:
    other = make_backend("postgresql", tmp_path, postgres_database)
    other.artifacts = pg.artifacts
    with other.open(create=True) as store:
        started = session_start("other")
        store.record_session(started)
        record(store, started, "other", metrics={"loss": 9.0})
    check(pg)
    check(other)
    with pg.open(readonly=True) as first, other.open(readonly=True) as second:
        assert first.side_folder != second.side_folder
        assert len(load(second)) == 1
        assert len(load(first)) > 1


GRID = """
    import pytest

    @pytest.mark.experiment
    @pytest.mark.parametrize("i", range({points}))
    def test_point(i, xp):
        xp.log_metric("loss", 1.0 / (i + 1), step=0)
        xp.tags["kind"] = "odd" if i % 2 else "even"
        return {{"square": i * i}}
"""


@pytest.mark.usefixtures("clean_env")
def test_plugin_sessions_under_xdist_are_patched_in(
    pytester: pytest.Pytester, pg: Backend, patched: list[bool]
) -> None:
    """Sessions of the plugin with ``-n 2`` recording into the store (their journals folded by
    each worker): each one's runs are patched into the kept frames."""
    check(pg)
    options = [f"--xp-store={pg.location}", f"--xp-artifacts={pg.artifacts}", "-n", "2", "-p", "no:randomly"]
    pytester.makepyfile(test_grid=GRID.format(points=6))
    pytester.runpytest_subprocess(*options).assert_outcomes(passed=6)
    check(pg)
    pytester.makepyfile(test_grid=GRID.format(points=9))
    pytester.runpytest_subprocess(*options, "--xp-resume").assert_outcomes(passed=3)
    check(pg)
    with pg.open(readonly=True) as store:
        frame = load(store)
    assert sorted(frame.loc[frame["experiment"] == "test_point", "metrics.square"]) == [i * i for i in range(9)]
    assert patched == [True] * 4


@pytest.mark.parametrize("seed", range(3))
def test_random_changes_give_the_built_frames(pg: Backend, seed: int, patched: list[bool]) -> None:
    """Sessions of a few random changes each: runs re-run or new, with parameters, metrics and
    tags of random names and types; tags changed; runs deleted."""
    random_rounds(pg, seed, 6, check, session)
    assert patched.count(True) >= len(patched) // 2  # most were patches
