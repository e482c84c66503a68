"""Shared test setup: pytester runs real pytest sessions against real SQLite stores."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator

import pytest
from processes import LEAKY_ENV, Processes

pytest_plugins = ["pytester"]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the outer run's ``LEAKY_ENV`` from in-process inner sessions (``pytester.runpytest``).

    A module opts in with ``pytestmark = pytest.mark.usefixtures("clean_env")``.
    """
    for name in LEAKY_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def procs(pytester: pytest.Pytester) -> Iterator[Processes]:
    """A :class:`processes.Processes` running in ``pytester.path``; leftovers are killed at teardown."""
    processes = Processes(pytester.path)
    try:
        yield processes
    finally:
        processes.cleanup()


@pytest.fixture
def start_sleeper() -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Starts live processes unrelated to any run (``sleep``), killed and reaped at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        started.append(subprocess.Popen(["sleep", "300"]))
        return started[-1]

    try:
        yield start
    finally:
        for proc in started:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def sleeper(start_sleeper: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """A live process unrelated to any run, started before the test."""
    return start_sleeper()
