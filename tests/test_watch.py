"""``pytest-experiments watch``: the runs in flight of a real running session (an experiment
blocked on a file), once (``--once``), refreshed as plain lines into a file, and refreshed in
place in a real pseudo-terminal. Every wait is bounded and synchronised on files or output.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from backends import Backend
from processes import Processes, inner_env

from pytest_experiments.cli.watch import CLEAR_BELOW, HOME, render
from pytest_experiments.model import RunRecord, SeriesPoint

pytestmark = [
    pytest.mark.usefixtures("clean_env"),
    pytest.mark.skipif(sys.platform != "linux", reason="POSIX signals and pseudo-terminals"),
]

# Each point logs a metric, says it is blocked, and waits (bounded) for ``release``.
BLOCKED = """
    import os
    import time
    from pathlib import Path

    import pytest

    HERE = Path(__file__).parent


    @pytest.mark.grid(lr=[0.1])
    def test_train(xp, lr):
        xp.log_metric("loss", 0.5, step=7)
        (HERE / "blocked.tmp").write_text(str(os.getpid()))
        os.replace(HERE / "blocked.tmp", HERE / "blocked")
        deadline = time.monotonic() + 60
        while not (HERE / "release").exists():
            if time.monotonic() > deadline:
                raise TimeoutError("never released")
            time.sleep(0.01)
        return {"loss": 0.25}
"""

CLI = "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); from pytest_experiments.cli import main; sys.exit(main(sys.argv[1:]))"


def store_env(backend: Backend) -> dict[str, str]:
    env = {"PYTEST_XP_STORE": backend.location}
    if backend.artifacts is not None:
        env["PYTEST_XP_ARTIFACTS"] = str(backend.artifacts)
    return env


def watch(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``pytest-experiments watch *args`` run to its end."""
    return subprocess.run(
        [sys.executable, "-c", CLI, "watch", *args], cwd=cwd, env=inner_env(**env), capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture
def blocked_session(pytester: pytest.Pytester, procs: Processes, xp_backend: Backend) -> subprocess.Popen[str]:
    """A pytest session whose one run is in flight, blocked until ``release`` appears."""
    pytester.makepyfile(test_train=BLOCKED)
    proc = procs.start(**store_env(xp_backend))
    procs.wait_for(pytester.path / "blocked", proc)
    return proc


def test_watch_once_shows_the_running_run_then_nothing_once_it_ended(
    pytester: pytest.Pytester, procs: Processes, xp_backend: Backend, blocked_session: subprocess.Popen[str]
) -> None:
    env = store_env(xp_backend)
    shown = watch(pytester.path, "--once", **env)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("xp watch: 1 running in ")
    header, row = lines[1], lines[2]
    assert header.split() == ["run", "elapsed", "step", "points", "worker", "metrics"]
    assert row.startswith("test_train.py::test_train[lr=0.1]")
    assert f"main@{os.uname().nodename}" in row
    assert "\x1b" not in shown.stdout
    # Another experiment's filter shows nothing of it.
    other = watch(pytester.path, "--once", "--experiment", "test_other", **env)
    assert other.returncode == 0
    assert other.stdout.splitlines() == [other.stdout.splitlines()[0], "no run in flight"]
    assert other.stdout.startswith("xp watch: 0 running of test_other in ")
    assert watch(pytester.path, "--once", "--experiment", "test_train.py::test_train", **env).stdout.startswith(
        "xp watch: 1 running"
    )

    (pytester.path / "release").write_text("")
    code, output = procs.finish(blocked_session)
    assert code == 0, output
    done = watch(pytester.path, "--once", **env)
    assert done.returncode == 0
    assert done.stdout.splitlines()[1:] == ["no run in flight"]


def test_watch_refreshes_as_plain_lines_when_not_a_terminal_until_ctrl_c(
    pytester: pytest.Pytester, procs: Processes, xp_backend: Backend, blocked_session: subprocess.Popen[str]
) -> None:
    watcher = procs.start_script(CLI, "watch", "--interval", "0.1", **store_env(xp_backend))
    procs.wait_until(watcher, "three snapshots", lambda: procs.output(watcher).count("xp watch: 1 running") >= 3)
    watcher.send_signal(signal.SIGINT)
    code, output = procs.finish(watcher)
    assert code == 0, output
    assert "\x1b" not in output
    assert "(every 0.1 s, Ctrl-C to stop)" in output
    assert output.count("test_train.py::test_train[lr=0.1]") >= 3
    (pytester.path / "release").write_text("")
    assert procs.finish(blocked_session)[0] == 0


def test_watch_refreshes_in_place_in_a_terminal(
    pytester: pytest.Pytester, procs: Processes, xp_backend: Backend, blocked_session: subprocess.Popen[str]
) -> None:
    controller, terminal = pty.openpty()
    watcher = subprocess.Popen(
        [sys.executable, "-c", CLI, "watch", "--interval", "0.1"], cwd=pytester.path,
        env=inner_env(COLUMNS="120", **store_env(xp_backend)), stdout=terminal, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    os.close(terminal)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while seen.count(HOME.encode()) < 3 and time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 1.0)
            if ready:
                seen += os.read(controller, 65536)
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=30) == 0
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait(timeout=10)
        os.close(controller)
    text = seen.decode(errors="replace")
    assert text.count(HOME) >= 3, text
    assert CLEAR_BELOW in text
    assert "test_train.py::test_train[lr=0.1]" in text
    (pytester.path / "release").write_text("")
    assert procs.finish(blocked_session)[0] == 0


