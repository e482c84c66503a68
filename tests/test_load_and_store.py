"""Reading results (load, Store) and where the store lives; unusable stores are refused."""

from __future__ import annotations

import math
import shutil
import sqlite3
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from pytest_experiments import Store, StoreError, load
from pytest_experiments.store.sqlite import SCHEMA_VERSION

BASE_COLUMNS = [
    "run_id",
    "node_id",
    "experiment",
    "module",
    "status",
    "started_at",
    "finished_at",
    "duration",
    "session_id",
    "worker",
    "dir",
]

EXPERIMENTS = """
import os
import pytest

@pytest.mark.grid(lr=[0.1, 0.01], seed=[0])
def test_train(lr, seed, xp):
    xp.log_metric("loss", lr * float(os.environ.get("FACTOR", "1")))
    return {"acc": 1 - lr}

@pytest.mark.experiment
def test_flaky():
    assert os.environ.get("FLAKY") != "fail", "flaked"
"""


@pytest.fixture(autouse=True)
def _no_store_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XP_STORE", raising=False)


def default_store(pytester: pytest.Pytester) -> Path:
    return pytester.path / ".experiments"


def run_with(pytester: pytest.Pytester, *args: str, **env: str) -> pytest.RunResult:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        return pytester.runpytest(*args)


def snapshot(directory: Path) -> dict[str, bytes | None]:
    """Every file and folder below ``directory`` (folders as None), pytest's caches left out
    (a store is checked once collection found an experiment: pytest's own files may exist by then)."""
    return {
        str(path.relative_to(directory)): None if path.is_dir() else path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if "__pycache__" not in path.parts and ".pytest_cache" not in path.parts
    }


# -- load() -----------------------------------------------------------------------------


def test_load_columns_and_types(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_exps=EXPERIMENTS)
    before = pd.Timestamp.now(tz="UTC")
    run_with(pytester, FLAKY="fail").assert_outcomes(passed=2, failed=1)
    after = pd.Timestamp.now(tz="UTC")
    frame = load(default_store(pytester))
    columns = list(frame.columns)
    assert columns[: len(BASE_COLUMNS)] == BASE_COLUMNS
    assert columns[-1] == "error"
    extra = columns[len(BASE_COLUMNS) : -1]
    assert set(extra) == {"params.lr", "params.seed", "metrics.loss", "metrics.acc"}
    assert max(extra.index("params.lr"), extra.index("params.seed")) < min(
        extra.index("metrics.loss"), extra.index("metrics.acc")
    )
    assert len(frame) == 3
    for column in ("started_at", "finished_at"):
        assert isinstance(frame[column].dtype, pd.DatetimeTZDtype)
        assert str(frame[column].dt.tz) == "UTC"
        assert frame[column].between(before, after).all()
    assert (frame["finished_at"] >= frame["started_at"]).all()
    assert frame["duration"].dtype == "float64"
    assert (frame["duration"] >= 0).all()
    assert set(frame["worker"]) == {"main"}
    assert frame["session_id"].nunique() == 1
    assert frame["run_id"].is_unique
    assert set(frame["module"]) == {"test_exps.py"}
    rows = frame.set_index("node_id")
    train = rows.loc["test_exps.py::test_train[lr=0.1-seed=0]"]
    assert train["experiment"] == "test_train"
    assert train["status"] == "passed"
    assert train["params.lr"] == 0.1
    assert train["params.seed"] == 0
    assert train["metrics.loss"] == 0.1
    assert train["metrics.acc"] == 0.9
    assert pd.isna(train["error"])
    flaky = rows.loc["test_exps.py::test_flaky"]
    assert flaky["status"] == "failed"
    assert flaky["error"].startswith("AssertionError: flaked")
    assert pd.isna(flaky["metrics.acc"])
    assert pd.isna(flaky["params.lr"])
    store = default_store(pytester).resolve()
    for directory in frame["dir"]:
        path = Path(directory)
        assert path.is_absolute()
        assert path.is_relative_to(store / "runs")


def test_load_latest_per_grid_point_or_full_history(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_exps=EXPERIMENTS)
    run_with(pytester, FACTOR="1", FLAKY="fail").assert_outcomes(passed=2, failed=1)
    run_with(pytester, FACTOR="2", FLAKY="pass").assert_outcomes(passed=3)
    with Store.open(default_store(pytester)) as store:
        first, second = (session.session_id for session in store.sessions())
    latest = load(default_store(pytester))
    assert len(latest) == 3
    assert set(latest["session_id"]) == {second}
    assert sorted(latest["metrics.loss"].dropna()) == [0.02, 0.2]
    assert set(latest["status"]) == {"passed"}
    history = load(default_store(pytester), history=True)
    assert len(history) == 6
    assert history["run_id"].is_unique
    assert list(history["session_id"]) == [first] * 3 + [second] * 3
    assert history["started_at"].is_monotonic_increasing
    assert sorted(history["metrics.loss"].dropna()) == [0.01, 0.02, 0.1, 0.2]


