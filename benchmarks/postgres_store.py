"""The PostgreSQL store against SQLite, side by side: per-run write cost, and ``load()`` at scale.

What is measured, on a local PostgreSQL server and a local SQLite store:

1. **Per run** (store level, ``--runs`` runs, default 2,000): the wall time of ``start_run`` (the
   ``running`` row written before a run's body) and of ``finish_run`` (its outcome, metrics, two
   10-step series for a third of the runs, metadata, its code once per connection), one run after
   the other as one process records them; also ``claim_run`` + ``finish_run`` (what
   ``--xp-resume`` does per run). Medians over ``--repeats`` fresh stores, in microseconds a run.
2. **load()**: ``pytest_experiments.load(store)`` (the latest run of each grid point),
   ``load(store, history=True)`` and ``load_series(store, history=True)`` of a store of
   ``--load-runs`` runs (default 100,000, in two sessions over the same grid points, built with
   ``benchmarks/load.py`` and not timed), pandas already imported; the target is under 2 s from
   PostgreSQL.
3. **Through pytest** (``--pytest-runs`` trivial experiments, default 2,000): the wall time of whole
   ``python -m pytest -q`` processes recording into a fresh SQLite store and into a fresh
   PostgreSQL store, next to bare pytest (``-p no:experiments``); the cost per run is
   (t - t_bare) / N. Medians over ``--repeats``.
4. **Claims**: the same grid run by one ``--xp-resume`` process, and by 4 concurrent ones on one
   fresh PostgreSQL store (they split it by claims); total wall time of each, and the ratio
   (target: within 1.5x); also the CPU time the pytest processes used (the server's not counted),
   which other load on the machine changes less than the wall time.

The server: ``--url`` (default ``$XP_TEST_POSTGRES_URL``, else
``postgresql://postgres@127.0.0.1:5432/postgres``), a user who may create databases. A fresh
database ``xp_bench_<random>`` is created there and dropped at the end; no other is touched.

Run it from the repository root::

    .venv/bin/python benchmarks/postgres_store.py
    .venv/bin/python benchmarks/postgres_store.py --runs 500 --load-runs 20000 --repeats 1
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/load.py builds the stores

from load import build_store, fresh_database, grid_points, run_end, timed

from pytest_experiments.model import RunStart, SessionStart
from pytest_experiments.run import new_id
from pytest_experiments.store import Store
from pytest_experiments.store.rundirs import relative_run_dir
from pytest_experiments.values import param_hash

LOAD_TARGET_S = 2.0
CLAIMS_TARGET = 1.5
GRID = """
import pytest

@pytest.mark.parametrize("i", range({runs}))
def test_point(i):
    {body}
