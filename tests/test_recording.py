"""What a run records: results, the xp API, statuses, metadata, history, hooks and warnings."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import socket
import subprocess
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from backends import Backend

import pytest_experiments
from pytest_experiments import RunRecord, load, open_store

WARN_ALWAYS = ("-W", "always::pytest.PytestWarning")


@pytest.fixture(autouse=True)
def _no_store_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XP_STORE", raising=False)


def store_path(pytester: pytest.Pytester) -> Path | str:
    """The store of the inner sessions: the default one, or the backend's of ``xp_backend``."""
    return os.environ.get("PYTEST_XP_STORE") or pytester.path / ".experiments"


def full_runs(pytester: pytest.Pytester, **filters: object) -> dict[str, RunRecord]:
    """Every stored run (history), read in full with ``Store.run``, by experiment name."""
    with open_store(store_path(pytester)) as store:
        return {run.experiment: store.run(run.run_id) for run in store.runs(history=True, **filters)}  # type: ignore[arg-type]


def git(directory: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=Tester", "-c", "user.email=tester@example.com", *args]
    return subprocess.run(command, cwd=directory, check=True, capture_output=True, text=True).stdout.strip()


# -- return values ----------------------------------------------------------------------


def test_return_values_become_metrics_and_json_result(pytester: pytest.Pytester, xp_backend: Backend) -> None:
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(
        """
        import numpy as np
        import pytest

        @pytest.mark.experiment
        def test_nested():
            return {
                "acc": 0.9,
                "loss": {"train": 0.1, "val": np.float32(0.25), "deep": {"x": 3}},
                "n": np.int64(7),
                "name": "model-a",
                "tags": [1, 2],
            }

        @pytest.mark.experiment
        def test_number():
            return 0.75

        @pytest.mark.experiment
        def test_numpy_number():
            return np.float64(1.5)

        @pytest.mark.experiment
        def test_nothing():
            pass

        def test_plain_returns():
            return 1
        """
    )
    result = pytester.runpytest()
    # The experiments returning values pass under filterwarnings=error: no "return not None" warning for them,
    # while a plain test returning a value still gets pytest's own warning.
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["FAILED *::test_plain_returns*"])
    assert result.stdout.str().count("PytestReturnNotNoneWarning") >= 1
    runs = full_runs(pytester)
    assert set(runs) == {"test_nested", "test_number", "test_numpy_number", "test_nothing"}
    nested = runs["test_nested"]
    assert nested.metrics == {"acc": 0.9, "loss.train": 0.1, "loss.val": 0.25, "loss.deep.x": 3.0, "n": 7.0}
    assert nested.result == {
        "acc": 0.9,
        "loss": {"train": 0.1, "val": 0.25, "deep": {"x": 3}},
        "n": 7,
        "name": "model-a",
        "tags": [1, 2],
    }
    assert runs["test_number"].metrics == {"result": 0.75}
    assert runs["test_number"].result == 0.75
    assert runs["test_numpy_number"].metrics == {"result": 1.5}
    assert runs["test_numpy_number"].result == 1.5
    assert runs["test_nothing"].metrics == {}
    assert runs["test_nothing"].result is None
    frame = load(store_path(pytester), experiment="test_nested")
    assert frame.loc[0, "metrics.loss.val"] == 0.25
    assert frame.loc[0, "metrics.loss.deep.x"] == 3.0


