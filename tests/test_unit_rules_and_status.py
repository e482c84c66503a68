"""Unit tests, no pytest session: comparison rule parsing and a run's status from its reports."""

from __future__ import annotations

import math
from typing import Literal

import pytest

from pytest_experiments.comparison import Rule, RuleError, parse_rule, parse_rules
from pytest_experiments.plugin.recorder import derive_status

# -- rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("acc higher 0.01", Rule("acc", True, 0.01)),
        ("loss lower 5%", Rule("loss", False, 0.05, relative=True)),
        ("loss lower 0", Rule("loss", False, 0.0)),
        ("acc higher 0.01 over=seed", Rule("acc", True, 0.01, over=("seed",))),
        ("acc  higher\t1e-3 over=seed,fold over=run", Rule("acc", True, 0.001, over=("seed", "fold", "run"))),
    ],
)
def test_a_rule_is_parsed(text: str, expected: Rule) -> None:
    assert parse_rule(text) == expected
    assert Rule.from_json(expected.to_json()) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("acc", "needs a metric, a direction and a tolerance"),
        ("acc better 0.01", "direction must be 'higher' or 'lower'"),
        ("acc higher -1", "tolerance must be a number >= 0"),
        ("acc higher nan", "tolerance must be a number >= 0"),
        ("acc higher inf", "tolerance must be a number >= 0"),
        ("acc higher x%", "tolerance must be a number >= 0"),
        ("acc higher 0.1 seed", "only over=<parameter> may follow"),
        ("acc higher 0.1 over=", "only over=<parameter> may follow"),
    ],
)
def test_a_bad_rule_is_one_line_naming_it(text: str, problem: str) -> None:
    with pytest.raises(RuleError, match=problem) as refused:
        parse_rule(text)
    assert repr(text) in str(refused.value)
    assert "\n" not in str(refused.value)


def test_rule_files_skip_comments_and_later_lines_win() -> None:
    rules = parse_rules(["# a comment", "", "acc higher 0.1", "loss lower 1%", "acc higher 0.2"], over=["seed"])
    assert rules == {
        "acc": Rule("acc", True, 0.2, over=("seed",)),
        "loss": Rule("loss", False, 0.01, relative=True, over=("seed",)),
    }


def test_a_relative_tolerance_scales_with_the_baseline() -> None:
    rule = parse_rule("loss lower 10%")
    assert math.isclose(rule.allowed(-2.0), 0.2)
    assert rule.worsening(1.0, 1.5) == 0.5
    assert parse_rule("acc higher 0.1").worsening(0.9, 0.8) == pytest.approx(0.1)


# -- status ---------------------------------------------------------------------------------

Outcome = Literal["passed", "failed", "skipped"]
When = Literal["setup", "call", "teardown"]


def report(when: When, outcome: Outcome, *, xfail: bool = False) -> pytest.TestReport:
    made = pytest.TestReport("test_x.py::test_x", ("test_x.py", 0, "test_x"), {}, outcome, None, when)
    if xfail:
        made.wasxfail = "reason"  # what pytest's skipping plugin sets
    return made


def phases(*reports: pytest.TestReport) -> dict[str, pytest.TestReport]:
    return {made.when: made for made in reports if made.when is not None}


@pytest.mark.parametrize(
    ("reports", "status", "culprit"),
    [
        (phases(report("setup", "passed"), report("call", "passed"), report("teardown", "passed")), "passed", None),
        (phases(report("setup", "passed"), report("call", "failed"), report("teardown", "passed")), "failed", "call"),
        (phases(report("setup", "failed"), report("teardown", "passed")), "error", "setup"),
        (
            phases(report("setup", "passed"), report("call", "passed"), report("teardown", "failed")),
            "error",
            "teardown",
        ),
        (phases(report("setup", "passed"), report("call", "failed"), report("teardown", "failed")), "failed", "call"),
        (phases(report("setup", "skipped"), report("teardown", "passed")), "skipped", None),
        (phases(report("setup", "passed"), report("call", "skipped"), report("teardown", "passed")), "skipped", None),
        (phases(report("setup", "passed"), report("call", "skipped", xfail=True)), "xfailed", None),
        (phases(report("setup", "passed"), report("call", "passed", xfail=True)), "xpassed", None),
        (phases(report("setup", "passed")), "interrupted", None),  # the call never reported
        ({}, "interrupted", None),
    ],
)
def test_a_runs_status_from_its_phase_reports(
    reports: dict[str, pytest.TestReport], status: str, culprit: str | None
) -> None:
    derived, holding_error = derive_status(reports)
    assert derived == status
    assert (holding_error.when if holding_error is not None else None) == culprit