"""
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


class Locations:
    """New store locations on both backends, in one temporary folder and one database."""

    def __init__(self, folder: Path, database_url: str) -> None:
        self.folder = folder
        self.database_url = database_url
        self._count = 0

    def new(self, backend: str) -> tuple[str, dict[str, Any]]:
        """A location not created yet on ``backend``, and the options ``Store.open`` needs for it."""
        self._count += 1
        if backend == "sqlite":
            return str(self.folder / f"store-{self._count}"), {}
        artifacts = self.folder / f"artifacts-{self._count}"
        separator = "&" if "?" in self.database_url else "?"
        return f"{self.database_url}{separator}store=bench_{self._count}", {"artifacts": artifacts}


def per_run(location: str, options: dict[str, Any], runs: int, claim: bool) -> tuple[float, float]:
    """Record ``runs`` runs one after the other; seconds a run spent in start (or claim) and in finish."""
    rng = random.Random(0)
    host, pid = socket.gethostname(), os.getpid()
    session = SessionStart(new_id(), time.time(), host, pid, {"command": "benchmark"})
    points = grid_points()
    starting = finishing = 0.0
    with Store.open(location, create=True, **options) as store:
        store.record_session(session)
        mark = store.grid_snapshot().mark
        for _ in range(runs):
            module, experiment, params = next(points)
            run_id = new_id()
            start = RunStart(
                run_id, session.session_id, f"{module}::{experiment}[{run_id}]", module, experiment,
                param_hash(params), params, time.time(), "main", host, pid, relative_run_dir(experiment, run_id),
            )  # fmt: skip
            before = time.perf_counter()
            if claim:
                assert store.claim_run(start, mark) is None
            else:
                store.start_run(start)
            middle = time.perf_counter()
            # The same outcome as load.py records (metrics, series, code, metadata).
            store.finish_run(run_end(rng, run_id, experiment, start.started_at))
            finishing += time.perf_counter() - middle
            starting += middle - before
    return starting / runs, finishing / runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("XP_TEST_POSTGRES_URL") or DEFAULT_URL)
    parser.add_argument("--runs", type=int, default=2000, help="runs recorded per store for the per-run cost (2000)")
    parser.add_argument("--load-runs", type=int, default=100_000, help="runs in the store load() reads (100000)")
    parser.add_argument("--repeats", type=int, default=3, help="stores (per-run) and calls (load) timed (3)")
    parser.add_argument("--pytest-runs", type=int, default=2000, help="trivial experiments run by pytest (2000)")
    parser.add_argument(
        "--only", choices=("store", "load", "pytest", "claims"), action="append", help="these sections only"
    )
    options = parser.parse_args()
    sections = set(options.only or ("store", "load", "pytest", "claims"))

    import pandas

    import pytest_experiments
    import pytest_experiments.frames  # noqa: F401  # imported before anything is timed

    folder = Path(tempfile.mkdtemp(prefix="xp-bench-pg-"))
    try:
        with fresh_database(options.url) as database_url:
            locations = Locations(folder, database_url)
            print(
                f"python {sys.version.split()[0]}, pandas {pandas.__version__}, server {options.url.split('@')[-1]}\n"
            )
            if "store" in sections:
                print_per_run(locations, options.runs, options.repeats)
                print()
            if "load" in sections:
                print_load(locations, options.load_runs, options.repeats)
                print()
            if "pytest" in sections:
                print_through_pytest(locations, options.pytest_runs, options.repeats)
                print()
            if "claims" in sections:
                print_claims(locations, options.pytest_runs, options.repeats)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def print_per_run(locations: Locations, runs: int, repeats: int) -> None:
    header = f"{'per run, ' + str(runs) + ' runs':<26} {'SQLite µs':>10} {'PostgreSQL µs':>14} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for label, claim in (("start_run + finish_run", False), ("claim_run + finish_run", True)):
        medians: dict[str, tuple[float, float]] = {}
        # Alternating backends, so that a load that comes and goes hits both alike.
        samples: dict[str, list[tuple[float, float]]] = {"sqlite": [], "postgresql": []}
        for _ in range(repeats):
            for backend in samples:
                location, open_options = locations.new(backend)
                samples[backend].append(per_run(location, open_options, runs, claim))
        for backend, values in samples.items():
            medians[backend] = (statistics.median(v[0] for v in values), statistics.median(v[1] for v in values))
        first, finish = label.split(" + ")
        for name, index in ((first, 0), (finish, 1)):
            sqlite, postgres = medians["sqlite"][index] * 1e6, medians["postgresql"][index] * 1e6
            print(f"  {name:<24} {sqlite:>10.0f} {postgres:>14.0f} {postgres / sqlite:>6.2f}")
        sqlite, postgres = sum(medians["sqlite"]) * 1e6, sum(medians["postgresql"]) * 1e6
        print(f"{label:<26} {sqlite:>10.0f} {postgres:>14.0f} {postgres / sqlite:>6.2f}")


def print_load(locations: Locations, runs: int, repeats: int) -> None:
    import pytest_experiments

    stores = {}
    for backend in ("sqlite", "postgresql"):
        location, open_options = locations.new(backend)
        begin = time.perf_counter()
        build_store(location, runs, 2, 0, **open_options)
        print(f"built a {backend} store of {runs} runs in {time.perf_counter() - begin:.0f} s (not timed below)")
        stores[backend] = location
    header = f"{'load, ' + str(runs) + ' runs':<34} {'rows':>7} {'SQLite s':>9} {'PostgreSQL s':>13}   target"
    print(header)
    print("-" * len(header))
    calls = (
        ("load(store)", pytest_experiments.load, {}),
        ("load(store, history=True)", pytest_experiments.load, {"history": True}),
        ("load_series(store, history=True)", pytest_experiments.load_series, {"history": True}),
    )
    for label, call, kwargs in calls:
        medians, rows = {}, 0
        for backend, location in stores.items():
            seconds, frame = timed(
                repeats, lambda location=location, call=call, kwargs=kwargs: call(location, **kwargs)
            )
            medians[backend] = statistics.median(seconds)
            rows = len(frame)
        verdict = "PASS" if medians["postgresql"] < LOAD_TARGET_S else "MISS"
        target = f"   PostgreSQL < {LOAD_TARGET_S} s {verdict}" if call is pytest_experiments.load else ""
        print(f"{label:<34} {rows:>7} {medians['sqlite']:>9.2f} {medians['postgresql']:>13.2f}{target}")
    print(f"load average (1 min) after the runs: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


def project(folder: Path, runs: int, experiment: bool) -> Path:
    """A project folder with one grid of ``runs`` trivial tests (experiments or plain)."""
    folder.mkdir(parents=True, exist_ok=True)
    mark = "@pytest.mark.experiment\n" if experiment else ""
    body = 'return {"a": i, "b": i * 0.5}' if experiment else "pass"
    source = GRID.format(runs=runs, body=body).replace("@pytest.mark.parametrize", mark + "@pytest.mark.parametrize")
    (folder / "test_grid.py").write_text(source)
    return folder


def pytest_process(folder: Path, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *args]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_XP_", "PYTEST_ADDOPTS"))}
    return subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wall(folder: Path, *args: str) -> float:
    begin = time.perf_counter()
    proc = pytest_process(folder, *args)
    output, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"pytest {' '.join(args)} failed:\n{output[-2000:]}")
    return time.perf_counter() - begin


def store_args(location: str, options: dict[str, Any]) -> list[str]:
    artifacts = options.get("artifacts")
    return [f"--xp-store={location}", *([f"--xp-artifacts={artifacts}"] if artifacts else [])]


def print_through_pytest(locations: Locations, runs: int, repeats: int) -> None:
    bare = project(locations.folder / "bare", runs, experiment=False)
    experiments = project(locations.folder / "experiments", runs, experiment=True)
    samples: dict[str, list[float]] = {"bare": [], "sqlite": [], "postgresql": []}
    for _ in range(repeats):
        samples["bare"].append(wall(bare, "-p", "no:experiments"))
        for backend in ("sqlite", "postgresql"):
            samples[backend].append(wall(experiments, *store_args(*locations.new(backend))))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    header = f"{'through pytest, ' + str(runs) + ' runs, -n 0':<34} {'wall s':>7} {'µs a run over bare':>19}"
    print(header)
    print("-" * len(header))
    for name, label in (
        ("bare", "bare pytest (-p no:experiments)"),
        ("sqlite", "SQLite"),
        ("postgresql", "PostgreSQL"),
    ):
        added = "" if name == "bare" else f"{(medians[name] - medians['bare']) / runs * 1e6:>19.0f}"
        print(f"{label:<34} {medians[name]:>7.2f} {added}")


def children_cpu() -> float:
    """CPU seconds (user + system) of the child processes waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def print_claims(locations: Locations, runs: int, repeats: int) -> None:
    experiments = project(locations.folder / "experiments", runs, experiment=True)
    # (wall, CPU of the pytest processes): the CPU is what the load of other processes on the
    # machine changes least; the server's own CPU is in neither.
    one, four = [], []
    for _ in range(repeats):
        cpu = children_cpu()
        seconds = wall(experiments, "--xp-resume", *store_args(*locations.new("postgresql")))
        one.append((seconds, children_cpu() - cpu))
        args = ["--xp-resume", *store_args(*locations.new("postgresql"))]
        with Store.open(args[1].removeprefix("--xp-store="), create=True):
            pass  # created once, not by four processes at the same instant
        cpu, begin = children_cpu(), time.perf_counter()
        procs = [pytest_process(experiments, *args) for _ in range(4)]
        outputs = [proc.communicate()[0] for proc in procs]
        four.append((time.perf_counter() - begin, children_cpu() - cpu))
        if any(proc.returncode != 0 for proc in procs):
            raise SystemExit("a resumer failed:\n" + "\n".join(output[-1000:] for output in outputs))
    single, concurrent = statistics.median(w for w, _ in one), statistics.median(w for w, _ in four)
    single_cpu, concurrent_cpu = statistics.median(c for _, c in one), statistics.median(c for _, c in four)
    verdict = "PASS" if concurrent <= CLAIMS_TARGET * single else "MISS"
    header = f"{'claims, ' + str(runs) + '-point grid, PostgreSQL':<40} {'wall s':>7} {'CPU s':>7}"
    print(header)
    print("-" * len(header))
    print(f"{'1 process, --xp-resume':<40} {single:>7.2f} {single_cpu:>7.2f}")
    print(f"{'4 concurrent processes, --xp-resume':<40} {concurrent:>7.2f} {concurrent_cpu:>7.2f}")
    print(f"walls: one {', '.join(f'{w:.2f}' for w, _ in one)}; four {', '.join(f'{w:.2f}' for w, _ in four)}")
    print(
        f"ratio {concurrent / single:.2f} (target: within {CLAIMS_TARGET}x) {verdict}; CPU ratio {concurrent_cpu / single_cpu:.2f}"
    )


if __name__ == "__main__":
    main()