def test_one_function_in_several_classes_keeps_each_runs_own_result(pytester: pytest.Pytester) -> None:
    # A module function's stand-in that keeps its return value is made once; a method's, for each
    # run (each item has its own instance): one function inherited by two classes, one shared by a
    # TestCase (whose runner drops what a method returns: nothing to keep) and, after it, a plain
    # class, a module function whose runs each keep their own result, and one function that is
    # first a TestCase's static method, then a module's test.
    pytester.makepyfile(
        """
        import unittest

        import pytest


        class Shared:
            scale = 0.0

            @pytest.mark.experiment
            @pytest.mark.parametrize("i", [1, 2])
            def test_point(self, i):
                return {"value": self.scale * i}


        class TestSmall(Shared):
            scale = 1.0


        class TestLarge(Shared):
            scale = 10.0


        @pytest.mark.experiment
        def shared(self):
            return {"value": 5.0}


        class TestCaseFirst(unittest.TestCase):
            test_shared = shared


        class TestPlainSecond:
            test_shared = shared


        @pytest.mark.experiment
        @pytest.mark.parametrize("i", [3, 4])
        def test_module_function(i):
            return {"value": float(i)}


        @pytest.mark.experiment
        def static():
            return {"value": 7.0}


        class TestCaseStatic(unittest.TestCase):
            test_static = staticmethod(static)


        test_module_alias = static
        """
    )
    result = pytester.runpytest("-p", "no:randomly", "-W", "ignore::DeprecationWarning")
    result.assert_outcomes(passed=10)
    with open_store(store_path(pytester)) as store:
        runs = {run.node_id.split("::", 1)[1]: store.run(run.run_id) for run in store.runs(history=True)}
    assert {name: run.result for name, run in runs.items()} == {
        "TestSmall::test_point[1]": {"value": 1.0},
        "TestSmall::test_point[2]": {"value": 2.0},
        "TestLarge::test_point[1]": {"value": 10.0},
        "TestLarge::test_point[2]": {"value": 20.0},
        "TestCaseFirst::test_shared": None,
        "TestPlainSecond::test_shared": {"value": 5.0},
        "test_module_function[3]": {"value": 3.0},
        "test_module_function[4]": {"value": 4.0},
        "TestCaseStatic::test_static": None,
        "test_module_alias": {"value": 7.0},
    }
    assert runs["TestLarge::test_point[2]"].metrics == {"value": 20.0}


def test_non_json_return_leaves_are_stored_as_repr_with_one_warning(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        class Blob:
            def __repr__(self):
                return "Blob(3)"

        @pytest.mark.experiment
        def test_blob():
            return {"score": 2, "model": Blob(), "parts": [Blob(), {"k": frozenset()}]}
        """
    )
    result = pytester.runpytest(*WARN_ALWAYS)
    result.assert_outcomes(passed=1, warnings=1)
    assert result.stdout.str().count("JSON cannot hold") == 1
    run = full_runs(pytester)["test_blob"]
    assert run.status == "passed"
    assert run.result == {"score": 2, "model": "Blob(3)", "parts": ["Blob(3)", {"k": "frozenset()"}]}
    assert run.metrics == {"score": 2.0}


@pytest.mark.parametrize(("ini", "outcome"), [("error", "failed"), ("always", "passed")])
def test_user_filterwarnings_applies_to_our_warnings(pytester: pytest.Pytester, ini: str, outcome: str) -> None:
    pytester.makeini(f"[pytest]\nfilterwarnings = {ini}\n")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.experiment
        def test_blob():
            return {"score": 1, "model": object()}
        """
    )
    result = pytester.runpytest()
    output = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in output
    assert "PytestExperimentsWarning" in output
    if outcome == "failed":
        result.assert_outcomes(failed=1)
    else:
        result.assert_outcomes(passed=1, warnings=1)
    run = full_runs(pytester)["test_blob"]
    assert run.status == outcome
    assert run.metrics == {"score": 1.0}


# -- the xp API -------------------------------------------------------------------------


