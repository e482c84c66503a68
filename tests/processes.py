"""Driving real inner ``python -m pytest`` processes from the tests, safely.

Every wait here is bounded (marker files and conditions polled against a deadline,
``wait(timeout=...)``), and every process a test starts runs in its own process group, which
is killed at teardown (the ``procs`` fixture of ``conftest.py``), so a bug can never hang the
suite. Imported as ``from processes import ...`` (pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from pytest_experiments import RunRecord, open_store

TIMEOUT = 60.0  # generous bound for one inner session; the tests themselves take seconds

# Environment variables of an outer run that must not leak into the inner sessions.
LEAKY_ENV = (
    "PYTEST_ADDOPTS",
    "PYTEST_XP_STORE",
    "PYTEST_XP_ARTIFACTS",
    "PYTEST_XDIST_WORKER",
    "PYTEST_XDIST_WORKER_COUNT",
    "PYTEST_XDIST_TESTRUNUID",
    "PYTEST_DISABLE_PLUGIN_AUTOLOAD",
)


# The pytest plugins the ``test`` extra installs for tests/test_beside_plugins.py. Every inner
# session starts with them off (``PYTEST_ADDOPTS``, set by ``inner_env`` and by the autouse
# fixture of conftest.py), as in the outer run (pyproject's addopts), so that their presence
# changes nothing else (pytest-asyncio warns at start-up in a project that does not configure
# it); a test turns one on with ``-p NAME``.
PLUGINS_OFF = "-p no:asyncio -p no:anyio -p no:rerunfailures -p no:repeat -p no:hypothesispytest"


def inner_env(**extra: str) -> dict[str, str]:
    """The environment of an inner pytest process: this one's, without ``LEAKY_ENV``, with
    ``PLUGINS_OFF``, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if key not in LEAKY_ENV}
    env["PYTEST_ADDOPTS"] = PLUGINS_OFF
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ in the projects: some tests list every file
    env.update(extra)
    return env


# ``wait_at_gate(folder)``: a process announces itself in the folder and waits for ``go``,
# which holds a start time: every process spins until that very moment, so that what they do
# next starts within microseconds and races for real. See ``Processes.release_together``.
GATE_WAIT = """
    import os
    import time
    from pathlib import Path


    def wait_at_gate(gate):
        gate = Path(gate)
        (gate / f"ready-{os.getpid()}").write_text("")
        deadline = time.monotonic() + 30
        while not (gate / "go").exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the test never opened the gate")
            time.sleep(0.002)
        start = float((gate / "go").read_text())
        time.sleep(max(0.0, start - time.time() - 0.01))
        while time.time() < start:
            pass
"""

# Started with ``XP_TEST_GATE=<folder>``, an inner session waits at that gate after collection
# (its store snapshot is taken by then), so that the first runs of several sessions race.
GATE_CONFTEST = (
    GATE_WAIT
    + """

    def pytest_collection_finish(session):
        gate = os.environ.get("XP_TEST_GATE")
        if gate:
            wait_at_gate(gate)
"""
)

# A ``python &`` started from a non-interactive shell ignores SIGINT, and children inherit
# that: restore Python's handler in every inner process (controller and workers alike) so
# that SIGINT raises KeyboardInterrupt as it does for a user at a terminal.
SIGINT_CONFTEST = """
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)
"""

# An experiment grid (``test_grid.py::test_point[i]`` for ``i`` in ``points``) whose points
# listed in ``block.json`` write ``blocked-<i>`` (their pid, atomically) and then wait,
# bounded, for ``release`` or ``release-<i>``, or for a signal; ``pause`` is the time every
# point that goes on takes. Format it with ``points`` and ``pause``.
BLOCKING_GRID = """
    import json
    import os
    import time
    from pathlib import Path

    import pytest

    HERE = Path(__file__).parent
    PAUSE = {pause}


    @pytest.mark.experiment
    @pytest.mark.parametrize("i", {points})
    def test_point(i):
        block = HERE / "block.json"
        if block.exists() and i in json.loads(block.read_text()):
            partial = HERE / f"blocked-{{i}}.tmp"
            partial.write_text(str(os.getpid()))
            os.replace(partial, HERE / f"blocked-{{i}}")
            deadline = time.monotonic() + 60
            while not (HERE / "release").exists() and not (HERE / f"release-{{i}}").exists():
                if time.monotonic() > deadline:
                    raise TimeoutError("never released (nor interrupted)")
                time.sleep(0.01)
        time.sleep(PAUSE)
        return {{"value": i}}
"""


