"""What the command line writes: NaN and infinities in ``show``, ``runs`` and ``export``, and
output cut short by a closed pipe, on stores written by real pytest sessions."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import cli
from processes import inner_env

from pytest_experiments import load
from pytest_experiments.comparison import Entry, baseline_text
from pytest_experiments.values import param_hash

pytestmark = pytest.mark.usefixtures("clean_env")

HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None
if HAS_PYARROW:
    # pandas registers its pyarrow extension types on its first parquet write, in a module it
    # imports then. Done inside a test, pytester drops that module at teardown, and the next
    # parquet write in this process registers them again: pyarrow refuses (ArrowKeyError).
    # Done once here, at collection, the module stays.
    pd.DataFrame({"x": [1]}).to_parquet(io.BytesIO())

NON_FINITE = """
import math

import pytest


@pytest.mark.grid(x=[1, 2])
def test_odd(xp, x):
    for step, value in enumerate([1.0, math.nan, 3.0, math.inf, -2.0]):
        xp.log_metric("curve", value, step=step)
    return {"acc": math.nan if x == 1 else 0.5, "big": math.inf, "small": -math.inf, "fine": 0.25}
"""


@pytest.fixture
def store(pytester: pytest.Pytester) -> Path:
    """A store whose runs hold NaN, +inf and -inf metrics and series points."""
    pytester.makepyfile(test_odd=NON_FINITE)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
    return pytester.path / ".experiments"


def test_show_a_run_with_nan_and_infinite_metrics_and_points(
    store: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    code, out, err = cli(capsys, "show", "test_odd.py::test_odd[x=1]")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    start = lines.index("metrics")
    rows = {line.split()[0]: line.split()[1:] for line in lines[start + 2 : lines.index("", start)]}
    assert rows == {
        # points, last, min, max: a NaN point counts as a point, never as a min or max
        "curve": ["5", "-2", "-2", "inf"],
        "acc": ["1", "nan", "nan", "nan"],
        "big": ["1", "inf", "inf", "inf"],
        "small": ["1", "-inf", "-inf", "-inf"],
        "fine": ["1", "0.25", "0.25", "0.25"],
    }


def test_csv_keeps_infinities_and_leaves_nan_empty(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "runs", "--format", "csv")
    assert code == 0
    rows = {row["node_id"]: row for row in csv.DictReader(io.StringIO(out))}
    one, two = rows["test_odd.py::test_odd[x=1]"], rows["test_odd.py::test_odd[x=2]"]
    assert (one["metrics.big"], one["metrics.small"], one["metrics.acc"]) == ("inf", "-inf", "")
    assert two["metrics.acc"] == "0.5"
    # pandas reads the file back as load() holds it.
    frame = pd.read_csv(io.StringIO(out)).set_index("node_id")
    loaded = load(store).set_index("node_id")
    for column in ("metrics.acc", "metrics.big", "metrics.small", "metrics.fine"):
        pd.testing.assert_series_equal(frame[column], loaded[column], check_names=False)


def test_json_holds_infinities_as_strings_and_nan_as_null(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "runs", "--format", "json")
    assert code == 0
    runs = {run["node_id"]: run for run in json.loads(out, parse_constant=pytest.fail)}  # strict JSON
    one = runs["test_odd.py::test_odd[x=1]"]
    assert (one["metrics.big"], one["metrics.small"], one["metrics.acc"]) == ("Infinity", "-Infinity", None)
    assert float(one["metrics.big"]) == math.inf


def test_json_of_a_parameter_list_holding_nan(pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]) -> None:
    pytester.makepyfile(
        test_list="import pytest\n\n@pytest.mark.experiment\n"
        "@pytest.mark.parametrize('bounds', [[0.5, float('nan'), float('-inf')]], ids=['b'])\n"
        "def test_list(bounds):\n    return 1.0\n"
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    code, out, err = cli(capsys, "runs", "--format", "json")
    assert (code, err) == (0, "")
    [run] = json.loads(out, parse_constant=pytest.fail)
    assert run["params.bounds"] == [0.5, None, "-Infinity"]


def test_text_shows_infinities(
    store: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = cli(capsys, "runs", "--columns", "node_id,metrics.acc,metrics.big,metrics.small")
    assert code == 0
    rows = [line.split() for line in out.splitlines()[-2:]]
    assert rows == [["test_odd[x=1]", "inf", "-inf"], ["test_odd[x=2]", "0.5", "inf", "-inf"]]  # NaN: empty


def test_export_csv_json_and_parquet_keep_infinities(
    store: Path, pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("out.csv", "out.json"):
        code, _, err = cli(capsys, "export", "-o", name)
        assert (code, err) == (0, "")
    exported = pd.read_csv(pytester.path / "out.csv").set_index("node_id")
    assert exported.loc["test_odd.py::test_odd[x=1]", "metrics.big"] == math.inf
    assert exported.loc["test_odd.py::test_odd[x=1]", "metrics.small"] == -math.inf
    records = json.loads((pytester.path / "out.json").read_text(encoding="utf-8"), parse_constant=pytest.fail)
    assert {record["metrics.big"] for record in records} == {"Infinity"}
    if not HAS_PYARROW:
        pytest.skip("writing .parquet needs pyarrow")
    assert cli(capsys, "export", "-o", "out.parquet")[0] == 0
    parquet = pd.read_parquet(pytester.path / "out.parquet").set_index("node_id")
    assert parquet.loc["test_odd.py::test_odd[x=1]", "metrics.small"] == -math.inf
    assert math.isnan(parquet.loc["test_odd.py::test_odd[x=1]", "metrics.acc"])


# -- closed pipes -------------------------------------------------------------------------

SUBCOMMANDS = [
    ["status"],
    ["runs"],
    ["runs", "--format", "json"],
    ["show", "test_odd.py::test_odd[x=2]"],
    ["sessions"],
    ["gc", "--keep", "1", "--dry-run"],
    ["compare", "baseline.json", "--rule", "fine higher 0.01"],
    ["compare", "baseline.json", "--rule", "fine lower 0.01"],
    ["baseline", "save", "again.json"],
    ["export", "-o", "out.csv"],
]


@pytest.mark.parametrize("args", SUBCOMMANDS, ids=lambda args: "-".join(args).strip("-"))
def test_closed_pipe_exits_141_quietly(store: Path, pytester: pytest.Pytester, args: list[str]) -> None:
    assert cli_run(pytester, "baseline", "save", "baseline.json").returncode == 0
    if args[0] == "compare":  # with the pipe open, 'fine' (0.1 -> 0.25) regressed for one rule, improved for the other
        baseline = pytester.path / "baseline.json"
        baseline.write_text(baseline.read_text(encoding="utf-8").replace('"fine": 0.25', '"fine": 0.1'), "utf-8")
        assert cli_run(pytester, *args).returncode == (1 if "lower" in args[-1] else 0)
    read, write = os.pipe()
    os.close(read)  # the reader is gone before a single byte is written: every write fails with EPIPE
    try:
        done = cli_run(pytester, *args, stdout=write)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, "")


def cli_run(pytester: pytest.Pytester, *args: str, stdout: int = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    """``python -m pytest_experiments *args`` in ``pytester.path``, bounded."""
    return subprocess.run(
        [sys.executable, "-m", "pytest_experiments", *args], cwd=pytester.path, env=inner_env(), stdout=stdout,
        stderr=subprocess.PIPE, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_closed_pipe_while_output_is_read_by_head(store: Path, pytester: pytest.Pytester) -> None:
    """A reader that takes one line and goes, as ``| head -1`` does, while the output (3,000
    baseline entries not run) is far more than the pipe holds."""
    entries = [Entry(f"test_gone.py::test_gone[i={i}]", "test_gone.py", "test_gone", param_hash({"i": i}), {"i": i},
                     {"fine": 0.25}) for i in range(3000)]  # fmt: skip
    (pytester.path / "baseline.json").write_text(baseline_text(entries), encoding="utf-8")
    command = [sys.executable, "-m", "pytest_experiments", "compare", "baseline.json", "--rule", "fine higher 0"]
    assert cli_run(pytester, *command[3:]).returncode == 0  # read to the end: nothing regressed
    proc = subprocess.Popen(
        command, cwd=pytester.path, env=inner_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("comparing ")
    proc.stdout.close()
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert (proc.returncode, err) == (141, "")  # not 1: nothing regressed
