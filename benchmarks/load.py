"""Speed of ``pytest_experiments.load()`` and ``load_series()`` on a store of many recorded runs,
side by side with ``pandas.read_csv`` of the same runs exported as CSV.

What is measured, in one process, alternating so that the machine's load hits each alike: the wall
time of ``load(path)`` (the latest run of each grid point), ``load(path, history=True)`` (every
run), ``load_series(path, history=True)`` (every logged point of every run) and ``pandas.read_csv``
of ``load(path, history=True)`` written to a CSV file once (not timed): the reference the issue
sets, at most 3 times its time, and under 1 s, at 100,000 runs (``--runs``). Each ``load()`` is
timed twice: "built", the first call after the runs changed (the frame built from the store, then
kept beside it: its side files are removed before, untimed), and "kept", the next call (the frame
read back from the side file); beside them ``load(path, status=<every status>)``, the same rows
through a selection, which is never kept: the cost before side files, timed alongside. Then
"patched": the first ``load()`` and ``load(history=True)`` after a session appended 200 runs (150
re-runs of grid points the store has, 50 new ones) and tagged 5 older runs, to a store whose
frames were kept (all of that untimed): the kept frame patched with the runs changed since
(``frames/patch.py``). The store grows by 200 runs each repeat; the first one migrates a store of
an older schema (``--reuse`` of one built before). pandas and
``pytest_experiments.frames`` are imported before timing; each call is repeated (``--repeats``)
and the medians of wall and CPU time are printed with their ratios to ``read_csv``, and the
load average of the machine.

The store is built first (not timed) through the public store API, as the plugin writes it:
``Store.open(path, create=True)``, ``record_session``, then ``start_run`` / ``finish_run`` per run.
The runs come from three experiments swept over grids (1 to 5 parameters, plus a logged one) in ``--sessions``
sessions (each session re-runs the same grid points, so ``load()`` returns runs / sessions rows and
``history=True`` all of them), with 3-5 metrics per run, some with a short series (10 steps), a
little metadata, and a few failed runs with a traceback.

``--postgres URL`` (a server, a user who may create databases) times the same on a PostgreSQL
store: a fresh database ``xp_bench_<random>`` is created there, holds the store, and is dropped
at the end; the run folders' root is a temporary folder (``PYTEST_XP_ARTIFACTS``, which ``load()``
reads as the plugin does), where the kept frames go.

Run it from the repository root::

    .venv/bin/python benchmarks/load.py
    .venv/bin/python benchmarks/load.py --runs 10000 --repeats 3
    .venv/bin/python benchmarks/load.py --store /tmp/xp-100k   # build once and keep it
    .venv/bin/python benchmarks/load.py --reuse /tmp/xp-100k   # time an existing store
    .venv/bin/python benchmarks/load.py --postgres postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import math
import os
import random
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pytest_experiments.model import STATUSES, MetricPoint, RunEnd, RunStart, SessionStart
from pytest_experiments.run import new_id
from pytest_experiments.store import Store
from pytest_experiments.store.rundirs import SIDE_DIR, relative_run_dir
from pytest_experiments.values import param_hash

TARGET_SECONDS = 1.0
#: ``load()`` may take at most this many times ``read_csv`` of the same runs.
TARGET_RATIO = 3.0

_SOURCE = 'def {name}(lr, seed, size):\n    return {{"loss": 1.0 / (lr * size + seed + 1)}}\n'


def grid_points() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """An endless supply of (module, experiment, params) from three experiments' grids."""
    sweeps = [
        (
            "experiments/test_training.py",
            "test_train",
            {
                "lr": [0.1, 0.03, 0.01, 0.003, 0.001],
                "seed": list(range(10)),
                "size": [64, 128, 256, 512],
                "optimizer": ["sgd", "adam"],
                "depth": list(range(1, 1000)),
            },
        ),
        (
            "experiments/test_models.py",
            "TestModel.test_fit",
            {"model": ["linear", "tree", "forest"], "alpha": [0.0, 0.5, 1.0], "seed": list(range(100_000))},
        ),
        ("experiments/test_quick.py", "test_square", {"x": list(range(100_000))}),
    ]
    products = [(module, name, _points(axes)) for module, name, axes in sweeps]
    for module, name, points in itertools.cycle(products):
        yield module, name, next(points)


def _points(axes: dict[str, list[Any]]) -> Iterator[dict[str, Any]]:
    for values in itertools.product(*axes.values()):
        yield dict(zip(axes, values, strict=True))


