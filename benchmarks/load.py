"""Speed of ``pytest_experiments.load()`` on a store of many recorded runs.

What is measured: the wall time of ``load(path)`` (the latest run of each grid point) and of
``load(path, history=True)`` (every run) on a store holding 10,000 runs (``--runs``). pandas and
``pytest_experiments.frames`` are imported before timing, so their import is excluded; each call is
repeated (``--repeats``) and the median is compared with the spec's target of 0.5 s.

The store is built first (not timed) through the public store API, as the plugin writes it:
``Store.open(path, create=True)``, ``record_session``, then ``start_run`` / ``finish_run`` per run.
The runs come from three experiments swept over grids (1 to 5 parameters, plus a logged one) in ``--sessions``
sessions (each session re-runs the same grid points, so ``load()`` returns runs / sessions rows and
``history=True`` all of them), with 3-5 metrics per run, some with a short series (10 steps), a
little metadata, and a few failed runs with a traceback.

Run it from the repository root::

    .venv/bin/python benchmarks/load.py
    .venv/bin/python benchmarks/load.py --runs 50000 --sessions 5 --repeats 3
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import math
import os
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pytest_experiments.model import MetricPoint, RunEnd, RunStart, SessionStart
from pytest_experiments.run import new_id
from pytest_experiments.store import Store
from pytest_experiments.store.rundirs import relative_run_dir
from pytest_experiments.values import param_hash

TARGET_SECONDS = 0.5

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


def timed(repeats: int, call: Callable[[], Any]) -> tuple[list[float], Any]:
    seconds: list[float] = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - start)
    return seconds, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000, help="runs recorded in the store (default 10000)")
    parser.add_argument(
        "--sessions", type=int, default=2, help="sessions the runs are spread over, each re-running the same grid (2)"
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed calls of each load (default 7)")
    parser.add_argument("--store", type=Path, help="build the store here (must not exist) and keep it")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the generated values")
    options = parser.parse_args()
    if options.runs < 1 or options.sessions < 1 or options.repeats < 1:
        parser.error("--runs, --sessions and --repeats must be at least 1")
    if options.store is not None and options.store.exists():
        parser.error(f"--store {options.store} already exists")

    # Imported before anything is timed: pandas' import is not part of load()'s cost.
    import pandas

    import pytest_experiments
    import pytest_experiments.frames

    temporary = None
    if options.store is None:
        temporary = Path(tempfile.mkdtemp(prefix="xp-load-"))
        path = temporary / "store"
    else:
        path = options.store
    try:
        start = time.perf_counter()
        build_store(path, options.runs, options.sessions, options.seed)
        build_seconds = time.perf_counter() - start
        database = path / "experiments.sqlite"
        size_mb = sum(p.stat().st_size for p in path.iterdir() if p.name.startswith(database.name)) / 2**20
        print(
            f"python {sys.version.split()[0]}, pandas {pandas.__version__}: built a store of {options.runs} runs "
            f"in {options.sessions} sessions in {build_seconds:.1f} s ({size_mb:.1f} MiB, not timed below)"
        )
        print(f"{options.repeats} timed calls each, pandas already imported\n")
        header = f"{'call':<32} {'rows':>6} {'cols':>5} {'median s':>9} {'min s':>7} {'max s':>7}   target"
        print(header)
        print("-" * len(header))
        verdicts = []
        for label, kwargs in (("load(path)", {}), ("load(path, history=True)", {"history": True})):
            seconds, frame = timed(options.repeats, lambda kwargs=kwargs: pytest_experiments.load(path, **kwargs))
            median = statistics.median(seconds)
            verdicts.append(median < TARGET_SECONDS)
            verdict = "PASS" if median < TARGET_SECONDS else "MISS"
            rows, cols = frame.shape
            print(
                f"{label:<32} {rows:>6} {cols:>5} {median:>9.3f} {min(seconds):>7.3f} {max(seconds):>7.3f}"
                f"   < {TARGET_SECONDS} s {verdict}"
            )
        print(f"targets: {sum(verdicts)}/{len(verdicts)} PASS")
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
        else:
            print(f"store kept in {path}")


if __name__ == "__main__":
    main()
