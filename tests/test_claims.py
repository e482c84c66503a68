"""Concurrent resume (the cluster case): one consistent snapshot, and claims the store alone decides.

The promise under test: however many ``--xp-resume`` sessions start, whenever, each grid
point's body runs once, and a point claimed by a session that then died runs again. Every
body leaves its own marker file (created with ``O_EXCL``), so the tests count executions,
not just stored rows. Real ``python -m pytest`` processes on a real store; every wait is
bounded and synchronised on files, never on sleeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from processes import GATE_CONFTEST, Processes, history, store_of

from pytest_experiments import Store
from pytest_experiments.model import RunEnd, RunStart, SessionStart

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and process groups")

# A grid over the points in ``points.json``; every execution of a body creates
# ``ran/<point>.<pid>`` atomically. Environment of the process running it:
#   XP_TEST_LABEL / XP_TEST_MEET  every body waits (bounded) until MEET sessions (labels) are
#                                 each inside a body: each of them surely gets some work
#   XP_TEST_BLOCK_AT=<i>          the body of point i writes ``blocked-<i>`` (its pid) and waits
#                                 (bounded) for ``release`` or a signal
CLAIM_GRID = """
    import json
    import os
    import time
    from pathlib import Path

    import pytest

    HERE = Path(__file__).parent
    POINTS = json.loads((HERE / "points.json").read_text())


    def wait_for(condition, what):
        deadline = time.monotonic() + 60
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(what)
            time.sleep(0.005)


    @pytest.mark.experiment
    @pytest.mark.parametrize("i", POINTS)
    def test_point(i):
        ran = HERE / "ran"
        ran.mkdir(exist_ok=True)
        os.close(os.open(ran / f"{i}.{os.getpid()}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        meet = int(os.environ.get("XP_TEST_MEET", "0"))
        if meet:
            met = HERE / "met"
            met.mkdir(exist_ok=True)
            (met / os.environ["XP_TEST_LABEL"]).touch()
            wait_for(lambda: len(list(met.iterdir())) >= meet, "the other sessions never got a point")
        if os.environ.get("XP_TEST_BLOCK_AT") == str(i):
            partial = HERE / f"blocked-{i}.tmp"
            partial.write_text(str(os.getpid()))
            os.replace(partial, HERE / f"blocked-{i}")
            wait_for((HERE / "release").exists, "never released (nor killed)")
        time.sleep(0.01)
        return {"value": i}
"""

# With ``XP_TEST_HOLD_CLAIM=<folder>``, every claim of the process waits, after its run was
# created (and stamped with its start time) and before it reaches the store, announcing itself
# in ``<folder>/holding``, until ``<folder>/release`` exists: a claimer that was descheduled,
# or waited for the write lock, for as long as the test likes.
HOLD_CLAIM_CONFTEST = """
    import os
    import time
    from pathlib import Path

    from pytest_experiments.store.sqlite import SQLiteStore

    HOLD = os.environ.get("XP_TEST_HOLD_CLAIM")
    if HOLD:
        claim_run = SQLiteStore.claim_run

        def held_claim_run(self, start, *args):
            folder = Path(HOLD)
            (folder / "holding.tmp").write_text(start.node_id)
            os.replace(folder / "holding.tmp", folder / "holding")
            deadline = time.monotonic() + 60
            while not (folder / "release").exists():
                if time.monotonic() > deadline:
                    raise RuntimeError("the held claim was never released")
                time.sleep(0.005)
            return claim_run(self, start, *args)

        SQLiteStore.claim_run = held_claim_run
"""

# Resuming sessions start at different places in their grid (``xp-spread``); these tests
# follow one order, pytest's.
IN_ORDER = ("-p", "no:xp-spread")

TAKEN_REASON = re.compile(r"^xp:   (\d+) (running|done) in session (\S+)$")


def skip_reasons(output: str) -> Counter[tuple[str, str]]:
    """{(running|done, session id): count} of the grid points another session had, from the
    summary's ``-v`` lines (such points are not run, nor reported one by one)."""
    counts: Counter[tuple[str, str]] = Counter()
    for line in output.splitlines():
        match = TAKEN_REASON.match(line)
        if match:
            counts[match.group(2), match.group(3)] += int(match.group(1))
    return counts


def session_of(pytester: pytest.Pytester, proc: subprocess.Popen[str]) -> str:
    """The id of the session ``proc`` (an inner pytest controller) recorded."""
    with Store.open(store_of(pytester)) as store:
        [session] = [session.session_id for session in store.sessions() if session.pid == proc.pid]
    return session


def node(i: int) -> str:
    return f"test_grid.py::test_point[{i}]"


def claim_grid(pytester: pytest.Pytester, points: list[int], conftest: str = GATE_CONFTEST) -> None:
    pytester.makepyfile(test_grid=CLAIM_GRID)
    pytester.makeconftest(conftest)
    set_points(pytester, points)


def set_points(pytester: pytest.Pytester, points: list[int]) -> None:
    (pytester.path / "points.json").write_text(json.dumps(points))


def executions(pytester: pytest.Pytester) -> Counter[int]:
    """How many times each point's body ran (since the last :func:`forget_executions`)."""
    ran = pytester.path / "ran"
    return Counter(int(path.name.split(".")[0]) for path in ran.iterdir()) if ran.exists() else Counter()


def executors(pytester: pytest.Pytester, point: int) -> set[int]:
    return {int(path.name.split(".")[1]) for path in (pytester.path / "ran").glob(f"{point}.*")}


def forget_executions(pytester: pytest.Pytester) -> None:
    for path in (pytester.path / "ran").glob("*"):
        path.unlink()


def runs_per_node(pytester: pytest.Pytester) -> Counter[str]:
    return Counter(run.node_id for run in history(pytester))


def half_done(pytester: pytest.Pytester, procs: Processes, size: int) -> None:
    """A ``size``-point grid whose even points passed; the odd ones never ran."""
    set_points(pytester, list(range(0, size, 2)))
    code, output = procs.run("-q")
    assert code == 0, output
    set_points(pytester, list(range(size)))
    forget_executions(pytester)


# -- the snapshot ---------------------------------------------------------------------------


def start_record(session: SessionStart, name: str) -> RunStart:
    return RunStart(
        run_id=f"run-{name}",
        session_id=session.session_id,
        node_id=f"test_mod.py::test_x[{name}]",
        module="test_mod.py",
        experiment="test_x",
        param_hash=f"hash-{name}",
        params={"name": name},
        started_at=time.time(),
        worker="main",
        host=session.host,
        pid=session.pid,
        dir=f"runs/test_x/run-{name}",
    )


def test_snapshot_is_one_read_while_another_process_writes(tmp_path: Path) -> None:
    # Another connection inserts a run right after the snapshot's first SELECT: the snapshot
    # must show the store as it was before (it used to read a second query that saw the new
    # run, and died with KeyError: an INTERNALERROR for --xp-resume / --xp-status).
    path = tmp_path / "store"
    with Store.open(path, create=True) as writer, contextlib.ExitStack() as stack:
        session = SessionStart("writer-session", time.time(), socket.gethostname(), os.getpid(), {})
        writer.record_session(session)
        writer.start_run(start_record(session, "running"))  # this process: live
        writer.start_run(start_record(session, "done"))
        writer.finish_run(RunEnd("run-done", "passed", time.time(), 0.1, None, {}, [], {}, {}))
        before = {
            ("test_mod.py", "test_x", "hash-running"): ("running", None),
            ("test_mod.py", "test_x", "hash-done"): ("passed", None),
        }

        reader = stack.enter_context(Store.open(path))
        statements: list[str] = []

        def between_statements(sql: str) -> None:
            # Called as each of the reader's statements starts: act at the one after the first SELECT.
            statements.append(sql)
            selects = [index for index, text in enumerate(statements) if text.lstrip().upper().startswith("SELECT")]
            if selects and selects[0] == len(statements) - 2:
                writer.start_run(start_record(session, "new"))

        reader._db.set_trace_callback(between_statements)  # type: ignore[attr-defined]  # its one connection
        assert reader.grid_states() == before
        assert len(statements) > 2, statements  # the insert happened, during the snapshot
        reader._db.set_trace_callback(None)  # type: ignore[attr-defined]
        assert reader.grid_states() == {**before, ("test_mod.py", "test_x", "hash-new"): ("running", None)}


def test_snapshot_crosses_the_xdist_channel_with_its_mark() -> None:
    from pytest_experiments.plugin.selection import Snapshot

    snapshot = Snapshot(41, {("m.py", "test_a", "h1"): ("passed", "c1"), ("m.py", "test_b", "h2"): ("running", None)})
    assert Snapshot.from_wire(snapshot.to_wire()) == snapshot


# -- claims ---------------------------------------------------------------------------------


def test_a_run_recorded_after_gc_deleted_the_newest_runs_is_still_after_the_snapshot(tmp_path: Path) -> None:
    # SQLite hands out the rowids of deleted rows again once the newest rows are gone: the
    # store's own sequence must not, or a run recorded after the snapshot would look older.
    with Store.open(tmp_path / "store", create=True) as store:
        first = SessionStart("first", time.time(), socket.gethostname(), os.getpid(), {})
        other = SessionStart("other", time.time(), socket.gethostname(), os.getpid(), {})
        store.record_session(first)
        store.record_session(other)
        for name in ["a", "b", "c"]:
            store.start_run(start_record(first, name))
            store.finish_run(RunEnd(f"run-{name}", "passed", time.time(), 0.1, None, {}, [], {}, {}))
        mark = store.grid_snapshot().mark
        assert store.delete_runs(["run-b", "run-c"]) == 2  # gc of the newest runs
        # Another session records point b again, after the snapshot, and finishes it.
        store.start_run(start_record(other, "b")._replace(run_id="run-b-again"))
        store.finish_run(RunEnd("run-b-again", "passed", time.time(), 0.1, None, {}, [], {}, {}))

        resuming = SessionStart("resuming", time.time(), socket.gethostname(), os.getpid(), {})
        store.record_session(resuming)
        claim = start_record(resuming, "b")._replace(run_id="run-b-resumed")
        assert store.claim_run(claim, mark) == "done in session other"
        assert store.claim_run(start_record(resuming, "c")._replace(run_id="run-c-resumed"), mark) is None


def test_claims_skip_what_another_session_did_since_the_snapshot(pytester: pytest.Pytester, procs: Processes) -> None:
    claim_grid(pytester, list(range(4)))
    gate = pytester.mkdir("gate")
    # The resuming session takes its snapshot (nothing run yet) and waits at the gate...
    resuming = procs.start("--xp-resume", "-v", XP_TEST_GATE=str(gate))
    procs.wait_ready(gate, 1)
    # ... while another session runs points 0-2 and is busy with point 3.
    other = procs.start(XP_TEST_BLOCK_AT="3")
    procs.wait_for(pytester.path / "blocked-3", other)
    procs.open_gate(gate)
    code, output = procs.finish(resuming)

    assert code == 0, output
    assert "xp: resume: 0 done, 4 to run (4 never run)" in output.splitlines()
    assert "skipped" not in output  # not run: said once in the summary
    assert "xp: 0 run here, 4 taken by other sessions" in output.splitlines()
    other_session = session_of(pytester, other)
    assert skip_reasons(output) == {("done", other_session): 3, ("running", other_session): 1}
    # A skip for a claim records no run, and runs no body.
    assert runs_per_node(pytester) == Counter(node(i) for i in range(4))
    assert {run.session_id for run in history(pytester)} == {other_session}

    (pytester.path / "release").write_text("")
    code, output = procs.finish(other)
    assert code == 0, output
    assert {run.status for run in history(pytester)} == {"passed"}
    assert executions(pytester) == Counter(range(4))


def test_a_claim_held_back_before_a_snapshot_still_counts_as_after_it(
    pytester: pytest.Pytester, procs: Processes
) -> None:
    # Session B creates its first run (stamping its start time), then is held before its
    # claim reaches the store, as a process waiting for the write lock or descheduled is.
    # Session A snapshots meanwhile, sees nothing, and waits; B then claims and runs every
    # point. A must skip them all: B's runs entered the store after A's snapshot, whatever
    # B's clock said when it stamped them (they used to be compared by time, and A ran
    # point 0 a second time).
    claim_grid(pytester, list(range(3)), GATE_CONFTEST + HOLD_CLAIM_CONFTEST)
    gate, hold = pytester.mkdir("gate"), pytester.mkdir("hold")
    held = procs.start("--xp-resume", *IN_ORDER, XP_TEST_HOLD_CLAIM=str(hold))
    assert procs.wait_for(hold / "holding", held) == node(0)
    resuming = procs.start("--xp-resume", "-v", XP_TEST_GATE=str(gate))
    procs.wait_ready(gate, 1)  # A's snapshot is taken
    (hold / "release").write_text("")
    code, output = procs.finish(held)
    assert code == 0, output
    assert "3 passed" in output
    procs.open_gate(gate)
    code, output = procs.finish(resuming)

    assert code == 0, output
    assert "xp: resume: 0 done, 3 to run (3 never run)" in output.splitlines()
    assert skip_reasons(output) == {("done", session_of(pytester, held)): 3}
    assert executions(pytester) == Counter(range(3))
    assert runs_per_node(pytester) == Counter(node(i) for i in range(3))


def test_concurrent_resumers_run_each_grid_point_once(pytester: pytest.Pytester, procs: Processes) -> None:
    # Four resuming sessions on a half-done grid, two of them with two xdist workers: two
    # start at the same instant; two more snapshot while the first two are claiming and
    # running. Each session waits in its first body until all four are in one, so every
    # session surely takes part.
    claim_grid(pytester, [])
    half_done(pytester, procs, 60)
    first, second = pytester.mkdir("gate-1"), pytester.mkdir("gate-2")
    waves = {"a": (first, []), "b": (first, ["-n", "2"]), "c": (second, []), "d": (second, ["-n", "2"])}
    started = {
        label: procs.start("--xp-resume", "-v", *flags, XP_TEST_GATE=str(gate), XP_TEST_LABEL=label, XP_TEST_MEET="4")
        for label, (gate, flags) in waves.items()
        if gate == first
    }
    # Each session waits once: under -n with --xp-resume the controller collects (and meets the
    # gate) before its workers start, and the workers then pass the open gate.
    procs.release_together(first, 2)
    met = pytester.path / "met"
    procs.wait_until(started["a"], "the first wave in its bodies", lambda: len(list(met.glob("*"))) == 2, timeout=60)
    for label, (gate, flags) in waves.items():
        if gate == second:
            env = {"XP_TEST_GATE": str(gate), "XP_TEST_LABEL": label, "XP_TEST_MEET": "4"}
            started[label] = procs.start("--xp-resume", "-v", *flags, **env)
    procs.release_together(second, 2)
    results = {label: procs.finish(proc) for label, proc in started.items()}

    for label, (code, output) in results.items():
        assert code == 0, output
        if label in "ab":
            assert "xp: resume: 30 done, 30 to run (30 never run)" in output.splitlines()
    # Every odd point's body ran exactly once, across all sessions; no even point ran again.
    assert executions(pytester) == Counter(range(1, 60, 2))
    assert runs_per_node(pytester) == Counter(node(i) for i in range(60))
    assert {run.status for run in history(pytester)} == {"passed"}
    sessions = {label: session_of(pytester, proc) for label, proc in started.items()}
    with Store.open(store_of(pytester)) as store:
        passed = {label: store.status_counts(session) for label, session in sessions.items()}
    assert all(set(counts) == {"passed"} for counts in passed.values()), passed
    assert sum(counts["passed"] for counts in passed.values()) == 30
    # What a session skipped, it skipped because another one had it.
    for label, (_, output) in results.items():
        reasons = skip_reasons(output)
        assert sessions[label] not in {session for _, session in reasons}
        [to_run] = re.findall(r"^xp: resume: \d+ done, (\d+) to run", output, re.MULTILINE)
        assert sum(reasons.values()) == int(to_run) - passed[label]["passed"], output


def test_point_of_a_killed_resumer_is_run_by_a_surviving_one(pytester: pytest.Pytester, procs: Processes) -> None:
    claim_grid(pytester, list(range(6)), GATE_CONFTEST + HOLD_CLAIM_CONFTEST)
    gate, hold = pytester.mkdir("gate"), pytester.mkdir("hold")
    # Both snapshot an empty store. The survivor is held at its first claim while the victim
    # runs points 0-2 and is killed (SIGKILL, its whole process group) in the body of 3.
    victim = procs.start("--xp-resume", *IN_ORDER, XP_TEST_GATE=str(gate), XP_TEST_BLOCK_AT="3")
    survivor = procs.start("--xp-resume", *IN_ORDER, "-v", XP_TEST_GATE=str(gate), XP_TEST_HOLD_CLAIM=str(hold))
    procs.release_together(gate, 2)
    victim_pid = int(procs.wait_for(pytester.path / "blocked-3", victim))
    assert procs.wait_for(hold / "holding", survivor) == node(0)
    victim_session = session_of(pytester, victim)
    procs.kill(victim)
    (hold / "release").write_text("")
    code, output = procs.finish(survivor)

    # Points 0-2 were done by the victim; 3 was claimed by it, which died: the survivor ran it.
    assert code == 0, output
    assert skip_reasons(output) == {("done", victim_session): 3}
    assert executions(pytester) == Counter({0: 1, 1: 1, 2: 1, 3: 2, 4: 1, 5: 1})
    assert victim_pid in executors(pytester, 3)
    by_node = {(run.node_id, run.session_id): run.status for run in history(pytester)}
    assert by_node[node(3), victim_session] == "interrupted"
    assert by_node[node(3), session_of(pytester, survivor)] == "passed"
    with Store.open(store_of(pytester)) as store:
        assert {run.node_id: run.status for run in store.runs()} == dict.fromkeys(map(node, range(6)), "passed")

    # A later resume finds nothing left to do.
    code, output = procs.run("--xp-resume")
    assert code == 0, output
    assert "xp: resume: 6 done, 0 to run; nothing left to run" in output.splitlines()
    assert sum(executions(pytester).values()) == 7
