"""The journal's costs: ``xp.log_metric`` against a bare ``os.write`` loop, and a fold of a crashed
writer's journal by the next reader, printed side by side.

What is measured, each repeated (the median and the best shown, wall and CPU seconds):

``log_metric``   1,000,000 points logged in one run (``Run.log_metric`` streaming to a real journal,
                 as in a session: one unbuffered ``os.write`` each), µs a point
``os.write``     the floor: the same number of ``os.write`` calls of a line of the same size
``fold``         a crashed writer's journal of R runs x P points (start, points, end of each run)
                 folded into a fresh SQLite store by the next writer (``Store.open``), µs a run and
                 µs a point; with ``--postgres URL`` the same into a PostgreSQL store
``overlay``      the same journal read by a read-only reader (``load()``'s path) without folding
``writer folds`` a live writer's own folds, as a session makes them every second: F times a run of
                 10 points appended to its journal, then a fold of it (what the fold costs, mostly
                 round trips on PostgreSQL), µs a fold; into SQLite, and PostgreSQL with ``--postgres``

Run it from the repository root::

    .venv/bin/python benchmarks/journal.py                     # 1M points, 10,000 runs x 100 points
    .venv/bin/python benchmarks/journal.py --points 200000 --runs 2000 --repeats 3
    .venv/bin/python benchmarks/journal.py --postgres postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from pytest_experiments import Store
from pytest_experiments.model import RunEnd, RunStart
from pytest_experiments.run import Run
from pytest_experiments.store.journal import JournalWriter
from pytest_experiments.store.liveness import Process, pid_namespace, process_start

RUN_ID = "20260101-000000-0123456789ab"


def timed(action: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of ``action()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def log_points(folder: Path, points: int) -> None:
    pid = os.getpid()
    journal = JournalWriter(folder, Process("bench", pid, pid_namespace(), process_start(pid)), "bench")
    run = Run(
        run_id=RUN_ID, session_id="bench", node_id="t.py::t", module="t.py", experiment="t", params={},
        param_hash="h", stored_params={}, store_root=folder, relative_dir="runs/t/r", worker="main", host="bench",
        pid=pid, function=None,
    )  # fmt: skip
    run.stream_points(journal.point)
    log = run.log_metric
    for step in range(points):
        log("loss", 1.0 / (step + 1), step)
    journal.close()


def bare_writes(folder: Path, points: int) -> None:
    descriptor = os.open(folder / "bare", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    line = f'P\t{RUN_ID}\t123456\t123456\t0.0001234567890123\t"loss"\n'.encode()
    write = os.write
    for _ in range(points):
        write(descriptor, line)
    os.close(descriptor)


# A writer that records R runs of P points into a store's journal and is killed before any fold.
CRASHED = """
import os, sys
from pathlib import Path
from pytest_experiments.model import RunEnd, RunStart
from pytest_experiments.store.journal import JournalWriter
from pytest_experiments.store.liveness import Process, pid_namespace, process_start

root, runs, points = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
pid = os.getpid()
journal = JournalWriter(root, Process(os.uname().nodename, pid, pid_namespace(), process_start(pid)), "bench")
for n in range(runs):
    run_id = f"run-{n:06d}"
    journal.start(RunStart(run_id, "bench", f"t.py::t[{n}]", "t.py", "t", f"h{n}", {"n": n}, float(n), "main",
                           os.uname().nodename, pid, f"runs/t/{run_id}"))
    for step in range(points):
        journal.point(run_id, "loss", step, step, 1.0 / (step + 1))
    journal.end(RunEnd(run_id, "passed", n + 1.0, 1.0, {"n": n}, {"loss": 1.0 / max(points, 1)}, [], {}, {"timing": {}}))
os.kill(pid, 9)
"""


def crashed_journal(store: str | Path, root: Path, runs: int, points: int) -> None:
    """A store with the session row, and a dead writer's journal under ``root``."""
    with Store.open(store, create=True, artifacts=None if Path(str(store)) == root else root):
        pass
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(CRASHED), str(root), str(runs), str(points)])
    assert done.returncode == -9, done


def fold_crashed(store: str | Path, artifacts: Path | None) -> None:
    """The next writer opens the store: it folds the crashed journal."""
    Store.open(store, artifacts=artifacts).close()


def read_overlay(store: str | Path, artifacts: Path | None) -> None:
    """A read-only reader reads every point, the journal's included, without folding."""
    with Store.open(store, readonly=True, artifacts=artifacts) as reader:
        reader.points()


