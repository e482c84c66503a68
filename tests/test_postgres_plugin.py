"""The plugin on a PostgreSQL store: ``--xp-store=postgresql://...``, ``--xp-artifacts``, errors at
start, passwords never shown, and many processes on one grid. Real pytest sessions against a
real server (``XP_TEST_POSTGRES_URL``, see ``backends.py``)."""

from __future__ import annotations

import json
import os
import re
import signal
from collections import Counter
from pathlib import Path

import pytest
from backends import Backend, make_backend
from cli_helpers import cli
from processes import BLOCKING_GRID, Processes

from pytest_experiments import Store, load
from pytest_experiments.plugin.spread import rotated, rotation

GRID = """
    import pytest

    @pytest.mark.experiment
    @pytest.mark.parametrize("i", range(6))
    def test_point(i, xp_dir):
        (xp_dir / "note.txt").write_text(str(i))
        return {"square": i * i}
"""
PASSWORD = "Sup3r-Secret"


@pytest.fixture
def pg(postgres_database: str, tmp_path: Path) -> Backend:
    """A PostgreSQL store of its own for the test (not created yet), run folders in ``tmp_path/artifacts``."""
    return make_backend("postgresql", tmp_path, postgres_database)


def with_password(url: str) -> str:
    """``url`` with a password (the test server trusts every connection, so any one works)."""
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@", 1)


