"""The storage contract: what every :class:`Store` backend promises, run against each backend.

Written against the ``Store`` interface only (``Store.open`` and its methods), so that a new
backend has only to pass it. Each test gets a store of its own on each backend (the
``backend`` fixture of ``conftest.py``): SQLite always, PostgreSQL when ``XP_TEST_POSTGRES_URL``
names a server. Liveness is judged from real processes (this one, a live ``sleep``, a child
that died); concurrency from real processes released at one instant.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from backends import Backend
from processes import GATE_WAIT, Processes

from pytest_experiments import Store, StoreError
from pytest_experiments.model import (
    Artifact,
    Attempt,
    Continuation,
    MetricPoint,
    Note,
    RunEnd,
    RunRecord,
    RunStart,
    SeriesPoint,
    SessionStart,
)
from pytest_experiments.store import check_location, store_exists
from pytest_experiments.store.liveness import pid_namespace, process_start
from pytest_experiments.store.rundirs import relative_run_dir

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="liveness reads /proc")

HOST = socket.gethostname()
NAN, INF = math.nan, math.inf


# -- building records ---------------------------------------------------------------------------


def session_start(name: str, *, started_at: float | None = None, host: str = HOST, **metadata: Any) -> SessionStart:
    """A session of this process (its heartbeat: ``started_at``)."""
    return SessionStart(
        f"session-{name}", time.time() if started_at is None else started_at, host, os.getpid(), metadata
    )


def run_start(
    session: SessionStart,
    point: object,
    *,
    run_id: str | None = None,
    experiment: str = "test_x",
    module: str = "test_mod.py",
    pid: int | None = None,
    pid_started: str | None = None,
    started_at: float | None = None,
    params: dict[str, Any] | None = None,
) -> RunStart:
    """A run of grid point ``point`` in ``session``, by this process unless ``pid`` says otherwise."""
    run_id = run_id or f"run-{experiment}-{point}-{session.session_id}"
    pid = os.getpid() if pid is None else pid
    return RunStart(
        run_id=run_id,
        session_id=session.session_id,
        node_id=f"{module}::{experiment}[{point}]",
        module=module,
        experiment=experiment,
        param_hash=f"hash-{point}",
        params={"point": point} if params is None else params,
        started_at=time.time() if started_at is None else started_at,
        worker="main",
        host=session.host,
        pid=pid,
        dir=relative_run_dir(experiment, run_id),
        pid_namespace=pid_namespace(),
        pid_started=process_start(pid) if pid_started is None else pid_started,
    )


def run_end(run_id: str, status: str = "passed", **fields: Any) -> RunEnd:
    values: dict[str, Any] = {
        "finished_at": time.time(),
        "duration": 0.25,
        "result": None,
        "metrics": {},
        "points": [],
        "logged_params": {},
        "metadata": {},
    }
    values.update(fields)
    return RunEnd(run_id=run_id, status=status, **values)


def record_run(store: Store, start: RunStart, status: str = "passed", **fields: Any) -> RunStart:
    """Start and finish ``start`` with ``status``."""
    store.start_run(start)
    store.finish_run(run_end(start.run_id, status, **fields))
    return start


def same(left: object, right: object) -> bool:
    """Equal, NaN counting as equal to NaN."""
    return json.dumps(left, sort_keys=True) == json.dumps(right, sort_keys=True)


def statuses(store: Store, **filters: Any) -> dict[str, str]:
    return {run.run_id: run.status for run in store.runs(**filters)}


# -- opening ------------------------------------------------------------------------------------


def test_a_store_that_does_not_exist_is_created_only_when_asked(backend: Backend) -> None:
    for readonly in (False, True):
        with pytest.raises(StoreError, match="no experiment store") as refused:
            backend.open(readonly=readonly)
        assert "\n" not in str(refused.value)
    assert not backend.exists()  # refusing created nothing
    with backend.open(create=True) as store:
        assert store.runs() == []
        assert store.sessions() == []
        assert store.grid_snapshot().states == {}
    assert backend.exists()
    with backend.open() as store, backend.open(create=True) as again:  # opening twice, creating twice
        assert store.runs() == again.runs() == []
    with pytest.raises(ValueError, match="read-only"):
        backend.open(create=True, readonly=True)


def test_a_location_is_checked_and_found_without_creating_anything(backend: Backend) -> None:
    # What the plugin and the command line ask of a location before (or instead of) opening it.
    assert not store_exists(backend.location)
    check_location(backend.location, integrity=True)  # a place where a store can be created
    assert not backend.exists()
    backend.open(create=True).close()
    assert store_exists(backend.location)
    check_location(backend.location, integrity=True)


def test_a_newer_schema_is_refused_with_one_line(backend: Backend) -> None:
    backend.open(create=True).close()
    backend.set_schema_version(99)
    for options in ({}, {"create": True}, {"readonly": True}):
        with pytest.raises(StoreError, match=r"schema version 99, newer .*; upgrade pytest-experiments") as refused:
            backend.open(**options)
        assert "\n" not in str(refused.value)


# -- writing and reading back -------------------------------------------------------------------


def test_record_session_is_idempotent(backend: Backend) -> None:
    with backend.open(create=True) as store:
        first = session_start("a", command="pytest -n 2", git={"commit": "abc"})
        store.record_session(first)
        store.record_session(session_start("a", command="another process of the session"))
        [session] = store.sessions()
        assert (session.session_id, session.host, session.pid) == ("session-a", HOST, os.getpid())
        assert session.started_at == first.started_at
        assert session.metadata == {"command": "pytest -n 2", "git": {"commit": "abc"}}
        assert (session.finished_at, session.exitstatus, session.counts) == (None, None, {})


def test_a_sessions_metadata_can_be_replaced_once_recorded(backend: Backend) -> None:
    with backend.open(create=True) as store:
        store.record_session(session_start("a"))  # as an xdist worker writes it, before the session hooks ran
        store.record_session(session_start("b", command="pytest"))
        store.update_session_metadata("session-a", {"git": {"commit": "abc"}, "command": "pytest -n 2"})
        store.update_session_metadata("session-unknown", {"command": "nothing to update"})
        sessions = {session.session_id: session.metadata for session in store.sessions()}
        assert sessions == {
            "session-a": {"git": {"commit": "abc"}, "command": "pytest -n 2"},
            "session-b": {"command": "pytest"},
        }


def test_a_run_round_trips_with_everything_it_records(backend: Backend) -> None:
    with backend.open(create=True) as store:
        session = session_start("a", command="pytest")
        store.record_session(session)
        params = {"lr": 0.1, "name": "Zürich ✓", "nested": {"list": [1, 2.5, None, True]}, "big": 2**70}
        start = run_start(session, 1, params=params)
        store.start_run(start)

        [running] = store.runs()
        assert (running.status, running.finished_at, running.duration) == ("running", None, None)
        assert running.params == params
        assert running.dir == store.root / start.dir
        assert (running.node_id, running.module, running.experiment, running.param_hash) == (
            start.node_id, start.module, start.experiment, start.param_hash,
        )  # fmt: skip
        assert (running.worker, running.host, running.pid, running.session_id) == (
            "main",
            HOST,
            os.getpid(),
            "session-a",
        )
        assert running.started_at == start.started_at

        source = "def test_x(point):\n    return {'acc': 0.5}\n"
        end = run_end(
            start.run_id,
            "failed",
            finished_at=start.started_at + 1.5,
            duration=1.5,
            result={"acc": 0.5, "nan": NAN, "inf": INF, "rows": [[1, 2], [3, 4]]},
            metrics={"acc": 0.5, "loss": NAN, "big": INF, "small": -INF},
            points=[MetricPoint("loss", 0, 0, 1.0), MetricPoint("loss", 1, 1, NAN), MetricPoint("loss", 2, None, INF)],
            logged_params={"n_params": 1234},
            metadata={"timing": {"call": 1.25}},
            code_sha256="c0de",
            code_source=source,
            error_type="ValueError",
            error_message="diverged",
            traceback="Traceback (most recent call last):\n  ...\nValueError: diverged\n",
        )
        store.finish_run(end)

        record = store.run(start.run_id)
        assert (record.status, record.finished_at, record.duration) == ("failed", end.finished_at, 1.5)
        assert same(record.result, end.result)
        assert same(record.metrics, end.metrics)
        assert record.logged_params == {"n_params": 1234}
        assert record.metadata == {"timing": {"call": 1.25}}
        assert (record.code_sha256, record.code_source) == ("c0de", source)
        assert (record.error, record.traceback) == ("ValueError: diverged", end.traceback)
        assert record.session == {"command": "pytest"}
        assert record.params == params
        assert same(store.metric_series(start.run_id, "loss"), [(0, 1.0), (1, NAN), (None, INF)])
        # A metric logged once, without a series: its value; an unknown metric: nothing.
        assert store.metric_series(start.run_id, "acc") == [(None, 0.5)]
        assert store.metric_series(start.run_id, "unknown") == []
        [listed] = store.runs()
        assert (listed.run_id, listed.status, listed.error) == (start.run_id, "failed", "ValueError: diverged")
        assert same(listed.metrics, end.metrics)

        # The same code again (another run of the function): stored once, read by both.
        second = record_run(store, run_start(session, 2), code_sha256="c0de", code_source=source)
        assert store.run(second.run_id).code_source == source


def test_any_python_text_is_stored(backend: Backend) -> None:
    # A lone surrogate (str(exc) of bytes decoded with surrogateescape) and a NUL cannot be
    # written as UTF-8 text: values stored as JSON keep them exactly (JSON escapes), plain
    # text (error message, traceback) keeps them as backslash escapes, as repr() shows them.
    # A backend that raised instead lost the run and stopped the session.
    text = "lone \udcff, NUL \x00, ü"
    shown = "lone \\udcff, NUL \\x00, ü"
    with backend.open(create=True) as store:
        session = session_start("a", note=text)
        store.record_session(session)
        start = run_start(session, text, run_id="run-text", params={"text": text})._replace(param_hash="hash-text")
        store.start_run(start)
        store.finish_run(
            run_end(
                start.run_id,
                "error",
                result={"text": text},
                logged_params={"text": text},
                metadata={"text": text},
                error_type="UnicodeError",
                error_message=text,
                traceback=f"Traceback\n{text}\n",
                metrics={text: 1.0},
                points=[MetricPoint(text, 0, 0, 2.0), MetricPoint(text, 1, 1, 1.0)],
            )
        )
        record = store.run(start.run_id)
        assert (record.params, record.result, record.logged_params, record.metadata) == ({"text": text},) * 4
        assert record.session == {"note": text}
        assert (record.error_message, record.traceback) == (shown, f"Traceback\n{shown}\n")
        assert record.node_id == f"test_mod.py::test_x[{shown}]"
        assert record.metrics == {text: 1.0}
        assert store.metric_series(start.run_id, text) == [(0, 2.0), (1, 1.0)]


def test_unknown_run_id_is_a_key_error(backend: Backend) -> None:
    with backend.open(create=True) as store, pytest.raises(KeyError):
        store.run("no-such-run")


def test_runs_are_the_latest_per_grid_point_or_the_whole_history(backend: Backend) -> None:
    base = time.time() - 1000
    with backend.open(create=True) as store:
        first, second = session_start("first", started_at=base), session_start("second", started_at=base + 100)
        store.record_session(first)
        store.record_session(second)
        # A grid point is (module, experiment, parameter hash): these four are all different.
        a1 = record_run(store, run_start(first, 1, experiment="test_a", started_at=base + 1))
        a2 = record_run(store, run_start(first, 2, experiment="test_a", started_at=base + 2), "failed")
        b1 = record_run(store, run_start(first, 1, experiment="test_b", started_at=base + 3))
        m1 = record_run(store, run_start(first, 1, experiment="test_a", module="other.py", started_at=base + 4,
                                         run_id="run-other-module"))  # fmt: skip
        a1_again = record_run(store, run_start(second, 1, experiment="test_a", started_at=base + 101), "failed")
        a2_again = record_run(store, run_start(second, 2, experiment="test_a", started_at=base + 102))

        def ids(runs: list[RunRecord]) -> list[str]:
            return [run.run_id for run in runs]

        # Oldest first.
        assert ids(store.runs()) == [b1.run_id, m1.run_id, a1_again.run_id, a2_again.run_id]
        everything = [a1, a2, b1, m1, a1_again, a2_again]
        assert ids(store.runs(history=True)) == [run.run_id for run in everything]
        # An experiment name matches in every module; several names at once.
        assert ids(store.runs(experiment="test_a")) == [m1.run_id, a1_again.run_id, a2_again.run_id]
        assert ids(store.runs(experiment=["test_a", "test_b"])) == ids(store.runs())
        assert store.runs(experiment="test_c") == []
        # Filters by status apply after the latest run is chosen.
        assert ids(store.runs(status="failed")) == [a1_again.run_id]
        assert ids(store.runs(status=["passed"])) == [b1.run_id, m1.run_id, a2_again.run_id]
        assert ids(store.runs(status="failed", history=True)) == [a2.run_id, a1_again.run_id]
        # Within one session: that session's latest runs.
        assert ids(store.runs(session_id=first.session_id)) == [a1.run_id, a2.run_id, b1.run_id, m1.run_id]
        assert ids(store.runs(session_id=second.session_id, history=True)) == [a1_again.run_id, a2_again.run_id]
        # Among runs started at the same instant, the one recorded last is the latest.
        tie = record_run(store, run_start(second, 3, started_at=base + 200, run_id="run-tie-a"))
        later = record_run(store, run_start(second, 3, started_at=base + 200, run_id="run-tie-0"))
        assert {run.param_hash: run.run_id for run in store.runs()}["hash-3"] == later.run_id
        assert ids(store.runs(history=True))[-2:] == [tie.run_id, later.run_id]


def test_sessions_and_status_counts(backend: Backend, sleeper: subprocess.Popen[bytes]) -> None:
    base = time.time() - 100
    with backend.open(create=True) as store:
        first = session_start("first", started_at=base, command="pytest")
        second = session_start("second", started_at=base + 10)
        empty = session_start("empty", started_at=base + 20)
        for session in (second, first, empty):
            store.record_session(session)
        for point, status in enumerate(["passed", "passed", "failed", "skipped"]):
            record_run(store, run_start(first, point), status)
        store.start_run(run_start(first, "live", pid=sleeper.pid))
        record_run(store, run_start(second, 0), "passed")
        store.finish_session(second.session_id, base + 50, 1)

        sessions = store.sessions()
        assert [session.session_id for session in sessions] == ["session-first", "session-second", "session-empty"]
        assert sessions[0].counts == {"passed": 2, "failed": 1, "skipped": 1, "running": 1}
        assert sessions[0].metadata == {"command": "pytest"}
        assert (sessions[0].finished_at, sessions[0].exitstatus) == (None, None)
        assert sessions[1].counts == {"passed": 1}
        assert (sessions[1].finished_at, sessions[1].exitstatus) == (base + 50, 1)
        assert sessions[2].counts == {}
        assert store.status_counts(first.session_id) == sessions[0].counts
        assert store.status_counts(second.session_id) == {"passed": 1}
        assert store.status_counts("no-such-session") == {}


def test_finish_session_interrupts_its_running_runs(backend: Backend, sleeper: subprocess.Popen[bytes]) -> None:
    with backend.open(create=True) as store:
        ending, other = session_start("ending"), session_start("other")
        store.record_session(ending)
        store.record_session(other)
        cut = run_start(ending, 1, pid=sleeper.pid)  # its process lives on: only the session's end decides
        store.start_run(cut)
        record_run(store, run_start(ending, 2))
        store.start_run(run_start(other, 1, pid=sleeper.pid))
        finished_at = cut.started_at + 7
        store.finish_session(ending.session_id, finished_at, 2)

        record = store.run(cut.run_id)
        assert (record.status, record.finished_at, record.duration) == ("interrupted", finished_at, 7)
        assert store.status_counts(ending.session_id) == {"interrupted": 1, "passed": 1}
        assert store.status_counts(other.session_id) == {"running": 1}
        [session] = [session for session in store.sessions() if session.session_id == ending.session_id]
        assert (session.finished_at, session.exitstatus) == (finished_at, 2)


# -- liveness -----------------------------------------------------------------------------------


def test_a_running_run_is_judged_by_its_process_on_this_host(
    backend: Backend, sleeper: subprocess.Popen[bytes], dead_pid: tuple[int, str]
) -> None:
    with backend.open(create=True, lease=10) as store:
        session = session_start("a")
        store.record_session(session)
        live = run_start(session, "live", pid=sleeper.pid)
        mine = run_start(session, "mine")
        dead = run_start(session, "dead", pid=dead_pid[0], pid_started=dead_pid[1])
        # The pid is held now, but by another process than the one that wrote the run (one
        # that started at the first clock tick of this boot).
        boot = process_start(sleeper.pid).rpartition(":")[0]
        reused = run_start(session, "reused", pid=sleeper.pid, pid_started=f"{boot}:1")
        for start in (live, mine, dead, reused):
            store.start_run(start)
        store.heartbeat(session.session_id)  # a fresh heartbeat does not save a dead process here

        expected = {
            live.run_id: "running",
            mine.run_id: "running",
            dead.run_id: "interrupted",
            reused.run_id: "interrupted",
        }
        assert statuses(store) == expected
        assert statuses(store, history=True) == expected
        assert {run_id: store.run(run_id).status for run_id in expected} == expected
        assert store.status_counts(session.session_id) == {"running": 2, "interrupted": 2}
        assert store.sessions()[0].counts == {"running": 2, "interrupted": 2}
        assert statuses(store, status="interrupted") == {dead.run_id: "interrupted", reused.run_id: "interrupted"}
        assert store.grid_states() == {
            ("test_mod.py", "test_x", f"hash-{name}"): (status, None)
            for name, status in [
                ("live", "running"),
                ("mine", "running"),
                ("dead", "interrupted"),
                ("reused", "interrupted"),
            ]
        }


def test_a_run_on_another_host_is_live_while_its_session_heartbeat_is_within_the_lease(backend: Backend) -> None:
    with backend.open(create=True, lease=10) as store:
        now = time.time()
        fresh = session_start("fresh", started_at=now - 5, host="far-host")  # its heartbeat: when it started
        stale = session_start("stale", started_at=now - 60, host="far-host")
        for session in (fresh, stale):
            store.record_session(session)
            store.start_run(run_start(session, session.session_id, pid=1, pid_started="other-boot:1"))
        assert {run.session_id: run.status for run in store.runs()} == {
            fresh.session_id: "running",
            stale.session_id: "interrupted",
        }
        store.heartbeat(stale.session_id)  # the stale session renews its heartbeat: live again
        assert {run.status for run in store.runs()} == {"running"}
        assert store.status_counts(stale.session_id) == {"running": 1}
        assert {state for state, _ in store.grid_states().values()} == {"running"}
        # A finished session renews nothing.
        store.finish_session(stale.session_id, time.time(), 0)
        store.heartbeat(stale.session_id)
        assert {run.session_id: run.status for run in store.runs()} == {
            fresh.session_id: "running",
            stale.session_id: "interrupted",
        }


# -- the snapshot and claims --------------------------------------------------------------------


def test_grid_snapshot_is_the_latest_state_of_every_grid_point_and_a_mark(backend: Backend) -> None:
    with backend.open(create=True) as store:
        session = session_start("a")
        store.record_session(session)
        empty = store.grid_snapshot()
        assert empty.states == {}
        record_run(store, run_start(session, 1), "failed", code_sha256="old")
        record_run(store, run_start(session, 1, run_id="again"), "passed", code_sha256="new")
        record_run(store, run_start(session, 2), "skipped")
        store.start_run(run_start(session, 3))
        snapshot = store.grid_snapshot()
        assert snapshot.states == {
            ("test_mod.py", "test_x", "hash-1"): ("passed", "new"),
            ("test_mod.py", "test_x", "hash-2"): ("skipped", None),
            ("test_mod.py", "test_x", "hash-3"): ("running", None),
        }
        assert store.grid_states() == snapshot.states
        assert snapshot.mark > empty.mark
        # Finishing a run starts nothing: the mark stays; starting one moves it.
        store.finish_run(run_end(run_start(session, 3).run_id))
        assert store.grid_snapshot().mark == snapshot.mark
        store.start_run(run_start(session, 4))
        assert store.grid_snapshot().mark > snapshot.mark


def test_claims_follow_the_snapshot_and_what_other_sessions_did(
    backend: Backend, sleeper: subprocess.Popen[bytes], dead_pid: tuple[int, str]
) -> None:
    with backend.open(create=True) as store:
        earlier, other, resuming = session_start("earlier"), session_start("other"), session_start("resuming")
        for session in (earlier, other, resuming):
            store.record_session(session)
        # Before the snapshot: a finished run (the snapshot saw it and decided), and a live one.
        record_run(store, run_start(earlier, "seen"))
        store.start_run(run_start(other, "live-before", pid=sleeper.pid))
        mark = store.grid_snapshot().mark
        # After it, another session: one run passed, one failed, one is live, one's process
        # died, one was interrupted; and a run the resuming session itself started.
        record_run(store, run_start(other, "passed"))
        record_run(store, run_start(other, "failed"), "failed")
        store.start_run(run_start(other, "live", pid=sleeper.pid))
        store.start_run(run_start(other, "dead", pid=dead_pid[0], pid_started=dead_pid[1]))
        record_run(store, run_start(other, "interrupted"), "interrupted")
        record_run(store, run_start(resuming, "own"))

        def claim(point: str) -> str | None:
            return store.claim_run(run_start(resuming, point, run_id=f"claim-{point}"), mark)

        refused = {
            "live-before": "running in session session-other",
            "passed": "done in session session-other",
            "failed": "done in session session-other",
            "live": "running in session session-other",
        }
        for point, reason in refused.items():
            assert claim(point) == reason
        for point in ("seen", "dead", "interrupted", "own", "never-run"):
            assert claim(point) is None, point
        # A refused claim wrote nothing; a granted one wrote its run as running.
        claims = {run.run_id for run in store.runs(history=True) if run.run_id.startswith("claim-")}
        assert claims == {f"claim-{point}" for point in ("seen", "dead", "interrupted", "own", "never-run")}
        assert store.run("claim-never-run").status == "running"
        # Once claimed, the point is the resuming session's: another claim of it waits its turn.
        late = session_start("late")
        store.record_session(late)
        assert store.claim_run(run_start(late, "never-run"), mark) == "running in session session-resuming"


def test_claim_first_claims_in_order_up_to_the_first_free_point(
    backend: Backend, sleeper: subprocess.Popen[bytes], dead_pid: tuple[int, str]
) -> None:
    with backend.open(create=True) as store:
        other, resuming = session_start("other"), session_start("resuming")
        store.record_session(other)
        store.record_session(resuming)
        mark = store.grid_snapshot().mark
        record_run(store, run_start(other, "passed"))
        store.start_run(run_start(other, "live", pid=sleeper.pid))
        record_run(store, run_start(other, "failed"), "failed")
        store.start_run(run_start(other, "dead", pid=dead_pid[0], pid_started=dead_pid[1]))

        def claim_first(*points: str) -> list[str | None]:
            return store.claim_first([run_start(resuming, point, run_id=f"claim-{point}") for point in points], mark)

        def claimed() -> set[str]:
            return {run.run_id for run in store.runs(history=True) if run.run_id.startswith("claim-")}

        done, running = "done in session session-other", "running in session session-other"
        # The points refused are said in order; the first free one is claimed; nothing after it is tried.
        assert claim_first("passed", "live", "failed", "free", "after", "never") == [done, running, done, None]
        assert claimed() == {"claim-free"}
        assert store.run("claim-free").status == "running"
        # Nothing free: each point is said.
        assert claim_first("live", "passed") == [running, done]
        assert claim_first("live") == [running]
        assert claimed() == {"claim-free"}
        # A point whose run died is free (only liveness tells): claimed. A backend that decided
        # the points after it at once may have claimed the first free one too; each None is a
        # run written as running, and nothing is written past the last outcome.
        outcomes = claim_first("passed", "dead", "after", "never")
        assert outcomes[:2] == [done, None]
        assert outcomes in ([done, None], [done, None, None])
        tried = ["passed", "dead", "after", "never"][: len(outcomes)]
        assert claimed() == {"claim-free"} | {f"claim-{p}" for p, o in zip(tried, outcomes, strict=True) if o is None}
        assert all(store.run(run_id).status == "running" for run_id in claimed())


def test_after_the_snapshot_is_decided_by_the_store_never_by_clocks(backend: Backend) -> None:
    with backend.open(create=True) as store:
        other, resuming = session_start("other"), session_start("resuming")
        store.record_session(other)
        store.record_session(resuming)
        for point in ("a", "b", "c"):
            record_run(store, run_start(other, point))
        stamped_early = run_start(other, "early", started_at=time.time() - 3600)  # stamped, held back
        mark = store.grid_snapshot().mark
        # The held-back run reaches the store after the snapshot: it is after it.
        record_run(store, stamped_early)
        assert store.claim_run(run_start(resuming, "early"), mark) == "done in session session-other"
        # The newest runs are deleted (gc), and the point is recorded again after the snapshot:
        # the store's order never goes back, so it is after the snapshot too.
        assert store.delete_runs([run_start(other, point).run_id for point in ("b", "c")]) == 2
        record_run(store, run_start(other, "b", run_id="b-again"))
        assert store.claim_run(run_start(resuming, "b"), mark) == "done in session session-other"
        assert store.claim_run(run_start(resuming, "c"), mark) is None


# -- continuing a run (xp.pause, interrupted runs continued) ------------------------------------


def points(name: str, first_seq: int, steps: range) -> list[MetricPoint]:
    return [MetricPoint(name, first_seq + index, step, float(step)) for index, step in enumerate(steps)]


def test_a_paused_run_is_continued_in_place_and_keeps_its_attempts(backend: Backend) -> None:
    with backend.open(create=True) as store:
        first, second = session_start("first"), session_start("second")
        store.record_session(first)
        paused = run_start(first, 1)
        record_run(store, paused, "paused", metadata={"reason": "checkpoint at step 2"}, metrics={"loss": 2.0},
                   points=points("loss", 0, range(3)), logged_params={"batch": 32})  # fmt: skip
        assert store.grid_snapshot().states[("test_mod.py", "test_x", "hash-1")] == ("paused", None)
        store.record_session(second)
        mark = store.grid_snapshot().mark
        attempt = run_start(second, 1, run_id="not-used")
        got = store.continue_run(attempt, mark, ("paused",))
        assert got == Continuation(paused.run_id, paused.dir, 1, 3, {"loss": 2.0}, {"batch": 32})
        # The same run, reopened for the new attempt: no new run, the row is the second session's.
        [run] = store.runs(history=True)
        assert (run.run_id, run.status, run.session_id, run.started_at) == (
            paused.run_id, "running", "session-second", attempt.started_at,
        )  # fmt: skip
        assert run.dir == store.root / paused.dir
        assert run.metadata == {"continued": 1}
        store.finish_run(run_end(paused.run_id, "passed", metrics={"loss": 0.5}, metadata={"continued": 1},
                                 points=points("loss", 3, range(3, 5))))  # fmt: skip
        # The series is appended: steps continue.
        assert store.metric_series(paused.run_id, "loss") == [(step, float(step)) for step in range(5)]
        attempts = store.attempts(paused.run_id)
        assert [(a.session_id, a.status, a.reason) for a in attempts] == [
            ("session-first", "paused", "checkpoint at step 2"),
            ("session-second", "passed", ""),
        ]
        assert attempts[0].started_at == paused.started_at
        assert attempts[0].finished_at is not None
        assert attempts[0] == Attempt(*attempts[0])
        assert store.status_counts("session-second") == {"passed": 1}
        # A run never continued has one attempt; an unknown one is a KeyError.
        never = record_run(store, run_start(first, 2))
        assert [a.status for a in store.attempts(never.run_id)] == ["passed"]
        with pytest.raises(KeyError):
            store.attempts("no-such-run")
        # Deleting the run deletes its attempts.
        assert store.delete_runs([paused.run_id]) == 1
        with pytest.raises(KeyError):
            store.attempts(paused.run_id)


def test_only_the_statuses_asked_for_are_continued(backend: Backend, dead_pid: tuple[int, str]) -> None:
    with backend.open(create=True) as store:
        first, second = session_start("first"), session_start("second")
        store.record_session(first)
        # A run whose process died (still "running" as stored), one stored interrupted, one passed.
        store.start_run(run_start(first, "dead", pid=dead_pid[0], pid_started=dead_pid[1]))
        record_run(store, run_start(first, "stopped"), "interrupted", error_type="KeyboardInterrupt",
                   error_message="SIGTERM")  # fmt: skip
        record_run(store, run_start(first, "done"))
        store.record_session(second)
        mark = store.grid_snapshot().mark
        for point in ("dead", "stopped", "done"):  # paused only: each gets a new run
            assert store.continue_run(run_start(second, point, run_id=f"new-{point}"), mark, ("paused",)) is None
        assert {run.run_id for run in store.runs()} == {"new-dead", "new-stopped", "new-done"}
        third = session_start("third")
        store.record_session(third)
        for point in ("dead", "stopped"):
            store.finish_run(run_end(f"new-{point}", "interrupted"))
        mark = store.grid_snapshot().mark
        got = store.continue_run(run_start(third, "stopped"), mark, ("paused", "interrupted"))
        assert isinstance(got, Continuation)
        assert got.run_id == "new-stopped"
        assert [(a.status, a.session_id) for a in store.attempts("new-stopped")] == [
            ("interrupted", "session-second"),
            ("running", "session-third"),
        ]
        # An interrupted attempt keeps its error as its reason; a dead one reads interrupted.
        store.start_run(run_start(third, "killed", pid=dead_pid[0], pid_started=dead_pid[1]))
        fourth = session_start("fourth")
        store.record_session(fourth)
        got = store.continue_run(run_start(fourth, "killed"), store.grid_snapshot().mark, ("interrupted",))
        assert isinstance(got, Continuation)
        assert got.continued == 1
        [killed] = store.attempts(got.run_id)[:1]
        assert (killed.status, killed.session_id, killed.pid) == ("interrupted", "session-third", dead_pid[0])


def test_continuing_is_a_claim(backend: Backend, sleeper: subprocess.Popen[bytes]) -> None:
    with backend.open(create=True) as store:
        first, other, resuming = session_start("first"), session_start("other"), session_start("resuming")
        for session in (first, other, resuming):
            store.record_session(session)
        record_run(store, run_start(first, "a"), "paused")
        record_run(store, run_start(first, "b"), "paused")
        mark = store.grid_snapshot().mark
        # Another session continued "a" after the snapshot and is still at it: "a" is taken.
        got = store.continue_run(run_start(other, "a", pid=sleeper.pid), mark, ("paused",))
        assert isinstance(got, Continuation)
        assert store.continue_run(run_start(resuming, "a"), mark, ("paused",)) == "running in session session-other"
        # Once that attempt paused again, it is still that session's work since the snapshot.
        store.finish_run(run_end(got.run_id, "paused"))
        assert store.continue_run(run_start(resuming, "a"), mark, ("paused",)) == "done in session session-other"
        # "b" is continued once: a second claim of it (another session) is refused.
        got = store.continue_run(run_start(resuming, "b"), mark, ("paused",))
        assert isinstance(got, Continuation)
        assert store.continue_run(run_start(other, "b"), mark, ("paused",)) == "running in session session-resuming"
        assert len(store.runs(history=True)) == 2


# -- maintenance --------------------------------------------------------------------------------


def test_delete_runs_removes_rows_and_run_folders_never_anything_outside(backend: Backend, tmp_path: Path) -> None:
    outside = tmp_path / "outside-the-store"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep")
    with backend.open(create=True) as store:
        session = session_start("a")
        store.record_session(session)
        kept = record_run(store, run_start(session, "kept"))
        gone = [
            record_run(store, run_start(session, point), points=[MetricPoint("loss", 0, 0, 1.0)])
            for point in ("one", "two")
        ]
        # Rows whose stored folder is not a run folder: outside the store, or runs/ itself.
        escaping = record_run(store, run_start(session, "escaping")._replace(dir=os.path.relpath(outside, store.root)))
        absolute = record_run(store, run_start(session, "absolute")._replace(dir=str(outside)))
        whole = record_run(store, run_start(session, "whole")._replace(dir="runs"))
        for start in (kept, *gone, whole):
            folder = store.root / start.dir
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "artefact.txt").write_text("x")

        targets = [start.run_id for start in (*gone, escaping, absolute, whole)]
        assert store.delete_runs([*targets, gone[0].run_id, "no-such-run"]) == 5
        assert [run.run_id for run in store.runs(history=True)] == [kept.run_id]
        for start in gone:
            assert not (store.root / start.dir).exists()
            with pytest.raises(KeyError):
                store.run(start.run_id)
            with pytest.raises(KeyError):
                store.metric_series(start.run_id, "loss")
        assert (store.root / kept.dir / "artefact.txt").exists()
        assert (outside / "precious.txt").read_text() == "keep"
        assert (store.root / "runs").is_dir()
        assert store.delete_runs([]) == 0
        assert store.status_counts(session.session_id) == {"passed": 1}


def test_tags_are_saved_with_the_run_merged_afterwards_and_checked(backend: Backend) -> None:
    with backend.open(create=True) as store:
        session = session_start("a")
        store.record_session(session)
        plain = record_run(store, run_start(session, "plain"))
        start = run_start(session, "tagged")
        store.start_run(start)
        # Tagged from the command line while it runs: the run's own tags are merged in, not over it.
        assert store.set_tags(start.run_id, {"reviewed": "yes", "model": "old"}) == {"reviewed": "yes", "model": "old"}
        store.finish_run(run_end(start.run_id, tags={"model": "resnet", "data": "v2 ✓"}))
        expected = {"reviewed": "yes", "model": "resnet", "data": "v2 ✓"}
        assert store.run(start.run_id).tags == expected
        assert {run.run_id: run.tags for run in store.runs()} == {plain.run_id: {}, start.run_id: expected}

        # Merged; None removes a tag; an unknown tag removed is no error.
        assert store.set_tags(start.run_id, {"data": None, "gone": None, "seed-kind": "fixed"}) == {
            "reviewed": "yes", "model": "resnet", "seed-kind": "fixed",
        }  # fmt: skip
        with pytest.raises(KeyError):
            store.set_tags("no-such-run", {"a": "b"})
        for bad in ({"": "x"}, {"a=b": "x"}, {"k" * 65: "x"}, {"a": "v" * 257}, {"a": 1}):
            with pytest.raises(ValueError, match="tag"):
                store.set_tags(start.run_id, bad)  # type: ignore[arg-type]
        assert store.run(start.run_id).tags["model"] == "resnet"


def test_notes_are_added_in_order(backend: Backend) -> None:
    with backend.open(create=True) as store:
        session = session_start("a")
        store.record_session(session)
        start = record_run(store, run_start(session, 1))
        assert store.run(start.run_id).notes == []
        first = store.add_note(start.run_id, "diverged after step 40", at=1000.0)
        assert first == Note(1000.0, "diverged after step 40")
        store.add_note(start.run_id, 'second: <b>"quoted"</b>\nline two', at=2000.0)
        expected = [Note(1000.0, "diverged after step 40"), Note(2000.0, 'second: <b>"quoted"</b>\nline two')]
        assert store.run(start.run_id).notes == expected
        [listed] = store.runs()
        assert listed.notes == expected
        with pytest.raises(KeyError):
            store.add_note("no-such-run", "x")


def test_artifacts_are_the_registry_joined_with_the_run_folder(backend: Backend, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("never listed")
    with backend.open(create=True) as store:
        session = session_start("a")
        store.record_session(session)
        start = run_start(session, 1)
        store.start_run(start)
        folder = store.root / start.dir
        (folder / "plots").mkdir(parents=True)
        (folder / "plots" / "loss.png").write_bytes(b"\x89PNG" + b"0" * 96)
        (folder / "weights.npy").write_bytes(b"1234")  # written straight into xp.dir
        (folder / 'x" onerror="alert(1).png').write_bytes(b"png")
        (folder / "leak.txt").symlink_to(secret)  # leads out of the run folder: never listed
        (folder / "linked").symlink_to(tmp_path)
        (folder / "same.png").symlink_to(folder / "plots" / "loss.png")  # inside: listed
        registered = (
            Artifact("plots/loss.png", 100, "image/png", "figure"),
            Artifact("deleted-since.txt", 3, "text/plain", "text"),
            Artifact('x" onerror="alert(1).png', 3, "image/png", "image"),
        )
        store.finish_run(run_end(start.run_id, artifacts=registered))
        expected = [
            Artifact("plots/loss.png", 100, "image/png", "figure"),
            Artifact("same.png", 100, "image/png", None),
            Artifact("weights.npy", 4, None, None),
            Artifact('x" onerror="alert(1).png', 3, "image/png", "image"),
        ]
        assert store.run(start.run_id).artifacts == expected
        assert store.artifacts(start.run_id) == expected
        # A run without a folder has none.
        bare = record_run(store, run_start(session, 2))
        assert store.artifacts(bare.run_id) == []
        with pytest.raises(KeyError):
            store.artifacts("no-such-run")
        # Deleting the run deletes its registry too: a run of the same id would start afresh.
        store.delete_runs([start.run_id])
        store.start_run(start)
        assert store.artifacts(start.run_id) == []


def test_points_of_many_runs_come_in_one_read(backend: Backend) -> None:
    with backend.open(create=True) as store:
        session = session_start("a")
        store.record_session(session)
        runs = [
            record_run(
                store,
                run_start(session, point),
                points=[MetricPoint("loss", seq, seq * 10, 1.0 / (seq + 1)) for seq in range(3)]
                + [MetricPoint("acc", 3, None, NAN if point == 1 else 0.5)],
            )
            for point in range(3)
        ]
        ids = [start.run_id for start in runs]
        everything = store.points()
        assert len(everything) == 12
        assert [(p.run_id, p.metric) for p in everything] == sorted((p.run_id, p.metric) for p in everything)
        assert store.points([ids[0]], ["loss"]) == [
            SeriesPoint(ids[0], "loss", 0, 0, 1.0), SeriesPoint(ids[0], "loss", 1, 10, 0.5),
            SeriesPoint(ids[0], "loss", 2, 20, 1 / 3),
        ]  # fmt: skip
        [nan] = store.points([ids[1]], ["acc"])
        assert (nan.step, math.isnan(nan.value)) == (None, True)
        # Any number of ids (beyond SQLite's limit of bound variables), unknown ones ignored.
        many = [f"unknown-{i}" for i in range(5000)] + ids[1:]
        assert {p.run_id for p in store.points(many)} == set(ids[1:])
        assert store.points([]) == []
        assert store.points(metrics=["unknown"]) == []


def test_merged_runs_keep_their_tags_notes_and_registry(backend: Backend, tmp_path: Path) -> None:
    from pytest_experiments.store.copies import run_copy, session_copy

    source = Store.open(tmp_path / "source", create=True)
    with source:
        session = session_start("a")
        source.record_session(session)
        start = run_start(session, 1)
        source.start_run(start)
        (source.root / start.dir).mkdir(parents=True)
        (source.root / start.dir / "fig.png").write_bytes(b"png")
        source.finish_run(
            run_end(start.run_id, tags={"k": "v"}, artifacts=(Artifact("fig.png", 3, "image/png", "figure"),))
        )
        source.add_note(start.run_id, "looked at it", at=5.0)
        copies = [run_copy(source, record) for record in source.runs()]
        sessions = [session_copy(record) for record in source.sessions()]
    with backend.open(create=True) as store:
        assert store.add_copies(sessions, copies) == 1
        (store.root / start.dir).mkdir(parents=True)
        (store.root / start.dir / "fig.png").write_bytes(b"png")
        record = store.run(start.run_id)
        assert (record.tags, record.notes) == ({"k": "v"}, [Note(5.0, "looked at it")])
        assert record.artifacts == [Artifact("fig.png", 3, "image/png", "figure")]


def test_merged_runs_keep_their_attempts(backend: Backend, tmp_path: Path) -> None:
    from pytest_experiments.store.copies import run_copy, session_copy

    with Store.open(tmp_path / "source", create=True) as source:
        first, second = session_start("first"), session_start("second")
        source.record_session(first)
        paused = record_run(source, run_start(first, 1), "paused", metadata={"reason": "later"},
                            points=points("loss", 0, range(2)), metrics={"loss": 1.0})  # fmt: skip
        source.record_session(second)
        got = source.continue_run(run_start(second, 1), source.grid_snapshot().mark, ("paused",))
        assert isinstance(got, Continuation)
        source.finish_run(
            run_end(paused.run_id, metrics={"loss": 0.5}, points=points("loss", got.next_seq, range(2, 4)))
        )
        attempts = source.attempts(paused.run_id)
        copies = [run_copy(source, record) for record in source.runs()]
        sessions = [session_copy(record) for record in source.sessions()]
    with backend.open(create=True) as store:
        assert store.add_copies(sessions, copies) == 1
        assert store.add_copies(sessions, copies) == 0  # twice adds nothing
        assert store.attempts(paused.run_id) == attempts
        assert [a.status for a in attempts] == ["paused", "passed"]
        assert [step for step, _ in store.metric_series(paused.run_id, "loss")] == [0, 1, 2, 3]
        assert run_copy(store, store.runs()[0]).fingerprint() == copies[0].fingerprint()


def test_a_read_only_store_reads_and_never_writes(backend: Backend) -> None:
    with backend.open(create=True) as store:
        session = session_start("a")
        store.record_session(session)
        done = record_run(store, run_start(session, 1), metrics={"acc": 1.0})
        before = (store.runs(history=True), store.sessions(), store.grid_snapshot())
    with backend.open(readonly=True) as reader:
        assert (reader.runs(history=True), reader.sessions(), reader.grid_snapshot()) == before
        assert reader.run(done.run_id).metrics == {"acc": 1.0}
        writes = [
            lambda: reader.record_session(session_start("b")),
            lambda: reader.start_run(run_start(session, 2)),
            lambda: reader.claim_run(run_start(session, 3), 0),
            lambda: reader.continue_run(run_start(session, 1), 0, ("passed",)),
            lambda: reader.finish_run(run_end(done.run_id, "failed")),
            lambda: reader.heartbeat(session.session_id),
            lambda: reader.finish_session(session.session_id, time.time(), 0),
            lambda: reader.delete_runs([done.run_id]),
        ]
        for write in writes:
            with pytest.raises(Exception):  # noqa: B017, PT011 - each backend fails in its own words
                write()
    with backend.open() as store:
        assert (store.runs(history=True), store.sessions(), store.grid_snapshot()) == before


# -- concurrency: real processes ----------------------------------------------------------------

# Run as ``python -c WRITER location artifacts gate session points mode``: waits at the gate,
# then opens (creating) the store, records its session and, for each point, either records a
# run (``record``) or, as resume does, claims what its snapshot did not show done (``claim``)
# or continues what its snapshot showed paused (``continue``), finishing every run it got. Prints the points it ran, as JSON.
WRITER = textwrap.dedent(GATE_WAIT) + textwrap.dedent("""
    import json
    import socket
    import sys

    from pytest_experiments import Store
    from pytest_experiments.store.liveness import pid_namespace, process_start
    from pytest_experiments.model import MetricPoint, RunEnd, RunStart, SessionStart

    location, artifacts, gate, name, points, mode = sys.argv[1:]
    options = {"artifacts": artifacts} if artifacts else {}
    host, pid = socket.gethostname(), os.getpid()
    session = SessionStart(name, time.time(), host, pid, {})
    ran, window = [], []

    def claim_window():
        # Each outcome decides one point of the window; the points not tried stay in it.
        outcomes = store.claim_first(window, snapshot.mark)
        for start, outcome in zip(window, outcomes):
            if outcome is None:
                store.finish_run(RunEnd(start.run_id, "passed", time.time(), 0.0, None, {}, [], {}, {}))
                ran.append(start.params["point"])
        del window[: len(outcomes)]

    wait_at_gate(gate)  # every process creates the store at the same instant
    with Store.open(location, create=True, **options) as store:
        store.record_session(session)
        snapshot = store.grid_snapshot()
        for point in json.loads(points):
            state = snapshot.states.get(("test_m.py", "test_p", f"h{point}"))
            if mode in ("claim", "claim_first") and state is not None and state[0] != "interrupted":
                continue  # done before the snapshot: resume would not select it
            if mode == "continue" and (state is None or state[0] != "paused"):
                continue  # continued before the snapshot: resume would not select it
            start = RunStart(
                f"{name}-{point}", name, f"test_m.py::test_p[{point}]", "test_m.py", "test_p", f"h{point}",
                {"point": point}, time.time(), "main", host, pid, f"runs/test_p/{name}-{point}",
                pid_namespace(), process_start(pid),
            )
            next_seq = 0
            if mode == "claim":
                if store.claim_run(start, snapshot.mark) is not None:
                    continue
            elif mode == "claim_first":  # four points at a time, as a resumer after a refusal
                window.append(start)
                if len(window) == 4:
                    claim_window()
                continue
            elif mode == "continue":  # every point was paused before: continue it, or leave it
                got = store.continue_run(start, snapshot.mark, ("paused",))
                if got is None or isinstance(got, str):
                    continue
                start, next_seq = start._replace(run_id=got.run_id), got.next_seq
            else:
                store.start_run(start)
            points_logged = [MetricPoint("loss", next_seq, 0, float(point))]
            store.finish_run(RunEnd(start.run_id, "passed", time.time(), 0.0, point, {"v": point}, points_logged, {}, {}))
            ran.append(point)
        while window:
            claim_window()
        store.finish_session(name, time.time(), 0)
    print(json.dumps(sorted(ran)))
