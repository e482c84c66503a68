"""``--xp-baseline`` and friends in real pytest sessions (pytester, real SQLite stores).

The experiments read their metric values from a ``data.json`` next to them, so a test can
change what an experiment measures between two sessions without rewriting its module. Each
scenario saves a baseline with ``--xp-save-baseline``, changes the data, and compares.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from backends import Backend
from processes import inner_env, store_of

from pytest_experiments import load, open_store

HAS_SCIPY = importlib.util.find_spec("scipy") is not None
if HAS_SCIPY:  # imported once here: in-process sessions cannot import scipy's C modules a second time
    import scipy.stats  # noqa: F401
needs_scipy = pytest.mark.skipif(not HAS_SCIPY, reason="comparing over seeds needs scipy")

pytestmark = pytest.mark.usefixtures("clean_env")

EXPERIMENTS = """
import json
from pathlib import Path

import pytest

DATA = json.loads(Path(__file__).with_name("data.json").read_text())


@pytest.mark.grid(x=DATA["xs"])
def test_grid(x):
    return {"acc": DATA["acc"][str(x)], "loss": 1.0 / x, "seconds": DATA["seconds"] * x}


@pytest.mark.parametrize("config", [{"width": DATA["width"]}], ids=["small"])
@pytest.mark.experiment
def test_net(config):
    return {"acc": 0.5 + config["width"] / 1000}


def test_plain():
    pass
"""

RULES_INI = """
[pytest]
xp_compare =
    acc higher 0.01
    loss lower 5%