def test_records_into_a_postgres_store_with_run_folders_under_artifacts(
    pytester: pytest.Pytester, pg: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    pytester.makepyfile(test_grid=GRID)
    result = pytester.runpytest_subprocess(f"--xp-store={pg.location}", f"--xp-artifacts={pg.artifacts}", "-n", "2")
    result.assert_outcomes(passed=6)
    assert "warning" not in result.stdout.str()
    assert not (pytester.path / ".experiments").exists()
    assert not (pytester.path / ".experiments-artifacts").exists()
    with pg.open() as store:
        runs = store.runs()
        assert len(runs) == 6
        for run in runs:
            assert run.dir.parent.parent == pg.artifacts / "runs"
            assert (run.dir / "note.txt").read_text() == str(run.params["i"])

    # Resume, load() and the command line find the same store and run folders from the environment / ini.
    pytester.makeini(f"[pytest]\nxp_store = {pg.location}\nxp_artifacts = {pg.artifacts}\n")
    result = pytester.runpytest_subprocess("--xp-resume")
    result.stdout.fnmatch_lines(["xp: resume: 6 done, 0 to run; nothing left to run"])
    # load() and the command line read the ini file as pytest does (pytester runs in its folder).
    frame = load()
    assert sorted(Path(folder).parent.parent for folder in frame["dir"]) == [pg.artifacts / "runs"] * 6
    code, out, _ = cli(capsys, "runs")
    assert code == 0
    assert "test_point[5]" in out


def test_without_artifacts_run_folders_stay_beside_the_rootdir_with_one_warning(
    pytester: pytest.Pytester, pg: Backend
) -> None:
    pytester.makepyfile(test_grid=GRID)
    result = pytester.runpytest_subprocess(f"--xp-store={pg.location}", "-n", "2")
    result.assert_outcomes(passed=6)
    warnings = [line for line in result.stdout.lines if "other hosts cannot see" in line]
    assert len(warnings) == 1, result.stdout.str()
    assert "--xp-artifacts PATH" in warnings[0]
    with Store.open(pg.location, artifacts=pytester.path / ".experiments-artifacts") as store:
        runs = store.runs()
    assert len(runs) == 6
    assert all((run.dir / "note.txt").is_file() for run in runs)
    assert all(run.dir.is_relative_to(pytester.path / ".experiments-artifacts") for run in runs)


def test_a_password_never_appears(pytester: pytest.Pytester, pg: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    url = with_password(pg.location)
    pytester.makepyfile(test_grid=GRID)
    result = pytester.runpytest_subprocess(f"--xp-store={url}", "-v")  # no --xp-artifacts: its warning too
    result.assert_outcomes(passed=6)
    output = result.stdout.str() + result.stderr.str()
    assert PASSWORD not in output
    assert f"in {pg.location.replace('postgres@', 'postgres:***@')}" in output

    # The recorded session metadata: the command line is stored with the password masked.
    with pg.open() as store:
        [session] = store.sessions()
        recorded = json.dumps(session.metadata)
    assert PASSWORD not in recorded
    assert "--xp-store=postgresql://postgres:***@" in session.metadata["command"]

    # The command line and a server that refuses.
    code, out, err = cli(capsys, "sessions", "--store", url)
    assert code == 0
    assert PASSWORD not in out + err
    refused = re.sub(r"@[^/]+/", "@127.0.0.1:1/", url)  # nothing listens on port 1
    code, out, err = cli(capsys, "runs", "--store", refused)
    assert code != 0
    assert "cannot connect" in err
    assert PASSWORD not in out + err
    result = pytester.runpytest_subprocess(f"--xp-store={refused}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert PASSWORD not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["no-xdist", "xdist"])
def test_a_server_that_refuses_or_a_newer_store_is_one_line_and_exit_4(
    pytester: pytest.Pytester, pg: Backend, workers: list[str]
) -> None:
    pytester.makepyfile(test_grid=GRID)
    down = re.sub(r"@[^/]+/", "@127.0.0.1:1/", pg.location)
    result = pytester.runpytest_subprocess(f"--xp-store={down}", *workers)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR: xp:")]
    assert len(errors) == 1, result.stderr.str()
    assert "cannot connect to the store" in errors[0]
    assert "Traceback" not in result.stdout.str() + result.stderr.str()

    with pg.open(create=True):
        pass
    pg.set_schema_version(99)
    result = pytester.runpytest_subprocess(f"--xp-store={pg.location}", f"--xp-artifacts={pg.artifacts}", *workers)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: xp: the store * has schema version 99, newer than *; upgrade pytest-experiments"]
    )
    assert list((pg.artifacts / "runs").iterdir()) == []  # no run started


def test_without_psycopg_the_usage_error_names_the_extra(pytester: pytest.Pytester, pg: Backend) -> None:
    pytester.makepyfile(test_grid=GRID)
    # psycopg made unimportable, as where the postgres extra is not installed.
    pytester.makeconftest("import sys\nsys.modules['psycopg'] = None\n")
    result = pytester.runpytest_subprocess(f"--xp-store={pg.location}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stderr.lines[0] == (
        f"ERROR: xp: the PostgreSQL store {pg.location} needs psycopg: pip install 'pytest-experiments[postgres]'"
    )


def test_every_process_of_a_session_rotates_alike_and_sessions_start_apart() -> None:
    items = list(range(100))
    assert rotated(items, "session-a") == rotated(items, "session-a")  # type: ignore[arg-type]
    offsets = {rotation(f"session-{n}", 2000) for n in range(8)}
    assert len(offsets) == 8
    assert sorted(rotated(items, "session-b")) == items  # type: ignore[arg-type]


def test_four_resumers_under_xdist_on_one_postgres_store_one_killed(
    pytester: pytest.Pytester, pg: Backend, procs: Processes
) -> None:
    # Four sessions (-n 2 each) resume one 40-point grid on one PostgreSQL store; the body of
    # point 7 blocks wherever it runs, and that session is SIGKILLed once the others are done.
    # A later resume (short lease) runs its point; every point ends passed exactly once.
    pytester.makepyfile(test_grid=BLOCKING_GRID.format(points=list(range(40)), pause=0.02))
    (pytester.path / "block.json").write_text("[7]")
    env = {"PYTEST_XP_STORE": pg.location, "PYTEST_XP_ARTIFACTS": str(pg.artifacts)}
    started = [procs.start("--xp-resume", "--xp-lease=2", "-n", "2", "-rs", **env) for _ in range(4)]
    blocked_pid = int(procs.wait_for(pytester.path / "blocked-7", started[0], timeout=60))
    [victim] = [proc for proc in started if os.getpgid(blocked_pid) == proc.pid]
    outputs = [procs.finish(proc) for proc in started if proc is not victim]
    for code, output in outputs:
        assert code == 0, output
    with pg.open() as store:
        assert {run.node_id: run.status for run in store.runs()}["test_grid.py::test_point[7]"] == "running"
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)

    (pytester.path / "block.json").unlink()
    code, output = procs.run("--xp-resume", "--xp-lease=2", **env)
    assert code == 0, output
    assert "xp: resume: 39 done, 1 to run (1 interrupted)" in output.splitlines()
    with pg.open() as store:
        history = store.runs(history=True)
    passed = Counter(run.node_id for run in history if run.status == "passed")
    assert passed == Counter(f"test_grid.py::test_point[{i}]" for i in range(40))
    assert [run.status for run in history if run.node_id.endswith("[7]")] == ["interrupted", "passed"]
    # The sessions split the grid; what one left to another is said once, not as a wall of skips.
    taken = [re.search(r"^xp: (\d+) run here, (\d+) taken by other sessions", out, re.M) for _, out in outputs]
    assert any(taken), [out for _, out in outputs]
