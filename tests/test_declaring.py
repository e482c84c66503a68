"""Which tests are experiments, grids, collection errors, and how parameters are stored."""

from __future__ import annotations

import json
import sqlite3
import textwrap

import pytest

from pytest_experiments import Store


@pytest.fixture(autouse=True)
def _no_store_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XP_STORE", raising=False)


def all_runs(pytester: pytest.Pytester) -> list:
    with Store.open(pytester.path / ".experiments") as store:
        return store.runs(history=True)


def by_node(pytester: pytest.Pytester) -> dict:
    return {run.node_id: run for run in all_runs(pytester)}


# -- which tests are experiments --------------------------------------------------------


def test_marked_class_module_and_fixture_requests_are_experiments(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_mixed="""
        import pytest

        @pytest.mark.experiment
        def test_marked():
            pass

        @pytest.mark.experiment
        class TestModel:
            def test_fit(self):
                pass

        class TestPlain:
            def test_plain_method(self):
                pass

        def test_uses_xp(xp):
            pass

        def test_uses_xp_dir(xp_dir):
            (xp_dir / "artefact.txt").write_text("data")

        def test_plain():
            pass

        @pytest.mark.parametrize("n", [1, 2])
        def test_plain_parametrized(n):
            pass
        """,
        test_module_mark="""
        import pytest

        pytestmark = pytest.mark.experiment

        def test_in_marked_module():
            pass
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=9)
    runs = by_node(pytester)
    assert set(runs) == {
        "test_mixed.py::test_marked",
        "test_mixed.py::TestModel::test_fit",
        "test_mixed.py::test_uses_xp",
        "test_mixed.py::test_uses_xp_dir",
        "test_module_mark.py::test_in_marked_module",
    }
    assert runs["test_mixed.py::TestModel::test_fit"].experiment.endswith("test_fit")
    assert runs["test_module_mark.py::test_in_marked_module"].module == "test_module_mark.py"
    assert all(run.status == "passed" for run in runs.values())
    artefact = runs["test_mixed.py::test_uses_xp_dir"].dir / "artefact.txt"
    assert artefact.read_text() == "data"


def test_plain_suite_writes_nothing_and_creates_no_store(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_one():
            assert 1 + 1 == 2

        @pytest.mark.parametrize("n", [1, 2, 3])
        def test_many(n):
            assert n > 0

        class TestThing:
            def test_method(self, tmp_path):
                (tmp_path / "f").write_text("x")
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=5)
    assert not (pytester.path / ".experiments").exists()
    assert "xp:" not in result.stdout.str()


# An array-API suite (SciPy, scikit-learn, array-api-extra): its ``xp`` fixture is the array
# namespace, parametrised over backends, under warnings as errors.
ARRAY_API_CONFTEST = """
    import importlib

    import pytest

    @pytest.fixture(params=["math", "cmath"])
    def xp(request):
        return importlib.import_module(request.param)
"""


def test_a_suite_fixture_named_xp_is_not_the_run_handle(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makeconftest(ARRAY_API_CONFTEST)
    pytester.makepyfile(
        test_arrays="""
        import pytest

        def test_sqrt(xp):
            assert xp.sqrt(4) == 2

        @pytest.mark.parametrize("n", [1, 2])
        def test_many(xp, n):
            assert xp.sqrt(n * n) == n

        class TestOwn:
            @pytest.fixture
            def xp(self):
                return "a class's own xp"

            def test_method(self, xp):
                assert xp == "a class's own xp"
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=7)
    assert "xp:" not in result.stdout.str()
    assert not (pytester.path / ".experiments").exists()