"""

BEFORE = {"xs": [1, 2, 3], "acc": {"1": 0.91, "2": 0.92, "3": 0.93}, "seconds": 10.0, "width": 64}
# x=1 a little worse (within tolerance), x=2 worse beyond it, x=3 better, x=4 a new grid point,
# test_net[small] keeps its id with other parameters; seconds (no rule) doubles.
AFTER = {"xs": [1, 2, 3, 4], "acc": {"1": 0.905, "2": 0.87, "3": 0.98, "4": 0.1}, "seconds": 20.0, "width": 128}


def setup(pytester: pytest.Pytester, source: str, ini: str = RULES_INI, **data: Any) -> None:
    pytester.makepyfile(test_exp=source)
    pytester.makefile(".ini", pytest=ini)
    set_data(pytester, **data)


def set_data(pytester: pytest.Pytester, **data: Any) -> None:
    (pytester.path / "data.json").write_text(json.dumps(data), encoding="utf-8")


def report_rows(path: Path) -> set[tuple[str, ...]]:
    """(run, metric, baseline, new, delta, verdict) of every row of a markdown report."""
    rows = [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("| ")]
    return {tuple(cell.strip() for cell in row.strip("|").split(" | ")) for row in rows[2:]}


def one_line_usage_error(result: pytest.RunResult) -> str:
    """The usage error of a session stopped at start: exit code 4, one line on stderr, no traceback."""
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.strip()]
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output
    assert "INTERNALERROR" not in output
    assert len(errors) == 1, errors
    assert errors[0].startswith("ERROR: xp: ")
    return errors[0]


# -- saving a baseline --------------------------------------------------------------------


def test_save_baseline_holds_the_passed_runs_of_that_session_only(
    pytester: pytest.Pytester, xp_backend: Backend
) -> None:
    setup(pytester, EXPERIMENTS, **BEFORE)
    pytester.runpytest().assert_outcomes(passed=5)  # an earlier session: test_net, x=1..3, plain
    set_data(pytester, **{**BEFORE, "acc": {"1": 0.91, "2": 0.92}})  # x=3 now fails (KeyError)
    result = pytester.runpytest("-k", "test_grid or test_plain", "--xp-save-baseline=base/line.json")
    result.assert_outcomes(passed=3, failed=1, deselected=1)
    path = pytester.path / "base" / "line.json"
    assert f"xp: baseline written to {path}: 0 updated, 2 added, 0 kept (2 entries)" in result.stdout.lines
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    assert text == json.dumps(data, sort_keys=True, indent=2) + "\n"  # sorted keys, diff-friendly
    with open_store(store_of(pytester)) as store:
        session_id = store.sessions()[-1].session_id
        runs = {run.node_id: run for run in store.runs(session_id=session_id)}
    # Only this session's passed runs: not x=3 (failed), not test_net (an earlier session), not test_plain.
    assert data == {
        "pytest_experiments_baseline": 1,
        "runs": {
            f"test_exp.py::test_grid[x={x}]": {
                "experiment": "test_grid",
                "metrics": {"acc": acc, "loss": 1.0 / x, "seconds": 10.0 * x},
                "module": "test_exp.py",
                "param_hash": runs[f"test_exp.py::test_grid[x={x}]"].param_hash,
                "params": {"x": x},
            }
            for x, acc in ((1, 0.91), (2, 0.92))
        },
    }
    assert runs["test_exp.py::test_grid[x=3]"].status == "failed"


def test_save_baseline_is_byte_identical_for_the_same_results(pytester: pytest.Pytester) -> None:
    setup(pytester, EXPERIMENTS, **BEFORE)
    pytester.runpytest("--xp-save-baseline=one.json").assert_outcomes(passed=5)
    pytester.runpytest("-n", "2", "--xp-save-baseline=two.json").assert_outcomes(passed=5)
    one, two = (pytester.path / "one.json").read_bytes(), (pytester.path / "two.json").read_bytes()
    assert one == two  # other run ids, times, workers and order: the same file
    assert len(json.loads(one)["runs"]) == 4


def test_save_baseline_merges_after_k_and_after_resume(pytester: pytest.Pytester) -> None:
    setup(pytester, EXPERIMENTS, **BEFORE)
    pytester.runpytest("--xp-save-baseline=baseline.json").assert_outcomes(passed=5)
    path = pytester.path / "baseline.json"
    before = json.loads(path.read_text(encoding="utf-8"))["runs"]
    set_data(pytester, **{**BEFORE, "width": 128, "xs": [1, 2, 3, 4], "acc": {**BEFORE["acc"], "4": 0.94}})

    # -k runs one experiment: its entry is updated, the three grid points it did not run are kept.
    result = pytester.runpytest("-k", "test_net", "--xp-save-baseline=baseline.json")
    result.assert_outcomes(passed=1, deselected=5)
    assert f"xp: baseline written to {path}: 1 updated, 0 added, 3 kept (4 entries)" in result.stdout.lines
    after_k = json.loads(path.read_text(encoding="utf-8"))["runs"]
    assert after_k["test_exp.py::test_net[small]"]["params"] == {"config": {"width": 128}}
    assert {node: after_k[node] for node in before if "test_grid" in node} == {
        node: entry for node, entry in before.items() if "test_grid" in node
    }

    # Resume runs only the grid point never run (x=4): it is added, everything else is kept.
    result = pytester.runpytest("--xp-resume", "--xp-save-baseline=baseline.json")
    result.assert_outcomes(passed=2)  # x=4 and test_plain (not an experiment)
    assert f"xp: baseline written to {path}: 0 updated, 1 added, 4 kept (5 entries)" in result.stdout.lines
    after_resume = json.loads(path.read_text(encoding="utf-8"))["runs"]
    assert sorted(after_resume) == sorted([*after_k, "test_exp.py::test_grid[x=4]"])
    assert after_resume["test_exp.py::test_grid[x=4]"]["metrics"]["acc"] == 0.94
    assert not list(pytester.path.glob("*.partial"))


def test_save_baseline_with_no_passed_run_leaves_the_file_alone(pytester: pytest.Pytester) -> None:
    setup(pytester, EXPERIMENTS, **BEFORE)
    pytester.runpytest("--xp-save-baseline=baseline.json").assert_outcomes(passed=5)
    text = (pytester.path / "baseline.json").read_text(encoding="utf-8")
    result = pytester.runpytest("-k", "test_plain", "--xp-save-baseline=baseline.json")
    result.assert_outcomes(passed=1, deselected=4)
    path = pytester.path / "baseline.json"
    assert f"xp: baseline {path} not written: no run passed in this session" in result.stdout.lines
    assert path.read_text(encoding="utf-8") == text


@pytest.mark.parametrize("args", [[], ["-n", "2"]], ids=["no-xdist", "xdist"])
def test_comparison_lists_baseline_entries_not_run(pytester: pytest.Pytester, args: list[str]) -> None:
    setup(pytester, EXPERIMENTS, **BEFORE)
    pytester.runpytest("--xp-save-baseline=baseline.json").assert_outcomes(passed=5)
    result = pytester.runpytest("-k", "test_net", "--xp-baseline=baseline.json", "--xp-report-md=r.md", *args)
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK  # not running something is no regression
    lines = result.stdout.lines
    start = lines.index("xp: 3 baseline entries not run in this session")
    assert lines[start + 1 : start + 4] == [f"  not run: test_exp.py::test_grid[x={x}]" for x in (1, 2, 3)]
    rows = report_rows(pytester.path / "r.md")
    assert {row for row in rows if row[5] == "not run"} == {
        (f"test_exp.py::test_grid[x={x}]", "", "-", "-", "", "not run") for x in (1, 2, 3)
    }
    assert "\n1 ok, 3 not run\n" in (pytester.path / "r.md").read_text(encoding="utf-8")
    assert "xp: rule 'loss lower 5%' judged nothing: no run reports 'loss'" in lines  # test_net has no loss


# -- comparing while the session runs -----------------------------------------------------


def test_regression_fails_exactly_that_test_under_xdist(pytester: pytest.Pytester, xp_backend: Backend) -> None:
    setup(pytester, EXPERIMENTS, **BEFORE)
    pytester.runpytest("--xp-save-baseline=baseline.json").assert_outcomes(passed=5)
    set_data(pytester, **AFTER)

    result = pytester.runpytest(
        "-n", "2", "--xp-baseline=baseline.json", "--xp-report-md=report.md", "--xp-save-baseline=next.json"
    )
    result.assert_outcomes(passed=5, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    output = result.stdout.str()
    failed = [line for line in result.stdout.lines if line.startswith("FAILED ")]
    assert len(failed) == 1
    assert failed[0].startswith("FAILED test_exp.py::test_grid[x=2] - Failed: xp: worse than the baseline: acc")
    message = "acc regressed: baseline 0.92, now 0.87, delta -0.05, tolerance 0.01 (rule: acc higher 0.01)"
    assert f"xp: worse than the baseline: {message}" in result.stdout.lines  # the test's failure message
    # The summary: regressions, improvements, then the counts and the new runs.
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "xp: regressions against baseline.json" in line)
    assert lines[start + 1] == f"test_exp.py::test_grid[x=2]: {message}"
    assert "xp: improvements against baseline.json" in lines[start + 2]
    assert lines[start + 3] == (
        "test_exp.py::test_grid[x=3]: acc improved: baseline 0.93, now 0.98, delta +0.05, tolerance 0.01 "
        "(rule: acc higher 0.01)"
    )
    assert lines[start + 4].startswith(f"xp: compared with {pytester.path / 'baseline.json'}: 1 regressed, 1 improved")
    assert lines[start + 4].endswith("2 new (not in the baseline)")
    assert lines[start + 5 : start + 7] == ["  new: test_exp.py::test_grid[x=4]", "  new: test_exp.py::test_net[small]"]
    assert f"xp: comparison report written to {pytester.path / 'report.md'}" in output
    assert "x=1]: acc" not in output  # within tolerance: not listed

    assert report_rows(pytester.path / "report.md") == {
        ("test_exp.py::test_grid[x=2]", "acc", "0.92", "0.87", "-0.05", "❌ regressed"),
        ("test_exp.py::test_grid[x=3]", "acc", "0.93", "0.98", "+0.05", "✅ improved"),
        ("test_exp.py::test_grid[x=4]", "", "-", "-", "", "🆕 new"),
        ("test_exp.py::test_net[small]", "", "-", "-", "", "🆕 new"),
        ("test_exp.py::test_grid[x=1]", "acc", "0.91", "0.905", "-0.005", "ok"),
        ("test_exp.py::test_grid[x=1]", "loss", "1", "1", "+0", "ok"),
        ("test_exp.py::test_grid[x=2]", "loss", "0.5", "0.5", "+0", "ok"),
        ("test_exp.py::test_grid[x=3]", "loss", "0.333333", "0.333333", "+0", "ok"),
        ("test_exp.py::test_grid[x=1]", "seconds", "10", "20", "+10", "shown"),
        ("test_exp.py::test_grid[x=2]", "seconds", "20", "40", "+20", "shown"),
        ("test_exp.py::test_grid[x=3]", "seconds", "30", "60", "+30", "shown"),
    }
    report = (pytester.path / "report.md").read_text(encoding="utf-8")
    assert report.splitlines()[:2] == [
        "| run | metric | baseline | new | delta | verdict |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    assert report.endswith("\n1 regressed, 1 improved, 4 ok, 3 shown, 2 new\n")

    # The regressed run is recorded as failed, its metrics kept; the others passed.
    frame = load(store_of(pytester), history=True)
    latest = frame[frame["session_id"] == frame["session_id"].iloc[-1]].set_index("node_id")
    assert latest.loc["test_exp.py::test_grid[x=2]", "status"] == "failed"
    assert latest.loc["test_exp.py::test_grid[x=2]", "metrics.acc"] == pytest.approx(0.87)
    assert latest.loc["test_exp.py::test_grid[x=2]", "metrics.seconds"] == pytest.approx(40.0)
    assert "acc regressed: baseline 0.92, now 0.87" in latest.loc["test_exp.py::test_grid[x=2]", "error"]
    assert set(latest["status"]) == {"passed", "failed"}
    assert (latest["status"] == "passed").sum() == 4  # x=1, x=3, x=4, test_net

    # A baseline saved in the same session leaves the regressed run out.
    saved = json.loads((pytester.path / "next.json").read_text(encoding="utf-8"))["runs"]
    assert sorted(saved) == [
        "test_exp.py::test_grid[x=1]",
        "test_exp.py::test_grid[x=3]",
        "test_exp.py::test_grid[x=4]",
        "test_exp.py::test_net[small]",
    ]
    assert saved["test_exp.py::test_net[small]"]["params"] == {"config": {"width": 128}}


def test_no_change_passes_and_says_so(pytester: pytest.Pytester, xp_backend: Backend) -> None:
    setup(pytester, EXPERIMENTS, **BEFORE)
    pytester.runpytest("--xp-save-baseline=baseline.json").assert_outcomes(passed=5)
    result = pytester.runpytest("--xp-baseline=baseline.json", "--xp-report-md=report.md")
    result.assert_outcomes(passed=5)
    assert result.ret == pytest.ExitCode.OK
    output = result.stdout.str()
    assert "regressions against" not in output
    assert "improvements against" not in output
    summary = f"xp: compared with {pytester.path / 'baseline.json'}: 0 regressed, 0 improved, 10 within"
    assert summary in output
    assert output.count("new (not in the baseline)") == 1
    assert "0 new (not in the baseline)" in output
    report = (pytester.path / "report.md").read_text(encoding="utf-8")
    assert report.endswith("\n7 ok, 3 shown\n")


METRICS_BY_X = """
import json
from pathlib import Path

