"""Odd values: return values and metrics JSON or floats cannot hold."""

from __future__ import annotations

import pytest
from processes import store_of

from pytest_experiments import RunRecord, Store

pytestmark = pytest.mark.usefixtures("clean_env")

WARN_ALWAYS = ("-W", "always::pytest.PytestWarning")


def full_runs(pytester: pytest.Pytester) -> dict[str, RunRecord]:
    """Every stored run, read in full (result included), by node id (the latest run of each)."""
    with Store.open(store_of(pytester)) as store:
        return {run.node_id: store.run(run.run_id) for run in store.runs(history=True)}


# -- return values ---------------------------------------------------------------------------


def test_odd_return_values_are_stored_as_best_it_can_and_the_test_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_odd="""
        import pytest


        class Unprintable:
            def __repr__(self):
                raise RuntimeError("no repr")


        def nested(depth):
            value = 1
            for _ in range(depth):
                value = [value]
            return value


        @pytest.mark.experiment
        def test_huge_int():
            return 10**400


        @pytest.mark.experiment
        def test_unprintable_int():
            return {"n": 10**5000, "ok": 1}


        @pytest.mark.experiment
        def test_unprintable():
            return {"model": Unprintable(), "score": 0.5}


        @pytest.mark.experiment
        def test_holds_itself():
            result = {"acc": 0.9}
            result["self"] = result
            return result


        @pytest.mark.experiment
        def test_deep():
            return {"deep": nested(150), "loss": 0.1}


        @pytest.mark.parametrize("model", [Unprintable()], ids=["unprintable"])
        def test_odd_logs(xp, model):
            cycle = []
            cycle.append(cycle)
            xp.log_param("cycle", cycle)
            xp.metadata["model"] = model
            return 1
        """
    )
    result = pytester.runpytest(*WARN_ALWAYS)
    result.assert_outcomes(passed=6, warnings=5)  # one a run at most
    output = result.stdout.str()
    assert "INTERNALERROR" not in output
    assert "'result' too large for a float: kept in the result, not as metrics" in output
    assert "stored in hex" in output
    assert "its repr raised RuntimeError" in output
    assert "{...} (a container holding itself)" in output
    assert "[...] (nested deeper than 100 levels)" in output

    runs = {node.split("::")[1]: run for node, run in full_runs(pytester).items()}
    assert {run.status for run in runs.values()} == {"passed"}
    assert runs["test_huge_int"].result == 10**400
    assert runs["test_huge_int"].metrics == {}
    assert runs["test_unprintable_int"].result == {"n": hex(10**5000), "ok": 1}
    assert runs["test_unprintable_int"].metrics == {"ok": 1.0}
    assert runs["test_unprintable"].result == {
        "model": "<Unprintable object; its repr raised RuntimeError>",
        "score": 0.5,
    }
    assert runs["test_unprintable"].metrics == {"score": 0.5}
    assert runs["test_holds_itself"].result == {"acc": 0.9, "self": "{...}"}
    assert runs["test_holds_itself"].metrics == {"acc": 0.9}
    deep = runs["test_deep"].result["deep"]
    for _ in range(99):  # 100 levels with the mapping holding it
        deep = deep[0]
    assert deep == "[...]"
    assert runs["test_deep"].metrics == {"loss": 0.1}
    odd = runs["test_odd_logs[unprintable]"]
    assert odd.params == {"model": "<Unprintable object; its repr raised RuntimeError>"}
    assert odd.logged_params == {"cycle": ["[...]"]}
    assert odd.metadata["model"] == "<Unprintable object; its repr raised RuntimeError>"


# -- metrics ---------------------------------------------------------------------------------


def test_bad_metric_values_and_steps_raise_in_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_metrics="""
        import numpy as np
        import pytest


        class Unprintable:
            def __repr__(self):
                raise RuntimeError("no repr")


        def test_caught(xp):
            with pytest.raises(ValueError, match="too large for a float"):
                xp.log_metric("x", 10**400)
            for step in (float("nan"), float("inf"), np.float64("-inf")):
                with pytest.raises(ValueError, match="finite integer"):
                    xp.log_metric("x", 1.0, step=step)
            for step in (2**63, -(2**63) - 1):
                with pytest.raises(ValueError, match="64 bits"):
                    xp.log_metric("x", 1.0, step=step)
            for step in (True, "3", 1.5):
                with pytest.raises(TypeError, match="step must be an integer"):
                    xp.log_metric("x", 1.0, step=step)
            with pytest.raises(TypeError, match="metric name"):
                xp.log_metric(Unprintable(), 1.0)
            with pytest.raises(TypeError, match="real number, not complex"):
                xp.log_metric("x", 1 + 2j)
            with pytest.raises(TypeError, match="mapping"):
                xp.log_metrics([("x", 1.0)])
            with pytest.raises(TypeError, match="real number"):
                xp.log_metrics({"a": 1.0, "b": "high"})  # nothing of it is logged
            with pytest.raises(ValueError, match="finite integer"):
                xp.log_metrics({"a": 1.0}, step=float("nan"))
            xp.log_metric("kept", 1.0, step=np.int64(2**62 + 1))
            xp.log_metric("kept", 2.0, step=-(2**63))
            xp.log_metric("kept", 3.0, step=np.float64(4.0))


        def test_uncaught(xp):
            xp.log_metric("x", 1.0, step=float("nan"))
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    assert "INTERNALERROR" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*ValueError: xp.log_metric('x'): step must be a finite integer, not nan"])
    runs = {node.split("::")[1]: run for node, run in full_runs(pytester).items()}
    assert runs["test_caught"].status == "passed"
    assert runs["test_caught"].metrics == {"kept": 3.0}
    with Store.open(store_of(pytester)) as store:
        assert store.metric_series(runs["test_caught"].run_id, "kept") == [(2**62 + 1, 1.0), (-(2**63), 2.0), (4, 3.0)]
    assert runs["test_uncaught"].status == "failed"
    assert runs["test_uncaught"].error_type == "ValueError"