def writer_folds(store: str | Path, root: Path, folds: int) -> tuple[float, float]:
    """(wall, CPU) seconds of ``folds`` folds by a live writer of its own journal, each of one run of 10 points."""
    pid = os.getpid()
    with Store.open(store, create=True, artifacts=None if Path(str(store)) == root else root) as opened:
        journal = JournalWriter(root, Process("bench", pid, pid_namespace(), process_start(pid)), "bench")
        wall, cpu = time.perf_counter(), time.process_time()
        for n in range(folds):
            run_id = f"run-{n:06d}"
            journal.start(RunStart(run_id, "bench", f"t.py::t[{n}]", "t.py", "t", f"h{n}", {"n": n}, float(n), "main",
                                   "bench", pid, f"runs/t/{run_id}"))  # fmt: skip
            for step in range(10):
                journal.point(run_id, "loss", step, step, 1.0 / (step + 1))
            journal.end(RunEnd(run_id, "passed", n + 1.0, 1.0, {"n": n}, {"loss": 0.1}, [], {}, {"timing": {}}))
            opened.fold_journals([journal.path])
        times = time.perf_counter() - wall, time.process_time() - cpu
        journal.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1_000_000, help="points logged in one run (default 1,000,000)")
    parser.add_argument("--runs", type=int, default=10_000, help="runs in the crashed journal (default 10,000)")
    parser.add_argument("--run-points", type=int, default=100, help="points of each of those runs (default 100)")
    parser.add_argument("--folds", type=int, default=1000, help="a live writer's folds of its journal (default 1,000)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--postgres", metavar="URL", help="also fold into a PostgreSQL store at this server")
    options = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {}
    loads = [os.getloadavg()[0]]
    for _ in range(options.repeats):
        for name, action in (("log_metric", log_points), ("os.write", bare_writes)):
            folder = Path(tempfile.mkdtemp(prefix="xp-journal-"))
            try:
                results.setdefault(name, []).append(timed(functools.partial(action, folder, options.points)))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        for name, url in (("fold sqlite", None), ("overlay sqlite", None), ("fold postgres", options.postgres)):
            if name == "fold postgres" and url is None:
                continue
            folder = Path(tempfile.mkdtemp(prefix="xp-fold-"))
            try:
                store: str | Path = folder / "store"
                root = folder / "store"
                if url is not None:
                    store, root = f"{url}?store=bench_fold_{os.getpid()}", folder / "artifacts"
                crashed_journal(store, root, options.runs, options.run_points)
                artifacts = None if url is None else root
                action = read_overlay if name.startswith("overlay") else fold_crashed
                results.setdefault(name, []).append(timed(functools.partial(action, store, artifacts)))
                if url is not None:
                    import psycopg

                    with psycopg.connect(url, autocommit=True) as connection:
                        connection.execute(f"DROP SCHEMA bench_fold_{os.getpid()} CASCADE")
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        for name, url in (("writer folds sqlite", None), ("writer folds pg", options.postgres)):
            if name.endswith("pg") and url is None:
                continue
            folder = Path(tempfile.mkdtemp(prefix="xp-folds-"))
            try:
                store = folder / "store" if url is None else f"{url}?store=bench_folds_{os.getpid()}"
                root = folder / "store" if url is None else folder / "artifacts"
                results.setdefault(name, []).append(writer_folds(store, root, options.folds))
                if url is not None:
                    import psycopg

                    with psycopg.connect(url, autocommit=True) as connection:
                        connection.execute(f"DROP SCHEMA bench_folds_{os.getpid()} CASCADE")
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        loads.append(os.getloadavg()[0])

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {options.repeats} repeats, load average up to "
          f"{max(loads):.1f}")  # fmt: skip
    print(f"{'what':<20} {'n':>10} {'wall s (median)':>16} {'best':>7} {'cpu s':>7} {'µs each (wall)':>15} "
          f"{'µs each (cpu)':>14}")  # fmt: skip
    for name, values in results.items():
        count, unit = (
            (options.points, "pt") if name in ("log_metric", "os.write")
            else (options.folds, "fold") if name.startswith("writer folds")
            else (options.runs, "run")
        )  # fmt: skip
        wall = statistics.median(value[0] for value in values)
        cpu = statistics.median(value[1] for value in values)
        print(f"{name:<20} {count:>10,} {wall:>16.3f} {min(v[0] for v in values):>7.3f} {cpu:>7.3f} "
              f"{wall / count * 1e6:>11.2f}/{unit} {cpu / count * 1e6:>10.2f}/{unit}")  # fmt: skip
    log, bare = (statistics.median(v[0] for v in results[name]) for name in ("log_metric", "os.write"))
    print(f"log_metric: {log / options.points * 1e6:.2f} µs a point, {log / bare:.2f}x a bare os.write loop; "
          f"target <= 5 µs: {'PASS' if log / options.points * 1e6 <= 5 else 'MISS'}")  # fmt: skip
    fold = statistics.median(v[0] for v in results["fold sqlite"])
    total = max(options.runs * options.run_points, 1)
    print(
        f"fold of a crashed journal ({options.runs:,} runs x {options.run_points} points): {fold:.2f} s, "
        f"{fold / options.runs * 1e6:.0f} µs a run, {fold / total * 1e6:.2f} µs a point"
    )


if __name__ == "__main__":
    main()
