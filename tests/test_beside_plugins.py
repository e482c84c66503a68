"""Experiments beside the plugins people already run: pytest-rerunfailures, pytest-asyncio,
anyio, pytest-repeat, hypothesis, unittest and ``--sw``.

These plugins are in the ``test`` extra and off in every inner session (``processes.PLUGINS_OFF``);
each test turns on the ones it is about with ``-p NAME``.
"""

from __future__ import annotations

import re

import pytest
from processes import history

from pytest_experiments import RunRecord, Store

XDIST = pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["no-xdist", "n2"])
# pytest-asyncio warns at start-up in a project that leaves this unset.
ASYNCIO = ("-p", "asyncio", "-o", "asyncio_default_fixture_loop_scope=function")


@pytest.fixture(autouse=True)
def _no_store_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XP_STORE", raising=False)


def full_history(pytester: pytest.Pytester) -> list[RunRecord]:
    """Every run, oldest first, read in full (result and metadata)."""
    with Store.open(pytester.path / ".experiments") as store:
        return [store.run(run.run_id) for run in store.runs(history=True)]


def latest(pytester: pytest.Pytester) -> dict[str, RunRecord]:
    """The latest run of each grid point, by node id."""
    with Store.open(pytester.path / ".experiments") as store:
        return {run.node_id: run for run in store.runs()}


# -- pytest-rerunfailures ---------------------------------------------------------------

# Each test counts its attempts in a file (the attempts of one item run in one process).
FLAKY = """
    from pathlib import Path

    import pytest

    def attempt(name):
        path = Path(__file__).parent / f"attempts-{name}"
        done = int(path.read_text()) if path.exists() else 0
        path.write_text(str(done + 1))
        return done + 1

    @pytest.mark.grid(x=[1])
    def test_flaky(xp, x):
        n = attempt("flaky")
        xp.log_metric("tries", n)
        if n < 3:
            raise ValueError(f"attempt {n} failed")
        return {"score": n}

    @pytest.fixture
    def breaks_once():
        yield
        if attempt("teardown") == 1:
            raise RuntimeError("teardown failed")

    @pytest.mark.experiment
    def test_result_then_fails(breaks_once):
        # First attempt: returns, then its teardown fails. Second: fails before returning.
        if attempt("result") == 2:
            raise AssertionError("no result this time")
        return {"first": 1}

    @pytest.mark.experiment
    def test_always_fails(xp):
        xp.log_metric("m", 1)
        assert False, "never passes"
"""


@XDIST
def test_each_rerun_attempt_is_a_run_with_its_own_status(pytester: pytest.Pytester, xdist: list[str]) -> None:
    pytester.makepyfile(test_flaky=FLAKY)
    result = pytester.runpytest("-p", "rerunfailures", "--reruns", "2", "-p", "no:cacheprovider", *xdist)
    assert result.parseoutcomes() == {
        "passed": 3,
        "failed": 1,
        "rerun": 6,
    }  # pytest counts the call that passed before its teardown failed
    output = result.stdout.str()
    assert "interrupted" not in output
    assert "--xp-resume" not in output
    assert "xp: 9 runs recorded (6 failed, 2 passed, 1 error)" in output

    runs: dict[str, list[RunRecord]] = {}
    for run in full_history(pytester):
        runs.setdefault(run.experiment, []).append(run)
    flaky = runs["test_flaky"]
    assert [(run.status, run.metadata["attempt"], run.metrics) for run in flaky] == [
        ("failed", 1, {"tries": 1.0}),
        ("failed", 2, {"tries": 2.0}),
        ("passed", 3, {"tries": 3.0, "score": 3.0}),
    ]
    assert [run.error_message for run in flaky] == ["attempt 1 failed", "attempt 2 failed", None]
    assert "ValueError: attempt 1 failed" in (flaky[0].traceback or "")
    assert flaky[2].result == {"score": 3}

    # An attempt keeps nothing of the one before: the second returned nothing.
    first, second, third = runs["test_result_then_fails"]
    assert (first.status, first.error_type, first.result) == ("error", "RuntimeError", {"first": 1})
    assert (second.status, second.error_type, second.result, second.metrics) == ("failed", "AssertionError", None, {})
    assert (third.status, third.result) == ("passed", {"first": 1})

    assert [(run.status, run.metadata["attempt"]) for run in runs["test_always_fails"]] == [
        ("failed", 1),
        ("failed", 2),
        ("failed", 3),
    ]
    # A grid point's latest run is its final attempt.
    final = {node.split("::")[1]: run.status for node, run in latest(pytester).items()}
    assert final == {"test_flaky[x=1]": "passed", "test_result_then_fails": "passed", "test_always_fails": "failed"}


