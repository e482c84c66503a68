"""Odd values: parameters that look alike, return values and metrics JSON or floats cannot hold.

Real sessions on real stores: what counts as one grid point is checked through what a
following ``--xp-resume`` session runs.
"""

from __future__ import annotations

import json
import os
import textwrap

import numpy as np  # imported here, before pytester snapshots sys.modules: numpy cannot be imported twice
import pytest
from processes import Processes, history, store_of

from pytest_experiments import RunRecord, Store
from pytest_experiments.values import _canonical_chunks, ascii_dumps, dumps, identity_values, param_hash

pytestmark = pytest.mark.usefixtures("clean_env")

WARN_ALWAYS = ("-W", "always::pytest.PytestWarning")


def full_runs(pytester: pytest.Pytester) -> dict[str, RunRecord]:
    """Every stored run, read in full (result included), by node id (the latest run of each)."""
    with Store.open(store_of(pytester)) as store:
        return {run.node_id: store.run(run.run_id) for run in store.runs(history=True)}


def hashes(pytester: pytest.Pytester) -> dict[str, str]:
    """Node id -> parameter hash of its runs."""
    return {run.node_id: run.param_hash for run in history(pytester)}


def write(pytester: pytest.Pytester, source: str) -> None:
    """The test module ``test_values.py`` (run by ``procs``, which write no bytecode: a rewrite is always seen)."""
    (pytester.path / "test_values.py").write_text(textwrap.dedent(source))


# -- numpy arrays: by content ----------------------------------------------------------------

ARRAYS = """
    import numpy as np
    import pytest

    BASE = np.arange(3000)
    CHANGED = BASE.copy()
    CHANGED[1500] = -1  # numpy's repr elides the middle: the same text as BASE


    @pytest.mark.parametrize("data", [BASE, CHANGED, BASE.copy()])
    def test_listed(xp, data):
        return {"total": int(data.sum())}


    @pytest.mark.grid(data=[BASE, CHANGED], scale=[1])
    def test_grid(data, scale):
        return {"total": int(data.sum()) * scale}
"""


def test_arrays_that_repr_alike_are_distinct_grid_points(pytester: pytest.Pytester, procs: Processes) -> None:
    base = np.arange(3000)
    changed = base.copy()
    changed[1500] = -1
    assert repr(base) == repr(changed)  # what the plugin must not go by
    write(pytester, ARRAYS)

    code, output = procs.run("-k", "test_listed and data0")
    assert code == 0, output
    # An array with the same content counts as the same grid point (done); the changed one was never run.
    code, output = procs.run("--xp-resume", "-n", "2")
    assert code == 0, output
    assert "xp: resume: 2 done, 3 to run (3 never run)" in output.splitlines(), output
    assert "3 passed" in output

    runs = full_runs(pytester)
    listed = {node.rsplit("[", 1)[1]: run for node, run in runs.items() if "test_listed" in node}
    assert set(listed) == {"data0]", "data1]"}
    assert listed["data0]"].result == {"total": int(base.sum())}
    assert listed["data1]"].result == {"total": int(changed.sum())}
    assert listed["data0]"].param_hash != listed["data1]"].param_hash
    # Stored as their repr (for people), identified by their content (for resume).
    assert listed["data0]"].params == listed["data1]"].params == {"data": repr(base)}
    grid = sorted(run.result["total"] for node, run in runs.items() if "test_grid" in node)
    assert grid == sorted([int(base.sum()), int(changed.sum())])

    code, output = procs.run("--xp-resume")
    assert code == 0, output
    assert "xp: resume: 5 done, 0 to run; nothing left to run" in output.splitlines(), output


def test_array_identity_is_dtype_shape_and_content() -> None:
    base = np.arange(6, dtype=np.int64)
    assert param_hash({"a": base}) == param_hash({"a": base.copy()})
    assert param_hash({"a": base}) != param_hash({"a": base.astype(np.float64)})
    assert param_hash({"a": base.reshape(2, 3)}) != param_hash({"a": base.reshape(3, 2)})
    grid = base.reshape(2, 3)
    assert param_hash({"a": grid}) == param_hash({"a": np.asfortranarray(grid)})  # same content, other layout
    assert param_hash({"a": grid.T}) == param_hash({"a": np.ascontiguousarray(grid.T)})
    # Arrays of Python objects hold pointers, not content: they count by repr (compared at collection).
    values, ambiguous = identity_values({"a": np.array([object()]), "b": base})
    assert ambiguous == {"a"}
    assert values["b"].startswith("ndarray(dtype=int64, shape=(6,), sha256=")


# -- other values: an id, else a collection error ---------------------------------------------

LOOKALIKES = """
    import pytest


    class Model:
        def __init__(self, depth):
            self.depth = depth

        def __repr__(self):
            return "Model()"


    @pytest.mark.parametrize("seed", [0])
    @pytest.mark.parametrize("model", [Model(1), Model(2)])
    def test_fit(xp, model, seed):
        pass


    def test_other():
        pass
"""


