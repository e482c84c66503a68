"""Pause and continue in the same run: ``xp.pause()``, ``--xp-resume`` continuing paused runs
(and interrupted ones of experiments that opt in), the attempts kept, and the interrupt hook
under real SIGINT / SIGTERM, with and without xdist.

Resume sessions run in real ``python -m pytest`` processes (``procs``) where xdist or signals
are involved, on each backend where ``xp_backend`` is taken. Waits are bounded and synchronise
on files the inner sessions write.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from pathlib import Path

import pandas as pd  # imported by this session once: pytester unloads what an inner session imports
import pytest
from backends import Backend
from processes import GATE_CONFTEST, SIGINT_CONFTEST, Processes, history, store_of

import pytest_experiments
from pytest_experiments import load, open_store
from pytest_experiments.cli import main
from pytest_experiments.model import STATUSES

pytestmark = pytest.mark.usefixtures("clean_env")

# A training loop of 9 steps that checkpoints into xp.dir and pauses every 3 steps; the marker
# files ``attempt-<i>-<continued>`` say which run id each attempt saw.
TRAINING = """
    from pathlib import Path

    import pytest

    HERE = Path(__file__).parent


    @pytest.mark.grid(i=[0, 1])
    def test_train(xp, i):
        start = int((xp.dir / "checkpoint.txt").read_text()) if xp.continued else 0
        (HERE / f"attempt-{i}-{xp.continued}").write_text(xp.run_id)
        for step in range(start, start + 3):
            xp.log_metric("loss", 1.0 / (step + 1), step=step)
        if start + 3 < 9:
            (xp.dir / "checkpoint.txt").write_text(str(start + 3))
            try:
                xp.pause(f"checkpoint at step {start + 3}")
            except Exception:  # a pause is no Exception: the body cannot swallow it by accident
                raise AssertionError("xp.pause was caught as an Exception")
        return {"steps": start + 3}
"""


def store_env(backend: Backend) -> dict[str, str]:
    """What an inner process needs to record into ``backend``'s store (``procs`` leaves the outer
    run's variables out)."""
    env = {"PYTEST_XP_STORE": backend.location}
    if backend.artifacts is not None:
        env["PYTEST_XP_ARTIFACTS"] = str(backend.artifacts)
    return env


def attempt_ids(pytester: pytest.Pytester) -> dict[str, str]:
    return {path.name: path.read_text() for path in pytester.path.glob("attempt-*")}


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["no-xdist", "xdist"])
def test_paused_runs_are_continued_by_resume_as_the_same_runs(
    pytester: pytest.Pytester, procs: Processes, xp_backend: Backend, workers: list[str]
) -> None:
    pytester.makepyfile(test_train=TRAINING)
    env = store_env(xp_backend)
    code, output = procs.run(*workers, **env)
    assert code == 0, output
    assert re.search(r"\b2 paused\b", output.splitlines()[-1]), output  # pytest's own final line
    assert "xp: 2 runs recorded (2 paused) in " in output
    assert "--xp-resume continues the paused ones" in output
    first = {run.params["i"]: run for run in history(pytester)}
    assert {run.status for run in first.values()} == {"paused"}
    assert first[0].metadata["reason"] == "checkpoint at step 3"

    code, output = procs.run("--xp-resume", *workers, **env)
    assert code == 0, output
    assert "xp: resume: 0 done, 2 to run (2 paused)" in output.splitlines()
    code, output = procs.run("--xp-resume", *workers, **env)
    assert code == 0, output
    assert "2 passed" in output.splitlines()[-1]
    code, output = procs.run("--xp-resume", *workers, **env)
    assert code == 0, output
    assert "xp: resume: 2 done, 0 to run; nothing left to run" in output.splitlines()

    # Three attempts of the same two runs: same run ids, same folders, the series appended.
    runs = history(pytester)
    assert sorted(run.run_id for run in runs) == sorted(run.run_id for run in first.values())
    ids = attempt_ids(pytester)
    assert ids == {f"attempt-{i}-{n}": first[i].run_id for i in (0, 1) for n in (0, 1, 2)}
    with open_store(store_of(pytester)) as store:
        for run in runs:
            assert run.status == "passed"
            assert run.metadata["continued"] == 2
            assert store.metric_series(run.run_id, "loss") == [(step, 1.0 / (step + 1)) for step in range(9)]
            assert run.metrics == {"loss": 1.0 / 9, "steps": 9.0}
            attempts = store.attempts(run.run_id)
            assert [(a.status, a.reason) for a in attempts] == [
                ("paused", "checkpoint at step 3"),
                ("paused", "checkpoint at step 6"),
                ("passed", ""),
            ]
            assert len({a.session_id for a in attempts}) == 3
            assert (run.dir / "checkpoint.txt").read_text() == "6"
    frame: pd.DataFrame = load(store_of(pytester), metadata=True)
    assert list(frame["metadata.continued"]) == [2, 2]