def test_a_bad_interval_or_a_missing_store_is_one_line(pytester: pytest.Pytester) -> None:
    bad = watch(pytester.path, "--interval", "0")
    assert bad.returncode == 2
    assert "'0' is not a number of seconds of at least 0.1" in bad.stderr
    missing = watch(pytester.path, "--once", "--store", str(pytester.path / "nowhere"))
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1
    assert "no experiment store at" in missing.stderr


def record(run_id: str, started_at: float, **fields: object) -> RunRecord:
    values: dict[str, object] = {
        "session_id": "s", "node_id": f"test_m.py::test_f[{run_id}]", "module": "test_m.py", "experiment": "test_f",
        "param_hash": run_id, "params": {}, "logged_params": {}, "status": "running", "started_at": started_at,
        "finished_at": None, "duration": None, "worker": "gw0", "host": "node1", "pid": 1, "dir": Path("/x"),
        "metrics": {}, "error_type": None, "error_message": None, "code_sha256": None,
    }  # fmt: skip
    values.update(fields)
    return RunRecord(run_id=run_id, **values)  # type: ignore[arg-type]


def test_the_snapshot_shows_each_runs_latest_points_steps_and_continuations() -> None:
    now = 1_000_000.0
    running = [record("b", now - 3725, metadata={"continued": 2}), record("a", now - 4.5)]
    points = [
        SeriesPoint("a", "loss", 0, 0, 1.0),
        SeriesPoint("a", "loss", 3, 1, 0.5),
        SeriesPoint("a", "acc", 1, 0, 0.1),
        SeriesPoint("a", "acc", 2, None, 0.2),
        SeriesPoint("b", "loss", 40, 99, 0.125),
    ]
    lines = render(running, points, "/store", now, width=200, interval=2.0)
    assert lines[0] == "xp watch: 2 running in /store at 13:46:40 UTC (every 2 s, Ctrl-C to stop)"
    assert lines[1].split() == ["run", "elapsed", "step", "points", "worker", "continued", "metrics"]
    oldest, newest = lines[2].split(), lines[3].split()
    assert oldest == ["test_m.py::test_f[b]", "1", "h", "02", "min", "99", "1", "gw0@node1", "2", "loss=0.125"]
    assert newest == ["test_m.py::test_f[a]", "4.5", "s", "1", "4", "gw0@node1", "0", "acc=0.2", "loss=0.5"]
    assert render([], [], "/store", now, width=80) == [
        "xp watch: 0 running in /store at 13:46:40 UTC",
        "no run in flight",
    ]