@pytest.mark.parametrize(
    ("workers", "exit_code"),
    [
        pytest.param([], pytest.ExitCode.INTERRUPTED, id="no-xdist"),
        pytest.param(["-n", "2"], pytest.ExitCode.TESTS_FAILED, id="n2"),  # xdist's code for collection errors
    ],
)
def test_different_values_with_one_repr_are_a_collection_error(
    pytester: pytest.Pytester, procs: Processes, workers: list[str], exit_code: int
) -> None:
    write(pytester, LOOKALIKES)
    code, output = procs.run(*workers)
    assert code == exit_code, output
    lines = [line for line in output.splitlines() if line.startswith("test_fit: parameter 'model'")]
    assert lines, output
    assert len(set(lines)) == 1, output  # under xdist each worker reports the same line
    assert "test_fit[model0-0] and test_fit[model1-0]" in lines[0]
    assert '"Model()"' in lines[0]
    assert "ids=[...]" in lines[0]
    assert "pytest.param(value, id=...)" in lines[0]
    assert "Traceback" not in output
    assert "identity.py" not in output
    assert not store_of(pytester).exists()  # nothing ran


def test_grid_of_different_values_with_one_repr_is_a_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_grid="""
        import pytest


        class Optimiser:
            def __init__(self, lr):
                self.lr = lr

            def __repr__(self):
                return "Optimiser"


        @pytest.mark.grid(opt=[Optimiser(0.1), Optimiser(0.01)], seed=[0, 1])
        def test_fit(opt, seed):
            pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["test_fit: parameter 'opt' has different values that count as one grid point*"])
    assert not store_of(pytester).exists()


GRID_IDS = """
    import pytest


    class Optimiser:
        def __init__(self, lr):
            self.lr = lr

        def __repr__(self):
            return "Optimiser"


    FAST = pytest.param(Optimiser(0.1), id="fast")
    SLOW = pytest.param(Optimiser(0.01), id="slow", marks=pytest.mark.slow)


    @pytest.mark.grid(opt=[{order}], seed=[0, 1])
    def test_fit(opt, seed):
        return opt.lr
"""


def test_ids_given_in_a_grid_tell_values_apart(pytester: pytest.Pytester, procs: Processes) -> None:
    pytester.makeini("[pytest]\nmarkers =\n    slow: a slow optimiser\n")
    write(pytester, GRID_IDS.format(order="FAST, SLOW"))
    code, output = procs.run("-m", "not slow", "-v")
    assert code == 0, output
    assert "2 passed, 2 deselected" in output  # the value's marks apply to its points
    assert "test_values.py::test_fit[opt=fast-seed=1] PASSED" in output
    assert {run.node_id: run.result for run in full_runs(pytester).values()} == {
        "test_values.py::test_fit[opt=fast-seed=0]": 0.1,
        "test_values.py::test_fit[opt=fast-seed=1]": 0.1,
    }

    # Reordered, the values keep their identity: only the slow points are left to run.
    write(pytester, GRID_IDS.format(order="SLOW, FAST"))
    code, output = procs.run("--xp-resume")
    assert code == 0, output
    assert "xp: resume: 2 done, 2 to run (2 never run)" in output.splitlines(), output
    assert "2 passed" in output
    assert sorted(run.result for run in full_runs(pytester).values()) == [0.01, 0.01, 0.1, 0.1]


IDS = """
    import pytest


    class Model:
        def __init__(self, depth):
            self.depth = depth

        def __repr__(self):
            return "Model()"


    SHALLOW, DEEP = Model(1), Model(2)


    @pytest.mark.parametrize("model", [{listed}], ids=[{names}])
    def test_listed(xp, model):
        return model.depth


    @pytest.mark.parametrize("model", [{params}])
    def test_params(xp, model):
        return model.depth


    @pytest.mark.parametrize("model", [{listed}], ids=lambda model: f"depth{{model.depth}}")
    def test_callable(xp, model):
        return model.depth


    @pytest.mark.parametrize("model", [object()], ids=["anything"])
    def test_address(xp, model):
        pass