def test_retry_failed_leaves_paused_runs_and_status_counts_them(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_train=TRAINING)
    assert pytester.runpytest().ret == 0
    result = pytester.runpytest("--xp-retry-failed")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["xp: retry-failed: 0 done, 0 to run; nothing left to run"])
    result = pytester.runpytest("--xp-status")
    header, row = (line.split() for line in result.stdout.lines if line.startswith(("experiment", "test_train")))
    assert dict(zip(header[1:], row[1:], strict=False))["paused"] == "2"
    # Without --xp-resume a session runs every point anew, as always: new runs.
    assert pytester.runpytest().ret == 0
    assert len(history(pytester)) == 4


PAUSE_EXAMPLES = """
    import pytest


    @pytest.mark.experiment
    def test_no_reason(xp):
        xp.log_metric("done", 1)
        xp.pause()


    @pytest.mark.experiment
    def test_bad_reason(xp):
        xp.pause(reason=3)


    @pytest.mark.experiment
    def test_verbose(xp):
        xp.pause("see you")


    @pytest.fixture
    def pausing_fixture(xp):
        xp.pause("too early")


    @pytest.mark.experiment
    def test_in_a_fixture(pausing_fixture):
        pass
"""


def test_pause_is_reported_as_paused_and_a_bad_reason_is_a_type_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_pausing=PAUSE_EXAMPLES)
    result = pytester.runpytest("-v")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*test_no_reason PAUSED*", "*test_bad_reason FAILED*", "*test_verbose PAUSED*"])
    result.stdout.fnmatch_lines(["*TypeError: xp.pause: reason must be a string, not int*"])
    result.stdout.fnmatch_lines(["xp: xp.pause() ends the test's body: call it there, not in a fixture or hook"])
    assert re.search(r"1 failed, 1 error, 2 paused", result.stdout.lines[-1])
    statuses = {run.experiment: (run.status, run.metadata.get("reason")) for run in history(pytester)}
    assert statuses == {
        "test_no_reason": ("paused", None),
        "test_bad_reason": ("failed", None),
        "test_verbose": ("paused", "see you"),
        "test_in_a_fixture": ("error", None),
    }


# -- the interrupt hook, under real signals --------------------------------------------------

# Points listed in block.json write ``blocked-<i>`` (their pid) and wait, bounded, for a signal;
# the hook checkpoints into run.dir and says so in ``hooked-<i>``. The experiment continues its
# interrupted runs; ``attempt-<i>-<continued>`` records what each attempt found.
INTERRUPTIBLE = """
    import json
    import os
    import time
    from pathlib import Path

    import pytest

    HERE = Path(__file__).parent


    @pytest.mark.experiment(continue_runs=True)
    @pytest.mark.parametrize("i", range(8))
    def test_point(xp, i):
        found = (xp.dir / "checkpoint.txt").read_text() if xp.continued else ""
        (HERE / f"attempt-{i}-{xp.continued}").write_text(json.dumps([xp.run_id, found]))
        xp.log_metric("progress", 1.0, step=xp.continued)
        block = HERE / "block.json"
        if block.exists() and i in json.loads(block.read_text()):
            partial = HERE / f"blocked-{i}.tmp"
            partial.write_text(str(os.getpid()))
            os.replace(partial, HERE / f"blocked-{i}")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                time.sleep(0.01)
            raise TimeoutError("never interrupted")
        return {"value": i}
"""