# -- async experiments -------------------------------------------------------------------

ASYNC_EXPERIMENTS = """
    import asyncio

    import pytest

    @pytest.fixture
    def anyio_backend():
        return "asyncio"

    @pytest.mark.asyncio
    @pytest.mark.grid(x=[1, 2])
    async def test_asyncio(xp, x):
        await asyncio.sleep(0)
        xp.log_metric("logged", x)
        return {"value": x * 10}

    @pytest.mark.anyio
    @pytest.mark.grid(x=[3])
    async def test_anyio(x):
        await asyncio.sleep(0)
        return {"value": x * 10}

    @pytest.mark.grid(x=[4])
    def test_sync(x):
        return {"value": x * 10}

    class TestMethods:
        @pytest.mark.asyncio
        @pytest.mark.experiment
        async def test_method(self):
            return 5
"""

# Another plugin's pytest_pyfunc_call, which an experiment's call must not cut out.
OBSERVER_CONFTEST = """
    from pathlib import Path

    def pytest_pyfunc_call(pyfuncitem):
        with open(Path(__file__).parent / "called", "a") as seen:
            seen.write(pyfuncitem.name + "\\n")
"""


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_async_experiments_keep_their_return_value(pytester: pytest.Pytester, mode: str) -> None:
    pytester.makeconftest(OBSERVER_CONFTEST)
    # Auto mode needs no asyncio mark.
    source = ASYNC_EXPERIMENTS if mode == "strict" else re.sub(r" *@pytest.mark.asyncio\n", "", ASYNC_EXPERIMENTS)
    pytester.makepyfile(test_async=source)
    # -W error, but for pytest's note that the plugin named "asyncio" cannot be rewritten: the
    # standard library's asyncio, imported by this outer session (psycopg imports it, see
    # conftest.py), has that name.
    no_rewrite_note = ("-W", "ignore:Module already imported so cannot be rewritten; asyncio")
    result = pytester.runpytest(*ASYNCIO, "-o", f"asyncio_mode={mode}", "-p", "anyio", "-W", "error", *no_rewrite_note)
    result.assert_outcomes(passed=5)
    runs = {node.split("::", 1)[1]: run for node, run in latest(pytester).items()}
    assert {name: run.metrics for name, run in runs.items()} == {
        "test_asyncio[x=1]": {"logged": 1.0, "value": 10.0},
        "test_asyncio[x=2]": {"logged": 2.0, "value": 20.0},
        "test_anyio[x=3]": {"value": 30.0},
        "test_sync[x=4]": {"value": 40.0},
        "TestMethods::test_method": {"result": 5.0},
    }
    assert all(run.status == "passed" for run in runs.values())
    # Every test reaches the other plugin's pytest_pyfunc_call, as without pytest-experiments:
    # but anyio's in strict mode, where anyio's own implementation answers for it (in auto
    # mode pytest-asyncio runs it, and anyio's steps aside).
    called = (pytester.path / "called").read_text().split()
    expected = ["test_asyncio[x=1]", "test_asyncio[x=2]", "test_sync[x=4]", "test_method"]
    assert sorted(called) == sorted(expected + (["test_anyio[x=3]"] if mode == "auto" else []))


def test_async_experiment_failure_keeps_its_error_and_metrics(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_async_fail="""
        import pytest

        @pytest.mark.asyncio
        async def test_fails(xp):
            xp.log_metric("before", 1)
            raise KeyError("missing")
        """
    )
    pytester.runpytest(*ASYNCIO).assert_outcomes(failed=1)
    (run,) = full_history(pytester)
    assert (run.status, run.error_type, run.metrics, run.result) == ("failed", "KeyError", {"before": 1.0}, None)