def build_store(path: Path | str, runs: int, sessions: int, seed: int, **options: Any) -> None:
    """Record ``runs`` runs into a new store at ``path`` (a folder or a server store's URL, opened
    with ``options``): ``sessions`` sessions over the same grid points."""
    rng = random.Random(seed)
    per_session = math.ceil(runs / sessions)
    points = list(itertools.islice(grid_points(), per_session))
    host, pid = socket.gethostname(), os.getpid()
    written = 0
    with Store.open(path, create=True, **options) as store:
        for index in range(sessions):
            session = SessionStart(
                new_id(),
                time.time(),
                host,
                pid,
                {"git": {"commit": f"{index:040x}", "branch": "main", "dirty": False}, "command": "pytest -n 2"},
            )
            store.record_session(session)
            for module, experiment, params in points[: runs - written]:
                record_run(store, rng, session.session_id, module, experiment, params, host, pid)
                written += 1
            store.finish_session(session.session_id, time.time(), 0)


def record_run(
    store: Store,
    rng: random.Random,
    session_id: str,
    module: str,
    experiment: str,
    params: dict[str, Any],
    host: str,
    pid: int,
) -> None:
    run_id = new_id()
    started = time.time()
    node_id = f"{module}::{experiment.replace('.', '::')}[{'-'.join(f'{k}={v}' for k, v in params.items())}]"
    store.start_run(
        RunStart(
            run_id=run_id,
            session_id=session_id,
            node_id=node_id,
            module=module,
            experiment=experiment,
            param_hash=param_hash(params),
            params=params,
            started_at=started,
            worker=rng.choice(["gw0", "gw1"]),
            host=host,
            pid=pid,
            dir=relative_run_dir(experiment, run_id),
        )
    )
    store.finish_run(run_end(rng, run_id, experiment, started))


def run_end(rng: random.Random, run_id: str, experiment: str, started: float) -> RunEnd:
    """The outcome of a run of ``experiment``: 3-5 metrics, a 10-step series for ``test_train``,
    a little metadata, its code, and for 2% of the runs a failure with a traceback."""
    metrics = {"accuracy": rng.random(), "loss": rng.expovariate(1.0), "fit_seconds": rng.uniform(0.1, 5.0)}
    points: list[MetricPoint] = []
    if experiment == "test_train":
        for step in range(10):
            loss = rng.expovariate(1.0) / (step + 1)
            points.append(MetricPoint("train.loss", len(points), step, loss))
            points.append(MetricPoint("val.loss", len(points), step, loss * 1.1))
        metrics |= {"train.loss": points[-2].value, "val.loss": points[-1].value}
    elif experiment == "TestModel.test_fit":
        metrics["n_leaves"] = float(rng.randint(1, 200))
    failed = rng.random() < 0.02
    source = _SOURCE.format(name=experiment.rsplit(".", 1)[-1])
    return RunEnd(
        run_id=run_id,
        status="failed" if failed else "passed",
        finished_at=started + metrics["fit_seconds"],
        duration=metrics["fit_seconds"],
        result=None if failed else dict(metrics),
        metrics={} if failed else metrics,
        points=points,
        logged_params={"n_params": rng.randint(100, 100_000)},
        metadata={"timing": {"call": metrics["fit_seconds"], "fit": metrics["fit_seconds"] * 0.9}},
        code_sha256=hashlib.sha256(source.encode()).hexdigest(),
        code_source=source,
        error_type="ValueError" if failed else None,
        error_message="diverged: loss is nan" if failed else None,
        traceback="Traceback (most recent call last):\n  ...\nValueError: diverged: loss is nan\n" if failed else None,
    )


#: Runs a session appends before the "patched" calls (re-runs of existing grid points and new
#: ones), and runs of the store it tags (updates).
APPENDED_RUNS = 200
TAGGED_RUNS = 5


