"""The ``pytest-experiments`` command line, run against stores written by real pytest sessions."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
from backends import Backend
from cli_helpers import cli, user_error

from pytest_experiments import Store, load, open_store
from pytest_experiments.cli.sessions import runs_to_delete
from pytest_experiments.model import RunRecord, RunStart
from pytest_experiments.tables import Column, common_prefix, latex_escape, shorten, text_table

EXPERIMENTS = r"""
import pytest

@pytest.mark.grid(lr=[0.1, 0.01, 0.001], seed=[0, 1])
def test_train(lr, seed, xp):
    for step in range(3):
        xp.log_metric("loss", lr * (3 - step), step=step)
    (xp.dir / "model.txt").write_text("w" * 100)
    return {"acc": 1 - lr}

@pytest.mark.experiment
@pytest.mark.parametrize("name", ["a_b|c", "x&y%z$#{}~^\\"])
def test_fail(name):
    assert name == "ok", "boom"
"""
TRAIN = "test_demo.py::test_train"
SUBCOMMANDS = {
    "status": ["status"],
    "runs": ["runs"],
    "table": ["table", "--format", "json"],
    "show": ["show", "20261123"],
    "export": ["export", "-o", "OUT.csv"],
    "sessions": ["sessions"],
    "gc": ["gc", "--keep", "1"],
}


pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")


def record(pytester: pytest.Pytester, *, sessions: int = 1) -> Path:
    """A store with 6 passed and 2 failed grid points per session, written by real pytest runs."""
    pytester.makepyfile(test_demo=EXPERIMENTS)
    store = pytester.path / "store"
    for _ in range(sessions):
        pytester.runpytest(f"--xp-store={store}", "-p", "no:cacheprovider").assert_outcomes(passed=6, failed=2)
    return store


@pytest.fixture
def store(pytester: pytest.Pytester, xp_backend: Backend) -> Path | str:
    """A store written by :func:`record`, on each backend in turn (a URL for PostgreSQL)."""
    pytester.makepyfile(test_demo=EXPERIMENTS)
    location = xp_backend.location  # run folders of a PostgreSQL store: under PYTEST_XP_ARTIFACTS
    pytester.runpytest(f"--xp-store={location}", "-p", "no:cacheprovider").assert_outcomes(passed=6, failed=2)
    return location if xp_backend.kind == "postgresql" else Path(location)


@pytest.fixture
def sqlite_store(pytester: pytest.Pytester) -> Path:
    """A store written by :func:`record` in a folder (for what concerns paths only)."""
    return record(pytester)


def ok(capsys: pytest.CaptureFixture[str], *args: str | Path) -> str:
    code, out, err = cli(capsys, *args)
    assert (code, err) == (0, ""), err
    return out


def json_runs(capsys: pytest.CaptureFixture[str], store: Path, *args: str) -> list[dict[str, object]]:
    rows = json.loads(ok(capsys, "runs", "--store", store, "--format", "json", *args))
    assert isinstance(rows, list)
    return rows


def run_ids(store: Path | str, **filters: object) -> list[str]:
    with open_store(store) as opened:
        return [run.run_id for run in opened.runs(history=True, **filters)]  # type: ignore[arg-type]


# -- status and sessions ----------------------------------------------------------------


def test_status_counts_latest_runs_per_experiment_and_store_size(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    store = record(pytester, sessions=2)
    lines = ok(capsys, "status", "--store", store).splitlines()
    assert lines[0] == f"store {store}"
    assert lines[1].startswith("16 runs in 2 sessions, latest of 8 grid points below; ")
    assert "KiB on disk (database " in lines[1]
    assert "run folders" in lines[1]
    header, fail, train = lines[3].split(), lines[4].split(), lines[5].split()
    assert header[:4] == ["experiment", "grid", "points", "passed"]
    assert fail[:4] == ["test_demo.py::test_fail", "2", "0", "2"]
    assert train[:4] == ["test_demo.py::test_train", "6", "6", "0"]
    last = datetime.strptime(" ".join(train[-2:]), "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    assert abs((datetime.now(timezone.utc) - last).total_seconds()) < 120


def test_store_is_found_as_pytest_finds_it_and_store_goes_before_or_after(
    sqlite_store: Path, pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = sqlite_store
    assert ok(capsys, "--store", store, "status").startswith(f"store {store}\n")
    assert ok(capsys, "--store", "missing", "status", "--store", store).startswith(f"store {store}\n")
    monkeypatch.setenv("PYTEST_XP_STORE", str(store))
    assert ok(capsys, "status").startswith(f"store {store}\n")
    monkeypatch.delenv("PYTEST_XP_STORE")
    pytester.makeini(f"[pytest]\nxp_store = {store.name}\n")
    assert ok(capsys, "status").startswith(f"store {store}\n")


def test_sessions_one_line_each_with_counts_duration_and_git_commit(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    pytester.makepyfile(test_demo=EXPERIMENTS)
    git = ["git", "-c", "user.name=Tester", "-c", "user.email=tester@example.com"]
    for args in (["init", "-q"], ["add", "test_demo.py"], ["commit", "-q", "-m", "first"]):
        subprocess.run([*git, *args], cwd=pytester.path, check=True, capture_output=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], cwd=pytester.path, capture_output=True, text=True).stdout
    store = record(pytester, sessions=2)
    lines = ok(capsys, "sessions", "--store", store).splitlines()
    assert lines[0].split() == ["started", "(UTC)", "took", "runs", "by", "status", "exit", "git", "session"]
    assert len(lines) == 3
    with Store.open(store) as opened:
        session_ids = [session.session_id for session in opened.sessions()]
    for line, session_id in zip(lines[1:], session_ids, strict=True):
        assert "  8  6 passed, 2 failed  " in line
        assert f"  1  {commit[:7]}  {session_id}" in line
        assert line.split()[3] == "s"  # "0.0123 s"
        datetime.strptime(line[:19], "%Y-%m-%d %H:%M:%S")
    shown = ok(capsys, "show", "--store", store, f"{TRAIN}[lr=0.1-seed=0]").splitlines()
    assert any(line.split()[:2] == ["git", commit[:10]] for line in shown)


# -- runs: formats ----------------------------------------------------------------------


def test_runs_json_is_a_list_of_runs_with_nulls_and_utc_timestamps(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = json_runs(capsys, store)
    frame = load(store)
    assert [row["run_id"] for row in rows] == list(frame["run_id"])
    assert list(rows[0]) == list(frame.columns)
    train = next(row for row in rows if row["node_id"] == f"{TRAIN}[lr=0.01-seed=1]")
    assert train["params.lr"] == 0.01
    assert train["params.seed"] == 1
    assert isinstance(train["params.seed"], int)
    assert (train["metrics.acc"], train["metrics.loss"], train["error"]) == (0.99, 0.01, None)
    started = datetime.fromisoformat(str(train["started_at"]))
    assert started.utcoffset() is not None
    assert started.utcoffset().total_seconds() == 0
    assert started.timestamp() == pytest.approx(
        frame.set_index("run_id").loc[train["run_id"], "started_at"].timestamp(), abs=2e-6
    )
    failed = [row for row in rows if row["status"] == "failed"]
    assert len(failed) == 2
    assert all(row["metrics.acc"] is None and row["params.lr"] is None for row in failed)
    assert all(str(row["error"]).startswith("AssertionError: boom") for row in failed)


def test_runs_csv_has_every_column_and_one_row_per_grid_point(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = ok(capsys, "runs", "--store", store, "--format", "csv")
    reader = csv.DictReader(io.StringIO(out))
    rows = list(reader)
    assert reader.fieldnames == list(load(store).columns)
    assert len(rows) == 8
    by_node = {row["node_id"]: row for row in rows}
    train = by_node[f"{TRAIN}[lr=0.1-seed=0]"]
    assert (train["status"], train["params.lr"], train["params.seed"], train["metrics.acc"]) == (
        "passed",
        "0.1",
        "0",
        "0.9",
    )
    assert train["error"] == ""
    assert train["params.name"] == ""
    assert datetime.fromisoformat(train["started_at"]).utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert by_node["test_demo.py::test_fail[a_b|c]"]["params.name"] == "a_b|c"


def test_runs_markdown_escapes_pipes(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ok(capsys, "runs", "--store", store, "--format", "markdown").splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[:4] == ["node_id", "status", "metrics.loss", "metrics.acc"]  # params.lr: in every node id
    assert lines[1].startswith("| --- | --- | ---: |")  # numbers right-aligned
    assert len(lines) == 2 + 8
    failing = next(line for line in lines if "a_b" in line)
    assert "test_demo.py::test_fail[a_b\\|c] | failed |" in failing
    # Every row has as many unescaped separators as the header.
    for line in lines:
        assert line.replace("\\|", "").count("|") == len(header) + 1


def test_runs_latex_is_an_escaped_tabular(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = ok(capsys, "runs", "--store", store, "--format", "latex", "--columns", "node_id,params.name,metrics.acc")
    lines = out.splitlines()
    assert lines[0] == "\\begin{tabular}{llr}"
    assert lines[2] == "node\\_id & params.name & metrics.acc \\\\"
    assert lines[-1] == "\\end{tabular}"
    assert "test\\_demo.py::test\\_train[lr=0.1-seed=0] &  & 0.9 \\\\" in lines
    # The value x&y%z$#{}~^\ (the node id shows its backslash doubled).
    weird = r"x\&y\%z\$\#\{\}\textasciitilde{}\textasciicircum{}\textbackslash{}"
    row = next(line for line in lines if line.startswith(r"test\_demo.py::test\_fail[x"))
    assert row == rf"test\_demo.py::test\_fail[{weird}\textbackslash{{}}] & {weird} &  \\"
    assert len([line for line in lines if line.endswith("\\\\")]) == 1 + 8


def test_runs_text_fits_the_terminal(pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]) -> None:
    pytester.makepyfile(
        **{
            "experiments/vision/test_a_rather_long_module_name": """
            import pytest

            @pytest.mark.grid(dataset=["imagenet-subset-with-a-long-name-" + str(i) for i in range(3)], lr=[0.1])
            def test_classifier_with_long_name(dataset, lr):
                return {"accuracy": 0.5, "top5_accuracy": 0.9, "validation_loss": 1.25, "train_loss": 1.0}
            """
        }
    )
    store = pytester.path / "store"
    pytester.runpytest(f"--xp-store={store}", "-p", "no:cacheprovider").assert_outcomes(passed=3)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLUMNS", "300")
        wide = ok(capsys, "runs", "--store", store).splitlines()
    assert "not shown" not in wide[-1]  # on a wide terminal nothing is left out
    assert wide[2].startswith(
        "test_classifier_with_long_name[dataset=imagenet-subset-with-a-long-name-0-lr=0.1]  passed"
    )
    for width in (80, 50):
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("COLUMNS", str(width))
            lines = ok(capsys, "runs", "--store", store).splitlines()
        assert all(len(line) <= width for line in lines), lines
        assert lines[0].startswith("node ids below start wi")
        assert lines[0].endswith("long_module_name.py::")
        assert lines[1].split()[:2] == ["node_id", "status"]
        rows = lines[2:5]
        assert [row.split()[1] for row in rows] == ["passed"] * 3
        # Shortened in the middle: the start and the distinguishing end stay.
        assert all(row.startswith("test_class") and "..." in row for row in rows)
        assert [row.split()[0][-10:] for row in rows] == [f"-{i}-lr=0.1]" for i in range(3)]
        assert "more columns not shown" in " ".join(lines[5:])


# -- runs: selection --------------------------------------------------------------------


def test_where_with_dotted_names_columns_and_sort(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = json_runs(capsys, store, "--where", "params.lr > 0.005 and metrics.acc > 0.95")
    assert sorted(str(row["node_id"]) for row in rows) == [f"{TRAIN}[lr=0.01-seed=0]", f"{TRAIN}[lr=0.01-seed=1]"]
    out = ok(
        capsys,
        "runs",
        "--store",
        store,
        "--format",
        "csv",
        "--columns",
        "node_id,metrics.*",
        "--sort=-metrics.acc,node_id",
    )
    lines = out.splitlines()
    assert lines[0] == "node_id,metrics.loss,metrics.acc"
    assert lines[1:3] == [f"{TRAIN}[lr=0.001-seed=0],0.001,0.999", f"{TRAIN}[lr=0.001-seed=1],0.001,0.999"]
    assert lines[-2].startswith("test_demo.py::test_fail")  # missing values last
    strings = json_runs(
        capsys, store, "--where", "status == 'failed' and node_id.str.contains('params.lr', regex=False) == False"
    )
    assert len(strings) == 2  # a dotted name inside a string literal is left alone


def test_filters_history_and_alias(pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]) -> None:
    store = record(pytester, sessions=2)
    assert len(json_runs(capsys, store)) == 8
    assert len(json_runs(capsys, store, "--history")) == 16
    assert {row["experiment"] for row in json_runs(capsys, store, "--experiment", "test_fail")} == {"test_fail"}
    both = json_runs(capsys, store, "--experiment", "test_fail", "--experiment", f"{TRAIN}")
    assert len(both) == 8
    assert {row["status"] for row in json_runs(capsys, store, "--status", "failed", "--history")} == {"failed"}
    assert len(json_runs(capsys, store, "--status", "failed", "--history")) == 4
    table = json.loads(ok(capsys, "table", "--store", store, "--format", "json", "--status", "passed"))
    assert len(table) == 6


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--where", "params.lr >"], "bad --where 'params.lr >': SyntaxError"),
        (["--where", "metrics.accc > 1"], "unknown column 'metrics.accc'; did you mean metrics.acc"),
        (["--where", "nothing > 1"], "bad --where 'nothing > 1'"),
        (["--columns", "node_id,metrics.ac"], "unknown column 'metrics.ac'; did you mean metrics.acc"),
        (["--sort", "params.l"], "unknown column 'params.l'; did you mean params.lr"),
        (["--experiment", "test_trian"], "no experiment 'test_trian' in the store; did you mean test_train"),
    ],
)
def test_bad_selection_is_one_clear_line(
    store: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    assert expected in user_error(capsys, "runs", "--store", store, *args)


def test_bad_format_is_one_clear_line(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = user_error(capsys, "runs", "--store", store, "--format", "xml")
    assert "unknown format 'xml'; choose one of text, markdown, csv, json, latex" in line
    assert "did you mean markdown?" in user_error(capsys, "runs", "--store", store, "--format", "markdwn")


# -- show -------------------------------------------------------------------------------


def test_show_by_id_prefix_and_node_id(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with open_store(store) as opened:
        run = next(run for run in opened.runs() if run.node_id == f"{TRAIN}[lr=0.1-seed=1]")
    full = ok(capsys, "show", "--store", store, run.run_id)
    assert full.startswith(f"run {run.run_id}  passed\n")
    assert ok(capsys, "show", "--store", store, run.run_id[:-4]) == full
    assert ok(capsys, "show", "--store", store, run.node_id) == full
    assert ok(capsys, "show", "--store", store, "test_train[lr=0.1-seed=1]") == full  # as the text table shows it
    lines = full.splitlines()
    section = {name: lines.index(name) for name in ("parameters", "metrics", "metadata", "artefacts")}
    assert lines[section["parameters"] + 1 : section["parameters"] + 3] == ["  lr    0.1", "  seed  1"]
    metrics = [line.split() for line in lines[section["metrics"] + 1 : section["metadata"] - 1]]
    assert metrics == [
        ["name", "points", "last", "min", "max"],
        ["loss", "3", "0.1", "0.1", "0.3"],
        ["acc", "1", "0.9", "0.9", "0.9"],
    ]
    metadata = "\n".join(lines[section["metadata"] : section["artefacts"]])
    assert "  timing.call " in metadata
    assert "  code sha256 " in metadata
    assert "  command      pytest " in metadata
    assert "--xp-store=" in metadata  # a URL is quoted (its ?)
    assert "installed distributions recorded" in metadata
    assert "CPython" in metadata or "PyPy" in metadata
    assert lines[section["artefacts"] + 1].split() == ["model.txt", "100", "B"]
    assert "error" not in lines


def test_show_failed_run_has_error_and_traceback(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = ok(capsys, "show", "--store", store, "test_demo.py::test_fail[a_b|c]")
    lines = out.splitlines()
    assert lines[0].endswith("  failed")
    error = lines.index("error")
    assert lines[error + 1] == "  AssertionError: boom"
    traceback = lines.index("traceback")
    assert any(line.startswith('  >       assert name == "ok"') for line in lines[traceback:])
    assert lines[lines.index("artefacts") + 1] == "  (none)"
    assert "(not created: nothing written)" in out


def test_show_ambiguous_and_unknown_runs(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = run_ids(store)[0][:8]
    ambiguous = user_error(capsys, "show", "--store", store, prefix)
    assert f"'{prefix}' is ambiguous: it matches " in ambiguous
    assert "and 3 more" in ambiguous
    unknown = user_error(capsys, "show", "--store", store, "test_demo.py::test_train[lr=0.1-seed=9]")
    assert "no run with id or node id" in unknown
    assert f"did you mean {TRAIN}[lr=0.1-seed=" in unknown


# -- export -----------------------------------------------------------------------------


def test_export_csv_and_json_hold_every_column(
    pytester: pytest.Pytester, store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = pytester.path / "out.json"
    assert ok(capsys, "export", "--store", store, "-o", target, "--status", "passed") == (
        f"exported 6 runs (16 columns) to {target}\n"
    )
    rows = json.loads(target.read_text())
    assert len(rows) == 6
    assert set(rows[0]) == set(load(store, status="passed").columns)
    assert rows == json_runs(capsys, store, "--status", "passed")
    target = pytester.path / "out.csv"
    ok(capsys, "export", "-o", target, "--store", store, "--history", "--sort=-metrics.acc")
    table = list(csv.DictReader(io.StringIO(target.read_text())))
    assert len(table) == 8
    assert len(table[0]) == 17
    assert table[0]["metrics.acc"] == "0.999"


def test_export_parquet(pytester: pytest.Pytester, sqlite_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = sqlite_store
    # pyarrow is in the test extra: this runs, never skips.
    target = pytester.path / "out.parquet"
    ok(capsys, "export", "--store", store, "-o", target)
    frame = pd.read_parquet(target)
    assert len(frame) == 8
    assert "metrics.acc" in frame.columns
    loaded = load(store)
    assert sorted(frame["run_id"]) == sorted(loaded["run_id"])
    assert sorted(frame["metrics.acc"].dropna()) == sorted(loaded["metrics.acc"].dropna())


def test_export_errors(
    pytester: pytest.Pytester, store: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if not installed
    target = pytester.path / "out.parquet"
    assert "writing .parquet needs pyarrow, which is not installed; install pyarrow" in user_error(
        capsys, "export", "--store", store, "-o", target
    )
    assert not target.exists()
    assert "must end in .csv, .json or .parquet" in user_error(capsys, "export", "--store", store, "-o", "out.xlsx")
    assert "cannot write" in user_error(capsys, "export", "--store", store, "-o", pytester.path / "no" / "out.csv")


# -- gc ---------------------------------------------------------------------------------


def run_folders(store: Path) -> set[str]:
    return {path.name for path in (store / "runs").glob("*/*")}


def metric_point_runs(store: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(store / "experiments.sqlite")) as connection:
        return {row[0] for row in connection.execute("SELECT DISTINCT run_id FROM metric_points")}


def test_gc_keep_dry_run_then_for_real(pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]) -> None:
    store = record(pytester, sessions=3)
    history = run_ids(store)
    with Store.open(store) as opened:
        latest = [run.run_id for run in opened.runs()]
        trained = {run.run_id for run in opened.runs() if run.experiment == "test_train"}
    assert len(history) == 24
    assert len(run_folders(store)) == 18
    dry = ok(capsys, "gc", "--store", store, "--keep", "2", "--dry-run").splitlines()
    assert dry[0].startswith("would delete 8 runs of 24 and their run folders (")
    assert dry[-1] == "dry run: nothing was deleted"
    assert {line.split()[0] for line in dry[2:-1]} == set(history[:8])  # the first session's
    assert run_ids(store) == history
    assert len(run_folders(store)) == 18

    out = ok(capsys, "gc", "--store", store, "--keep", "1").splitlines()
    assert out[0].startswith("deleted 16 runs of 24 and their run folders (")
    assert sorted(run_ids(store)) == sorted(latest)
    assert run_folders(store) == trained
    assert metric_point_runs(store) <= set(latest)
    assert ok(capsys, "gc", "--store", store, "--keep", "1") == "nothing to delete among 8 runs\n"


def test_gc_by_status(pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]) -> None:
    store = record(pytester, sessions=2)
    failed = set(run_ids(store, status="failed"))
    out = ok(capsys, "gc", "--status", "failed", "--store", store)
    assert out.startswith("deleted 4 runs of 16")
    assert {line.split()[0] for line in out.splitlines()[2:]} == failed
    remaining = run_ids(store)
    assert len(remaining) == 12
    assert not failed & set(remaining)
    assert len(run_folders(store)) == 12


def test_gc_needs_a_rule(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "say what to delete: --keep N" in user_error(capsys, "gc", "--store", store)
    code, _, err = cli(capsys, "gc", "--store", store, "--keep", "0")
    assert code == 2
    assert "at least 1" in err
    assert len(run_ids(store)) == 8


def record_of(run_id: str, started_at: float, status: str, param_hash: str = "h") -> RunRecord:
    return RunRecord(
        run_id=run_id, session_id="s", node_id="m.py::t", module="m.py", experiment="t", param_hash=param_hash,
        params={}, logged_params={}, status=status, started_at=started_at, finished_at=None, duration=None,
        worker="main", host="h", pid=1, dir=Path("runs/t") / run_id, metrics={}, error_type=None,
        error_message=None, code_sha256=None,
    )  # fmt: skip


def test_gc_selection_never_takes_a_running_run() -> None:
    runs = [
        record_of("a", 1, "running"),
        record_of("b", 2, "passed"),
        record_of("c", 3, "interrupted"),
        record_of("d", 4, "passed"),
        record_of("e", 1, "passed", param_hash="other"),
    ]
    assert [run.run_id for run in runs_to_delete(runs, 1, ())] == ["b", "c"]
    assert [run.run_id for run in runs_to_delete(runs, None, ["interrupted"])] == ["c"]
    assert [run.run_id for run in runs_to_delete(runs, 3, ["interrupted"])] == ["c"]


def test_delete_runs_removes_folders_only_inside_runs(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("precious")
    with Store.open(tmp_path / "store", create=True) as store:
        for run_id, folder in (("inside", "runs/t/inside"), ("escape", "runs/../../outside"), ("root", "runs")):
            store.start_run(
                RunStart(run_id, "s", f"m.py::t[{run_id}]", "m.py", "t", run_id, {}, 1.0, "main", "h", 1, folder)
            )
        (tmp_path / "store" / "runs" / "t" / "inside").mkdir(parents=True)
        assert store.delete_runs(["inside", "escape", "root", "unknown"]) == 3
        assert store.runs(history=True) == []
    assert (outside / "keep.txt").read_text() == "precious"
    assert (tmp_path / "store" / "runs" / "t").is_dir()
    assert not (tmp_path / "store" / "runs" / "t" / "inside").exists()


# -- missing, empty and corrupt stores, for every subcommand ----------------------------


def make_store(kind: str, path: Path) -> Path:
    if kind == "empty":
        Store.open(path, create=True).close()
    elif kind == "garbage":
        path.mkdir()
        (path / "experiments.sqlite").write_bytes(b"\x00\xffnot a database at all" * 200)
    elif kind == "damaged":
        path.mkdir()
        (path / "experiments.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x13\x37" * 3000)
    return path


@pytest.mark.parametrize("kind", ["missing", "empty", "garbage", "damaged"])
@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_unusable_store_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, kind: str
) -> None:
    store = make_store(kind, tmp_path / "store")
    args = [str(tmp_path / "out.csv") if arg == "OUT.csv" else arg for arg in SUBCOMMANDS[command]]
    line = user_error(capsys, *args, "--store", store)
    expected = {
        "missing": f"no experiment store at {store}; run some experiments first",
        "empty": f"the store at {store} has no runs yet; run some experiments first",
        "garbage": "is not a pytest-experiments database; move it away or choose another --store",
        "damaged": "is not a pytest-experiments database;",
    }[kind]
    assert expected in line
    assert not (tmp_path / "out.csv").exists()


# -- help, python -m and the console script ---------------------------------------------


@pytest.mark.parametrize("command", ["status", "runs", "table", "show", "export", "sessions", "gc"])
def test_every_subcommand_has_help_with_an_example(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, _ = cli(capsys, command, "--help")
    assert code == 0
    assert "--store PATH" in out
    example = out.split("\nexample", 1)[1]
    assert "\n  pytest-experiments " in example


def test_python_m_and_console_script(sqlite_store: Path) -> None:
    store = sqlite_store
    script = Path(sys.executable).parent / "pytest-experiments"
    assert script.exists(), "install the package (pip install -e .) to get the console script"
    module = subprocess.run(
        [sys.executable, "-m", "pytest_experiments", "runs", "--store", str(store), "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert module.returncode == 0, module.stderr
    assert len(json.loads(module.stdout)) == 8
    status = subprocess.run([str(script), "--store", str(store), "status"], capture_output=True, text=True, check=False)
    assert status.returncode == 0
    assert status.stdout.startswith(f"store {store}\n")
    (store / "experiments.sqlite").write_bytes(b"garbage" * 100)
    broken = subprocess.run(
        [str(script), "sessions", "--store", str(store)], capture_output=True, text=True, check=False
    )
    assert broken.returncode == 2
    assert broken.stdout == ""
    assert broken.stderr.count("\n") == 1
    assert broken.stderr.startswith("pytest-experiments: error: ")


# -- tables -----------------------------------------------------------------------------


def test_table_helpers() -> None:
    assert shorten("abcdefghijkl", 8, middle=True) == "ab...jkl"
    assert shorten("abcdefghijkl", 8) == "abcde..."
    assert shorten("short", 8) == "short"
    assert common_prefix(["a/b.py::t[1]", "a/b.py::t[2]"]) == "a/b.py::"
    assert common_prefix(["a/b.py::t", "a/c.py::t"]) == "a/"
    assert common_prefix(["a/b.py::t"]) == "a/b.py::"
    assert latex_escape(r"a&b%c$d#e_f{g}h~i^j\k") == (
        r"a\&b\%c\$d\#e\_f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}k"
    )
    lines = text_table([Column("a"), Column("b", right=True), Column("c")], [["x" * 10, "1", "y" * 30]], width=20)
    assert lines[:2] == ["a           b", "xxxxxxxxxx  1"]
    assert "1 more columns not shown: c" in " ".join(lines[2:])
    assert all(len(line) <= 20 for line in lines)