def test_xp_api_records_everything(pytester: pytest.Pytester, xp_backend: Backend) -> None:
    pytester.makepyfile(
        """
        import json
        import time
        import numpy as np
        import pytest

        @pytest.mark.parametrize("lr", [0.1])
        def test_api(xp, xp_dir, lr):
            assert xp_dir == xp.dir
            info = {"run_id": xp.run_id, "node_id": xp.node_id, "params": xp.params}
            (xp.dir / "info.json").write_text(json.dumps(info))
            for step, loss in enumerate([1.0, 0.5, 0.25]):
                xp.log_metric("loss", loss, step=step)
            xp.log_metric("final", 1.0)
            xp.log_metric("final", 2.0)
            xp.log_metrics({"acc": 0.8, "f1": 0.7}, step=0)
            xp.log_metrics({"acc": 0.9, "f1": 0.75}, step=1)
            xp.log_metric("np", np.float32(0.5), step=np.int64(3))
            xp.log_param("batch", 32)
            xp.metadata["note"] = {"k": [1, 2]}
            with xp.time_block("fit"):
                time.sleep(0.02)
            # An empty block's time depends on the machine's load: bound it by a clock around it.
            before = time.perf_counter()
            with xp.time_block("predict"):
                pass
            (xp.dir / "around.txt").write_text(repr(time.perf_counter() - before))
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)
    run = full_runs(pytester)["test_api"]
    info = json.loads((run.dir / "info.json").read_text())
    assert info == {"run_id": run.run_id, "node_id": run.node_id, "params": {"lr": 0.1}}
    assert run.node_id.endswith("::test_api[0.1]")
    assert run.metrics == {"loss": 0.25, "final": 2.0, "acc": 0.9, "f1": 0.75, "np": 0.5}
    assert run.logged_params == {"batch": 32}
    assert run.metadata["note"] == {"k": [1, 2]}
    assert run.metadata["timing"]["fit"] >= 0.02
    assert 0 <= run.metadata["timing"]["predict"] <= float((run.dir / "around.txt").read_text())
    with open_store(store_path(pytester)) as store:
        assert store.metric_series(run.run_id, "loss") == [(0, 1.0), (1, 0.5), (2, 0.25)]
        assert store.metric_series(run.run_id, "final") == [(None, 1.0), (None, 2.0)]
        assert store.metric_series(run.run_id, "acc") == [(0, 0.8), (1, 0.9)]
        assert store.metric_series(run.run_id, "f1") == [(0, 0.7), (1, 0.75)]
        assert store.metric_series(run.run_id, "np") == [(3, 0.5)]
        assert store.metric_series(run.run_id, "missing") == []
    frame = load(store_path(pytester))
    assert frame.loc[0, "params.batch"] == 32
    assert frame.loc[0, "params.lr"] == 0.1
    assert frame.loc[0, "metrics.loss"] == 0.25


def test_run_dir_is_created_only_when_used(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_logs_only(xp):
            xp.log_metric("x", 1)

        @pytest.mark.experiment
        def test_returns_only():
            return {"x": 1}

        def test_writes(xp_dir):
            (xp_dir / "model.txt").write_text("weights")
        """
    )
    pytester.runpytest().assert_outcomes(passed=3)
    runs = full_runs(pytester)
    assert not runs["test_logs_only"].dir.exists()
    assert not runs["test_returns_only"].dir.exists()
    assert (runs["test_writes"].dir / "model.txt").read_text() == "weights"
    # No empty folder for the runs that wrote nothing.
    assert sorted(p.name for p in (store_path(pytester) / "runs").iterdir()) == ["test_writes"]


def test_bad_log_metric_input_is_a_type_error_in_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_caught(xp):
            with pytest.raises(TypeError, match="real number"):
                xp.log_metric("loss", "high")
            with pytest.raises(TypeError):
                xp.log_metric("loss", None)
            with pytest.raises(TypeError):
                xp.log_metric("loss", [1.0])
            with pytest.raises(TypeError):
                xp.log_metric("", 1.0)
            with pytest.raises(TypeError):
                xp.log_metric("loss", 1.0, step=1.5)
            with pytest.raises(TypeError):
                xp.log_metrics({"a": "b"})
            xp.log_metric("ok", 1)

        def test_uncaught(xp):
            xp.log_metric("loss", "high")
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    assert "INTERNALERROR" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*test_uncaught*", "*TypeError*real number*"])
    runs = full_runs(pytester)
    assert runs["test_caught"].status == "passed"
    assert runs["test_caught"].metrics == {"ok": 1.0}
    assert runs["test_uncaught"].status == "failed"
    assert runs["test_uncaught"].error_type == "TypeError"
    assert runs["test_uncaught"].metrics == {}


# -- statuses ---------------------------------------------------------------------------


