"""Streamed, crash-safe metrics: every logged point is in the process's journal when the call
returns, readers see running runs, and a crashed writer's journal is folded exactly once.

Real processes, real SIGKILL, synchronised on files; no sleeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest
from processes import GATE_WAIT, Processes

from pytest_experiments import Store
from pytest_experiments.model import RunEnd, RunStart
from pytest_experiments.store.journal import JournalWriter, journal_files, read_batch
from pytest_experiments.store.liveness import Process, pid_namespace, process_start

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

# An experiment that logs POINTS points of "loss", says so in logged-<i> and waits for release.
LOGGING_GRID = """
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.mark.experiment
@pytest.mark.parametrize("i", range({runs}))
def test_train(xp, i):
    for step in range({points}):
        xp.log_metric("loss", 1.0 / (step + 1), step=step)
    xp.log_metrics({{"acc": 0.5, "lr": 0.1}}, step={points})
    (HERE / f"logged-{{i}}.tmp").write_text(str(xp.run_id))
    (HERE / f"logged-{{i}}.tmp").replace(HERE / f"logged-{{i}}")  # whole when it appears
    deadline = time.monotonic() + 60
    while i == {block} and not (HERE / "release").exists():
        assert time.monotonic() < deadline, "never released"
        time.sleep(0.005)
    return {{"final": float(i)}}
"""


def _raw(store: Path, sql: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(store / "experiments.sqlite")) as db:
        return db.execute(sql).fetchall()


def test_kill_9_mid_run_keeps_every_point_logged_before_it(pytester: pytest.Pytester, procs: Processes) -> None:
    pytester.makepyfile(test_grid=LOGGING_GRID.format(runs=3, points=5000, block=1))
    store = pytester.path / "store"
    proc = procs.start(f"--xp-store={store}")
    run_id = procs.wait_for(pytester.path / "logged-1", proc)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL

    # A reader that cannot write reads the dead process's journal: the run is interrupted, with
    # every point and its metrics' latest values.
    with Store.open(store, readonly=True) as reader:
        runs = {run.node_id: run for run in reader.runs()}
        killed = runs["test_grid.py::test_train[1]"]
        assert killed.run_id == run_id
        assert killed.status == "interrupted"
        assert killed.metrics == {"loss": 1.0 / 5000, "acc": 0.5, "lr": 0.1}
        assert runs["test_grid.py::test_train[0]"].status == "passed"
        series = reader.metric_series(run_id, "loss")
        assert series == [(step, 1.0 / (step + 1)) for step in range(5000)]
        assert len(reader.points([run_id])) == 5002

    # The next writer folds the journal into the store (and removes it: its writer is dead).
    Store.open(store).close()
    assert journal_files(store) == []
    assert _raw(store, f"SELECT count(*) FROM metric_points WHERE run_id = '{run_id}'") == [(5002,)]
    [(status, _metrics)] = _raw(store, f"SELECT status, metrics FROM runs WHERE run_id = '{run_id}'")
    assert status == "running"  # as stored: its process is dead, so it reads back interrupted
    with Store.open(store, readonly=True) as reader:
        assert reader.run(run_id).status == "interrupted"
        assert reader.run(run_id).metrics == {"loss": 1.0 / 5000, "acc": 0.5, "lr": 0.1}
        assert len(reader.points([run_id])) == 5002


def test_readers_see_the_points_of_a_running_run(pytester: pytest.Pytester, procs: Processes) -> None:
    from pytest_experiments.frames import load, load_series

    pytester.makepyfile(test_grid=LOGGING_GRID.format(runs=2, points=50, block=0))
    store = pytester.path / "store"
    proc = procs.start(f"--xp-store={store}")
    run_id = procs.wait_for(pytester.path / "logged-0", proc)

    with Store.open(store, readonly=True) as reader:
        [run] = reader.runs()
        assert (run.run_id, run.status) == (run_id, "running")
        assert run.metrics["loss"] == 1.0 / 50
        assert len(reader.points([run_id], ["loss"])) == 50
        assert reader.status_counts(run.session_id) == {"running": 1}
        assert [session.counts for session in reader.sessions()] == [{"running": 1}]
    frame = load(store)
    assert list(frame["status"]) == ["running"]
    assert frame["metrics.loss"][0] == 1.0 / 50
    series = load_series(store)
    assert len(series[series["metric"] == "loss"]) == 50
    # A writer (the command line's tag, gc...) folds it into the store instead: still running.
    with Store.open(store) as writer:
        assert [run.status for run in writer.runs()] == ["running"]
        assert len(writer.points([run_id])) == 52

    (pytester.path / "release").write_text("")
    code, output = procs.finish(proc)
    assert code == 0, output
    with Store.open(store, readonly=True) as reader:
        assert sorted(run.status for run in reader.runs()) == ["passed", "passed"]
        assert len(reader.points()) == 104
    assert journal_files(store) == []  # folded at the session's end and removed


CRASHED_WRITER = """
import os, sys
from pathlib import Path
from pytest_experiments import Store
from pytest_experiments.model import RunStart, SessionStart
from pytest_experiments.store.journal import JournalWriter
from pytest_experiments.store.liveness import Process, pid_namespace, process_start

