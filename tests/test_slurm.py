"""On a real SLURM cluster (one node, started by ``.ci/slurm up``): array jobs with
``--xp-shard auto`` into per-task SQLite stores, merged; a task cancelled mid-run, then resumed;
array tasks resuming one PostgreSQL store.

``XP_TEST_SLURM`` names the cluster's ``slurm.conf`` (what ``.ci/slurm up`` prints). Without it
these tests are skipped with that reason, except where ``CI`` or ``XP_REQUIRE_SLURM=1`` is set:
there the session stops at once (see ``conftest.py``), so CI can never pass by skipping them.
Every wait is bounded, and every job a test submits is cancelled at teardown.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from backends import Backend, make_backend
from processes import inner_env

from pytest_experiments import Store
from pytest_experiments.cli import main

pytestmark = pytest.mark.usefixtures("clean_env")
SLURM_ENV = "XP_TEST_SLURM"
TIMEOUT = 90.0
POINTS = 12

SWEEP = """
    import os
    import pathlib
    import time

    import pytest

    HERE = pathlib.Path(__file__).parent

    @pytest.mark.grid(a=list(range(12)))
    def test_point(xp, a):
        task = os.environ["SLURM_ARRAY_TASK_ID"]
        gate = HERE / "gate"
        if gate.is_dir() and not (HERE / "go").exists():
            (gate / f"running-{task}").write_text(str(a))  # the test cancels one task here
            deadline = time.monotonic() + 60
            while not (HERE / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        xp.log_metric("value", a)
"""


class Cluster:
    """Submits jobs to the test cluster and waits for them; cancels what is left at teardown."""

    def __init__(self, conf: str, cwd: Path) -> None:
        self.env = inner_env(SLURM_CONF=conf)
        self.cwd = cwd
        self.jobs: list[str] = []

    def command(self, *args: str) -> str:
        done = subprocess.run(args, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"{shlex.join(args)}: {done.stderr}"
        return done.stdout

    def submit_array(self, tasks: str, script: str) -> str:
        path = self.cwd / "job.sbatch"
        path.write_text(script)
        job = self.command("sbatch", "--parsable", f"--array={tasks}", "-o", "task-%a.out", str(path)).strip()
        self.jobs.append(job)
        return job

    def wait(self, job: str) -> None:
        """Until no task of ``job`` is pending or running (squeue: there is no sacct here)."""
        deadline = time.monotonic() + TIMEOUT
        while self.command("squeue", "-h", "-j", job, "-o", "%i").strip():
            if time.monotonic() > deadline:
                pytest.fail(f"job {job} still queued or running after {TIMEOUT} s:\n{self.outputs()}")
            time.sleep(0.1)

    def states(self, job: str) -> dict[str, tuple[str, str]]:
        """Array task id -> (JobState, ExitCode), from ``scontrol show job``."""
        found = {}
        for record in self.command("scontrol", "-o", "show", "job", job).splitlines():
            fields = dict(part.split("=", 1) for part in record.split() if "=" in part)
            found[fields.get("ArrayTaskId", "")] = (fields["JobState"], fields["ExitCode"])
        return found

    def outputs(self) -> str:
        return "\n".join(f"{path.name}:\n{path.read_text()}" for path in sorted(self.cwd.glob("task-*.out")))

    def cancel_all(self) -> None:
        for job in self.jobs:
            subprocess.run(["scancel", job], env=self.env, capture_output=True, check=False, timeout=30)


@pytest.fixture
def cluster(pytester: pytest.Pytester) -> Iterator[Cluster]:
    conf = os.environ.get(SLURM_ENV)
    if not conf:
        pytest.skip(f"SLURM tests need {SLURM_ENV}=<slurm.conf> of a running cluster (.ci/slurm up prints it)")
    found = Cluster(conf, pytester.path)
    try:
        yield found
    finally:
        found.cancel_all()


def pytest_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", "-q", *args]


def batch_script(cwd: Path) -> str:
    """A batch script that ``exec``s pytest (the scheduler's SIGTERM then reaches pytest itself),
    with ``--xp-shard auto`` and a store of the task's own."""
    command = shlex.join(pytest_command("--xp-shard=auto"))
    return f'#!/bin/bash\ncd {shlex.quote(str(cwd))}\nexec {command} "--xp-store=stores/task-$SLURM_ARRAY_TASK_ID"\n'


def merged_points(pytester: pytest.Pytester) -> Counter[str]:
    """Merge every task's store; each grid point's count of passed runs in the merged store."""
    stores = sorted(str(path) for path in (pytester.path / "stores").iterdir())
    assert main(["merge", *stores, "--into", str(pytester.path / "merged")]) == 0
    with Store.open(pytester.path / "merged", readonly=True) as merged:
        return Counter(run.param_hash for run in merged.runs(history=True) if run.status == "passed")


def test_an_array_with_shard_auto_runs_each_point_once(pytester: pytest.Pytester, cluster: Cluster) -> None:
    pytester.makepyfile(test_sweep=SWEEP)
    job = cluster.submit_array("0-3", batch_script(pytester.path))
    cluster.wait(job)
    assert set(cluster.states(job).values()) == {("COMPLETED", "0:0")}, cluster.outputs()
    points = merged_points(pytester)
    assert len(points) == POINTS
    assert set(points.values()) == {1}


def test_a_cancelled_task_reads_interrupted_and_resume_finishes_it(pytester: pytest.Pytester, cluster: Cluster) -> None:
    pytester.makepyfile(test_sweep=SWEEP)
    gate = pytester.path / "gate"
    gate.mkdir()
    job = cluster.submit_array("0-3", batch_script(pytester.path))
    deadline = time.monotonic() + TIMEOUT
    while not (gate / "running-2").exists():  # task 2 is inside a run
        if time.monotonic() > deadline:
            pytest.fail(f"task 2 never started a run:\n{cluster.outputs()}")
        time.sleep(0.05)
    cluster.command("scancel", f"{job}_2")
    deadline = time.monotonic() + TIMEOUT
    while cluster.command("squeue", "-h", "-j", f"{job}_2", "-o", "%i").strip():
        if time.monotonic() > deadline:
            pytest.fail("task 2 was not cancelled")
        time.sleep(0.05)
    (pytester.path / "go").write_text("")
    cluster.wait(job)
    states = cluster.states(job)
    assert states["2"][0] == "CANCELLED", states
    assert {states[task] for task in "013"} == {("COMPLETED", "0:0")}, cluster.outputs()
    with Store.open(pytester.path / "stores" / "task-2", readonly=True) as task_store:
        cancelled = task_store.runs(history=True)
    assert [run.status for run in cancelled] == ["interrupted"]
    # Resubmitted alone, the task is an array of one: its shard is named explicitly.
    resumed = subprocess.run(
        pytest_command("--xp-shard=2/4", "--xp-resume", "--xp-store=stores/task-2"),
        cwd=pytester.path, env=inner_env(SLURM_ARRAY_TASK_ID="2"), capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    points = merged_points(pytester)
    assert len(points) == POINTS
    assert set(points.values()) == {1}


def test_array_tasks_resuming_one_postgres_store_run_each_point_once(
    pytester: pytest.Pytester, cluster: Cluster, postgres_database: str, tmp_path: Path
) -> None:
    # Every task runs the same command (what examples/cluster/shared_postgres.sbatch does): the
    # tasks split the grid by claims, each point is run by exactly one of them.
    pg: Backend = make_backend("postgresql", tmp_path, postgres_database)
    pytester.makepyfile(test_sweep=SWEEP)
    command = shlex.join(pytest_command("--xp-resume", f"--xp-store={pg.location}", f"--xp-artifacts={pg.artifacts}"))
    job = cluster.submit_array("0-3", f"#!/bin/bash\ncd {shlex.quote(str(pytester.path))}\nexec {command}\n")
    cluster.wait(job)
    assert set(cluster.states(job).values()) == {("COMPLETED", "0:0")}, cluster.outputs()
    with pg.open(readonly=True) as store:
        runs = store.runs(history=True)
    points = Counter(run.param_hash for run in runs if run.status == "passed")
    assert len(points) == POINTS
    assert set(points.values()) == {1}
    assert {run.status for run in runs} == {"passed"}
    assert {run.dir.parent.parent for run in runs} == {pg.artifacts / "runs"}