def store_of(pytester: pytest.Pytester) -> Path:
    """The default store of the inner sessions run in ``pytester.path`` (or, under the
    ``xp_backend`` fixture, the store it set: then a URL for PostgreSQL)."""
    return os.environ.get("PYTEST_XP_STORE") or pytester.path / ".experiments"  # type: ignore[return-value]


def history(pytester: pytest.Pytester) -> list[RunRecord]:
    """Every run of the store, older runs of a grid point included."""
    with open_store(store_of(pytester)) as store:
        return store.runs(history=True)


class Processes:
    """Inner pytest processes started by one test; whatever is left is killed at teardown."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self._started: list[tuple[subprocess.Popen[str], Path]] = []

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        """``python -m pytest *args`` in ``cwd``, with ``env`` added to its environment; output to a log."""
        return self._popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], env)

    def start_script(self, code: str, *args: str, prefix: Sequence[str] = (), **env: str) -> subprocess.Popen[str]:
        """``python -c code *args`` in ``cwd``, run through ``prefix`` (e.g. ``setpriv ...`` to run it as
        another user), with ``env`` added to its environment; output to a log."""
        return self._popen([*prefix, sys.executable, "-c", code, *args], env)

    def _popen(self, command: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
        log = self.cwd.parent / f"{self.cwd.name}-pytest-{len(self._started)}.log"
        with log.open("w") as output:
            proc = subprocess.Popen(
                command,
                cwd=self.cwd,
                env=inner_env(**env),
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,  # its own process group: xdist workers die with it at teardown
            )
        self._started.append((proc, log))
        return proc

    def output(self, proc: subprocess.Popen[str]) -> str:
        log = next(log for started, log in self._started if started is proc)
        return log.read_text(errors="replace")

    def finish(self, proc: subprocess.Popen[str], timeout: float = TIMEOUT) -> tuple[int, str]:
        """Wait for ``proc`` (bounded) and return its exit code and output."""
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(proc)
            pytest.fail(f"inner pytest did not finish within {timeout} s:\n{self.output(proc)}")
        return returncode, self.output(proc)

    def run(self, *args: str, **env: str) -> tuple[int, str]:
        return self.finish(self.start(*args, **env))

    def wait_until(
        self, proc: subprocess.Popen[str], condition: str, check: Callable[[], bool], timeout: float = 20.0
    ) -> None:
        """Poll ``check()`` until true; fails if ``proc`` ends first or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if proc.poll() is not None:
                pytest.fail(f"inner pytest exited ({proc.returncode}) before {condition}:\n{self.output(proc)}")
            time.sleep(0.01)
        pytest.fail(f"no {condition} within {timeout} s:\n{self.output(proc)}")

    def wait_for(self, marker: Path, proc: subprocess.Popen[str], timeout: float = 20.0) -> str:
        """The content of ``marker`` once it appears; fails if ``proc`` ends first or time runs out."""
        self.wait_until(proc, f"{marker.name} appeared", marker.exists, timeout)
        return marker.read_text()

    def wait_ready(self, gate: Path, count: int, timeout: float = 30.0) -> None:
        """Wait until ``count`` processes are ready at ``gate`` (see ``GATE_CONFTEST``).

        Fails at once if a process exits meanwhile (one this test has already waited for, as
        with ``run``, does not count): it would never reach the gate.
        """
        pending = [proc for proc, _ in self._started if proc.returncode is None]
        deadline = time.monotonic() + timeout
        while len(list(gate.glob("ready-*"))) < count:
            for proc in pending:
                if proc.poll() is not None:
                    pytest.fail(f"inner pytest exited ({proc.returncode}) at the gate:\n{self.output(proc)}")
            if time.monotonic() > deadline:
                pytest.fail(f"only {len(list(gate.glob('ready-*')))} of {count} processes reached the gate")
            time.sleep(0.01)

    @staticmethod
    def open_gate(gate: Path, delay: float = 0.0) -> None:
        """Let the processes waiting at ``gate`` go, all at the same instant, ``delay`` s from now."""
        partial = gate / "go.tmp"
        partial.write_text(repr(time.time() + delay))
        os.replace(partial, gate / "go")

    def release_together(self, gate: Path, count: int, timeout: float = 30.0) -> None:
        """Wait until ``count`` processes are ready at ``gate``, then let them all go at once."""
        self.wait_ready(gate, count, timeout)
        self.open_gate(gate, delay=0.1)

    @staticmethod
    def kill(proc: subprocess.Popen[str]) -> None:
        """SIGKILL ``proc``'s whole process group (xdist workers included) and reap it."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def cleanup(self) -> None:
        # Also for processes that ended: after a kill -9 their workers may still be alive.
        for proc, _ in self._started:
            self.kill(proc)