store, runs, points = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
pid = os.getpid()
with Store.open(store, create=True) as opened:
    opened.record_session(SessionStart("crashed", 0.0, "h", pid, {{}}))
journal = JournalWriter(store, Process(os.uname().nodename, pid, pid_namespace(), process_start(pid)), "crashed")
for n in range(runs):
    run_id = f"run-{{n:05d}}"
    journal.start(RunStart(run_id, "crashed", f"t.py::t[{{n}}]", "t.py", "t", f"h{{n}}", {{"n": n}}, float(n), "main",
                           "h", pid, f"runs/t/{{run_id}}"))
    for step in range(points):
        journal.point(run_id, "loss", step, step, 1.0 / (step + 1))
os.kill(pid, 9)
"""

RACER = (
    textwrap.dedent(GATE_WAIT)
    + """
import sys
from pathlib import Path
from pytest_experiments.store.sqlite import SQLiteStore

store = SQLiteStore(Path(sys.argv[1]))  # the backend itself: its fold says how much it folded
wait_at_gate(sys.argv[2])
print("folded", store.fold_journals())
store.close()
"""
)


def test_two_readers_fold_a_crashed_journal_exactly_once(pytester: pytest.Pytester, procs: Processes) -> None:
    store = pytester.path / "store"
    crashed = procs.start_script(textwrap.dedent(CRASHED_WRITER.format()), str(store), "200", "50")
    assert crashed.wait(timeout=60) == -signal.SIGKILL
    [journal] = journal_files(store)
    records = len(read_batch(journal, 0, limit=None))
    assert records == 200 + 200 * 50

    gate = pytester.mkdir("gate")
    racers = [procs.start_script(RACER, str(store), str(gate)) for _ in range(2)]
    procs.release_together(gate, 2)
    folded = []
    for racer in racers:
        code, output = procs.finish(racer)
        assert code == 0, output
        folded.append(int(output.split("folded", 1)[1].split()[0]))
    # Both folded at once; between them every record exactly once.
    assert sum(folded) == records, folded
    assert _raw(store, "SELECT count(*) FROM runs") == [(200,)]
    assert _raw(store, "SELECT count(*) FROM metric_points") == [(200 * 50,)]
    assert _raw(store, "SELECT last FROM run_sequence") == [(200,)]  # each run inserted once
    assert journal_files(store) == []


def test_a_run_keeps_no_points_in_memory(pytester: pytest.Pytester) -> None:
    # 200,000 points stand for the million of a long run: as a list they would take 30 MB. What
    # memory there is belongs to the heartbeat thread folding the journal, half a MB at a time.
    pytester.makepyfile(
        """
        import tracemalloc

        import pytest


        @pytest.mark.experiment
        def test_long(xp):
            tracemalloc.start()
            for step in range(200_000):
                xp.log_metric("loss", 1.0 / (step + 1), step=step)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            assert peak < 10_000_000, peak
            assert not xp._points
        """
    )
    result = pytester.runpytest("--xp-store=store", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    with Store.open(pytester.path / "store", readonly=True) as reader:
        [run] = reader.runs()
        series = reader.metric_series(run.run_id, "loss")
    assert len(series) == 200_000
    assert series[-1] == (199_999, 1.0 / 200_000)


def test_a_torn_last_line_is_not_a_record_yet(tmp_path: Path) -> None:
    pid = os.getpid()
    writer = JournalWriter(tmp_path, Process("h", pid, pid_namespace(), process_start(pid)), "s")
    start = RunStart("r", "s", "t.py::t", "t.py", "t", "h", {"a": [1, "é"]}, 1.0, "main", "h", pid, "runs/t/r")
    writer.start(start)
    writer.point("r", "loss\tweird\nname", 0, None, float("nan"))
    end = RunEnd("r", "passed", 2.0, 1.0, {"x": 1}, {"loss": 0.5}, [], {}, {"m": 1}, tags={"k": "v"})
    writer.end(end)
    writer.close()
    whole = writer.path.stat().st_size
    with open(writer.path, "ab") as file:
        file.write(b"P\tr\t1\t\t0.25")  # a write cut short: no newline
    batch = read_batch(writer.path, 0)
    assert batch.end == whole
    # JSON values come back as the text the store keeps (a fold passes it on as it is).
    [read_start] = batch.starts
    assert read_start._replace(params=json.loads(read_start.params)) == start
    [(run_id, name, seq, step, value)] = batch.points
    assert (run_id, name, seq, step, value != value) == ("r", "loss\tweird\nname", 0, None, True)
    [read_end] = batch.ends
    decoded = {
        field: json.loads(getattr(read_end, field)) for field in ("result", "metrics", "logged_params", "metadata")
    }
    assert read_end._replace(**decoded) == end
    assert batch.writer is not None
    assert batch.writer.pid == pid


@pytest.mark.parametrize("points", [0, 2], ids=["without-points", "with-points"])
def test_a_batch_reads_every_record_with_or_without_points(tmp_path: Path, points: int) -> None:
    # A journal without points is read by splitting lines, one with points by searching them.
    pid = os.getpid()
    writer = JournalWriter(tmp_path, Process("h", pid, pid_namespace(), process_start(pid)), "s")
    for index in range(3):
        run = f"r{index}"
        writer.start(
            RunStart(run, "s", f"t.py::t[{index}]", "t.py", "t", "h", {"i": index}, 1.0, "main", "h", pid, "runs/t")
        )
        for step in range(points):
            writer.point(run, "loss", step, step, 0.5)
        writer.end(RunEnd(run, "passed", 2.0, 1.0, {"i": index}, {}, [], {}, {}))
    writer.close()
    with open(writer.path, "ab") as file:
        file.write(b"P\tdamaged\nE\tnot json\n")  # lines no writer makes: skipped, not fatal
    batch = read_batch(writer.path, 0)
    assert [start.run_id for start in batch.starts] == ["r0", "r1", "r2"]
    assert [end.run_id for end in batch.ends] == ["r0", "r1", "r2"]
    assert len(batch.points) == 3 * points
    assert batch.end == writer.path.stat().st_size


def test_kill_9_on_a_postgres_store_keeps_every_point(
    pytester: pytest.Pytester, procs: Processes, postgres_database: str
) -> None:
    from backends import make_backend

    pg = make_backend("postgresql", pytester.path, postgres_database)
    assert pg.artifacts is not None
    pytester.makepyfile(test_grid=LOGGING_GRID.format(runs=2, points=300, block=1))
    proc = procs.start(f"--xp-store={pg.location}", f"--xp-artifacts={pg.artifacts}")
    run_id = procs.wait_for(pytester.path / "logged-1", proc)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL

    # The journals live under the artefacts folder, which every host sees.
    assert journal_files(pg.artifacts)
    with pg.open(readonly=True) as reader:
        killed = reader.run(run_id)
        assert (killed.status, killed.metrics["loss"]) == ("interrupted", 1.0 / 300)
        assert len(reader.points([run_id])) == 302
    pg.open().close()  # the next writer folds it
    assert journal_files(pg.artifacts) == []
    with pg.open(readonly=True) as reader:
        assert len(reader.points([run_id])) == 302
        assert reader.run(run_id).metrics == {"loss": 1.0 / 300, "acc": 0.5, "lr": 0.1}
        assert [run.status for run in reader.runs()] == ["passed", "interrupted"]


# Each run checks, in the store's own table (not through a reader, which would lay the journal
# over it), that the run before it is stored as passed: only a fold between the two runs, by the
# thread that runs them, can have put it there, the heartbeat thread's folds being pushed past the
# session. Under xdist each worker folds its own journal, so each checks its own previous run.
BETWEEN_RUNS = """
import sqlite3