def test_statuses_and_errors(pytester: pytest.Pytester, xp_backend: Backend) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def broken_setup():
            raise RuntimeError("setup broke")

        @pytest.fixture
        def broken_teardown():
            yield
            raise RuntimeError("teardown broke")

        @pytest.mark.experiment
        def test_passes():
            return 1

        def test_fails(xp):
            xp.log_metric("loss", 0.5, step=0)
            xp.log_metric("loss", 0.4, step=1)
            raise ValueError("diverged at step 2")

        @pytest.mark.experiment
        def test_setup_error(broken_setup):
            pass

        def test_teardown_error(broken_teardown, xp):
            xp.log_metric("acc", 0.9)

        @pytest.mark.experiment
        def test_skip_inside():
            pytest.skip("no gpu here")

        @pytest.mark.skip(reason="later")
        def test_skip_mark(xp):
            pass

        @pytest.mark.xfail(reason="known bug", strict=False)
        @pytest.mark.experiment
        def test_xfail():
            raise AssertionError("the bug")

        @pytest.mark.xfail(reason="maybe", strict=False)
        @pytest.mark.experiment
        def test_xpass():
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, failed=1, errors=2, skipped=2, xfailed=1, xpassed=1)
    runs = full_runs(pytester)
    assert {name: run.status for name, run in runs.items()} == {
        "test_passes": "passed",
        "test_fails": "failed",
        "test_setup_error": "error",
        "test_teardown_error": "error",
        "test_skip_inside": "skipped",
        "test_skip_mark": "skipped",
        "test_xfail": "xfailed",
        "test_xpass": "xpassed",
    }
    failed = runs["test_fails"]
    assert failed.metrics == {"loss": 0.4}
    assert failed.error_type == "ValueError"
    assert failed.error_message == "diverged at step 2"
    assert failed.error == "ValueError: diverged at step 2"
    assert failed.traceback is not None
    assert 'raise ValueError("diverged at step 2")' in failed.traceback
    setup = runs["test_setup_error"]
    assert (setup.error_type, setup.error_message) == ("RuntimeError", "setup broke")
    assert "setup broke" in (setup.traceback or "")
    teardown = runs["test_teardown_error"]
    assert (teardown.error_type, teardown.error_message) == ("RuntimeError", "teardown broke")
    assert teardown.metrics == {"acc": 0.9}
    assert runs["test_passes"].error is None
    assert runs["test_skip_inside"].error is None
    assert runs["test_xfail"].error is None
    with open_store(store_path(pytester)) as store:
        assert store.metric_series(failed.run_id, "loss") == [(0, 0.5), (1, 0.4)]
    frame = load(store_path(pytester)).set_index("experiment")
    assert frame.loc["test_fails", "error"] == "ValueError: diverged at step 2"
    assert frame.loc["test_setup_error", "error"] == "RuntimeError: setup broke"
    assert pd.isna(frame.loc["test_passes", "error"])
    assert pd.isna(frame.loc["test_xfail", "error"])


# -- metadata ---------------------------------------------------------------------------