HOOK_CONFTEST = (
    SIGINT_CONFTEST
    + """
    import os
    from pathlib import Path


    def pytest_experiments_run_interrupt(run):
        (run.dir / "checkpoint.txt").write_text(f"step of {run.id}")
        (Path(__file__).parent / f"hooked-{run.params['i']}").write_text(str(os.getpid()))
        run.metadata["checkpointed"] = True
"""
)


@pytest.mark.skipif(sys.platform != "linux", reason="POSIX signals and process groups")
@pytest.mark.parametrize(
    ("signum", "workers", "target"),
    [
        pytest.param(signal.SIGINT, [], "controller", id="SIGINT"),
        pytest.param(signal.SIGTERM, [], "controller", id="SIGTERM"),
        pytest.param(signal.SIGINT, ["-n", "2"], "controller", id="SIGINT-n2-controller"),
        pytest.param(signal.SIGTERM, ["-n", "2"], "group", id="SIGTERM-n2-group"),
    ],
)
def test_interrupt_hook_checkpoints_and_resume_continues_the_interrupted_run(
    pytester: pytest.Pytester, procs: Processes, signum: signal.Signals, workers: list[str], target: str
) -> None:
    pytester.makeconftest(HOOK_CONFTEST)
    pytester.makepyfile(test_grid=INTERRUPTIBLE)
    # Without xdist the session blocks at point 1; with two workers each blocks at its first
    # point from 4 on.
    in_flight = 2 if workers else 1
    (pytester.path / "block.json").write_text(json.dumps(list(range(4, 8)) if workers else [1]))
    proc = procs.start(*workers)
    procs.wait_until(proc, "blocked runs", lambda: len(list(pytester.path.glob("blocked-?"))) == in_flight)
    blocking = sorted(int(path.name[-1]) for path in pytester.path.glob("blocked-?"))
    if target == "group":
        os.killpg(proc.pid, signum)
    else:
        os.kill(proc.pid, signum)
    code, output = procs.finish(proc)
    assert code == pytest.ExitCode.INTERRUPTED, output

    # The hook ran in the process of each run in flight, before it was stored.
    for i in blocking:
        assert (pytester.path / f"hooked-{i}").read_text() == (pytester.path / f"blocked-{i}").read_text()
    interrupted = {run.params["i"]: run for run in history(pytester) if run.status == "interrupted"}
    assert set(interrupted) == set(blocking)
    for run in interrupted.values():
        assert run.metadata["checkpointed"] is True
        assert (run.dir / "checkpoint.txt").read_text() == f"step of {run.run_id}"

    # --xp-resume continues them: the same runs, which find their checkpoints.
    (pytester.path / "block.json").unlink()
    code, output = procs.run("--xp-resume", *workers)
    assert code == 0, output
    assert f"{len(blocking)} interrupted" in output
    for i, run in interrupted.items():
        run_id, found = json.loads((pytester.path / f"attempt-{i}-1").read_text())
        assert (run_id, found) == (run.run_id, f"step of {run.run_id}")
    with open_store(store_of(pytester)) as store:
        for run in interrupted.values():
            again = store.run(run.run_id)
            assert again.status == "passed"
            assert [a.status for a in store.attempts(run.run_id)] == ["interrupted", "passed"]
            assert store.metric_series(run.run_id, "progress") == [(0, 1.0), (1, 1.0)]
    assert len(history(pytester)) == 8


