"""Shared test setup: pytester runs real pytest sessions against real SQLite stores."""

from __future__ import annotations

from collections.abc import Iterator

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