import pytest

DATA = json.loads(Path(__file__).with_name("data.json").read_text())


@pytest.mark.grid(x=[1, 2, 3])
def test_grid(x):
    return DATA[str(x)]
"""

NAN_RULES_INI = """
[pytest]
xp_compare =
    acc higher 0.01
    loss lower 5%
    f1 higher 0.01
"""


@pytest.mark.parametrize("args", [[], ["-n", "2"]], ids=["no-xdist", "xdist"])
def test_nan_or_missing_metric_with_a_rule_fails_its_test(pytester: pytest.Pytester, args: list[str]) -> None:
    before = {str(x): {"acc": 0.9, "loss": 0.1} for x in (1, 2, 3)}
    setup(pytester, METRICS_BY_X, ini=NAN_RULES_INI, **before)
    pytester.runpytest("--xp-save-baseline=baseline.json").assert_outcomes(passed=3)
    # x=1 diverged (NaN), x=2 no longer reports acc, x=3's acc is +inf (better) and its loss -inf (better).
    set_data(pytester, **{"1": {"acc": math.nan, "loss": 0.1}, "2": {"loss": 0.1},
                          "3": {"acc": math.inf, "loss": -math.inf}})  # fmt: skip
    result = pytester.runpytest("--xp-baseline=baseline.json", "--xp-report-md=report.md", *args)
    result.assert_outcomes(passed=1, failed=2)
    became_nan = "acc regressed (became NaN): baseline 0.9, now nan (rule: acc higher 0.01)"
    missing = "acc regressed (missing): baseline 0.9, now - (rule: acc higher 0.01)"
    lines = result.stdout.lines
    assert f"xp: worse than the baseline: {became_nan}" in lines  # the failure messages
    assert f"xp: worse than the baseline: {missing}" in lines
    assert f"test_exp.py::test_grid[x=1]: {became_nan}" in lines  # the summary lists them
    assert f"test_exp.py::test_grid[x=2]: {missing}" in lines
    # No run reports f1: the rule judged nothing, and the summary says so.
    assert "xp: rule 'f1 higher 0.01' judged nothing: no run reports 'f1'" in lines
    rows = report_rows(pytester.path / "report.md")
    assert ("test_exp.py::test_grid[x=1]", "acc", "0.9", "nan", "", "❌ regressed (became NaN)") in rows
    assert ("test_exp.py::test_grid[x=2]", "acc", "0.9", "-", "", "❌ regressed (missing)") in rows
    assert ("test_exp.py::test_grid[x=3]", "acc", "0.9", "inf", "+inf", "✅ improved") in rows
    assert ("test_exp.py::test_grid[x=3]", "loss", "0.1", "-inf", "-inf", "✅ improved") in rows
    report = (pytester.path / "report.md").read_text(encoding="utf-8")
    assert report.endswith("\n\nRule 'f1 higher 0.01' judged nothing: no run reports 'f1'\n")
    statuses = dict(zip(*load(store_of(pytester))[["node_id", "status"]].T.values, strict=True))
    assert statuses == {f"test_exp.py::test_grid[x={x}]": s for x, s in ((1, "failed"), (2, "failed"), (3, "passed"))}


RULE_SOURCES = """
import json
from pathlib import Path

