"""The pure comparison functions: rules, verdicts, baseline files and the seed-aware test.

No pytest session here: ``pytest_experiments.comparison`` is plain Python, shared by the plugin
(``--xp-baseline``) and the command line (``pytest-experiments compare``). The noisy data of the
seed-aware tests are written out as explicit numbers, so every expected verdict can be checked
by hand (and the p-values with any t-test calculator).
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from pytest_experiments.comparison import (
    BaselineError,
    BaselineUpdate,
    Entry,
    MetricVerdict,
    Rule,
    RuleError,
    baseline_text,
    compare_entries,
    compare_groups,
    compare_run,
    has_regression,
    judge,
    markdown_report,
    noise_parameter_problem,
    output_path_problem,
    parse_marker_rules,
    parse_rule,
    parse_rules,
    read_baseline,
    require_scipy,
    save_baseline,
    summary_counts,
    text_report,
    unreported_line,
    unreported_rules,
)
from pytest_experiments.model import IMPROVED, NEW, NOT_RUN, OK, REGRESSED, SHOWN
from pytest_experiments.values import param_hash

needs_scipy = pytest.mark.skipif(importlib.util.find_spec("scipy") is None, reason="comparing over seeds needs scipy")

# -- helpers ------------------------------------------------------------------------------


def entry(metrics: dict[str, float], module: str = "exp/test_m.py", experiment: str = "test_fit", **params: object):
    """A run as comparisons see it; its node id and parameter hash are derived from ``params``."""
    ident = "-".join(f"{name}={value}" for name, value in params.items())
    node_id = f"{module}::{experiment}" + (f"[{ident}]" if ident else "")
    return Entry(node_id, module, experiment, param_hash(params), dict(params), dict(metrics))


def seeds(values: list[float], metric: str = "acc", **params: object) -> list[Entry]:
    """One entry per seed 0, 1, 2, ... with the given metric values."""
    return [entry({metric: value}, **params, seed=seed) for seed, value in enumerate(values)]


def by_node(entries: list[Entry]) -> dict[str, Entry]:
    return {e.node_id: e for e in entries}


def only(verdicts: list[MetricVerdict], metric: str | None = None) -> MetricVerdict:
    found = [v for v in verdicts if metric is None or v.metric == metric]
    assert len(found) == 1, found
    return found[0]


# -- parsing rules ------------------------------------------------------------------------


def test_absolute_rule() -> None:
    rule = parse_rule("acc higher 0.01")
    assert rule == Rule("acc", higher_is_better=True, tolerance=0.01, relative=False, over=())
    assert rule.describe() == "acc higher 0.01"
    assert rule.allowed(0.9) == 0.01
    assert rule.allowed(-50.0) == 0.01


def test_relative_rule() -> None:
    rule = parse_rule("loss lower 5%")
    assert not rule.higher_is_better
    assert rule.relative
    assert rule.tolerance == pytest.approx(0.05)
    assert rule.describe() == "loss lower 5%"
    assert rule.allowed(2.0) == pytest.approx(0.1)
    assert rule.allowed(-2.0) == pytest.approx(0.1)  # of the baseline's magnitude
    assert rule.allowed(0.0) == 0.0


def test_rule_with_noise_parameters_and_extra_spaces() -> None:
    rule = parse_rule("  test.mse   lower  0   over=seed,fold  ")
    assert rule == Rule("test.mse", False, 0.0, False, ("seed", "fold"))
    assert rule.describe() == "test.mse lower 0 over=seed,fold"
    assert parse_rule(rule.describe()) == rule  # describe() writes a rule that parses back


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("acc sideways 1", r"direction must be 'higher' or 'lower', not 'sideways'"),
        ("acc higher", r"needs a metric, a direction and a tolerance"),
        ("acc", r"needs a metric, a direction and a tolerance"),
        ("", r"needs a metric, a direction and a tolerance"),
        ("acc higher -0.01", r"tolerance must be a number >= 0"),
        ("loss lower -5%", r"tolerance must be a number >= 0"),
        ("acc higher much", r"tolerance must be a number >= 0"),
        ("acc higher nan", r"tolerance must be a number >= 0"),
        ("acc higher inf", r"tolerance must be a number >= 0"),
        ("acc higher 0.01 over=", r"unexpected 'over='; only over=<parameter> may follow"),
        ("acc higher 0.01 seed", r"unexpected 'seed'; only over=<parameter> may follow"),
        ("acc higher 0.01 under=seed", r"unexpected 'under=seed'"),
    ],
)
def test_bad_rules_are_errors_naming_the_rule(text: str, expected: str) -> None:
    with pytest.raises(RuleError, match=expected) as caught:
        parse_rule(text)
    message = str(caught.value)
    assert f"comparison rule {text!r}" in message
    assert "\n" not in message  # one line, fit for a usage error
    if "tolerance" in expected or "direction" in expected:
        assert "e.g. 'acc higher 0.01' or 'loss lower 5%'" in message


def test_parse_rules_skips_blanks_and_comments_and_later_lines_win() -> None:
    rules = parse_rules(["", "# defaults", "acc higher 0.01  # absolute", "loss lower 5%", "acc higher 0.05", "   "])
    assert set(rules) == {"acc", "loss"}
    assert rules["acc"].tolerance == 0.05
    assert rules["loss"].relative


def test_parse_rules_adds_noise_parameters_to_every_rule() -> None:
    rules = parse_rules(["acc higher 0.01", "loss lower 5% over=fold"], over=["seed"])
    assert rules["acc"].over == ("seed",)
    assert rules["loss"].over == ("fold", "seed")


def test_parse_rules_error_names_the_bad_line() -> None:
    with pytest.raises(RuleError, match="'acc sideways 1'"):
        parse_rules(["loss lower 5%", "acc sideways 1"])


def test_marker_rules() -> None:
    rules = parse_marker_rules({"acc": "higher 0.02", "loss": "lower 10% over=seed"}, "test_fit")
    assert rules == {
        "acc": Rule("acc", True, 0.02),
        "loss": Rule("loss", False, pytest.approx(0.1), True, ("seed",)),
    }


@pytest.mark.parametrize(
    ("compare", "expected"),
    [
        ("acc higher 0.01", r"test_fit: experiment\(compare=...\) must be a dict"),
        (["acc higher 0.01"], r"test_fit: experiment\(compare=...\) must be a dict"),
        ({"acc": "sideways 1"}, r"'acc sideways 1': direction must be 'higher' or 'lower'"),
        ({"acc": "higher"}, r"needs a metric, a direction and a tolerance"),
        ({"acc": 0.01}, r"needs a metric, a direction and a tolerance"),
    ],
)
def test_bad_marker_rules(compare: object, expected: str) -> None:
    with pytest.raises(RuleError, match=expected):
        parse_marker_rules(compare, "test_fit")


# -- judging one value --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("new", "verdict"),
    [
        (0.90, OK),
        (0.895, OK),
        (0.89, OK),  # exactly the tolerance worse: tolerated (0.9 - 0.89 is 0.0100000000000000009 in floats)
        (0.8899, REGRESSED),
        (0.5, REGRESSED),
        (0.91, OK),  # exactly the tolerance better: not yet an improvement
        (0.9101, IMPROVED),
    ],
)
def test_higher_is_better_boundaries(new: float, verdict: str) -> None:
    assert judge("n", "acc", 0.90, new, parse_rule("acc higher 0.01")).verdict == verdict


@pytest.mark.parametrize(
    ("new", "verdict"),
    [
        (2.0, OK),
        (2.1, OK),  # 5% of 2.0 worse
        (2.1001, REGRESSED),
        (1.9, OK),
        (1.8999, IMPROVED),
    ],
)
def test_lower_is_better_relative_boundaries(new: float, verdict: str) -> None:
    assert judge("n", "loss", 2.0, new, parse_rule("loss lower 5%")).verdict == verdict


def test_direction_decides_which_way_is_worse() -> None:
    assert judge("n", "m", 1.0, 1.5, parse_rule("m higher 0.1")).verdict == IMPROVED
    assert judge("n", "m", 1.0, 1.5, parse_rule("m lower 0.1")).verdict == REGRESSED
    assert judge("n", "m", 1.0, 0.5, parse_rule("m higher 0.1")).verdict == REGRESSED
    assert judge("n", "m", 1.0, 0.5, parse_rule("m lower 0.1")).verdict == IMPROVED


def test_absolute_and_relative_tolerance_differ_with_the_baseline_scale() -> None:
    # A worsening of 0.5 on a baseline of 100: beyond an absolute 0.1, within 1% (= 1.0).
    assert judge("n", "loss", 100.0, 100.5, parse_rule("loss lower 0.1")).verdict == REGRESSED
    relative = judge("n", "loss", 100.0, 100.5, parse_rule("loss lower 1%"))
    assert relative.verdict == OK
    assert relative.tolerance == pytest.approx(1.0)  # reported in the metric's units
    # On a baseline of 10, 1% is 0.1: the same worsening of 0.5 regresses.
    assert judge("n", "loss", 10.0, 10.5, parse_rule("loss lower 1%")).verdict == REGRESSED


def test_zero_tolerance() -> None:
    rule = parse_rule("acc higher 0")
    assert judge("n", "acc", 0.9, 0.9, rule).verdict == OK
    assert judge("n", "acc", 0.9, 0.8999, rule).verdict == REGRESSED


def test_regression_message_names_metric_values_delta_and_tolerance() -> None:
    verdict = judge("exp/test_m.py::test_fit[lr=0.1]", "acc", 0.92, 0.87, parse_rule("acc higher 0.01"))
    assert verdict.verdict == REGRESSED
    assert verdict.delta == pytest.approx(-0.05)
    assert verdict.message() == (
        "acc regressed: baseline 0.92, now 0.87, delta -0.05, tolerance 0.01 (rule: acc higher 0.01)"
    )


def test_verdict_survives_json() -> None:
    verdict = MetricVerdict("n", "acc", 0.9, 0.8, REGRESSED, 0.01, "acc higher 0.01", 0.003)
    wire = json.loads(json.dumps(verdict.to_json()))
    assert MetricVerdict.from_json(wire) == verdict
    nan = MetricVerdict("n", "acc", 0.9, math.nan, REGRESSED, rule="acc higher 0.01", note="became NaN")
    back = MetricVerdict.from_json(json.loads(json.dumps(nan.to_json())))
    assert (
        back.message() == nan.message() == "acc regressed (became NaN): baseline 0.9, now nan (rule: acc higher 0.01)"
    )


def test_rule_survives_json_exactly() -> None:
    rule = parse_rule("acc higher 0.0123456789% over=seed,fold")
    assert Rule.from_json(json.loads(json.dumps(rule.to_json()))) == rule
    assert parse_rule(rule.describe()) != rule  # describe() rounds: not for the wire


# -- comparing runs -----------------------------------------------------------------------


def test_metrics_without_rule_are_shown_never_judged() -> None:
    base = entry({"acc": 0.9, "seconds": 10.0, "loss": 0.3}, lr=0.1)
    new = entry({"acc": 0.5, "seconds": 99.0, "loss": 0.3}, lr=0.1)
    verdicts = compare_run(new, base, parse_rules(["loss lower 0.01"]))
    assert [(v.metric, v.verdict) for v in verdicts] == [("acc", SHOWN), ("loss", OK), ("seconds", SHOWN)]
    shown = only(verdicts, "acc")
    assert (shown.base, shown.new, shown.tolerance, shown.rule) == (0.9, 0.5, None, None)
    assert not has_regression(verdicts)  # acc halved, but nobody said which way is better


def test_a_metric_new_to_the_run_is_shown_and_one_it_stopped_reporting_regresses() -> None:
    base = entry({"acc": 0.9, "old": 1.0, "unruled": 3.0}, lr=0.1)
    new = entry({"acc": 0.9, "fresh": 2.0}, lr=0.1)
    verdicts = compare_run(new, base, parse_rules(["old lower 0", "fresh lower 0", "acc higher 0"]))
    assert [(v.metric, v.base, v.new, v.verdict, v.note) for v in verdicts] == [
        ("acc", 0.9, 0.9, OK, None),
        ("fresh", None, 2.0, SHOWN, None),  # nothing to judge it against
        ("old", 1.0, None, REGRESSED, "missing"),  # it has a rule: never silent
        ("unruled", 3.0, None, SHOWN, None),
    ]
    assert only(verdicts, "old").message() == "old regressed (missing): baseline 1, now - (rule: old lower 0)"
    assert has_regression(verdicts)


# -- NaN and infinities: no tolerance judges them ------------------------------------------


@pytest.mark.parametrize("rule", ["acc higher 0.01", "acc lower 0.01", "acc higher 50%", "acc higher 0"])
def test_nan_is_a_regression_whatever_the_rule(rule: str) -> None:
    verdict = judge("n", "acc", 0.9, math.nan, parse_rule(rule))
    assert (verdict.verdict, verdict.note, verdict.delta, verdict.tolerance) == (REGRESSED, "became NaN", None, None)
    assert verdict.message() == f"acc regressed (became NaN): baseline 0.9, now nan (rule: {rule})"
    assert judge("n", "acc", 0.9, math.nan, None).verdict == SHOWN  # no rule: shown, never judged


def test_nan_in_the_baseline() -> None:
    rule = parse_rule("acc higher 0.01")
    still = judge("n", "acc", math.nan, math.nan, rule)
    assert (still.verdict, still.note) == (REGRESSED, "still NaN")  # a NaN never passes a rule
    recovered = judge("n", "acc", math.nan, 0.5, rule)
    assert (recovered.verdict, recovered.note, recovered.delta) == (IMPROVED, "no longer NaN", None)


@pytest.mark.parametrize(
    ("rule", "base", "new", "verdict"),
    [
        ("acc higher 0.01", 0.9, -math.inf, REGRESSED),
        ("acc higher 0.01", 0.9, math.inf, IMPROVED),
        ("acc higher 0.01", math.inf, math.inf, OK),
        ("acc higher 0.01", -math.inf, -math.inf, OK),
        ("acc higher 5%", math.inf, 0.5, REGRESSED),  # 5% of inf is inf: a tolerance would let it pass
        ("acc higher 5%", -math.inf, 0.5, IMPROVED),
        ("loss lower 5%", math.inf, 0.5, IMPROVED),
        ("loss lower 0.01", 0.5, math.inf, REGRESSED),
        ("loss lower 0.01", math.inf, -math.inf, IMPROVED),
    ],
)
def test_infinities_are_judged_by_direction(rule: str, base: float, new: float, verdict: str) -> None:
    parsed = parse_rule(rule)
    assert judge("n", parsed.metric, base, new, parsed).verdict == verdict


def test_nan_and_missing_regress_a_run_in_compare_entries() -> None:
    base = [entry({"acc": 0.9, "loss": 0.1}, x=1), entry({"acc": 0.9, "loss": 0.1}, x=2)]
    new = [entry({"acc": math.nan, "loss": 0.1}, x=1), entry({"loss": 0.1}, x=2)]
    verdicts = compare_entries(new, by_node(base), parse_rules(["acc higher 0.01"]), 0.05)
    assert [(v.label[-4:], v.metric, v.verdict, v.note) for v in verdicts] == [
        ("x=1]", "acc", REGRESSED, "became NaN"),
        ("x=1]", "loss", SHOWN, None),
        ("x=2]", "acc", REGRESSED, "missing"),
        ("x=2]", "loss", SHOWN, None),
    ]
    report = markdown_report(verdicts)
    assert "| exp/test_m.py::test_fit[x=1] | acc | 0.9 | nan |  | ❌ regressed (became NaN) |" in report
    assert "| exp/test_m.py::test_fit[x=2] | acc | 0.9 | - |  | ❌ regressed (missing) |" in report
    assert text_report(verdicts)[1].split() == ["exp/test_m.py::test_fit[x=1]", "acc", "0.9", "nan", "regressed",
                                                "(became", "NaN)"]  # fmt: skip


def test_rules_whose_metric_no_run_reports_are_named() -> None:
    rules = parse_rules(["acc higher 0.01", "f1 higher 0.01", "loss lower 5%"])
    entries = [entry({"acc": 0.9}, x=1), entry({"acc": 0.8, "other": 1.0}, x=2)]
    unreported = unreported_rules(rules.values(), entries)
    assert [rule.metric for rule in unreported] == ["f1", "loss"]
    assert unreported_line(unreported) == (
        "rule 'f1 higher 0.01' judged nothing: no run reports 'f1'; "
        "rule 'loss lower 5%' judged nothing: no run reports 'loss'"
    )
    assert unreported_line([]) is None
    report = markdown_report([], unreported)
    assert report.splitlines()[-1] == (
        "Rule 'f1 higher 0.01' judged nothing: no run reports 'f1'; rule 'loss lower 5%' judged nothing: no run reports 'loss'"
    )


def test_run_missing_from_the_baseline_is_new() -> None:
    new = entry({"acc": 0.1}, lr=0.1)
    [verdict] = compare_run(new, None, parse_rules(["acc higher 0.01"]))
    assert (verdict.label, verdict.verdict, verdict.base, verdict.new) == (new.node_id, NEW, None, None)


def test_changed_parameters_under_the_same_node_id_are_new() -> None:
    base = entry({"acc": 0.9}, width=64)
    new = Entry(base.node_id, base.module, base.experiment, param_hash({"width": 128}), {"width": 128}, {"acc": 0.1})
    [verdict] = compare_run(new, base, parse_rules(["acc higher 0.01"]))
    assert verdict.verdict == NEW  # not a regression: a different experiment under the same id


def test_compare_entries_matches_runs_by_node_id() -> None:
    base = [entry({"acc": 0.9}, lr=0.1), entry({"acc": 0.8}, lr=0.2), entry({"acc": 0.7}, lr=0.3)]
    new = [entry({"acc": 0.95}, lr=0.1), entry({"acc": 0.7}, lr=0.2), entry({"acc": 0.5}, lr=0.4)]
    verdicts = compare_entries(new, by_node(base), parse_rules(["acc higher 0.01"]), 0.05)
    assert [(v.label.rsplit("[", 1)[1], v.verdict) for v in verdicts] == [
        ("lr=0.1]", IMPROVED),
        ("lr=0.2]", REGRESSED),
        ("lr=0.4]", NEW),
        ("lr=0.3]", NOT_RUN),  # in the baseline, not run: listed, not judged
    ]
    assert has_regression(verdicts)
    assert summary_counts(verdicts) == {REGRESSED: 1, IMPROVED: 1, OK: 0, SHOWN: 0, NEW: 1, NOT_RUN: 1}
    assert markdown_report(verdicts).splitlines()[-1] == "1 regressed, 1 improved, 1 new, 1 not run"
    assert "| exp/test_m.py::test_fit[lr=0.3] |  | - | - |  | not run |" in markdown_report(verdicts)


# -- baseline files -----------------------------------------------------------------------


def test_baseline_file_is_deterministic_sorted_and_diff_friendly(tmp_path: Path) -> None:
    runs = [
        entry({"loss": 0.25, "acc": 0.75}, lr=0.1, seed=1),
        entry({"acc": 0.5, "loss": 0.5}, lr=0.01, seed=0),
        entry({"acc": 1}, module="exp/test_a.py", experiment="test_b"),
    ]
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    assert save_baseline(first, runs) == BaselineUpdate(first, updated=0, added=3, kept=0)
    reordered = [Entry(e.node_id, e.module, e.experiment, e.param_hash, dict(reversed(e.params.items())),
                       dict(reversed(e.metrics.items()))) for e in reversed(runs)]  # fmt: skip
    save_baseline(second, reordered)
    assert first.read_bytes() == second.read_bytes()  # same input, in any order: the same bytes
    assert first.read_text(encoding="utf-8") == baseline_text(runs)
    assert not list(tmp_path.glob("*.partial"))

    text = first.read_text(encoding="utf-8")
    data = json.loads(text)
    assert text == json.dumps(data, sort_keys=True, indent=2) + "\n"  # every level sorted, indented
    assert data["pytest_experiments_baseline"] == 1
    assert list(data["runs"]) == sorted(e.node_id for e in runs)
    item = data["runs"]["exp/test_m.py::test_fit[lr=0.1-seed=1]"]
    assert item == {
        "experiment": "test_fit",
        "metrics": {"acc": 0.75, "loss": 0.25},
        "module": "exp/test_m.py",
        "param_hash": param_hash({"lr": 0.1, "seed": 1}),
        "params": {"lr": 0.1, "seed": 1},
    }
    assert len(text.splitlines()) > 30  # one value per line: a changed metric is a one-line diff


def test_baseline_round_trip(tmp_path: Path) -> None:
    runs = [entry({"acc": 1, "loss": 0.125}, lr=0.1), entry({}, name="x")]
    path = tmp_path / "baseline.json"
    save_baseline(path, runs)
    read = read_baseline(path)
    assert read == by_node([entry({"acc": 1.0, "loss": 0.125}, lr=0.1), entry({}, name="x")])
    assert all(isinstance(value, float) for e in read.values() for value in e.metrics.values())


def test_saving_into_a_baseline_merges(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    third = entry({"acc": 0.5}, lr=0.3)
    save_baseline(path, [entry({"acc": 0.5}, lr=0.1), entry({"acc": 0.5}, lr=0.2), third])
    changed = Entry(third.node_id, third.module, third.experiment, param_hash({"lr": 0.35}), {"lr": 0.35}, {"acc": 0.7})
    update = save_baseline(path, [entry({"acc": 0.6}, lr=0.1), changed, entry({"acc": 0.6}, lr=0.4)])
    assert update == BaselineUpdate(path, updated=2, added=1, kept=1)
    assert update.total == 4
    assert update.summary() == f"baseline written to {path}: 2 updated, 1 added, 1 kept (4 entries)"
    # lr=0.2 was not saved again: kept; lr=0.3's node id now holds other parameters: replaced.
    assert read_baseline(path) == by_node(
        [entry({"acc": 0.6}, lr=0.1), entry({"acc": 0.5}, lr=0.2), changed, entry({"acc": 0.6}, lr=0.4)]
    )
    assert not list(tmp_path.glob("*.partial"))


def test_saving_never_overwrites_a_file_that_is_no_baseline(tmp_path: Path) -> None:
    path = tmp_path / "notes.json"
    path.write_text('{"mine": 1}', encoding="utf-8")
    with pytest.raises(BaselineError, match=r"notes\.json is not a pytest-experiments baseline .*; move it away"):
        save_baseline(path, [entry({"acc": 0.5}, lr=0.1)])
    assert path.read_text(encoding="utf-8") == '{"mine": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.json"]


def test_output_path_problems(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x", encoding="utf-8")
    assert output_path_problem(tmp_path / "new" / "deeper" / "report.md") is None  # folders are made when written
    assert output_path_problem(tmp_path / "file.txt") is None  # replaced when written
    assert output_path_problem(tmp_path) == f"{tmp_path} is a folder; give a file name"
    below = tmp_path / "file.txt" / "sub" / "report.md"
    assert output_path_problem(below) == f"cannot write {below}: {tmp_path / 'file.txt'} is not a folder"
    with pytest.raises(BaselineError, match="is a folder; give a file name"):
        save_baseline(tmp_path, [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]  # nothing created


def test_empty_baseline(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    assert save_baseline(path, []).total == 0
    assert path.read_text(encoding="utf-8") == '{\n  "pytest_experiments_baseline": 1,\n  "runs": {}\n}\n'
    assert read_baseline(path) == {}


def test_missing_baseline_says_how_to_make_one(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(BaselineError, match=r"nope\.json does not exist; write one with --xp-save-baseline"):
        read_baseline(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", r"is not a readable JSON file"),
        ("{", r"is not a readable JSON file"),
        ("acc: 0.9\n", r"is not a readable JSON file"),
        (b"\xff\xfe\x00garbage", r"is not a readable JSON file"),
        ("[1, 2]", r"is not a pytest-experiments baseline \(format 1\)"),
        ('{"runs": {}}', r"is not a pytest-experiments baseline \(format 1\)"),
        ('{"pytest_experiments_baseline": 2, "runs": {}}', r"is not a pytest-experiments baseline \(format 1\)"),
        ('{"pytest_experiments_baseline": 1}', r"has a malformed entry"),
        ('{"pytest_experiments_baseline": 1, "runs": {"a": {"metrics": {}}}}', r"has a malformed entry"),
        ('{"pytest_experiments_baseline": 1, "runs": []}', r"has a malformed entry"),
    ],
)
def test_unreadable_baselines(tmp_path: Path, content: str | bytes, expected: str) -> None:
    path = tmp_path / "baseline.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(BaselineError, match=expected) as caught:
        read_baseline(path)
    assert str(path) in str(caught.value)


def test_a_folder_is_not_a_baseline(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="is not a readable JSON file"):
        read_baseline(tmp_path)


# -- reports ------------------------------------------------------------------------------


def test_markdown_report() -> None:
    base = [entry({"acc": 0.92, "loss": 0.5}, x=1), entry({"acc": 0.93, "loss": 0.25}, x=2)]
    new = [
        entry({"acc": 0.87, "loss": 0.5}, x=1),
        entry({"acc": 0.98, "loss": 0.25}, x=2),
        entry({"acc": 0.5, "loss": 9.0}, x=3),
    ]
    report = markdown_report(compare_entries(new, by_node(base), parse_rules(["acc higher 0.01"]), 0.05))
    assert report.splitlines() == [
        "| run | metric | baseline | new | delta | verdict |",
        "| --- | --- | ---: | ---: | ---: | --- |",
        "| exp/test_m.py::test_fit[x=1] | acc | 0.92 | 0.87 | -0.05 | ❌ regressed |",
        "| exp/test_m.py::test_fit[x=2] | acc | 0.93 | 0.98 | +0.05 | ✅ improved |",
        "| exp/test_m.py::test_fit[x=3] |  | - | - |  | 🆕 new |",
        "| exp/test_m.py::test_fit[x=1] | loss | 0.5 | 0.5 | +0 | shown |",
        "| exp/test_m.py::test_fit[x=2] | loss | 0.25 | 0.25 | +0 | shown |",
        "",
        "1 regressed, 1 improved, 2 shown, 1 new",
    ]


def test_markdown_report_escapes_pipes_and_says_when_empty() -> None:
    verdict = MetricVerdict("t.py::test[a|b]", "acc", 1.0, 1.0, OK, 0.1, "acc higher 0.1")
    assert "| t.py::test[a\\|b] | acc |" in markdown_report([verdict])
    assert markdown_report([]).splitlines()[-1] == "nothing compared"


def test_text_report_is_aligned() -> None:
    verdicts = [
        judge("exp/test_m.py::test_fit[x=1]", "acc", 0.92, 0.87, parse_rule("acc higher 0.01")),
        judge("exp/test_m.py::test_fit[x=22]", "loss", 0.5, 0.5, None),
    ]
    lines = text_report(verdicts)
    assert lines[0].split() == ["run", "metric", "baseline", "new", "delta", "verdict"]
    assert lines[1].split() == ["exp/test_m.py::test_fit[x=1]", "acc", "0.92", "0.87", "-0.05", "regressed"]
    assert lines[2].split() == ["exp/test_m.py::test_fit[x=22]", "loss", "0.5", "0.5", "+0", "shown"]
    assert len({line.index("metric" if i == 0 else line.split()[1]) for i, line in enumerate(lines)}) == 1


# -- seeds: groups of noisy runs ----------------------------------------------------------
#
# Baseline accuracy over three seeds: 0.80, 0.84, 0.82 (mean 0.82, standard deviation 0.02).
# The rule tolerates a drop of 0.01 in the mean. Hand-checked one-sided Welch p-values
# ("new is lower") are in the comments.

BASE_SEEDS = [0.80, 0.84, 0.82]
ACC = parse_rules(["acc higher 0.01 over=seed"])


def judge_seeds(new: list[float], base: list[float] = BASE_SEEDS, alpha: float = 0.05, **params: object):
    return only(compare_groups(seeds(new, **params), seeds(base, **params), ACC, alpha))


@needs_scipy
def test_noisy_seeds_without_real_change_do_not_regress() -> None:
    # Seed 2 dropped by 0.03, three times the tolerance: judged run by run, that is a regression...
    noisy = [0.79, 0.83, 0.79]
    single = compare_entries(seeds(noisy), by_node(seeds(BASE_SEEDS)), parse_rules(["acc higher 0.01"]), 0.05)
    assert [v.verdict for v in single] == [OK, OK, REGRESSED]
    # ... and even the mean dropped by 0.0167, more than the tolerance, but with this spread three
    # seeds cannot tell that from noise (p = 0.20): judged as a group, no regression.
    verdict = judge_seeds(noisy)
    assert verdict.verdict == OK
    assert verdict.base == pytest.approx(0.82)
    assert verdict.new == pytest.approx(0.80333, abs=1e-5)
    assert verdict.p_value == pytest.approx(0.1996, abs=1e-3)
    assert verdict.p_value > 0.05
    assert verdict.label == "exp/test_m.py::test_fit"  # grouped by every parameter but the seed
    # Reshuffled noise, same mean: nothing at all.
    assert judge_seeds([0.83, 0.80, 0.83]).verdict == OK


@needs_scipy
def test_real_drop_over_seeds_regresses() -> None:
    verdict = judge_seeds([0.70, 0.73, 0.71])
    assert verdict.verdict == REGRESSED
    assert verdict.p_value is not None
    assert verdict.p_value < 0.05
    assert verdict.p_value == pytest.approx(0.00118, abs=1e-4)
    assert verdict.delta == pytest.approx(-0.10667, abs=1e-4)
    assert verdict.tolerance == pytest.approx(0.01)
    assert verdict.rule == "acc higher 0.01 over=seed"
    message = verdict.message()
    assert message.startswith("acc regressed: baseline 0.82, now 0.713333, delta -0.106667, tolerance 0.01, p=0.00118")


@needs_scipy
def test_significant_but_within_tolerance_is_not_a_regression() -> None:
    # Tiny spread, tiny drop: clearly real (p < 0.001) yet only 0.005 worse, within the 0.01 tolerated.
    verdict = judge_seeds([0.815, 0.8151, 0.8149], base=[0.82, 0.8201, 0.8199])
    assert verdict.p_value is not None
    assert verdict.p_value < 0.001
    assert verdict.verdict == OK


@needs_scipy
def test_significant_improvement_over_seeds() -> None:
    verdict = judge_seeds([0.90, 0.93, 0.91])
    assert verdict.verdict == IMPROVED
    assert verdict.p_value is not None
    assert verdict.p_value < 0.01  # the p-value shown is the one of the direction that moved


@needs_scipy
def test_alpha_decides_a_borderline_case() -> None:
    borderline = [0.79, 0.81, 0.78]  # mean 0.7933: 0.0267 worse, p = 0.073
    at_5 = judge_seeds(borderline, alpha=0.05)
    at_10 = judge_seeds(borderline, alpha=0.10)
    assert at_5.p_value == pytest.approx(0.0726, abs=1e-3)
    assert (at_5.verdict, at_10.verdict) == (OK, REGRESSED)


def test_fewer_than_two_seeds_fall_back_to_the_tolerance() -> None:
    one = judge_seeds([0.80], base=[0.82])
    assert (one.verdict, one.p_value, one.base_interval, one.new_interval) == (REGRESSED, None, None, None)
    assert judge_seeds([0.815], base=[0.82]).verdict == OK
    # Three baseline seeds, one new seed: still no test possible, the means decide.
    assert judge_seeds([0.79], base=BASE_SEEDS).verdict == REGRESSED
    assert judge_seeds([0.815], base=BASE_SEEDS).verdict == OK


def test_seeds_without_any_spread_are_an_exact_difference() -> None:
    assert judge_seeds([0.7, 0.7, 0.7], base=[0.8, 0.8, 0.8]).verdict == REGRESSED
    assert judge_seeds([0.8, 0.8, 0.8], base=[0.8, 0.8, 0.8]).verdict == OK
    assert judge_seeds([0.9, 0.9], base=[0.8, 0.8, 0.8]).verdict == IMPROVED


@needs_scipy
def test_confidence_intervals_of_the_means() -> None:
    verdict = judge_seeds([0.70, 0.73, 0.71])
    # 95% t-interval: mean +- t(0.975, 2 dof) * s / sqrt(3) = 0.82 +- 4.3027 * 0.02 / 1.7321
    half = 4.302653 * 0.02 / math.sqrt(3)
    assert verdict.base_interval == pytest.approx((0.82 - half, 0.82 + half))
    low, high = verdict.new_interval or (0.0, 0.0)
    assert low < 0.71333 < high
    assert "0.82 ± 0.05" in markdown_report([verdict])
    assert "(p=0.00118)" in markdown_report([verdict])


@needs_scipy
def test_groups_are_split_by_the_other_parameters() -> None:
    base = seeds(BASE_SEEDS, lr=0.1) + seeds(BASE_SEEDS, lr=0.2)
    new = seeds([0.79, 0.83, 0.79], lr=0.1) + seeds([0.70, 0.73, 0.71], lr=0.2) + seeds([0.5, 0.5], lr=0.3)
    verdicts = compare_groups(new, base, ACC, 0.05)
    assert [(v.label, v.verdict) for v in verdicts] == [
        ("exp/test_m.py::test_fit[lr=0.1]", OK),
        ("exp/test_m.py::test_fit[lr=0.2]", REGRESSED),
        ("exp/test_m.py::test_fit[lr=0.3]", NEW),  # no baseline group: new, not failed
    ]


@needs_scipy
def test_compare_entries_judges_over_rules_by_group_and_the_rest_by_run() -> None:
    base = [entry({"acc": acc, "loss": 0.5}, seed=seed) for seed, acc in enumerate(BASE_SEEDS)]
    new = [entry({"acc": acc, "loss": 0.9}, seed=seed) for seed, acc in enumerate([0.79, 0.83, 0.79])]
    rules = parse_rules(["acc higher 0.01", "loss lower 0.01"], over=()) | parse_rules(["acc higher 0.01 over=seed"])
    verdicts = compare_entries(new, by_node(base), rules, 0.05)
    assert sorted((v.label, v.metric, v.verdict) for v in verdicts) == [
        ("exp/test_m.py::test_fit", "acc", OK),  # one group verdict for acc...
        ("exp/test_m.py::test_fit[seed=0]", "loss", REGRESSED),  # ... and loss run by run
        ("exp/test_m.py::test_fit[seed=1]", "loss", REGRESSED),
        ("exp/test_m.py::test_fit[seed=2]", "loss", REGRESSED),
    ]


def test_a_nan_seed_regresses_its_group() -> None:
    verdict = judge_seeds([0.80, math.nan, 0.82])
    assert (verdict.verdict, verdict.note, verdict.p_value) == (REGRESSED, "NaN in 1 of 3 runs", None)
    assert verdict.message().startswith("acc regressed (NaN in 1 of 3 runs): baseline 0.82, now nan")


def test_a_seed_without_the_metric_regresses_its_group() -> None:
    new = [*seeds([0.80, 0.84]), entry({"other": 1.0}, seed=2)]
    verdict = only(compare_groups(new, seeds(BASE_SEEDS), ACC, 0.05))
    assert (verdict.verdict, verdict.note) == (REGRESSED, "missing in 1 of 3 runs")
    assert verdict.new == pytest.approx(0.82)  # the mean of the values reported
    # Groups no baseline run reports the metric for are nobody's concern, nor is a group not run.
    unrelated = compare_groups([entry({"other": 1.0}, seed=0, lr=9)], seeds(BASE_SEEDS), ACC, 0.05)
    assert unrelated == []


@needs_scipy
def test_nan_baseline_seeds_are_left_out_and_an_all_nan_baseline_recovers() -> None:
    assert judge_seeds([0.80, 0.84, 0.82], base=[0.80, math.nan, 0.84, 0.82]).verdict == OK
    recovered = judge_seeds([0.80, 0.84, 0.82], base=[math.nan, math.nan])
    assert (recovered.verdict, recovered.note) == (IMPROVED, "no longer NaN")


def test_infinite_seeds_judge_the_means_by_direction() -> None:
    assert judge_seeds([0.80, -math.inf, 0.82]).verdict == REGRESSED
    assert judge_seeds([0.80, math.inf, 0.82]).verdict == IMPROVED
    assert judge_seeds([math.inf, 0.5], base=[math.inf, 0.9]).verdict == OK


def test_noise_parameters_must_exist() -> None:
    known = {"lr", "seed"}
    rules = parse_rules(["acc higher 0.01 over=fold", "loss lower 5%"])
    assert noise_parameter_problem(["seed"], [], known, "--over") is None
    assert noise_parameter_problem(["seeds"], rules.values(), known, "--over") == (
        "--over seeds: no experiment has a parameter 'seeds'; parameters: lr, seed"
    )
    assert noise_parameter_problem([], rules.values(), known, "--over") == (
        "comparison rule 'acc higher 0.01 over=fold': over=fold names no parameter of any experiment; "
        "parameters: lr, seed"
    )
    nothing = noise_parameter_problem(["seed"], [], set(), "--over")
    assert nothing == "--over seed: no experiment has a parameter 'seed'; parameters: none"


def test_without_scipy_seed_groups_are_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "scipy", None)
    expected = r"^comparing over seeds \(over=...\) needs scipy: pip install 'pytest-experiments\[stats\]'$"
    with pytest.raises(RuleError, match=expected):
        require_scipy()
    with pytest.raises(RuleError, match=expected):
        judge_seeds([0.70, 0.73, 0.71])
    # With one value a side no test is needed, so nothing is missing.
    assert judge_seeds([0.79], base=[0.82]).verdict == REGRESSED