import pytest

import pytest_experiments.plugin.store_access as access

access.FOLD_EVERY_S = 0.0  # due after every run
access.THREAD_FOLDS_AFTER_S = 3600.0  # the heartbeat thread never folds
access.FOLDER_AFTER_S = 0.0  # a folding process is due at once, and cannot start:


class NoFolder:
    @classmethod
    def start(cls, *args, **kwargs):
        raise OSError("cannot start a process here")  # so this thread folds on, as the plugin does then


access.FoldingProcess = NoFolder
previous = []


@pytest.mark.experiment
@pytest.mark.parametrize("i", range(6))
def test_run(xp, i):
    if previous:
        with sqlite3.connect(xp.dir.parent.parent.parent / "experiments.sqlite") as db:
            row = db.execute("SELECT status, result FROM runs WHERE run_id = ?", (previous[-1],)).fetchone()
        assert row == ("passed", '{"i":%d}' % (i - 1) if "-n" not in "{args}" else row[1]), row
    previous.append(xp.run_id)
    return {"i": i}
"""


@pytest.mark.parametrize("args", [(), ("-n", "2")], ids=["no-xdist", "xdist"])
def test_the_test_thread_folds_its_journal_between_runs(pytester: pytest.Pytester, args: tuple[str, ...]) -> None:
    pytester.makepyfile(test_between=BETWEEN_RUNS.replace("{args}", " ".join(args)))
    store = pytester.path / "store"

    result = pytester.runpytest_subprocess(f"--xp-store={store}", "-p", "no:randomly", *args)

    result.assert_outcomes(passed=6)
    assert _raw(store, "SELECT count(*) FROM runs WHERE status = 'passed'") == [(6,)]


# The journal's first fold is the test thread's, between two runs, FIRST_FOLD_AFTER_S after the
# first run started (here at once), and no other one until the folding process is due
# (FOLDER_AFTER_S, here never), however often folds are due (FOLD_EVERY_S: never, or after every
# run): run 1 finds run 0 in the store's own table, run 2 does not find run 1 there. The
# heartbeat thread folds nothing (THREAD_FOLDS_AFTER_S) and has no beat due: it never opens the store.
FIRST_FOLD = """
import sqlite3