import pytest

DATA = json.loads(Path(__file__).with_name("data.json").read_text())
METRICS = ("a", "b", "c", "d")


@pytest.mark.experiment(compare={"a": "higher 0.5", "c": "higher 0.05"})
@pytest.mark.grid(x=[1])
def test_marked(x):
    return {name: DATA["value"] for name in METRICS}


@pytest.mark.grid(x=[1])
def test_unmarked(x):
    return {name: DATA["value"] for name in METRICS}
"""

RULE_SOURCES_INI = """
[pytest]
xp_compare =
    a higher 0.05
    b higher 0.5
    c higher 0.5
"""


def test_rules_from_ini_option_and_marker_and_which_wins(pytester: pytest.Pytester) -> None:
    setup(pytester, RULE_SOURCES, ini=RULE_SOURCES_INI, value=1.0)
    pytester.runpytest("--xp-save-baseline=baseline.json").assert_outcomes(passed=2)
    set_data(pytester, value=0.9)  # every metric 0.1 worse
    result = pytester.runpytest(
        "--xp-baseline=baseline.json", "--xp-report-md=report.md",
        "--xp-compare-rule", "b higher 0.05", "--xp-compare-rule", "c higher 0.5",
    )  # fmt: skip
    result.assert_outcomes(failed=2)
    verdicts = {(row[0].split("::")[1], row[1]): row[5] for row in report_rows(pytester.path / "report.md")}
    assert verdicts == {
        # marked: a lenient by the marker (ini strict), b strict by the option (ini lenient),
        # c strict by the marker (ini and option lenient), d has no rule anywhere.
        ("test_marked[x=1]", "a"): "ok",
        ("test_marked[x=1]", "b"): "❌ regressed",
        ("test_marked[x=1]", "c"): "❌ regressed",
        ("test_marked[x=1]", "d"): "shown",
        # unmarked: the ini's a, the option's b and c.
        ("test_unmarked[x=1]", "a"): "❌ regressed",
        ("test_unmarked[x=1]", "b"): "❌ regressed",
        ("test_unmarked[x=1]", "c"): "ok",
        ("test_unmarked[x=1]", "d"): "shown",
    }
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "xp: regressions against baseline.json" in line)
    assert [line.split(": ")[0:2] for line in lines[start + 1 : start + 5]] == [
        ["test_exp.py::test_marked[x=1]", "b regressed"],
        ["test_exp.py::test_marked[x=1]", "c regressed"],
        ["test_exp.py::test_unmarked[x=1]", "a regressed"],
        ["test_exp.py::test_unmarked[x=1]", "b regressed"],
    ]
    output = result.stdout.str()
    assert "tolerance 0.05 (rule: c higher 0.05)" in output
    assert "(rule: a higher 0.5)" not in output  # a is within the marker's tolerance: not in any message
    # Both regressions of a test are in its one failure message.
    assert re.search(r"worse than the baseline: b regressed: .*rule: b higher 0.05\); c regressed: ", output)


@pytest.mark.parametrize(
    ("where", "args"),
    [
        ("option", ["--xp-compare-rule", "acc sideways 1"]),
        ("ini", []),
        ("marker", []),
        ("marker", ["-n", "2"]),
    ],
    ids=["option", "ini", "marker", "marker-xdist"],
)
def test_bad_rule_is_a_usage_error(pytester: pytest.Pytester, where: str, args: list[str]) -> None:
    source = EXPERIMENTS
    ini = RULES_INI
    if where == "ini":
        ini = "[pytest]\nxp_compare =\n    acc higher 0.01\n    acc sideways 1\n"
    if where == "marker":
        source = EXPERIMENTS.replace(
            "@pytest.mark.experiment\n", '@pytest.mark.experiment(compare={"acc": "sideways 1"})\n'
        )
        assert source != EXPERIMENTS
    setup(pytester, source, ini=ini, **BEFORE)
    result = pytester.runpytest("--xp-report-md=report.md", *args)
    if where == "option":  # argparse's own message, with pytest's usage line
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        error = result.stderr.str()
        assert "Traceback" not in error
        assert (
            "error: argument --xp-compare-rule: comparison rule 'acc sideways 1': "
            "direction must be 'higher' or 'lower', not 'sideways'" in error
        )
    else:
        line = one_line_usage_error(result)
        assert "comparison rule 'acc sideways 1': direction must be 'higher' or 'lower', not 'sideways'" in line
        if where == "ini":
            assert line.startswith("ERROR: xp: ini key xp_compare: ")
    assert not (pytester.path / "report.md").exists()
    # Nothing ran: no experiment spent its time before the mistake was found.
    assert not store_of(pytester).exists() or not load(store_of(pytester), history=True).shape[0]


def test_bad_marker_rule_that_is_not_a_dict(pytester: pytest.Pytester) -> None:
    source = EXPERIMENTS.replace("@pytest.mark.experiment\n", '@pytest.mark.experiment(compare="acc higher 1")\n')
    setup(pytester, source, **BEFORE)
    line = one_line_usage_error(pytester.runpytest("--xp-report-md=report.md"))
    assert "test_net: experiment(compare=...) must be a dict" in line


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist; write one with --xp-save-baseline"),
        ("{", "is not a readable JSON file"),
        ('{"runs": {}}', "is not a pytest-experiments baseline (format 1)"),
        ('{"pytest_experiments_baseline": 1, "runs": {"x": {}}}', "has a malformed entry"),
    ],
    ids=["missing", "not-json", "not-a-baseline", "malformed"],
)
def test_missing_or_corrupt_baseline_is_a_usage_error(
    pytester: pytest.Pytester, content: str | None, expected: str
) -> None:
    setup(pytester, EXPERIMENTS, **BEFORE)
    if content is not None:
        (pytester.path / "baseline.json").write_text(content, encoding="utf-8")
    line = one_line_usage_error(pytester.runpytest("--xp-baseline=baseline.json"))
    assert str(pytester.path / "baseline.json") in line
    assert expected in line


# -- output paths: checked before anything runs -------------------------------------------


@pytest.mark.parametrize("option", ["--xp-report-md", "--xp-save-baseline"])
@pytest.mark.parametrize("where", ["folder", "below-a-file", "read-only-mount"])
def test_unwritable_output_path_is_a_usage_error_before_anything_runs(
    pytester: pytest.Pytester, tmpfs: Callable[..., Path], option: str, where: str
) -> None:
    setup(pytester, EXPERIMENTS, **BEFORE)
    (pytester.path / "notes.txt").write_text("mine", encoding="utf-8")
    if where == "folder":
        target = pytester.path / "out"
        target.mkdir()
        expected = f"{target} is a folder; give a file name"
    elif where == "below-a-file":
        target = pytester.path / "notes.txt" / "sub" / "out.md"
        expected = f"cannot write {target}: {pytester.path / 'notes.txt'} is not a folder"
    else:
        target = tmpfs("ro", read_only=True) / "out.md"
        expected = f"cannot write {target}: {target.parent} is not writable"
    line = one_line_usage_error(pytester.runpytest(f"{option}={target}"))
    assert line == f"ERROR: xp: {option}: {expected}"
    assert not store_of(pytester).exists()  # nothing ran
    assert sorted(path.name for path in pytester.path.rglob("*")) == sorted(
        ["data.json", "notes.txt", "pytest.ini", "test_exp.py", *(["out"] if where == "folder" else [])]
    )


def test_save_baseline_into_a_file_that_is_no_baseline_is_a_usage_error(pytester: pytest.Pytester) -> None:
    setup(pytester, EXPERIMENTS, **BEFORE)
    (pytester.path / "results.json").write_text('{"mine": true}', encoding="utf-8")
    line = one_line_usage_error(pytester.runpytest("-n", "2", "--xp-save-baseline=results.json"))
    assert line == (
        f"ERROR: xp: --xp-save-baseline: {pytester.path / 'results.json'} is not a pytest-experiments baseline "
        "(format 1); move it away to save a new baseline"
    )
    assert (pytester.path / "results.json").read_text(encoding="utf-8") == '{"mine": true}'
    assert not store_of(pytester).exists()


FILL_DISK = """
import pytest


