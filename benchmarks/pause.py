"""What pausing and continuing cost: a continued run's claim against a new run's, and one
``watch`` snapshot on a large store.

What is measured, through the public store API on a fresh SQLite store (and a PostgreSQL one with
``--postgres URL``, a user who may create schemas):

- ``claim``: ``claim_run`` + ``finish_run`` of ``--runs`` new runs, one after the other, as one
  resuming process claims them (per run, in microseconds);
- ``continue``: ``continue_run`` + ``finish_run`` of the same number of paused runs (each one
  reopened in place, its attempt kept), as ``--xp-resume`` continues them;
- ``watch``: one ``pytest-experiments watch`` snapshot (``snapshot()``: the runs in flight and
  their points) of a store of ``--store-runs`` finished runs and 10 in flight.

Each figure is the median of ``--repeats`` stores; the load average is printed with them (the
machine is shared). Run it from the repository root::

    .venv/bin/python benchmarks/pause.py
    .venv/bin/python benchmarks/pause.py --postgres postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import tempfile
import time
from pathlib import Path

from pytest_experiments import Store
from pytest_experiments.cli.watch import snapshot
from pytest_experiments.model import Continuation, MetricPoint, RunEnd, RunStart, SessionStart
from pytest_experiments.store.liveness import pid_namespace, process_start

HOST, PID = socket.gethostname(), os.getpid()


def start(session: str, point: int, run_id: str) -> RunStart:
    return RunStart(
        run_id, session, f"test_m.py::test_p[{point}]", "test_m.py", "test_p", f"h{point}", {"point": point},
        time.time(), "main", HOST, PID, f"runs/test_p/{run_id}", pid_namespace(), process_start(PID),
    )  # fmt: skip


def end(run_id: str, status: str, seq: int) -> RunEnd:
    points = [MetricPoint("loss", seq + step, step, 1.0 / (step + 1)) for step in range(10)]
    return RunEnd(run_id, status, time.time(), 0.1, None, {"loss": 0.1}, points, {}, {})


def session(store: Store, name: str) -> str:
    store.record_session(SessionStart(name, time.time(), HOST, PID, {}))
    return name


def claims_and_continues(location: str, artifacts: Path | None, runs: int) -> tuple[float, float]:
    """Seconds per run: claim + finish of new runs; continue + finish of paused ones."""
    options = {"artifacts": artifacts} if artifacts is not None else {}
    with Store.open(location, create=True, **options) as store:
        first = session(store, "first")
        mark = store.grid_snapshot().mark
        began = time.perf_counter()
        for point in range(runs):
            run_id = f"first-{point}"
            assert store.claim_run(start(first, point, run_id), mark) is None
            store.finish_run(end(run_id, "paused", 0))
        claim = (time.perf_counter() - began) / runs
        second = session(store, "second")
        mark = store.grid_snapshot().mark
        began = time.perf_counter()
        for point in range(runs):
            got = store.continue_run(start(second, point, f"unused-{point}"), mark, ("paused",))
            assert isinstance(got, Continuation), got
            store.finish_run(end(got.run_id, "passed", got.next_seq))
        return claim, (time.perf_counter() - began) / runs


def watch_snapshot(location: str, artifacts: Path | None, runs: int) -> float:
    """Seconds of one watch snapshot of ``runs`` finished runs and 10 in flight."""
    options = {"artifacts": artifacts} if artifacts is not None else {}
    with Store.open(location, create=True, **options) as store:
        name = session(store, "s")
        for point in range(runs):
            store.start_run(start(name, point, f"r-{point}"))
            store.finish_run(end(f"r-{point}", "passed", 0))
        for point in range(runs, runs + 10):
            store.start_run(start(name, point, f"r-{point}"))
    began = time.perf_counter()
    lines = snapshot(location, None, width=120)
    took = time.perf_counter() - began
    assert lines[0].startswith("xp watch: 10 running"), lines[0]
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000, help="runs claimed, then continued (default 1000)")
    parser.add_argument("--store-runs", type=int, default=10_000, help="finished runs in the watched store (10000)")
    parser.add_argument("--repeats", type=int, default=3, help="fresh stores per figure (default 3)")
    parser.add_argument("--postgres", metavar="URL", help="also on PostgreSQL (a store per repeat, dropped after)")
    options = parser.parse_args()
    backends = ["sqlite"] + (["postgresql"] if options.postgres else [])
    for backend in backends:
        claim, cont, watch = [], [], []
        for _ in range(options.repeats):
            with tempfile.TemporaryDirectory() as folder:
                for kind in ("claims", "watch"):
                    name = f"b_{secrets.token_hex(4)}"
                    if backend == "sqlite":
                        location, artifacts = str(Path(folder) / name), None
                    else:
                        location, artifacts = f"{options.postgres}?store={name}", Path(folder) / name
                    try:
                        if kind == "claims":
                            per_claim, per_continue = claims_and_continues(location, artifacts, options.runs)
                            claim.append(per_claim)
                            cont.append(per_continue)
                        else:
                            watch.append(watch_snapshot(location, artifacts, options.store_runs))
                    finally:
                        if backend == "postgresql":
                            drop_schema(options.postgres, name)
        print(
            f"{backend}: claim + finish {statistics.median(claim) * 1e6:.0f} us a run, "
            f"continue + finish {statistics.median(cont) * 1e6:.0f} us a run "
            f"(ratio {statistics.median(cont) / statistics.median(claim):.2f}); "
            f"watch snapshot of {options.store_runs:,} runs {statistics.median(watch) * 1e3:.0f} ms "
            f"(medians of {options.repeats}; load average {os.getloadavg()[0]:.1f})"
        )


def drop_schema(url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
