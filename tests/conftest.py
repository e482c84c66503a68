"""Shared test setup: pytester runs real pytest sessions against real stores (SQLite, and
PostgreSQL when ``XP_TEST_POSTGRES_URL`` names a server: see ``backends.py``)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from backends import BACKENDS, POSTGRES_ENV, REQUIRE_ENV, Backend, fresh_database, make_backend, postgres_required
from browser import REQUIRE_ENV as BROWSER_ENV
from browser import browser_required, chromium
from processes import LEAKY_ENV, PLUGINS_OFF, Processes

from pytest_experiments.store.liveness import process_start

pytest_plugins = ["pytester"]

# In-process inner sessions (pytester.runpytest) unload the modules they imported when they end,
# but psycopg's compiled part stays loaded and keeps raising the first import's exception classes:
# a PostgreSQL store imported anew would then miss them (``except psycopg.Error``). Imported here
# once, before any inner session, they are never unloaded.
with contextlib.suppress(ImportError):
    import psycopg  # noqa: F401

    import pytest_experiments.store.postgres  # noqa: F401


def pytest_configure(config: pytest.Config) -> None:
    # CI must run the PostgreSQL tests: a missing server is an error there, never a skip.
    if postgres_required() and not os.environ.get(POSTGRES_ENV):
        raise pytest.UsageError(
            f"{POSTGRES_ENV} is not set, but CI (or {REQUIRE_ENV}=1) requires the PostgreSQL tests; "
            f"set it to a server's URL, e.g. {POSTGRES_ENV}=postgresql://postgres@127.0.0.1:5432/postgres"
        )
    # Likewise the SLURM tests (tests/test_slurm.py): .ci/run starts a cluster and sets the variable.
    if (os.environ.get("CI") or os.environ.get("XP_REQUIRE_SLURM") == "1") and not os.environ.get("XP_TEST_SLURM"):
        raise pytest.UsageError(
            "XP_TEST_SLURM is not set, but CI (or XP_REQUIRE_SLURM=1) requires the SLURM tests; "
            "start a cluster with .ci/slurm up and set XP_TEST_SLURM to the slurm.conf path it prints"
        )

    # And the report's browser tests (tests/test_report_browser.py): .ci/run installs chromium.
    if browser_required() and chromium() is None:
        raise pytest.UsageError(
            f"chromium or chromedriver is missing, but CI (or {BROWSER_ENV}=1) requires the browser tests; "
            "install them: apt-get install -y chromium chromium-driver"
        )


def pytest_report_header(config: pytest.Config) -> list[str]:
    postgres = (
        f"PostgreSQL tests: a fresh database on the server of {POSTGRES_ENV}"
        if os.environ.get(POSTGRES_ENV)
        else f"PostgreSQL tests: skipped ({POSTGRES_ENV} is not set)"
    )
    slurm = os.environ.get("XP_TEST_SLURM")
    return [
        postgres,
        f"SLURM tests: the cluster of {slurm}" if slurm else "SLURM tests: skipped (XP_TEST_SLURM is not set)",
        "browser tests: headless chromium" if chromium() else "browser tests: skipped (no chromium and chromedriver)",
    ]


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """The URL of a database created for this test session on the server of ``XP_TEST_POSTGRES_URL``
    (dropped at the end); skips the test when the variable is not set."""
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV}=postgresql://USER@HOST:PORT/DB (a server, not set)")
    with fresh_database(server) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """A new store location of its own for the test, on each backend in turn (not created yet)."""
    kind: str = request.param
    url = request.getfixturevalue("postgres_database") if kind == "postgresql" else None
    return make_backend(kind, tmp_path, url)


@pytest.fixture
def xp_backend(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> Backend:
    """Inner sessions of the test (and ``load()``, the command line) use ``backend``'s store,
    through ``PYTEST_XP_STORE`` / ``PYTEST_XP_ARTIFACTS``: an end-to-end test taking this
    fixture runs on each backend in turn."""
    monkeypatch.setenv("PYTEST_XP_STORE", backend.location)
    if backend.artifacts is not None:
        monkeypatch.setenv("PYTEST_XP_ARTIFACTS", str(backend.artifacts))
    return backend


@pytest.fixture(autouse=True)
def _plugins_off(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inner sessions start with the test extra's third-party plugins off (see ``processes.PLUGINS_OFF``)."""
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester")  # which clears PYTEST_ADDOPTS when it starts
    monkeypatch.setenv("PYTEST_ADDOPTS", PLUGINS_OFF)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the outer run's ``LEAKY_ENV`` from in-process inner sessions (``pytester.runpytest``).

    A module opts in with ``pytestmark = pytest.mark.usefixtures("clean_env")``.
    """
    for name in LEAKY_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTEST_ADDOPTS", PLUGINS_OFF)


@pytest.fixture
def procs(pytester: pytest.Pytester) -> Iterator[Processes]:
    """A :class:`processes.Processes` running in ``pytester.path``; leftovers are killed at teardown."""
    processes = Processes(pytester.path)
    try:
        yield processes
    finally:
        processes.cleanup()


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """``tmpfs(name, size="64k", read_only=False)``: a real tmpfs mounted at ``tmp_path / name``.

    For faults that must really happen: a read-only filesystem (EROFS, which even root gets)
    or a full disk (ENOSPC). Needs root and ``mount``; without them the test fails (never skips: CI must run it).
    Everything mounted is unmounted at teardown.
    """
    mounted: list[Path] = []

    def mount(name: str, size: str = "64k", read_only: bool = False) -> Path:
        point = tmp_path / name
        point.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            pytest.fail(f"cannot mount a tmpfs here (the fault tests need root and mount): {done.stderr.strip()}")
        mounted.append(point)
        return point

    try:
        yield mount
    finally:
        for point in reversed(mounted):
            subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)


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


@pytest.fixture
def dead_pid() -> tuple[int, str]:
    """The pid of a process of this host that has died (reaped), and its start token from when it lived."""
    child = subprocess.Popen(["sleep", "300"])
    started = process_start(child.pid)
    child.kill()
    child.wait(timeout=10)
    assert started
    return child.pid, started