@pytest.mark.experiment
def test_fill(disk):
    try:
        with open(f"{disk}/filler", "wb", buffering=0) as filler:
            while True:
                filler.write(b"x" * 4096)
    except OSError:  # full: what the test is after
        pass
    return {"acc": 0.5}
"""


def test_disk_full_when_the_report_is_written_is_one_line_and_no_partial_file(
    pytester: pytest.Pytester, tmpfs: Callable[..., Path]
) -> None:
    disk = tmpfs("disk", size="64k")
    pytester.makepyfile(test_exp=FILL_DISK)
    pytester.makeconftest(f"import pytest\n\n@pytest.fixture\ndef disk():\n    return {str(disk)!r}\n")
    result = pytester.runpytest(f"--xp-report-md={disk / 'report.md'}", f"--xp-save-baseline={disk / 'b.json'}")
    result.assert_outcomes(passed=1)  # the disk filled up during the session: the start check passed
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output
    assert "INTERNALERROR" not in output
    assert f"xp: error: could not write the comparison report {disk / 'report.md'}: No space left on device" in (
        result.stdout.lines
    )
    assert f"xp: error: could not write the baseline {disk / 'b.json'}: No space left on device" in result.stdout.lines
    assert sorted(path.name for path in disk.iterdir()) == ["filler"]  # no report, no *.partial


def test_without_baseline_option_nothing_is_compared(pytester: pytest.Pytester) -> None:
    setup(pytester, EXPERIMENTS, **BEFORE)
    pytester.runpytest("--xp-save-baseline=baseline.json").assert_outcomes(passed=5)
    set_data(pytester, **AFTER)
    result = pytester.runpytest()  # rules in the ini, but no --xp-baseline: a plain session
    result.assert_outcomes(passed=6)
    assert "xp: compared with" not in result.stdout.str()


# -- seeds --------------------------------------------------------------------------------

SEEDS = """
import json
from pathlib import Path

