"""``load()`` and ``load_series()`` read runs as columns: their frames equal, column for column,
dtype for dtype and value for value, the frames built row by row from ``Store.runs()`` records
before (``frames_reference.py``), on tricky data and on each backend.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from backends import Backend
from frames_reference import reference_runs, reference_runs_frame, reference_series_frame
from test_store_contract import run_end, run_start, session_start

from pytest_experiments import Store, load, load_series
from pytest_experiments.frames import runs_frame
from pytest_experiments.model import MetricPoint, SeriesPoint, SeriesPoints
from pytest_experiments.store.columns import absolute_dirs

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="liveness reads /proc")

NAN, INF = math.nan, math.inf


def points(*values: tuple[str, int | None, float]) -> list[MetricPoint]:
    return [MetricPoint(name, seq, step, value) for seq, (name, step, value) in enumerate(values)]


def fill(store: Store, dead_pid: tuple[int, str]) -> None:
    """Runs that make frames hard: parameters missing in some runs, nested, None, NaN and
    infinite, strings that look like numbers, booleans, ints beside floats, logged parameters
    over declared ones, runs without metrics, failures with and without a message, tags and
    metadata on some runs, running runs whose process is gone (on this host, or elsewhere with a
    stale heartbeat), and runs started at the same instant."""
    base = time.time() - 1000
    a = session_start("a", started_at=base)
    b = session_start("b", started_at=base + 1)
    far_fresh = session_start("far-fresh", host="far-host")  # heartbeat now: running
    far_stale = session_start("far-stale", started_at=base, host="far-host")  # heartbeat long gone
    for session in (a, b, far_fresh, far_stale):
        store.record_session(session)

    def record(session: Any, point: object, at: float, status: str = "passed", **fields: Any) -> None:
        options = {key: fields.pop(key) for key in ("experiment", "module", "params", "run_id") if key in fields}
        start = run_start(session, point, started_at=base + at, **options)
        store.start_run(start)
        store.finish_run(run_end(start.run_id, status, **fields))

    record(
        a, 0, 10, params={"lr": 0.1, "seed": 1, "flag": True, "s": "1.0", "x": NAN},
        logged_params={"lr": 0.2, "n_layers": 3}, metrics={"loss": 0.5, "acc": NAN}, tags={"model": "ridge"},
        metadata={"timing": {"call": 0.1, "setup": 0.01}, "attempt": 1},
        points=points(("loss", 0, 1.0), ("loss", 1, NAN), ("loss", 2, 0.25), ("acc", None, 0.5)),
    )  # fmt: skip
    record(
        a, 1, 11, "failed", params={"lr": 1, "seed": 2, "flag": False, "s": "007", "x": "a"},
        metrics={"loss": INF, "acc": -INF}, metadata={"timing": {}}, error_type="ValueError",
        error_message="boom: 1 > 0", points=points(("loss", 0, 3.0), ("loss", 1, -INF)),
    )  # fmt: skip
    record(
        a, 0, 12, "error", experiment="test_y", module="other.py",
        params={"model": "tree", "nested": {"a": [1, 2], "b": None}, "none": None, "name": "é☃ x", "big": 2**40},
        error_type="KeyError", error_message="",
    )  # fmt: skip
    record(b, 0, 20, params={"lr": 0.1, "seed": 1, "flag": True, "s": "1.0", "x": NAN}, metrics={"loss": 0.4})
    record(b, "ints", 21, experiment="test_i", params={"i": 3}, metrics={"m": 1}, points=points(("m", 7, 1.0)))
    record(b, "ints2", 22, experiment="test_i", params={"i": None}, metrics={"m": 2})
    # The same instant: the latest runs order by run id, the history by the order of writing.
    record(b, "t1", 30, experiment="test_w", run_id="run-b-tie")
    record(b, "t2", 30, experiment="test_w", run_id="run-a-tie")
    # Two runs of one grid point at the same instant: the one written last is its latest.
    record(b, "same", 31, experiment="test_v", run_id="zz-first", metrics={"v": 1.0})
    record(b, "same", 31, experiment="test_v", run_id="aa-second", metrics={"v": 2.0})
    # Stored as running: this process (running), a dead one here and a stale far host (interrupted).
    store.start_run(run_start(b, "live", experiment="test_z", started_at=base + 40))
    store.start_run(run_start(b, "dead", experiment="test_z", started_at=base + 41, pid=dead_pid[0], pid_started=dead_pid[1]))  # fmt: skip
    for session, at in ((far_fresh, 42), (far_stale, 43)):
        store.start_run(
            run_start(session, session.session_id, experiment="test_z", pid=1, pid_started="other-boot:1", started_at=base + at)
        )  # fmt: skip


SELECTIONS: list[dict[str, Any]] = [
    {},
    {"history": True},
    {"metadata": True},
    {"history": True, "metadata": True},
    {"status": "passed"},
    {"status": ["failed", "interrupted", "running"], "history": True},
    {"experiment": "test_x"},
    {"experiment": "test_mod.py::test_x", "history": True},
    {"experiment": ["other.py::test_y", "test_z"]},
    {"experiment": "no_such_experiment"},
    {"status": "xfailed"},
]


def expected_frame(store: Store, history: bool = False, metadata: bool = False, **selection: Any) -> pd.DataFrame:
    names = selection.get("experiment")
    statuses = selection.get("status")
    records = reference_runs(
        store,
        None if names is None else [names] if isinstance(names, str) else names,
        None if statuses is None else [statuses] if isinstance(statuses, str) else statuses,
        history,
    )
    return reference_runs_frame(records, metadata=metadata)


@pytest.mark.parametrize("selection", SELECTIONS, ids=lambda selection: repr(selection) or "{}")
def test_load_equals_the_frame_built_from_records(
    backend: Backend, dead_pid: tuple[int, str], selection: dict[str, Any]
) -> None:
    with backend.open(create=True, lease=10) as store:
        fill(store, dead_pid)
        frame = load(store, **selection)
        pd.testing.assert_frame_equal(frame, expected_frame(store, **selection), check_exact=True)
    if selection == {}:
        statuses = dict(zip(frame["node_id"], frame["status"], strict=True))
        assert [statuses[f"test_mod.py::test_z[{name}]"] for name in ("live", "dead")] == ["running", "interrupted"]
        assert [statuses[f"test_mod.py::test_z[session-far-{name}]"] for name in ("fresh", "stale")] == [
            "running",
            "interrupted",
        ]
        assert frame["params.i"].dtype == "Int64"
        assert list(frame.loc[frame["experiment"] == "test_v", "run_id"]) == ["aa-second"]
        assert list(frame.loc[frame["experiment"] == "test_w", "run_id"]) == ["run-a-tie", "run-b-tie"]


def test_the_command_lines_frame_of_records_equals_the_frame_built_from_them(
    backend: Backend, dead_pid: tuple[int, str]
) -> None:
    with backend.open(create=True, lease=10) as store:
        fill(store, dead_pid)
        for history in (False, True):
            records = store.runs(history=history)
            for metadata in (False, True):
                expected = reference_runs_frame(records, metadata=metadata)
                pd.testing.assert_frame_equal(runs_frame(records, metadata=metadata), expected, check_exact=True)


def test_load_of_a_location_equals_the_frame_built_from_records(backend: Backend, dead_pid: tuple[int, str]) -> None:
    with backend.open(create=True, lease=10) as store:
        fill(store, dead_pid)
        expected = expected_frame(store, history=True)
    with backend.open(readonly=True):  # the location exists and is readable
        pass
    location = backend.location
    if backend.artifacts is not None:  # load() of a server store takes the artefacts folder from the environment
        pytest.importorskip("psycopg")
        with backend.open(readonly=True) as reader:
            frame = load(reader, history=True)
    else:
        frame = load(location, history=True)
    # Liveness is judged again by the new reader (the same processes, the same verdicts).
    pd.testing.assert_frame_equal(frame, expected, check_exact=True)


@pytest.mark.parametrize(
    "selection",
    [
        {},
        {"history": True},
        {"metric": "loss"},
        {"metric": ["acc", "m"], "history": True},
        {"experiment": "test_i"},
        {"status": "failed"},
        {"experiment": "no_such_experiment"},
    ],
    ids=repr,
)
def test_load_series_equals_the_frame_built_from_points(
    backend: Backend, dead_pid: tuple[int, str], selection: dict[str, Any]
) -> None:
    with backend.open(create=True, lease=10) as store:
        fill(store, dead_pid)
        frame = load_series(store, **selection)
        metric = selection.get("metric")
        names, statuses = selection.get("experiment"), selection.get("status")
        records = reference_runs(
            store,
            None if names is None else [names],
            None if statuses is None else [statuses],
            selection.get("history", False),
        )
        metrics = None if metric is None else [metric] if isinstance(metric, str) else metric
        expected = reference_series_frame(store, records, metrics)
    pd.testing.assert_frame_equal(frame, expected, check_exact=True)
    if selection == {}:  # the latest runs: test_x[0] was run again without points
        assert len(frame) == 3
        assert frame["step"].isna().sum() == 0
    if selection == {"history": True}:
        assert len(frame) == 7
        assert frame["step"].isna().sum() == 1


def test_points_are_columns_that_still_read_as_a_list_of_points(backend: Backend) -> None:
    with backend.open(create=True) as store:
        session = session_start("a")
        store.record_session(session)
        start = run_start(session, 0)
        store.start_run(start)
        store.finish_run(run_end(start.run_id, points=points(("loss", 0, 1.0), ("loss", None, NAN))))
        read = store.points()
    assert isinstance(read, SeriesPoints)
    assert read.metric == ["loss", "loss"]
    assert read.step == [0, None]
    assert read[0] == SeriesPoint(start.run_id, "loss", 0, 0, 1.0)
    assert read == [read[0], read[1]]
    assert read[:1] == [read[0]]
    assert len(read) == 2
    assert math.isnan(read[1].value)
    assert list(read)[1].step is None
    assert SeriesPoints.of(list(read)) == read


@pytest.mark.parametrize(
    "relative",
    [
        ["runs/test_x/run-1", "runs/x y/é"],
        ["runs/a/b", "./runs/a/c"],
        ["runs/a//b"],
        ["runs/a/./b", "runs/a/."],
        ["runs/a/b/"],
        ["/elsewhere/runs"],
        ["", "runs"],
        ["."],
        ["runs/../a"],
        ["runs/a\x00b", "runs/c"],
        [],
    ],
)
@pytest.mark.parametrize("root", [Path("/"), Path("/tmp/store"), Path("/tmp/st ore")])
def test_run_folders_join_the_root_as_pathlib_does(root: Path, relative: list[str]) -> None:
    assert absolute_dirs(root, relative) == [str(root / path) for path in relative]


def test_a_version_1_store_loads_as_the_records_read_it(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    from test_schema import make_version_1_store  # no tags, no process start times

    make_version_1_store(tmp_path / "store", sleeper.pid)
    with Store.open(tmp_path / "store", readonly=True) as store:
        for history in (False, True):
            records = reference_runs(store, None, None, history)
            pd.testing.assert_frame_equal(load(store, history=history), reference_runs_frame(records), check_exact=True)
            assert "running" not in set(load(store, history=history)["status"])  # its heartbeat is an hour old


@pytest.mark.parametrize("params", ['{"a": 1}, {"b": 2}', '{"a": 1}, {}, {}, {}, null], [{}', '{"a": ', "[1, 2]x"])
def test_json_that_would_spill_into_other_runs_is_refused_with_one_line(tmp_path: Path, params: str) -> None:
    import sqlite3

    from pytest_experiments import StoreError

    with Store.open(tmp_path / "store", create=True) as store:
        session = session_start("a")
        store.record_session(session)
        for point in range(3):
            start = run_start(session, point)
            store.start_run(start)
            store.finish_run(run_end(start.run_id, metrics={"m": float(point)}))
    with sqlite3.connect(tmp_path / "store" / "experiments.sqlite") as db:  # written by hand
        db.execute("UPDATE runs SET params = ? WHERE run_id = ?", (params, start.run_id))
    with pytest.raises(StoreError, match=r"^the store holds a run whose [^\n]*$"):
        load(tmp_path / "store", history=True)