""")


def run_writers(backend: Backend, procs: Processes, gate: Path, mode: str, points: list[int]) -> dict[str, list[int]]:
    """Two writer processes released at one instant; the points each ran."""
    artifacts = str(backend.artifacts or "")
    started = {
        name: procs.start_script(WRITER, backend.location, artifacts, str(gate), name, json.dumps(points), mode)
        for name in ("w1", "w2")
    }
    procs.release_together(gate, len(started))
    ran = {}
    for name, proc in started.items():
        code, output = procs.finish(proc)
        assert code == 0, output
        ran[name] = json.loads(output.strip().splitlines()[-1])
    return ran


def test_two_processes_create_and_write_one_store_at_once(
    backend: Backend, procs: Processes, pytester: pytest.Pytester
) -> None:
    ran = run_writers(backend, procs, pytester.mkdir("gate"), "record", list(range(100)))
    assert ran == {"w1": list(range(100)), "w2": list(range(100))}
    with backend.open() as store:
        runs = store.runs(history=True)
        assert Counter(run.session_id for run in runs) == {"w1": 100, "w2": 100}
        assert {run.status for run in runs} == {"passed"}
        assert len(store.runs()) == 100  # one latest run per grid point
        assert {session.session_id: session.counts for session in store.sessions()} == {
            "w1": {"passed": 100},
            "w2": {"passed": 100},
        }
        assert store.metric_series("w2-42", "loss") == [(0, 42.0)]


@pytest.mark.parametrize("mode", ["claim", "claim_first"])
def test_two_processes_claiming_one_grid_run_each_point_once(
    backend: Backend, procs: Processes, pytester: pytest.Pytester, mode: str
) -> None:
    ran = run_writers(backend, procs, pytester.mkdir("gate"), mode, list(range(200)))
    assert sorted(ran["w1"] + ran["w2"]) == list(range(200))  # every point once: none twice, none lost
    with backend.open() as store:
        runs = store.runs(history=True)
        assert len(runs) == 200
        assert {run.status for run in runs} == {"passed"}


def test_two_processes_continuing_paused_runs_continue_each_once(
    backend: Backend, procs: Processes, pytester: pytest.Pytester
) -> None:
    with backend.open(create=True) as store:
        first = session_start("first")
        store.record_session(first)
        for point in range(100):
            start = RunStart(
                f"first-{point}", first.session_id, f"test_m.py::test_p[{point}]", "test_m.py", "test_p",
                f"h{point}", {"point": point}, time.time(), "main", HOST, os.getpid(), f"runs/test_p/first-{point}",
            )  # fmt: skip
            record_run(store, start, "paused", points=[MetricPoint("loss", 0, 0, -1.0)])
    ran = run_writers(backend, procs, pytester.mkdir("gate"), "continue", list(range(100)))
    assert sorted(ran["w1"] + ran["w2"]) == list(range(100))  # every paused run continued once
    with backend.open() as store:
        runs = store.runs(history=True)
        assert len(runs) == 100
        assert {run.status for run in runs} == {"passed"}
        for run in runs:
            assert [a.status for a in store.attempts(run.run_id)] == ["paused", "passed"]
        assert store.metric_series("first-42", "loss") == [(0, -1.0), (0, 42.0)]