def test_timing_host_versions_packages_command_and_worker(pytester: pytest.Pytester, xp_backend: Backend) -> None:
    pytester.makepyfile(
        """
        import time
        import pytest

        @pytest.mark.experiment
        def test_slow():
            time.sleep(0.05)
        """
    )
    pytester.runpytest("-k", "test_slow or nothing", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    run = full_runs(pytester)["test_slow"]
    assert run.finished_at is not None
    assert run.duration is not None
    assert run.started_at < run.finished_at
    assert run.duration == pytest.approx(run.finished_at - run.started_at)
    assert run.duration >= 0.05
    assert 0.05 <= run.metadata["timing"]["call"] <= run.duration
    assert run.worker == "main"
    assert run.host == socket.gethostname()
    assert run.pid == os.getpid()  # runpytest runs in this process
    session = run.session
    assert session["host"]["hostname"] == socket.gethostname()
    assert session["host"]["python"] == platform.python_version()
    uname = os.uname()
    assert session["host"]["platform"] == f"{uname.sysname}-{uname.release}-{uname.machine}"
    assert session["versions"] == {"pytest": pytest.__version__, "pytest_experiments": pytest_experiments.__version__}
    packages = {name.lower(): version for name, version in session["packages"].items()}
    assert packages["pytest"] == pytest.__version__
    assert packages["pytest-experiments"] == pytest_experiments.__version__
    assert "pandas" in packages
    assert "-k 'test_slow or nothing'" in session["command"]
    assert "no:cacheprovider" in session["command"]
    assert session["cwd"] == str(pytester.path)
    assert "git" not in session  # pytester's folder is not inside a repository


def test_code_source_without_decorators_and_hash_stable_across_grid_edits(pytester: pytest.Pytester) -> None:
    template = """
        import pytest

        @pytest.mark.grid(n={grid})
        @pytest.mark.experiment
        def test_code(n):
            # the body
            return n * {factor}
        """
    source = pytester.makepyfile(test_code=template.format(grid="[1, 2]", factor="2"))
    pytester.runpytest().assert_outcomes(passed=2)
    source.write_text(textwrap.dedent(template.format(grid="[1, 2, 3, 4]", factor="2")))
    pytester.runpytest().assert_outcomes(passed=4)
    source.write_text(textwrap.dedent(template.format(grid="[1]", factor="20")))
    pytester.runpytest().assert_outcomes(passed=1)
    with open_store(store_path(pytester)) as store:
        runs = [store.run(run.run_id) for run in store.runs(history=True)]
        sessions = [session.session_id for session in store.sessions()]
    assert len(runs) == 7
    first = runs[0]
    assert first.code_source == "def test_code(n):\n    # the body\n    return n * 2\n"
    assert first.code_sha256 == hashlib.sha256(first.code_source.encode()).hexdigest()
    hashes: dict[int, set[str | None]] = {}
    for run in runs:
        hashes.setdefault(sessions.index(run.session_id), set()).add(run.code_sha256)
    assert hashes[0] == hashes[1] == {first.code_sha256}  # only the grid mark changed
    assert hashes[2] != hashes[0]  # the body changed
    assert runs[-1].code_source == "def test_code(n):\n    # the body\n    return n * 20\n"


def test_git_state_of_the_rootdir_repository(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.experiment
        def test_exp():
            pass
        """
    )
    (pytester.path / "data.txt").write_text("v1\n")
    git(pytester.path, "init", "-q", "-b", "trunk")
    git(pytester.path, "add", "test_git_state_of_the_rootdir_repository.py", "data.txt")
    git(pytester.path, "commit", "-q", "-m", "first")
    commit = git(pytester.path, "rev-parse", "HEAD")
    pytester.runpytest().assert_outcomes(passed=1)
    (pytester.path / "data.txt").write_text("v2\n")
    pytester.runpytest().assert_outcomes(passed=1)
    with open_store(store_path(pytester)) as store:
        clean, dirty = (store.run(run.run_id).session["git"] for run in store.runs(history=True))
    assert clean == {"commit": commit, "branch": "trunk", "dirty": False}
    assert dirty == {"commit": commit, "branch": "trunk", "dirty": True}
    # The store's own .gitignore keeps it out of the repository's status.
    assert ".experiments" not in git(pytester.path, "status", "--porcelain", "--untracked-files=all")


def test_git_repository_without_commits_records_what_it_can(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_exp(xp):
            xp.log_metric("x", 1)
        """
    )
    git(pytester.path, "init", "-q", "-b", "fresh")
    pytester.runpytest().assert_outcomes(passed=1)
    run = full_runs(pytester)["test_exp"]
    assert run.status == "passed"
    assert run.session["git"]["commit"] is None
    assert run.session["git"]["branch"] == "fresh"
    assert "remote" not in run.session["git"]


def test_captured_output_is_saved_only_when_not_empty(pytester: pytest.Pytester, xp_backend: Backend) -> None:
    pytester.makepyfile(
        """
        import sys
        import pytest

        @pytest.mark.experiment
        def test_prints():
            print("to stdout")
            print("to stderr", file=sys.stderr)

        @pytest.mark.experiment
        def test_only_out():
            print("just out")

        @pytest.mark.experiment
        def test_silent():
            pass
        """
    )
    pytester.runpytest().assert_outcomes(passed=3)
    runs = full_runs(pytester)
    prints = runs["test_prints"].dir
    assert (prints / "stdout.txt").read_text() == "to stdout\n"
    assert (prints / "stderr.txt").read_text() == "to stderr\n"
    only_out = runs["test_only_out"].dir
    assert (only_out / "stdout.txt").read_text() == "just out\n"
    assert not (only_out / "stderr.txt").exists()
    assert not runs["test_silent"].dir.exists()


# -- history ----------------------------------------------------------------------------


def test_history_is_kept_across_sessions(pytester: pytest.Pytester, xp_backend: Backend) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.grid(x=[1, 2])
        def test_exp(x):
            return x
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)
    pytester.runpytest().assert_outcomes(passed=2)
    with open_store(store_path(pytester)) as store:
        history = store.runs(history=True)
        latest = store.runs()
        sessions = store.sessions()
    assert len(history) == 4
    assert len({run.run_id for run in history}) == 4
    assert len(sessions) == 2
    first, second = (session.session_id for session in sessions)
    assert first != second
    assert [run.session_id for run in history] == [first, first, second, second]
    assert sorted(run.params["x"] for run in latest) == [1, 2]
    assert {run.session_id for run in latest} == {second}