def test_async_without_a_plugin_fails_as_pytest_says(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_no_plugin="""
        import pytest

        @pytest.mark.experiment
        async def test_alone():
            return 1
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*async def functions are not natively supported*"])
    (run,) = full_history(pytester)
    assert run.status == "failed"


# -- unittest and hypothesis: status, and metrics through the run handle -----------------


def test_unittest_experiments_record_status_and_metrics_through_a_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_unit="""
        import unittest

        import pytest

        @pytest.mark.experiment
        class TestModel(unittest.TestCase):
            @pytest.fixture(autouse=True)
            def _run(self, xp_run):
                self.xp = xp_run

            def test_fit(self):
                self.xp.log_metric("accuracy", 0.9)

            def test_broken(self):
                self.xp.log_metric("accuracy", 0.1)
                self.assertEqual(1, 2)

            @unittest.skip("not today")
            def test_skipped(self):
                pass
        """
    )
    pytester.runpytest().assert_outcomes(passed=1, failed=1, skipped=1)
    runs = {run.experiment: run for run in full_history(pytester)}
    assert {name: (run.status, run.metrics) for name, run in runs.items()} == {
        "TestModel.test_fit": ("passed", {"accuracy": 0.9}),
        "TestModel.test_broken": ("failed", {"accuracy": 0.1}),
        "TestModel.test_skipped": ("skipped", {}),
    }
    assert runs["TestModel.test_broken"].error_type == "AssertionError"


def test_hypothesis_experiments_record_status_and_metrics(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_props="""
        import pytest
        from hypothesis import HealthCheck, given, settings, strategies as st

        @pytest.mark.grid(scale=[1, 2])
        @settings(max_examples=20, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(n=st.integers(min_value=0, max_value=100))
        def test_property(xp, scale, n):
            xp.log_metric("largest", max(xp.metrics.get("largest", 0), n * scale))
            assert n * scale >= 0

        @pytest.mark.experiment
        @settings(max_examples=20, database=None)
        @given(n=st.integers())
        def test_falsified(n):
            assert n < 10
        """
    )
    result = pytester.runpytest("-p", "hypothesispytest")
    result.assert_outcomes(passed=2, failed=1)
    runs = {run.node_id.split("::")[1]: run for run in full_history(pytester)}
    assert {name: run.status for name, run in runs.items()} == {
        "test_property[scale=1]": "passed",
        "test_property[scale=2]": "passed",
        "test_falsified": "failed",
    }
    assert 0 <= runs["test_property[scale=1]"].metrics["largest"] <= 100
    assert runs["test_falsified"].error_type == "AssertionError"


# -- pytest-repeat -----------------------------------------------------------------------


def test_repetitions_are_grid_points_with_a_repeat_parameter(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_repeat="""
        import pytest

        @pytest.mark.grid(lr=[0.1])
        def test_fit(xp, lr):
            return {"repeat": xp.params["repeat"]}

        @pytest.mark.experiment
        @pytest.mark.repeat(2)
        def test_marked():
            pass
        """
    )
    pytester.runpytest("-p", "repeat", "--count", "3", "-v").stdout.fnmatch_lines(["*test_fit?lr=0.1-1-3? PASSED*"])
    runs = history(pytester)
    assert sorted((run.experiment, tuple(sorted(run.params.items()))) for run in runs) == [
        ("test_fit", (("lr", 0.1), ("repeat", 1))),
        ("test_fit", (("lr", 0.1), ("repeat", 2))),
        ("test_fit", (("lr", 0.1), ("repeat", 3))),
        ("test_marked", (("repeat", 1),)),
        ("test_marked", (("repeat", 2),)),
    ]
    assert sorted(run.metrics["repeat"] for run in runs if run.experiment == "test_fit") == [1.0, 2.0, 3.0]

    # Each repetition is a grid point: resume runs only the repetitions not done yet.
    result = pytester.runpytest("-p", "repeat", "--count", "5", "--xp-resume")
    result.assert_outcomes(passed=2, deselected=5)
    result.stdout.fnmatch_lines(["xp: resume: 5 done, 2 to run (2 never run)*"])


# -- --sw (stepwise) with --xp-retry-failed ----------------------------------------------


@XDIST
def test_retry_failed_under_stepwise_says_what_stepwise_left_out(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, xdist: list[str]
) -> None:
    pytester.makepyfile(
        test_sw="""
        import os

        import pytest

        @pytest.mark.grid(i=[0, 1, 2, 3])
        def test_point(i):
            assert str(i) not in os.environ["FAIL"]
        """
    )
    monkeypatch.setenv("FAIL", "02")
    pytester.runpytest().assert_outcomes(passed=2, failed=2)
    # --sw-skip steps over the failure of point 0 and stops at point 2: stepwise's position.
    pytester.runpytest("--sw", "--sw-skip").assert_outcomes(passed=1, failed=2)

    # Stepwise skips everything before its position, point 0 included, which failed: retry
    # runs point 2 only, and says that one more is left to run.
    result = pytester.runpytest("--sw", "--xp-retry-failed", *xdist)
    result.assert_outcomes(failed=1, deselected=3)
    assert (
        "xp: retry-failed: 1 done, 1 to run (1 failed); 1 more to run deselected by other options "
        "(--sw skips what precedes its last failure; --sw-reset runs them)"
    ) in result.stdout.lines
    assert [run.params["i"] for run in history(pytester)[-1:]] == [2]

    monkeypatch.setenv("FAIL", "")
    result = pytester.runpytest("--sw-reset", "--xp-retry-failed", *xdist)
    result.assert_outcomes(passed=2, deselected=2)
    assert "xp: retry-failed: 2 done, 2 to run (2 failed)" in result.stdout.lines