import pytest

DATA = json.loads(Path(__file__).with_name("data.json").read_text())


@pytest.mark.grid(lr=[0.1, 0.2], seed=[0, 1, 2])
def test_train(lr, seed):
    return {"acc": DATA[str(lr)][seed]}
"""

# Baseline accuracy per seed: mean 0.82, standard deviation 0.02 for both learning rates.
SEEDS_BEFORE = {"0.1": [0.80, 0.84, 0.82], "0.2": [0.80, 0.84, 0.82]}
# Noise only: seed 2 of lr=0.1 drops by 0.03 (three times the tolerance), the means barely move.
SEEDS_NOISY = {"0.1": [0.79, 0.83, 0.79], "0.2": [0.83, 0.80, 0.83]}
# A real drop for lr=0.2: every seed about 0.1 worse (one-sided Welch p = 0.0012).
SEEDS_DROP = {"0.1": [0.79, 0.83, 0.79], "0.2": [0.70, 0.73, 0.71]}


@needs_scipy
@pytest.mark.parametrize(
    ("ini_rule", "args"),
    [
        ("acc higher 0.01", ["--xp-compare-over", "seed"]),
        ("acc higher 0.01 over=seed", ["-n", "2"]),
    ],
    ids=["option-over", "rule-over-xdist"],
)
def test_seed_groups_noise_passes_and_a_real_drop_fails_the_session(
    pytester: pytest.Pytester, ini_rule: str, args: list[str]
) -> None:
    setup(pytester, SEEDS, ini=f"[pytest]\nxp_compare = {ini_rule}\n", **SEEDS_BEFORE)
    pytester.runpytest("--xp-save-baseline=baseline.json").assert_outcomes(passed=6)

    # Judged run by run, seed 2 of lr=0.1 (0.82 -> 0.79) and seed 1 of lr=0.2 (0.84 -> 0.80) would fail...
    set_data(pytester, **SEEDS_NOISY)
    (pytester.path / "single.ini").write_text("[pytest]\nxp_compare = acc higher 0.01\n", encoding="utf-8")
    single = pytester.runpytest("--xp-baseline=baseline.json", "-c", "single.ini")
    single.assert_outcomes(passed=4, failed=2)
    assert "FAILED test_exp.py::test_train[lr=0.1-seed=2]" in single.stdout.str()
    assert "FAILED test_exp.py::test_train[lr=0.2-seed=1]" in single.stdout.str()
    # ... judged over seeds, it is noise.
    noisy = pytester.runpytest("--xp-baseline=baseline.json", "--xp-report-md=report.md", *args)
    noisy.assert_outcomes(passed=6)
    assert noisy.ret == pytest.ExitCode.OK
    assert "0 regressed, 0 improved" in noisy.stdout.str()
    rows = report_rows(pytester.path / "report.md")
    groups = {row[0]: row for row in rows if row[1] == "acc"}
    assert set(groups) == {"test_exp.py::test_train[lr=0.1]", "test_exp.py::test_train[lr=0.2]"}
    assert groups["test_exp.py::test_train[lr=0.1]"][2:5] == ("0.82 ± 0.05", "0.803333 ± 0.057", "-0.0166667")
    assert groups["test_exp.py::test_train[lr=0.1]"][5] == "ok (p=0.2)"  # beyond tolerance, not significant

    # A real drop: every test passes (no single run decides), the session fails.
    set_data(pytester, **SEEDS_DROP)
    drop = pytester.runpytest("--xp-baseline=baseline.json", "--xp-report-md=report.md", *args)
    drop.assert_outcomes(passed=6)
    assert drop.ret == pytest.ExitCode.TESTS_FAILED
    lines = drop.stdout.lines
    start = next(i for i, line in enumerate(lines) if "xp: regressions against baseline.json" in line)
    assert lines[start + 1] == (
        "test_exp.py::test_train[lr=0.2]: acc regressed: baseline 0.82, now 0.713333, delta -0.106667, "
        "tolerance 0.01, p=0.00118 (rule: acc higher 0.01 over=seed)"
    )
    assert "1 regressed, 0 improved" in drop.stdout.str()
    rows = report_rows(pytester.path / "report.md")
    assert ("❌ regressed (p=0.00118)") in {row[5] for row in rows if row[0] == "test_exp.py::test_train[lr=0.2]"}
    # The runs themselves passed and are recorded so.
    statuses = load(store_of(pytester))["status"]
    assert list(statuses) == ["passed"] * 6


@needs_scipy
def test_seed_groups_alpha_option(pytester: pytest.Pytester) -> None:
    setup(pytester, SEEDS, ini="[pytest]\nxp_compare = acc higher 0.01 over=seed\n", **SEEDS_BEFORE)
    pytester.runpytest("--xp-save-baseline=baseline.json").assert_outcomes(passed=6)
    set_data(pytester, **{"0.1": [0.79, 0.81, 0.78], "0.2": SEEDS_BEFORE["0.2"]})  # p = 0.073 for lr=0.1
    assert pytester.runpytest("--xp-baseline=baseline.json").ret == pytest.ExitCode.OK
    strict = pytester.runpytest("--xp-baseline=baseline.json", "--xp-alpha", "0.1")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    assert "test_exp.py::test_train[lr=0.1]: acc regressed:" in strict.stdout.str()
    (pytester.path / "pytest.ini").write_text(
        "[pytest]\nxp_compare = acc higher 0.01 over=seed\nxp_alpha = 0.1\n", encoding="utf-8"
    )
    assert pytester.runpytest("--xp-baseline=baseline.json").ret == pytest.ExitCode.TESTS_FAILED
    bad = pytester.runpytest("--xp-baseline=baseline.json", "--xp-alpha", "2")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert "'2' is not a significance level between 0 and 1" in bad.stderr.str()


@needs_scipy
@pytest.mark.parametrize("args", [[], ["-n", "2"]], ids=["no-xdist", "xdist"])
def test_a_nan_seed_fails_the_session(pytester: pytest.Pytester, args: list[str]) -> None:
    setup(pytester, SEEDS, ini="[pytest]\nxp_compare = acc higher 0.01 over=seed\n", **SEEDS_BEFORE)
    pytester.runpytest("--xp-save-baseline=baseline.json").assert_outcomes(passed=6)
    set_data(pytester, **{"0.1": [0.80, math.nan, 0.82], "0.2": SEEDS_BEFORE["0.2"]})
    result = pytester.runpytest("--xp-baseline=baseline.json", *args)
    result.assert_outcomes(passed=6)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert (
        "test_exp.py::test_train[lr=0.1]: acc regressed (NaN in 1 of 3 runs): baseline 0.82, now nan "
        "(rule: acc higher 0.01 over=seed)"
    ) in result.stdout.lines


@needs_scipy
@pytest.mark.parametrize(
    ("ini", "args", "expected"),
    [
        (
            "acc higher 0.01", ["--xp-compare-over", "seeds"],
            "--xp-compare-over seeds: no experiment has a parameter 'seeds'; parameters: lr, seed",
        ),
        (
            "acc higher 0.01", ["--xp-compare-over", "seeds", "-n", "2"],
            "--xp-compare-over seeds: no experiment has a parameter 'seeds'; parameters: lr, seed",
        ),
        (
            "acc higher 0.01 over=seeds", [],
            "comparison rule 'acc higher 0.01 over=seeds': over=seeds names no parameter of any experiment; "
            "parameters: lr, seed",
        ),
    ],
    ids=["option", "option-xdist", "rule"],
)  # fmt: skip
def test_unknown_noise_parameter_is_a_usage_error(
    pytester: pytest.Pytester, ini: str, args: list[str], expected: str
) -> None:
    setup(pytester, SEEDS, ini="[pytest]\n", **SEEDS_BEFORE)
    pytester.runpytest("--xp-save-baseline=baseline.json").assert_outcomes(passed=6)
    (pytester.path / "pytest.ini").write_text(f"[pytest]\nxp_compare = {ini}\n", encoding="utf-8")
    line = one_line_usage_error(pytester.runpytest("--xp-baseline=baseline.json", *args))
    assert line == f"ERROR: xp: {expected}"
    assert len(load(store_of(pytester), history=True)) == 6  # found before anything ran
    # Deselecting does not change what the collected experiments' parameters are.
    (pytester.path / "pytest.ini").write_text("[pytest]\nxp_compare = acc higher 0.01\n", encoding="utf-8")
    selected = pytester.runpytest("--xp-baseline=baseline.json", "--xp-compare-over", "seed", "-k", "nothing")
    assert selected.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert "xp:" not in selected.stderr.str()


@pytest.mark.parametrize("where", ["ini", "marker", "marker-xdist"])
def test_comparing_over_seeds_without_scipy_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    source, ini = SEEDS, "[pytest]\nxp_compare = acc higher 0.01 over=seed\n"
    if where.startswith("marker"):
        source = SEEDS.replace(
            "@pytest.mark.grid", '@pytest.mark.experiment(compare={"acc": "higher 0.01 over=seed"})\n@pytest.mark.grid'
        )
        ini = "[pytest]\n"
    setup(pytester, source, ini=ini, **SEEDS_BEFORE)
    pytester.runpytest("--xp-save-baseline=baseline.json").assert_outcomes(passed=6)  # saving needs no scipy
    if where == "marker-xdist":  # the workers are other processes: hide scipy from them too
        (pytester.path / "conftest.py").write_text('import sys\nsys.modules["scipy"] = None\n', encoding="utf-8")
    monkeypatch.setitem(sys.modules, "scipy", None)
    result = pytester.runpytest("--xp-baseline=baseline.json", *(["-n", "2"] if where == "marker-xdist" else []))
    line = one_line_usage_error(result)
    assert line == "ERROR: xp: comparing over seeds (over=...) needs scipy: pip install 'pytest-experiments[stats]'"
    assert len(load(store_of(pytester), history=True)) == 6  # found before anything ran


# -- the CI example -----------------------------------------------------------------------

CI_EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "ci"


@pytest.mark.skipif(not CI_EXAMPLE.is_dir(), reason="examples/ci is not part of this checkout")
def test_ci_example_matches_its_committed_baseline(tmp_path: Path) -> None:
    pytest.importorskip("numpy")
    report = tmp_path / "report.md"
    command = [
        sys.executable, "-m", "pytest", ".", "-p", "no:cacheprovider", "-n", "2", f"--xp-store={tmp_path / 'store'}",
        "--xp-baseline=baseline.json", f"--xp-report-md={report}",
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=CI_EXAMPLE, env=inner_env(), capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "xp: compared with " in done.stdout
    assert ": 0 regressed, 0 improved, 24 within tolerance or unjudged, 0 new (not in the baseline)" in done.stdout
    assert report.read_text(encoding="utf-8").endswith("\n24 ok\n")  # every metric has a rule in pytest.ini

    workflow = (CI_EXAMPLE / "experiments-workflow.yml").read_text(encoding="utf-8")
    assert "--xp-baseline=baseline.json --xp-report-md=report.md" in workflow
    assert 'cat report.md\n            } >> "$GITHUB_STEP_SUMMARY"' in workflow
    summary_step = workflow[workflow.index("- name: Post the comparison") :]
    assert summary_step.splitlines()[1].strip().startswith("if: always()")