import pytest

import pytest_experiments.plugin.store_access as access

access.FIRST_FOLD_AFTER_S = 0.0
access.FOLDER_AFTER_S = access.THREAD_FOLDS_AFTER_S = 3600.0
access.FOLD_EVERY_S = {fold_every}

previous = []


@pytest.mark.experiment
@pytest.mark.parametrize("i", range(3))
def test_run(xp, i):
    if previous:
        with sqlite3.connect(xp.dir.parent.parent.parent / "experiments.sqlite") as db:
            row = db.execute("SELECT status FROM runs WHERE run_id = ?", (previous[-1],)).fetchone()
        assert row == (("passed",) if i == 1 else None), (i, row)
    previous.append(xp.run_id)
"""


@pytest.mark.parametrize("fold_every", [3600.0, 0.0])
def test_the_first_fold_is_the_test_threads_soon_after_the_first_run(
    pytester: pytest.Pytester, fold_every: float
) -> None:
    pytester.makepyfile(test_first=FIRST_FOLD.replace("{fold_every}", repr(fold_every)))
    store = pytester.path / "store"

    result = pytester.runpytest_subprocess(f"--xp-store={store}", "-p", "no:randomly")

    result.assert_outcomes(passed=3)
    assert _raw(store, "SELECT count(*) FROM runs WHERE status = 'passed'") == [(3,)]  # the rest at close


# A session recording for a while hands its folds to a folding process (store/folder.py). Here at
# once (FOLDER_AFTER_S = 0), as the first run ends (FOLD_EVERY_S = 0: a fold is due after every
# run; FOLDER_EVERY_S = 0: the process folds every 10 ms, its shortest period), the heartbeat thread's folds pushed
# past the session. Once the folding process runs, the test thread folds nothing: each run waits until the
# run before it is in the store's own table, which only that process can have put there, and
# checks that the process is a child of its own (under xdist, each worker has its own, and each
# run checks the worker's run before it). With KILL_AT set, that run kills the folding
# process (SIGKILL): the runs after it are then folded by the test thread again.
FOLDING_PROCESS = """
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