# -- hooks ------------------------------------------------------------------------------


def test_conftest_run_hooks(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        def pytest_experiments_run_start(run):
            run.metadata["start"] = {"params": dict(run.params), "id": run.id, "status": run.status}

        def pytest_experiments_run_end(run):
            run.metadata["dummy"] = "hello there"
            run.metadata["end"] = {"status": run.status, "metrics": dict(run.metrics), "result": run.result}
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.grid(x=[1, 2])
        def test_exp(x):
            return {"y": x * 2}
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)
    with open_store(store_path(pytester)) as store:
        runs = [store.run(run.run_id) for run in store.runs(history=True)]
    assert len(runs) == 2
    for run in runs:
        x = run.params["x"]
        assert run.metadata["dummy"] == "hello there"
        assert run.metadata["start"] == {"params": {"x": x}, "id": run.run_id, "status": None}
        assert run.metadata["end"] == {"status": "passed", "metrics": {"y": 2.0 * x}, "result": {"y": 2 * x}}
    frame = load(store_path(pytester))
    assert list(frame["status"]) == ["passed", "passed"]


def test_conftest_hook_applies_to_its_own_directory_only(pytester: pytest.Pytester) -> None:
    for name in ("inner", "outer"):
        (pytester.path / name).mkdir()
        (pytester.path / name / f"test_{name}.py").write_text(
            "import pytest\n\n@pytest.mark.experiment\ndef test_exp():\n    pass\n"
        )
    (pytester.path / "inner" / "conftest.py").write_text(
        "def pytest_experiments_run_end(run):\n    run.metadata['where'] = 'inner'\n"
    )
    pytester.runpytest().assert_outcomes(passed=2)
    with open_store(store_path(pytester)) as store:
        metadata = {run.module: store.run(run.run_id).metadata for run in store.runs(history=True)}
    assert set(metadata) == {"inner/test_inner.py", "outer/test_outer.py"}
    assert metadata["inner/test_inner.py"]["where"] == "inner"
    assert "where" not in metadata["outer/test_outer.py"]