def _session_appender(location: Path | str, **options: Any) -> Callable[[], None]:
    """What records, untimed, a session of :data:`APPENDED_RUNS` runs into ``location`` after
    making sure both kept frames hold its runs as they are: three quarters re-run grid points
    the store has (so the latest frame loses rows too), a quarter new ones; and tags
    :data:`TAGGED_RUNS` of its older runs."""
    import pytest_experiments

    rng = random.Random(1)
    calls = itertools.count()

    def append() -> None:
        pytest_experiments.load(location)
        pytest_experiments.load(location, history=True)
        index = next(calls)
        with Store.open(location, create=True, **options) as store:  # the plugin's writer: migrates an older store
            older = store.run_columns(history=True).run_id[:1000]
            session = SessionStart(new_id(), time.time(), socket.gethostname(), os.getpid(), {"command": "pytest"})
            store.record_session(session)
            existing = list(itertools.islice(grid_points(), APPENDED_RUNS * 3 // 4))
            first = 200_000 + index * APPENDED_RUNS  # past the grid points of a store of 100,000 runs
            fresh = list(itertools.islice(grid_points(), first, first + APPENDED_RUNS))
            for module, experiment, params in existing + fresh[: APPENDED_RUNS - len(existing)]:
                record_run(
                    store, rng, session.session_id, module, experiment, params, socket.gethostname(), os.getpid()
                )
            store.finish_session(session.session_id, time.time(), 0)
            # Other runs each time (a kept frame is patched only while the run of the last change
            # it saw has not changed again: see frames/cache.py).
            for run_id in random.Random().sample(older, TAGGED_RUNS):
                store.set_tags(run_id, {"checked": f"round {index}"})

    return append


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new database on the server of ``server_url``, dropped afterwards; yields its URL."""
    import psycopg
    from psycopg import sql

    name = f"xp_bench_{secrets.token_hex(6)}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, query = server_url.partition("?")
    prefix, _, _ = base.rpartition("/")
    try:
        yield f"{prefix}/{name}" + (f"?{query}" if query else "")
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def timed(repeats: int, call: Callable[[], Any]) -> tuple[list[float], Any]:
    seconds: list[float] = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - start)
    return seconds, result


KEEPER_LABEL = "background, both frames"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_keeper(location: Path | str, artifacts: Path | None) -> None:
    """Run the frame keeper on ``location`` as a session's last process starts it, and wait for it."""
    import pytest_experiments.frame_keeper as keeper
    from pytest_experiments.store.children import python_command

    command = python_command(keeper.__name__, [str(location)])
    if artifacts is not None:
        command += ["--artifacts", str(artifacts)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        sys.exit(f"the frame keeper kept nothing ({completed.returncode}): {completed.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100_000, help="runs recorded in the store (default 100000)")
    parser.add_argument(
        "--sessions", type=int, default=2, help="sessions the runs are spread over, each re-running the same grid (2)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of each (default 5)")
    parser.add_argument("--store", type=Path, help="build the store here (must not exist) and keep it")
    parser.add_argument("--reuse", type=Path, help="time this existing store instead of building one")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the generated values")
    parser.add_argument("--postgres", metavar="URL", help="time a PostgreSQL store in a fresh database of this server")
    options = parser.parse_args()
    if options.postgres and (options.store or options.reuse):
        parser.error("--postgres builds its store in a fresh database: --store and --reuse are SQLite's")
    if options.runs < 1 or options.sessions < 1 or options.repeats < 1:
        parser.error("--runs, --sessions and --repeats must be at least 1")
    if options.store is not None and options.store.exists():
        parser.error(f"--store {options.store} already exists")
    if options.reuse is not None and not (options.reuse / "experiments.sqlite").exists():
        parser.error(f"--reuse {options.reuse} is not a store")

    # Imported before anything is timed: pandas' import is not part of load()'s cost.
    import pandas

    import pytest_experiments
    import pytest_experiments.frames

    temporary = Path(tempfile.mkdtemp(prefix="xp-load-"))
    path = options.reuse or options.store or temporary / "store"
    try:
        with contextlib.ExitStack() as stack:
            location: Path | str = path
            side, open_options, where = path / SIDE_DIR, {}, "SQLite"
            if options.postgres:
                database = stack.enter_context(fresh_database(options.postgres))
                location = f"{database}{'&' if '?' in database else '?'}store=bench"
                artifacts = temporary / "artifacts"
                os.environ["PYTEST_XP_ARTIFACTS"] = str(artifacts)  # where load(URL) finds the run folders
                side, open_options, where = artifacts / SIDE_DIR, {"artifacts": artifacts}, "PostgreSQL"
            if options.reuse is None:
                start = time.perf_counter()
                build_store(location, options.runs, options.sessions, options.seed, **open_options)
                built = (
                    f"built a {where} store of {options.runs} runs in {options.sessions} sessions "
                    f"in {time.perf_counter() - start:.1f} s"
                )
            else:
                built = f"reusing the store {path}"
            if not options.postgres:
                database_file = path / "experiments.sqlite"
                size_mb = sum(p.stat().st_size for p in path.iterdir() if p.name.startswith(database_file.name))
                built += f" ({size_mb / 2**20:.1f} MiB)"
            csv = temporary / "runs.csv"
            pytest_experiments.load(location, history=True).to_csv(csv, index=False)
            print(
                f"python {sys.version.split()[0]}, pandas {pandas.__version__}: {built}; "
                f"its history exported to CSV ({csv.stat().st_size / 2**20:.1f} MiB); nothing of that timed"
            )
            print(f"{options.repeats} timed calls each, alternating, pandas already imported\n")
            print(compare(location, csv, options.repeats, pandas, side, open_options))
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
        if options.store is not None:
            print(f"store kept in {path}")


def compare(
    location: Path | str, csv: Path, repeats: int, pandas: Any, side: Path, open_options: dict[str, Any]
) -> str:
    """The side-by-side table: each read of ``location``'s runs against ``read_csv`` of ``csv``
    (``side``: where its frames are kept; ``open_options``: what its writers open it with).

    Wall time and CPU time of this process (``time.process_time``) per call: on a machine
    others load, the CPU time is the steadier figure (wall time adds the time the process
    waited for a core, more of it the longer a call runs).
    """
    import pytest_experiments

    # "built": the first load() after the runs changed (the kept frames are removed before it,
    # untimed), which builds the frame from the store and keeps it; "kept": the next one.

    calls: dict[str, Callable[[], Any]] = {
        "pandas.read_csv(export)": lambda: pandas.read_csv(csv),
        # Every status selected: the same rows, and a selection is never kept (the path before side files).
        "load(path, status=all) never kept": lambda: pytest_experiments.load(location, status=STATUSES),
        "load(path) built": lambda: pytest_experiments.load(location),
        "load(path) kept": lambda: pytest_experiments.load(location),
        "load(path, history=True, status=all) never kept": lambda: pytest_experiments.load(
            location, history=True, status=STATUSES
        ),
        "load(path, history=True) built": lambda: pytest_experiments.load(location, history=True),
        "load(path, history=True) kept": lambda: pytest_experiments.load(location, history=True),
        "load_series(path, history=True)": lambda: pytest_experiments.load_series(location, history=True),
    }
    # "patched": the first load() after a session appended runs to a store whose frames were
    # kept (both loaded, untimed, then the session recorded, untimed): the kept frame patched
    # with the runs changed since. The history one follows the latest one: its file still
    # holds the runs before that session.
    appended = _session_appender(location, **open_options)
    calls[f"load(path) patched after +{APPENDED_RUNS} runs"] = lambda: pytest_experiments.load(location)
    calls[f"load(path, history=True) patched after +{APPENDED_RUNS} runs"] = lambda: pytest_experiments.load(
        location, history=True
    )
    # "after keeper": what a session of 1000 runs or more leaves (xp_keep_frames): its frame
    # keeper, run here as the session's last process starts it (a process of its own, timed
    # apart: the session does not wait for it), after the kept frames were removed; then the
    # first load() and load(history=True) after it.
    keeper = f"frame keeper after a session ({KEEPER_LABEL})"
    calls[keeper] = lambda: _run_keeper(location, open_options.get("artifacts"))
    calls["load(path) after keeper"] = lambda: pytest_experiments.load(location)
    calls["load(path, history=True) after keeper"] = lambda: pytest_experiments.load(location, history=True)
    prepare: dict[str, Callable[[], Any]] = {
        f"load(path) patched after +{APPENDED_RUNS} runs": appended,
        keeper: lambda: shutil.rmtree(side, ignore_errors=True),
    }
    walls: dict[str, list[float]] = {label: [] for label in calls}
    cpus: dict[str, list[float]] = {label: [] for label in calls}
    shapes: dict[str, tuple[int, int]] = {}
    loads = []
    for _ in range(repeats):
        for label, call in calls.items():
            if label.endswith(" built"):
                shutil.rmtree(side, ignore_errors=True)  # as after a change of the runs: nothing kept
            if label in prepare:
                prepare[label]()
            cpu = time.process_time() + _children_cpu()
            [elapsed], frame = timed(1, call)
            cpus[label].append(time.process_time() + _children_cpu() - cpu)
            walls[label].append(elapsed)
            shapes[label] = getattr(frame, "shape", (0, 0))  # the keeper's row: no frame here
        loads.append(os.getloadavg()[0])
    wall_ref = statistics.median(walls["pandas.read_csv(export)"])
    cpu_ref = statistics.median(cpus["pandas.read_csv(export)"])
    header = (
        f"{'call':<48} {'rows':>7} {'cols':>4} {'wall s':>7} {'min s':>6} {'x csv':>6} {'CPU s':>7} {'x csv':>6}"
        "   target (wall; CPU)"
    )
    lines = [header, "-" * len(header)]
    for label in calls:
        wall, cpu = statistics.median(walls[label]), statistics.median(cpus[label])
        rows, cols = shapes[label]
        target = ""
        if label.startswith("load("):
            verdicts = [
                "PASS" if value < TARGET_SECONDS and value / reference <= TARGET_RATIO else "MISS"
                for value, reference in ((wall, wall_ref), (cpu, cpu_ref))
            ]
            target = f"< {TARGET_SECONDS:g} s and <= {TARGET_RATIO:g}x: {verdicts[0]}; {verdicts[1]}"
        lines.append(
            f"{label:<48} {rows:>7} {cols:>4} {wall:>7.3f} {min(walls[label]):>6.3f} {wall / wall_ref:>6.2f}"
            f" {cpu:>7.3f} {cpu / cpu_ref:>6.2f}   {target}"
        )
    lines.append(f"load average (1 min) during the runs: {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