import pytest_experiments.plugin.store_access as access

access.FOLD_EVERY_S = access.FOLDER_EVERY_S = 0.0
access.FOLDER_AFTER_S = 0.0
access.THREAD_FOLDS_AFTER_S = 3600.0

KILL_AT = {kill_at}
previous = []


def folders():
    \"\"\"The pids of this process's folding processes (children running store/folder.py).\"\"\"
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{{pid}}/status").read_text()
            command = Path(f"/proc/{{pid}}/cmdline").read_bytes().split(b"\\0")
        except OSError:
            continue
        folding = any(b"pytest_experiments.store.folder" in part for part in command)
        if f"\\nPPid:\\t{{os.getpid()}}\\n" in status and folding:
            if "\\nState:\\tZ" not in status:
                found.append(int(pid))
    return found


def state(pid):
    \"\"\"The state letter of process ``pid`` (R, S, Z...), or None once it is gone.\"\"\"
    try:
        status = Path(f"/proc/{{pid}}/status").read_text()
    except OSError:
        return None
    return status.split("\\nState:\\t", 1)[1][0]


def stored(database, run_id):
    \"\"\"Whether the store's own table holds the run as passed (SQLite, or PostgreSQL's schema).\"\"\"
    if os.environ.get("XP_TEST_SCHEMA"):
        import psycopg
        from psycopg import sql

        query = sql.SQL("SELECT status FROM {{}}.runs WHERE run_id = %s").format(
            sql.Identifier(os.environ["XP_TEST_SCHEMA"])
        )
        with psycopg.connect(os.environ["XP_TEST_DATABASE"]) as db:
            row = db.execute(query, (run_id,)).fetchone()
    else:
        with sqlite3.connect(database) as db:
            row = db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return row is not None and row[0] == "passed"