"""


def ids_module(order: list[str]) -> str:
    params = ", ".join(f'pytest.param({name}, id="{name.lower()}")' for name in order)
    names = ", ".join(f'"{name.lower()}"' for name in order)
    return IDS.format(listed=", ".join(order), names=names, params=params)


def test_explicit_ids_tell_values_apart_whatever_their_position(pytester: pytest.Pytester, procs: Processes) -> None:
    write(pytester, ids_module(["SHALLOW", "DEEP"]))
    code, output = procs.run(*WARN_ALWAYS)
    assert code == 0, output
    assert "7 passed" in output
    # An object whose repr holds a memory address but has an id: identified by its id, no warning.
    assert "memory address" not in output
    per_node = {node: run.result for node, run in full_runs(pytester).items()}
    assert per_node["test_values.py::test_listed[deep]"] == 2
    assert per_node["test_values.py::test_params[shallow]"] == 1
    assert per_node["test_values.py::test_callable[depth2]"] == 2
    first = hashes(pytester)
    assert first["test_values.py::test_listed[shallow]"] != first["test_values.py::test_listed[deep]"]

    # The same values in another order: every one still counts as done (ids, not positions).
    write(pytester, ids_module(["DEEP", "SHALLOW"]))
    code, output = procs.run("--xp-resume")
    assert code == 0, output
    assert "xp: resume: 7 done, 0 to run; nothing left to run" in output.splitlines(), output


def test_ids_count_in_stacked_parametrize_marks(pytester: pytest.Pytester) -> None:
    # pytest numbers a direct parameter's callspec index over the product of stacked marks:
    # the third item's model is the first value of its mark, not the third.
    pytester.makepyfile(
        test_stacked="""
        import pytest

        class Model:
            pass

        @pytest.mark.experiment
        @pytest.mark.parametrize("model", [Model(), Model()], ids=["small", "large"])
        @pytest.mark.parametrize("seed", [0, 1])
        def test_fit(model, seed):
            pass
        """
    )
    result = pytester.runpytest(*WARN_ALWAYS)
    result.assert_outcomes(passed=4)
    assert "memory address" not in result.stdout.str()
    assert len(set(hashes(pytester).values())) == 4
    pytester.runpytest("--xp-resume").assert_outcomes(deselected=4)


def test_equal_values_stay_one_grid_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_equal="""
        import pytest


        class Config:
            def __init__(self, lr):
                self.lr = lr

            def __repr__(self):
                return "Config()"

            def __eq__(self, other):
                return isinstance(other, Config) and other.lr == self.lr

            __hash__ = None


        SHARED = object()


        @pytest.mark.parametrize("x", [1, 1])
        def test_plain(xp, x):
            pass


        @pytest.mark.parametrize("config", [Config(0.1), Config(0.1)])
        def test_equal(xp, config):
            pass


        @pytest.mark.parametrize("thing", [SHARED, SHARED], ids=["a", "a"])
        def test_same_object(xp, thing):
            pass
        """
    )
    pytester.runpytest().assert_outcomes(passed=6)
    per_function: dict[str, set[str]] = {}
    for run in history(pytester):
        per_function.setdefault(run.experiment, set()).add(run.param_hash)
    assert {name: len(found) for name, found in per_function.items()} == {
        "test_plain": 1,
        "test_equal": 1,
        "test_same_object": 1,
    }
    result = pytester.runpytest("--xp-resume")
    assert "xp: resume: 6 done, 0 to run; nothing left to run" in result.stdout.lines


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


def test_text_utf8_cannot_hold_is_recorded_not_an_internal_error(pytester: pytest.Pytester) -> None:
    # A lone surrogate (bytes decoded with surrogateescape) in a result, a logged parameter or
    # an error message: SQLite refused the text, and the session died with an INTERNALERROR.
    pytester.makepyfile(
        test_text=r"""
        import pytest

        TEXT = b"caf\xe9 \x00".decode("utf-8", "surrogateescape")


        @pytest.mark.experiment
        @pytest.mark.parametrize("fail", [False, True])
        def test_text(xp, fail):
            xp.log_param("text", TEXT)
            if fail:
                raise ValueError(TEXT)
            return {"text": TEXT}
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    assert "INTERNALERROR" not in result.stdout.str()
    text = b"caf\xe9 \x00".decode("utf-8", "surrogateescape")
    runs = {run.params["fail"]: run for run in full_runs(pytester).values()}
    assert (runs[False].status, runs[False].result, runs[False].logged_params) == (
        "passed",
        {"text": text},
        {"text": text},
    )
    assert (runs[True].status, runs[True].error) == ("failed", "ValueError: caf\\udce9 \\x00")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_run_ids_stay_unique_across_a_fork() -> None:
    from pytest_experiments.ids import new_id

    new_id()  # the parent has bytes drawn ahead: a child must not reuse them
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe and exits
        os.write(writer, ",".join(new_id() for _ in range(3)).encode())
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        in_child = pipe.read().split(",")
    os.waitpid(child, 0)
    in_parent = [new_id() for _ in range(3)]
    assert len({*in_child, *in_parent}) == 6
    assert len({new_id() for _ in range(3000)}) == 3000  # across refills of the pool


@pytest.mark.parametrize(
    "value",
    [
        {"loss": 0.1, "name": "réseau ✓", "nested": {"a": [1, 2.5, None, True, False]}, "empty": {}},
        ["tab\there", 'quote"back\\slash', "\x00nul", "\u2028line", "\U0001f600"],
        {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf"), "-0": -0.0, "big": 10**40},
        "a lone surrogate \udcff",
        ("a", "tuple", 1),
        12345678901234567890,
        None,
    ],
    ids=["dict", "strings", "floats", "surrogate", "tuple", "int", "none"],
)
def test_the_prebuilt_encoders_write_what_json_writes(value: object) -> None:
    assert ascii_dumps(value) == json.dumps(value, separators=(",", ":"))
    canonical = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    assert "".join(_canonical_chunks(value, 0)) == canonical
    # dumps: as compact, non-ASCII kept, unless UTF-8 cannot hold it (a lone surrogate)
    compact = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert dumps(value) == (compact if "\udcff" not in compact else json.dumps(value, separators=(",", ":")))