def test_load_filters_by_experiment_and_status(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_exps=EXPERIMENTS)
    run_with(pytester, FLAKY="fail").assert_outcomes(passed=2, failed=1)
    store = default_store(pytester)
    assert set(load(store, experiment="test_train")["node_id"]) == {
        "test_exps.py::test_train[lr=0.1-seed=0]",
        "test_exps.py::test_train[lr=0.01-seed=0]",
    }
    assert len(load(store, experiment=["test_train", "test_flaky"])) == 3
    assert len(load(store, experiment="nope")) == 0
    assert list(load(store, status="failed")["experiment"]) == ["test_flaky"]
    assert len(load(store, status=["passed", "failed"])) == 3
    assert len(load(store, experiment="test_train", status="failed")) == 0
    # Filters apply to the latest run of each grid point: a fixed failure is no longer listed...
    run_with(pytester, FLAKY="pass").assert_outcomes(passed=3)
    assert len(load(store, status="failed")) == 0
    # ...but stays in the history.
    old = load(store, status="failed", history=True)
    assert list(old["experiment"]) == ["test_flaky"]
    assert len(load(store, experiment="test_flaky", history=True)) == 2


def test_load_without_store_finds_the_default_store_from_the_cwd(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile("def test_exp(xp):\n    return 3\n")
    pytester.runpytest().assert_outcomes(passed=1)
    monkeypatch.chdir(pytester.path)
    frame = load()
    assert list(frame["experiment"]) == ["test_exp"]
    assert list(frame["metrics.result"]) == [3.0]


@pytest.mark.parametrize("kind", ["ini", "pyproject"])
def test_load_without_store_follows_the_xp_store_ini_key(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    if kind == "ini":
        pytester.makeini("[pytest]\nxp_store = results/xp\n")
    else:
        pytester.makepyprojecttoml('[tool.pytest.ini_options]\nxp_store = "results/xp"\n')
    pytester.makepyfile("def test_exp(xp):\n    return 5\n")
    pytester.runpytest().assert_outcomes(passed=1)
    assert (pytester.path / "results" / "xp" / "experiments.sqlite").is_file()
    assert not default_store(pytester).exists()
    subdirectory = pytester.mkdir("analysis")
    monkeypatch.chdir(subdirectory)
    frame = load()
    assert list(frame["metrics.result"]) == [5.0]
    assert Path(frame.loc[0, "dir"]).is_relative_to((pytester.path / "results" / "xp").resolve())


# -- the Store API ----------------------------------------------------------------------


def test_store_api(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_api="""
        import pytest

        @pytest.mark.grid(x=[1, 2])
        def test_series(x, xp):
            for step in range(3):
                xp.log_metric("loss", x / (step + 1), step=step)
            xp.metadata["tag"] = f"x{x}"
            return {"final": x}

        @pytest.mark.experiment
        def test_fail():
            raise KeyError("missing")
        """
    )
    pytester.runpytest().assert_outcomes(passed=2, failed=1)
    pytester.runpytest("-k", "test_fail").assert_outcomes(failed=1)
    with Store.open(default_store(pytester)) as store:
        assert store.root == default_store(pytester).resolve()
        latest = store.runs()
        history = store.runs(history=True)
        assert len(latest) == 3
        assert len(history) == 4
        assert [run.experiment for run in store.runs(status="failed")] == ["test_fail"]
        assert len(store.runs(experiment="test_series")) == 2
        sessions = store.sessions()
        assert [session.counts for session in sessions] == [{"passed": 2, "failed": 1}, {"failed": 1}]
        assert all(session.finished_at is not None for session in sessions)
        assert [session.exitstatus for session in sessions] == [1, 1]
        assert len(store.runs(history=True, session_id=sessions[1].session_id)) == 1
        series = {run.params["x"]: run for run in store.runs(experiment="test_series")}
        full = store.run(series[2].run_id)
        assert full.result == {"final": 2}
        assert full.metadata["tag"] == "x2"
        assert full.metrics == {"loss": pytest.approx(2 / 3), "final": 2.0}
        assert full.code_source is not None
        assert full.code_source.startswith("def test_series(x, xp):")
        assert store.metric_series(series[2].run_id, "loss") == [(0, 2.0), (1, 1.0), (2, pytest.approx(2 / 3))]
        assert store.metric_series(series[1].run_id, "loss") == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
        failed = store.run(store.runs(status="failed")[0].run_id)
        assert failed.error_type == "KeyError"
        assert "missing" in (failed.error_message or "")
        assert failed.session_id == sessions[1].session_id
        with pytest.raises(KeyError):
            store.run("no-such-run")


def test_a_nan_series_point_reads_back_as_nan(pytester: pytest.Pytester) -> None:
    # SQLite stores a NaN as NULL; the series still holds numbers only.
    pytester.makepyfile(
        test_nan="""
        def test_diverge(xp):
            xp.log_metric("loss", 1.0, step=0)
            xp.log_metric("loss", float("nan"), step=1)
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)
    with Store.open(default_store(pytester), readonly=True) as store:
        [run] = store.runs()
        series = store.metric_series(run.run_id, "loss")
    assert [step for step, _ in series] == [0, 1]
    assert series[0][1] == 1.0
    assert isinstance(series[1][1], float)
    assert math.isnan(series[1][1])


def test_opening_a_missing_store_without_create_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        Store.open(tmp_path / "nothing-here")
    assert not (tmp_path / "nothing-here").exists()


def test_twelve_runs_under_xdist_no_loss_no_duplicate(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.grid(i=list(range(12)))
        def test_point(i, xp):
            (xp.dir / "i.txt").write_text(str(i))
            return i
        """
    )
    pytester.runpytest("-n", "2").assert_outcomes(passed=12)
    frame = load(default_store(pytester), history=True)
    assert len(frame) == 12
    assert frame["run_id"].is_unique
    assert sorted(frame["params.i"]) == list(range(12))
    assert set(frame["worker"]) <= {"gw0", "gw1"}
    assert frame["session_id"].nunique() == 1
    for directory, i in zip(frame["dir"], frame["params.i"], strict=True):
        assert (Path(directory) / "i.txt").read_text() == str(i)


# -- where the store is -----------------------------------------------------------------


def test_store_location_precedence(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nxp_store = from-ini\n")
    pytester.makepyfile("def test_exp(xp):\n    pass\n")
    root = pytester.path

    def stores() -> set[str]:
        return {str(path.parent.relative_to(root)) for path in root.rglob("experiments.sqlite")}

    run_with(pytester, "--xp-store=from-option", PYTEST_XP_STORE=str(root / "from-env")).assert_outcomes(passed=1)
    assert stores() == {"from-option"}
    run_with(pytester, PYTEST_XP_STORE=str(root / "from-env")).assert_outcomes(passed=1)
    assert stores() == {"from-option", "from-env"}
    run_with(pytester).assert_outcomes(passed=1)
    assert stores() == {"from-option", "from-env", "from-ini"}
    (root / "pytest.ini").write_text("[pytest]\n")
    run_with(pytester).assert_outcomes(passed=1)
    assert stores() == {"from-option", "from-env", "from-ini", ".experiments"}
    for name in stores():
        with Store.open(root / name) as store:
            assert len(store.runs(history=True)) == 1
        gitignore = root / name / ".gitignore"
        assert "*" in gitignore.read_text().splitlines()


def test_default_store_is_created_when_the_first_experiment_runs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pathlib import Path
        import pytest

        STORE = Path(__file__).parent / ".experiments"

        def test_1_plain():
            assert not STORE.exists()

        @pytest.mark.experiment
        def test_2_experiment():
            assert STORE.is_dir()

        def test_3_plain():
            assert STORE.is_dir()
        """
    )
    pytester.runpytest("--collect-only").assert_outcomes()
    assert not default_store(pytester).exists()
    pytester.runpytest("-k", "plain and 1").assert_outcomes(passed=1)
    assert not default_store(pytester).exists()
    pytester.runpytest().assert_outcomes(passed=3)
    store = default_store(pytester)
    names = {path.name for path in store.iterdir() if not path.name.startswith("experiments.sqlite-")}
    assert names == {".gitignore", "experiments.sqlite", "runs", "journals"}
    assert (store / "runs").is_dir()
    assert not list((store / "journals").iterdir())  # folded at the session's end, and removed


# -- unusable stores --------------------------------------------------------------------


def _garbage_database(root: Path) -> Path:
    store = root / "store"
    store.mkdir()
    (store / "experiments.sqlite").write_bytes(b"this is not a database\n" * 50)
    return store


def _regular_file(root: Path) -> Path:
    path = root / "store.txt"
    path.write_text("just a file\n")
    return path


def _below_a_file(root: Path) -> Path:
    (root / "blocker").write_text("a file where a folder should be\n")
    return root / "blocker" / "deeper" / "store"


def _other_application(root: Path) -> Path:
    store = root / "store"
    store.mkdir()
    connection = sqlite3.connect(store / "experiments.sqlite")
    connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    connection.execute("INSERT INTO users (name) VALUES ('alice')")
    connection.commit()
    connection.close()
    return store


def _newer_schema(root: Path) -> Path:
    store = root / "store"
    Store.open(store, create=True).close()
    connection = sqlite3.connect(store / "experiments.sqlite", isolation_level=None)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    return store


@pytest.mark.parametrize(
    "make_store",
    [_garbage_database, _regular_file, _below_a_file, _other_application, _newer_schema],
    ids=["garbage-database", "regular-file", "below-a-file", "other-application", "newer-schema"],
)
def test_unusable_store_stops_the_session_with_one_line(pytester: pytest.Pytester, make_store) -> None:  # type: ignore[no-untyped-def]
    pytester.makepyfile("def test_exp(xp):\n    (xp.dir / 'a.txt').write_text('a')\n")
    store = make_store(pytester.path)
    before = snapshot(pytester.path)
    result = pytester.runpytest(f"--xp-store={store}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    error_lines = [line for line in result.stderr.lines if line.strip()]
    assert len(error_lines) == 1, result.stderr.str()
    assert error_lines[0].startswith("ERROR: xp: ")
    assert str(store) in error_lines[0]
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert "test_exp" not in result.stdout.str()
    assert snapshot(pytester.path) == before


def test_unusable_default_store_is_refused_too(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_exp(xp):\n    pass\n")
    _garbage_database(pytester.path)
    (pytester.path / "store").rename(default_store(pytester))
    before = snapshot(pytester.path)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.stderr.lines if line.strip()] == [
        f"ERROR: xp: {default_store(pytester) / 'experiments.sqlite'} is not a pytest-experiments database; "
        "move it away or choose another --xp-store"
    ]
    assert snapshot(pytester.path) == before


def test_unusable_store_from_the_environment(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_exp(xp):\n    pass\n")
    path = _regular_file(pytester.path)
    before = snapshot(pytester.path)
    result = run_with(pytester, PYTEST_XP_STORE=str(path))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert len([line for line in result.stderr.lines if line.strip()]) == 1
    assert snapshot(pytester.path) == before


# -- run folders ------------------------------------------------------------------------


def test_run_folders_stay_inside_the_store_and_survive_a_move(pytester: pytest.Pytester) -> None:
    artefact = f"artefact-{uuid.uuid4().hex}.txt"  # unique: the search below looks outside this test's folder
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.parametrize("name", ["../../x", "/abs/path", "..", "a/../../b"], ids=["../../x", "/abs", "..", "a/../../b"])
        def test_hostile(name, xp):
            (xp.dir / "{artefact}").write_text(name)
        """
    )
    pytester.runpytest().assert_outcomes(passed=4)
    store = default_store(pytester)
    connection = sqlite3.connect(store / "experiments.sqlite")
    try:
        stored = [row[0] for row in connection.execute("SELECT dir FROM runs")]
    finally:
        connection.close()
    assert len(stored) == 4
    for relative in stored:
        assert not Path(relative).is_absolute()
        assert ".." not in Path(relative).parts
        assert relative.startswith("runs/")
    artefacts = sorted(pytester.path.parent.rglob(artefact))
    assert len(artefacts) == 4
    assert all(path.resolve().is_relative_to(store.resolve() / "runs") for path in artefacts)
    assert not (pytester.path.parent / "x").exists()

    moved = pytester.path / "elsewhere" / "moved-store"
    moved.parent.mkdir()
    shutil.move(str(store), str(moved))
    frame = load(moved)
    texts = set()
    for directory in frame["dir"]:
        path = Path(directory)
        assert path.is_relative_to(moved.resolve())
        texts.add((path / artefact).read_text())
    assert texts == {"../../x", "/abs/path", "..", "a/../../b"}
    with Store.open(moved) as store_api:
        record = store_api.runs()[0]
        assert record.params["name"] in texts
        assert (record.dir / artefact).read_text() == record.params["name"]
        assert record.dir.is_dir()


def test_store_is_written_while_the_run_is_in_flight(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pytest_experiments import Store

        def test_exp(xp):
            # A reader that cannot write (load(), the command line) reads the journal.
            with Store.open(xp.dir.parent.parent.parent, readonly=True) as store:
                status = store.run(xp.run_id).status
            (xp.dir / "status.txt").write_text(status)
        """
    )
    started = time.time()
    pytester.runpytest().assert_outcomes(passed=1)
    with Store.open(default_store(pytester)) as store:
        (run,) = store.runs()
    assert (run.dir / "status.txt").read_text() == "running"
    assert run.status == "passed"
    assert run.started_at >= started - 1