@pytest.mark.experiment
@pytest.mark.parametrize("i", range(8))
def test_run(xp, i):
    database = xp.dir.parent.parent.parent / "experiments.sqlite"  # an SQLite store's
    if previous:  # the folding process started as this process's first run ended
        # Until its command line shows: a parent may run again before its child's exec has set it.
        deadline = time.monotonic() + 60
        while i <= KILL_AT and len(folders()) != 1:
            assert time.monotonic() < deadline, f"folding processes: {{folders()}}"
            time.sleep(0.005)
        deadline = time.monotonic() + 60
        while not stored(database, previous[-1]):
            assert time.monotonic() < deadline, f"run {{i - 1}} never folded"
            time.sleep(0.005)
    if i == KILL_AT:
        (pid,) = folders()
        os.kill(pid, signal.SIGKILL)
        # Until it is a zombie (or reaped): an exiting process whose memory is gone already
        # shows an empty command line, and its parent's waitpid would not find it ended yet.
        deadline = time.monotonic() + 60
        while state(pid) not in (None, "Z"):
            assert time.monotonic() < deadline, "the folding process outlived SIGKILL"
            time.sleep(0.005)
    previous.append(xp.run_id)
    return {{"i": i}}
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
@pytest.mark.parametrize(
    ("args", "kill_at"),
    [((), 99), (("-n", "2"), 99), ((), 4)],
    ids=["no-xdist", "xdist", "folding-process-killed"],
)
def test_a_folding_process_folds_the_journal_beside_the_tests(
    pytester: pytest.Pytester, args: tuple[str, ...], kill_at: int
) -> None:
    pytester.makepyfile(test_folding=FOLDING_PROCESS.format(kill_at=kill_at))
    store = pytester.path / "store"

    result = pytester.runpytest_subprocess(f"--xp-store={store}", "-p", "no:randomly", *args)

    result.assert_outcomes(passed=8)
    assert _raw(store, "SELECT count(*) FROM runs WHERE status = 'passed'") == [(8,)]
    assert journal_files(store) == []  # folded to its end as the session closed, and removed


# The folding process folds only as its writer closes it (FOLDER_EVERY_S): the session's summary,
# which reads the store, first has it fold what is left and end, and waits for it; the conftest's
# summary, after ours, finds it gone and every run in the store's own table.
SETTLED_CONFTEST = """
import os
import sqlite3
from pathlib import Path

import pytest

import pytest_experiments.plugin.store_access as access

access.FOLD_EVERY_S = access.FOLDER_AFTER_S = 0.0
access.FOLDER_EVERY_S = access.THREAD_FOLDS_AFTER_S = 3600.0


def folding_children():
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if f"\\nPPid:\\t{os.getpid()}\\n" in status and b"pytest_experiments.store.folder" in command:
            found.append(pid)
    return found


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, config):
    with sqlite3.connect(Path(config.getoption("xp_store")) / "experiments.sqlite") as db:
        (stored,) = db.execute("SELECT count(*) FROM runs WHERE status = 'passed'").fetchone()
    terminalreporter.write_line(f"settled: folding {folding_children()}, stored {stored}")
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_the_summary_waits_for_the_folding_processs_last_fold(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(SETTLED_CONFTEST)
    pytester.makepyfile(
        test_settled="""
        import pytest

        @pytest.mark.experiment
        @pytest.mark.parametrize("i", range(5))
        def test_run(i):
            return {"i": i}
        """
    )
    store = pytester.path / "store"

    result = pytester.runpytest_subprocess(f"--xp-store={store}", "-p", "no:randomly")

    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["xp: 5 runs recorded (5 passed) in *", "settled: folding [[][]], stored 5"])
    assert journal_files(store) == []


def test_a_folding_process_folds_into_a_postgresql_store(pytester: pytest.Pytester, postgres_database: str) -> None:
    from backends import make_backend

    pg = make_backend("postgresql", pytester.path, postgres_database)
    pytester.makepyfile(test_folding=FOLDING_PROCESS.format(kill_at=4))
    env = {"XP_TEST_DATABASE": pg.database_url, "XP_TEST_SCHEMA": pg.schema}

    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        result = pytester.runpytest_subprocess(
            f"--xp-store={pg.location}", f"--xp-artifacts={pg.artifacts}", "-p", "no:randomly"
        )

    result.assert_outcomes(passed=8)
    with pg.open(readonly=True) as reader:
        assert [run.status for run in reader.runs()] == ["passed"] * 8
    assert journal_files(pg.artifacts) == []