SESSION_HOOKS_CONFTEST = """
import os
from pathlib import Path

LOG = Path(__file__).parent / "session_calls.log"

def pytest_experiments_session_start(session):
    worker = hasattr(session.config, "workerinput")
    session.metadata["from_hook"] = "yes"
    with LOG.open("a") as log:
        log.write(f"start {os.getpid()} worker={worker} {session.id}\\n")

def pytest_experiments_session_finish(session, summary):
    worker = hasattr(session.config, "workerinput")
    counts = ",".join(f"{k}={v}" for k, v in sorted(summary.counts.items()))
    with LOG.open("a") as log:
        log.write(f"finish {os.getpid()} worker={worker} {session.id} {summary.total} {counts}\\n")
"""


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["no-xdist", "n2"])
def test_session_hooks_are_called_once_on_the_controller(pytester: pytest.Pytester, xdist: list[str]) -> None:
    pytester.makeconftest(SESSION_HOOKS_CONFTEST)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.grid(x=[1, 2, 3, 4, 5, 6])
        def test_exp(x):
            assert x != 6
        """
    )
    pytester.runpytest(*xdist).assert_outcomes(passed=5, failed=1)
    lines = (pytester.path / "session_calls.log").read_text().splitlines()
    with open_store(store_path(pytester)) as store:
        (session,) = store.sessions()
        runs = store.runs(history=True)
        full = store.run(runs[0].run_id)
    sid = session.session_id
    assert lines == [
        f"start {os.getpid()} worker=False {sid}",
        f"finish {os.getpid()} worker=False {sid} 6 failed=1,passed=5",
    ]
    assert session.counts == {"passed": 5, "failed": 1}
    assert full.session["from_hook"] == "yes"  # session metadata reaches every worker's runs
    assert len(runs) == 6
    assert {run.session_id for run in runs} == {sid}
    workers = {run.worker for run in runs}
    if xdist:
        assert workers <= {"gw0", "gw1"}
        assert {run.pid for run in runs}.isdisjoint({os.getpid()})
    else:
        assert workers == {"main"}


def test_builtin_collectors_can_be_switched_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.experiment
        def test_exp():
            print("out")
        """
    )
    git(pytester.path, "init", "-q", "-b", "trunk")
    pytester.runpytest().assert_outcomes(passed=1)
    blocked = ["xp-git", "xp-host", "xp-packages", "xp-command", "xp-code", "xp-capture"]
    pytester.runpytest(*(arg for name in blocked for arg in ("-p", f"no:{name}"))).assert_outcomes(passed=1)
    with open_store(store_path(pytester)) as store:
        on, off = (store.run(run.run_id) for run in store.runs(history=True))
    assert {"git", "host", "versions", "packages", "command", "cwd"} <= set(on.session)
    assert on.code_sha256 is not None
    assert (on.dir / "stdout.txt").read_text() == "out\n"
    assert off.session == {}
    assert off.code_sha256 is None
    assert off.code_source is None
    assert not (off.dir / "stdout.txt").exists()
    assert off.status == "passed"


def test_built_in_run_collectors_run_alone_and_beside_a_conftest_hook(pytester: pytest.Pytester) -> None:
    # Alone, the run hooks' built-in collectors are called without pluggy's dispatch; beside
    # another implementation, through pluggy: the run records the same either way, and pluggy's
    # order holds (the collectors, registered after conftests, run before a conftest's hook).
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.experiment
        @pytest.mark.parametrize("x", [1])
        def test_exp(x):
            print("out")
            return x
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)
    pytester.makeconftest(
        """
        def pytest_experiments_run_start(run):
            run.metadata["code_seen_at_start"] = run.code_sha256

        def pytest_experiments_run_end(run):
            run.metadata["stdout_file_at_end"] = (run.dir / "stdout.txt").exists()
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)
    with open_store(store_path(pytester)) as store:
        alone, beside = (store.run(run.run_id) for run in store.runs(history=True))
    for run in (alone, beside):
        assert run.code_sha256 == hashlib.sha256(run.code_source.encode()).hexdigest()
        assert (run.dir / "stdout.txt").read_text() == "out\n"
    assert alone.code_sha256 == beside.code_sha256
    assert "code_seen_at_start" not in alone.metadata
    assert beside.metadata["code_seen_at_start"] == beside.code_sha256
    assert beside.metadata["stdout_file_at_end"] is True


def test_switching_off_one_collector_keeps_the_others(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.experiment
        def test_exp():
            pass
        """
    )
    pytester.runpytest("-p", "no:xp-packages").assert_outcomes(passed=1)
    session = full_runs(pytester)["test_exp"].session
    assert "packages" not in session
    assert "versions" not in session
    assert {"host", "command"} <= set(session)


# -- terminal summary -------------------------------------------------------------------


def test_terminal_summary_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.grid(x=[1, 2, 3, 4, 5, 6])
        def test_exp(x):
            if x == 6:
                pytest.skip("six")
            assert x < 4

        def test_plain():
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=4, failed=2, skipped=1)
    lines = [line for line in result.stdout.lines if line.startswith("xp:")]
    assert lines == [f"xp: 6 runs recorded (3 passed, 2 failed, 1 skipped) in {store_path(pytester)}"]


def test_terminal_summary_line_for_one_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_exp(xp):\n    pass\n")
    result = pytester.runpytest()
    assert re.findall(r"^xp: .*$", result.stdout.str(), re.MULTILINE) == [
        f"xp: 1 run recorded (1 passed) in {store_path(pytester)}"
    ]