def test_xp_run_is_the_run_handle_beside_a_suite_fixture_named_xp(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    arrays = pytester.mkpydir("arrays")
    arrays.joinpath("conftest.py").write_text(textwrap.dedent(ARRAY_API_CONFTEST))
    arrays.joinpath("test_exp.py").write_text(
        textwrap.dedent(
            """
            def test_handle(xp, xp_run):
                xp_run.log_metric("root", xp.sqrt(16).real)
                return {"name": xp.__name__}

            def test_folder(xp_dir):
                (xp_dir / "a.txt").write_text("x")

            def test_plain(xp):
                pass
            """
        )
    )
    elsewhere = pytester.mkpydir("elsewhere")  # beyond that conftest: xp is ours
    elsewhere.joinpath("test_ours.py").write_text("def test_ours(xp):\n    xp.log_metric('m', 1)\n")
    extending = pytester.mkpydir("extending")  # a conftest whose xp builds on ours
    extending.joinpath("conftest.py").write_text(
        "import pytest\n\n@pytest.fixture\ndef xp(xp):\n    xp.metadata['via'] = 'conftest'\n    return xp\n"
    )
    extending.joinpath("test_extended.py").write_text("def test_extended(xp):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=7)
    runs = by_node(pytester)
    assert set(runs) == {
        "arrays/test_exp.py::test_handle[math]",
        "arrays/test_exp.py::test_handle[cmath]",
        "arrays/test_exp.py::test_folder",
        "elsewhere/test_ours.py::test_ours",
        "extending/test_extended.py::test_extended",
    }
    assert runs["arrays/test_exp.py::test_handle[cmath]"].metrics == {"root": 4.0}
    assert runs["arrays/test_exp.py::test_handle[math]"].params == {"xp": "math"}  # the fixture's param
    assert runs["elsewhere/test_ours.py::test_ours"].metrics == {"m": 1.0}
    assert (runs["arrays/test_exp.py::test_folder"].dir / "a.txt").read_text() == "x"
    with Store.open(pytester.path / ".experiments") as store:
        assert store.run(runs["extending/test_extended.py::test_extended"].run_id).metadata["via"] == "conftest"


# -- grids ------------------------------------------------------------------------------


def test_grid_is_the_cartesian_product_with_readable_ids(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.grid(lr=[0.01, 0.1], seed=[0, 1, 2])
        def test_train(lr, seed):
            return {"score": lr * 10 + seed}
        """
    )
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*test_train?lr=0.01-seed=0? PASSED*", "*test_train?lr=0.1-seed=2? PASSED*"])
    runs = by_node(pytester)
    expected = {
        f"test_grid_is_the_cartesian_product_with_readable_ids.py::test_train[lr={lr}-seed={seed}]": (lr, seed)
        for lr in (0.01, 0.1)
        for seed in (0, 1, 2)
    }
    assert set(runs) == set(expected)
    for node_id, (lr, seed) in expected.items():
        assert runs[node_id].params == {"lr": lr, "seed": seed}
        assert runs[node_id].metrics == {"score": pytest.approx(lr * 10 + seed)}


def test_grid_where_filters_points(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.grid(a=[1, 2, 3], b=[1, 2, 3], where=lambda a, b: a < b)
        def test_pairs(a, b):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=3)
    points = sorted((run.params["a"], run.params["b"]) for run in all_runs(pytester))
    assert points == [(1, 2), (1, 3), (2, 3)]


def test_several_grid_marks_give_their_union(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.grid(model=["linear"], depth=[None])
        @pytest.mark.grid(model=["tree"], depth=[2, 4, 8], where=lambda model, depth: depth <= 4)
        def test_conditional(model, depth):
            pass

        @pytest.mark.grid(k=[1, 2])
        @pytest.mark.grid(k=[2, 3])
        def test_overlap(k):
            pass
        """
    )
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=6)
    runs = all_runs(pytester)
    conditional = sorted(
        (run.params["model"], run.params["depth"] or 0) for run in runs if run.experiment == "test_conditional"
    )
    assert conditional == [("linear", 0), ("tree", 2), ("tree", 4)]
    overlap = sorted(run.params["k"] for run in runs if run.experiment == "test_overlap")
    assert overlap == [1, 2, 3]
    result.stdout.fnmatch_lines(["*test_conditional?model=linear-depth=None? PASSED*"])
    result.stdout.fnmatch_lines(["*test_conditional?model=tree-depth=4? PASSED*"])


def test_stacked_parametrize_is_a_cartesian_product(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("seed", [0, 1])
        @pytest.mark.parametrize("size", [10, 20, 30])
        @pytest.mark.experiment
        def test_stack(size, seed):
            return size + seed
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=6)
    points = sorted((run.params["size"], run.params["seed"], run.metrics["result"]) for run in all_runs(pytester))
    assert points == [(size, seed, size + seed) for size in (10, 20, 30) for seed in (0, 1)]


def test_indirect_parametrize_records_the_param_values(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def dataset(request):
            return {"name": request.param, "rows": len(request.param)}

        @pytest.mark.parametrize("dataset", ["iris", "mnist"], indirect=True)
        @pytest.mark.parametrize("lr", [0.5])
        def test_fit(dataset, lr, xp):
            return {"rows": dataset["rows"]}
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)
    runs = sorted(all_runs(pytester), key=lambda run: run.params["dataset"])
    assert [run.params for run in runs] == [{"dataset": "iris", "lr": 0.5}, {"dataset": "mnist", "lr": 0.5}]
    assert [run.metrics["rows"] for run in runs] == [4.0, 5.0]


def test_a_bare_grid_mark_is_left_alone(pytester: pytest.Pytester) -> None:
    # A suite with a grid marker of its own, under --strict-markers.
    pytester.makeconftest(
        """
        def pytest_configure(config):
            config.addinivalue_line("markers", "grid: the suite's own tests of its grid layout")
        """
    )
    pytester.makepyfile(
        test_layout="""
        import pytest

        @pytest.mark.grid
        def test_cells():
            pass

        @pytest.mark.grid
        class TestRows:
            def test_row(self):
                pass
        """,
        test_module_marked="""
        import pytest

        pytestmark = pytest.mark.grid

        def test_columns():
            pass
        """,
    )
    result = pytester.runpytest("--strict-markers", "-m", "grid")
    result.assert_outcomes(passed=3)
    assert "xp:" not in result.stdout.str()
    assert not (pytester.path / ".experiments").exists()


def test_grid_marks_at_different_levels_multiply(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.grid(data=["iris"])

        @pytest.mark.grid(seed=[0, 1])
        class TestModel:
            @pytest.mark.grid(lr=[0.1, 0.01])
            def test_fit(self, data, seed, lr):
                return {"score": seed + lr}

            # the marks of one level give the union of their grids
            @pytest.mark.grid(depth=[1, 2], where=lambda depth: depth > 1)
            @pytest.mark.grid(depth=[None])
            def test_tree(self, data, seed, depth):
                pass

            def test_defaults(self, data, seed):
                pass

        class Opt:
            pass

        @pytest.mark.grid(opt=[pytest.param(Opt(), id="adam"), pytest.param(Opt(), id="sgd")])
        class TestObjects:
            @pytest.mark.grid(size=[pytest.param(Opt(), id="small")])
            def test_obj(self, data, opt, size):
                pass
        """
    )
    result = pytester.runpytest("-v", "-W", "error")
    result.assert_outcomes(passed=4 + 4 + 2 + 2)
    result.stdout.fnmatch_lines(["*TestModel::test_fit?lr=0.1-seed=0-data=iris? PASSED*"])
    runs = all_runs(pytester)
    fit = sorted((run.params["seed"], run.params["lr"]) for run in runs if run.experiment == "TestModel.test_fit")
    assert fit == [(0, 0.01), (0, 0.1), (1, 0.01), (1, 0.1)]
    tree = sorted(
        (run.params["seed"], run.params["depth"] or 0) for run in runs if run.experiment == "TestModel.test_tree"
    )
    assert tree == [(0, 0), (0, 2), (1, 0), (1, 2)]
    defaults = [run.params for run in runs if run.experiment == "TestModel.test_defaults"]
    assert sorted(defaults, key=str) == [{"data": "iris", "seed": 0}, {"data": "iris", "seed": 1}]
    objects = [run for run in runs if run.experiment == "TestObjects.test_obj"]
    assert len({run.param_hash for run in objects}) == 2  # told apart by the ids given at each level
    # The ids given count, not the object's repr: a new session is the same two grid points.
    pytester.runpytest("--xp-resume").assert_outcomes(deselected=12)


def test_one_axis_at_two_levels_is_a_clean_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.grid(lr=[0.1])
        class TestModel:
            @pytest.mark.grid(lr=[0.2])
            def test_fit(self, lr):
                pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    (line,) = [line for line in result.stdout.lines if line.startswith("grid on ")]
    assert line.startswith("grid on test_fit: axis 'lr' is in grid marks at two levels")
    assert "Traceback" not in result.stdout.str()


# -- collection errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mark", "fragments"),
    [
        pytest.param("lr=[0.1], depth=[1, 2]", ["test_model", "'depth'", "not an argument"], id="axis-not-argument"),
        pytest.param("lr=[]", ["test_model", "'lr'", "empty"], id="empty-axis"),
        pytest.param("lr=[0.1], where=3", ["test_model", "where", "not callable"], id="where-not-callable"),
        pytest.param(
            "lr=[0.1], where=lambda: True",
            ["test_model", "where= must accept every axis as a keyword (lr)", "unexpected keyword argument 'lr'"],
            id="where-missing-axis",
        ),
        pytest.param(
            "lr=[0.1], where=lambda lr, depth: True",
            ["test_model", "where= must accept every axis", "missing a required argument: 'depth'"],
            id="where-extra-argument",
        ),
        pytest.param(
            "lr=[0.1, 0.0], where=lambda lr: 1 / lr > 1",
            ["test_model", "where= raised ZeroDivisionError for lr=0.0: float division by zero"],
            id="where-raises",
        ),
    ],
)
def test_bad_grid_is_a_clean_collection_error(pytester: pytest.Pytester, mark: str, fragments: list[str]) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.grid({mark})
        def test_model(lr):
            pass

        def test_other():
            pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(errors=1)
    output = result.stdout.str()
    message_lines = [line for line in output.splitlines() if line.startswith("grid on ")]
    assert len(message_lines) == 1, output
    for fragment in fragments:
        assert fragment in message_lines[0]
    assert "Traceback" not in output
    assert "grid.py" not in output
    assert "_fail(" not in output
    assert not (pytester.path / ".experiments").exists()


# -- how parameters are stored ----------------------------------------------------------


def test_params_are_stored_as_json_and_non_json_values_as_repr(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        class Model:
            def __repr__(self):
                return "Model(depth=3)"

        @pytest.mark.parametrize("model", [Model()], ids=["m"])
        @pytest.mark.parametrize("shape", [(2, 3)], ids=["s"])
        @pytest.mark.parametrize("config", [{"a": 1, "b": [True, None, "x"]}], ids=["c"])
        @pytest.mark.parametrize("ratio", [0.25])
        @pytest.mark.experiment
        def test_params(model, shape, config, ratio):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    expected = {"model": "Model(depth=3)", "shape": [2, 3], "config": {"a": 1, "b": [True, None, "x"]}, "ratio": 0.25}
    (run,) = all_runs(pytester)
    assert run.params == expected
    # The database holds plain JSON text: nothing pickled.
    connection = sqlite3.connect(pytester.path / ".experiments" / "experiments.sqlite")
    try:
        (raw,) = connection.execute("SELECT params FROM runs").fetchone()
    finally:
        connection.close()
    assert isinstance(raw, str)
    assert json.loads(raw) == expected


def test_param_hash_ignores_order_numpy_types_and_logged_params(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import numpy as np
        import pytest

        @pytest.mark.parametrize("a,b", [(1, 0.5)])
        @pytest.mark.experiment
        def test_one(a, b):
            pass

        @pytest.mark.parametrize("b,a", [(0.5, 1)])
        @pytest.mark.experiment
        def test_reversed(a, b):
            pass

        @pytest.mark.parametrize("a,b", [(np.int64(1), np.float64(0.5))])
        @pytest.mark.experiment
        def test_numpy(a, b):
            pass

        @pytest.mark.parametrize("a,b", [(1, 0.5)])
        def test_logged(a, b, xp):
            xp.log_param("derived", a * 10)

        @pytest.mark.parametrize("a,b", [(2, 0.5)])
        @pytest.mark.experiment
        def test_other_value(a, b):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=5)
    runs = {run.experiment: run for run in all_runs(pytester)}
    assert runs["test_numpy"].params == {"a": 1, "b": 0.5}
    assert type(runs["test_numpy"].params["a"]) is int
    assert runs["test_logged"].logged_params == {"derived": 10}
    assert "derived" not in runs["test_logged"].params
    same = {runs[name].param_hash for name in ("test_one", "test_reversed", "test_numpy", "test_logged")}
    assert len(same) == 1
    assert runs["test_other_value"].param_hash not in same


def test_logged_param_changes_do_not_make_a_new_grid_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os
        import pytest

        @pytest.mark.parametrize("a", [1])
        def test_logged(a, xp):
            xp.log_param("note", os.environ["NOTE"])
        """
    )
    for note in ("first", "second"):
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("NOTE", note)
            pytester.runpytest().assert_outcomes(passed=1)
    history = all_runs(pytester)
    assert [run.logged_params["note"] for run in history] == ["first", "second"]
    assert history[0].param_hash == history[1].param_hash
    with Store.open(pytester.path / ".experiments") as store:
        (latest,) = store.runs()
    assert latest.logged_params == {"note": "second"}


def test_memory_address_repr_warns_once_naming_the_parameter(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        class Thing:
            pass

        @pytest.mark.parametrize("model", [Thing(), Thing()])
        @pytest.mark.parametrize("seed", [0])
        @pytest.mark.experiment
        def test_things(model, seed):
            pass
        """
    )
    result = pytester.runpytest("-W", "always::pytest.PytestWarning")
    result.assert_outcomes(passed=2, warnings=1)
    output = result.stdout.str()
    assert output.count("memory address") == 1
    (line,) = [line for line in output.splitlines() if "memory address" in line]
    assert "parameter 'model'" in line
    assert "'seed'" not in line
    assert "test_things" in line
    runs = all_runs(pytester)
    assert all(" at 0x" in run.params["model"] for run in runs)
    assert all(run.params["seed"] == 0 for run in runs)