def test_show_lists_the_attempts_of_a_continued_run(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    pytester.makepyfile(test_train=TRAINING)
    assert pytester.runpytest("-k", "0").ret == 0
    assert pytester.runpytest("-k", "0", "--xp-resume").ret == 0
    [run] = history(pytester)
    capsys.readouterr()
    assert main(["show", run.run_id, "--store", str(store_of(pytester))]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"run {run.run_id}  paused"
    start = lines.index("attempts (continued 1 times)")
    header, first, second = (re.split(r"\s{2,}", line.strip()) for line in lines[start + 1 : start + 4])
    assert header[:5] == ["#", "status", "started (UTC)", "took", "reason"]
    assert [first[:2], first[4]] == [["1", "paused"], "checkpoint at step 3"]
    assert [second[:2], second[4]] == [["2", "paused"], "checkpoint at step 6"]
    # A run never continued shows no attempts.
    assert pytester.runpytest("-k", "1").ret == 0
    other = next(r for r in history(pytester) if r.run_id != run.run_id)
    capsys.readouterr()
    assert main(["show", other.run_id, "--store", str(store_of(pytester))]) == 0
    assert "attempts (" not in capsys.readouterr().out


def test_the_html_report_knows_every_status() -> None:
    # The page's status filter, counts and colours come from its own list: it must be the model's.
    script = (Path(pytest_experiments.__file__).parent / "report" / "report.js").read_text()
    listed = re.search(r"var STATUSES = (\[[^\]]*\]);", script)
    assert listed is not None
    assert tuple(json.loads(listed.group(1))) == STATUSES
    style = (Path(pytest_experiments.__file__).parent / "report" / "report.css").read_text()
    assert ".status-paused {" in style


# Each point pauses in its first attempt; a continued attempt leaves ``ran-<i>-<pid>``.
PAUSE_ONCE = """
    import os
    from pathlib import Path

    import pytest

    HERE = Path(__file__).parent


    @pytest.mark.parametrize("i", range(40))
    def test_point(xp, i):
        if not xp.continued:
            xp.pause("first attempt")
        (HERE / f"ran-{i}-{os.getpid()}").write_text(xp.run_id)
"""


def test_concurrent_resumers_continue_each_paused_run_once(pytester: pytest.Pytester, procs: Processes) -> None:
    pytester.makeconftest(GATE_CONFTEST)
    pytester.makepyfile(test_grid=PAUSE_ONCE)
    code, output = procs.run()
    assert code == 0, output
    paused = {run.params["i"]: run.run_id for run in history(pytester)}
    assert len(paused) == 40
    gate = pytester.mkdir("gate")
    started = [procs.start("--xp-resume", *flags, XP_TEST_GATE=str(gate)) for flags in ([], ["-n", "2"])]
    procs.release_together(gate, 2)
    for proc in started:
        code, output = procs.finish(proc)
        assert code == 0, output
        assert "xp: resume: 0 done, 40 to run (40 paused)" in output.splitlines()
    ran = [path.name.split("-")[1] for path in pytester.path.glob("ran-*")]
    assert sorted(map(int, ran)) == list(range(40))  # every run continued once: none twice, none left
    runs = history(pytester)
    assert {run.params["i"]: run.run_id for run in runs} == paused  # the same runs, no new one
    assert {run.status for run in runs} == {"passed"}
    with open_store(store_of(pytester)) as store:
        assert {tuple(a.status for a in store.attempts(run.run_id)) for run in runs} == {("paused", "passed")}


EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "checkpointing"


@pytest.mark.skipif(not EXAMPLE.is_dir(), reason="examples/checkpointing is not part of this checkout")
def test_the_checkpointing_example_trains_in_three_sessions(pytester: pytest.Pytester) -> None:
    for path in EXAMPLE.glob("*.py"):
        (pytester.path / path.name).write_text(path.read_text())
    for options, expected in (([], "4 paused"), (["--xp-resume"], "4 paused"), (["--xp-resume"], "4 passed")):
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *options)
        assert result.ret == 0, result.stdout.str()
        assert expected in result.stdout.lines[-1]
    runs = history(pytester)
    assert len(runs) == 4
    with open_store(store_of(pytester)) as store:
        for run in runs:
            assert run.metrics["epochs"] == 30
            assert [step for step, _ in store.metric_series(run.run_id, "train_mse")] == list(range(1, 31))
            assert [a.status for a in store.attempts(run.run_id)] == ["paused", "paused", "passed"]
