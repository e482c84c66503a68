"""What the start check costs on a large store, with and without SQLite's page check.

Builds, in a temporary directory, the store ``benchmarks/resume.py`` builds (100,000 passed
runs by default; not timed), then times, alternating, several repeats, medians:

- check:    ``check_store_path(store)``: symlinks, permissions, schema (what every process does)
- check + integrity: ``check_store_path(store, integrity=True)``: also ``PRAGMA quick_check``,
  once per session, on the controller only
- integrity_check: ``PRAGMA integrity_check`` alone, for comparison (not used: it also checks
  every index against its table)

"cold" drops the database from the page cache first (``posix_fadvise(DONTNEED)``), as for a
store not read since the machine booted: the check then reads the whole file from disk.

    .venv/bin/python benchmarks/store_check.py               # 100,000 runs, 5 repeats
    .venv/bin/python benchmarks/store_check.py --items 20000
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from resume import build

from pytest_experiments.store.sqlite import DB_NAME, check_store_path


def timed(action: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return times


def uncached(database: Path) -> None:
    """Drop ``database`` from the page cache (no connection of this process has it open)."""
    with database.open("rb") as file:
        os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def integrity_check(database: Path) -> None:
    connection = sqlite3.connect(f"{database.as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        assert connection.execute("PRAGMA integrity_check(1)").fetchone()[0] == "ok"
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000, help="runs in the store (default 100,000)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per variant (default 5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        store = build(Path(temporary), args.items)
        size = (store / DB_NAME).stat().st_size
        print(f"a store of {args.items:,} passed runs, database {size / 1e6:.1f} MB")
        variants = {
            "check": lambda: check_store_path(store),
            "check + integrity (quick_check)": lambda: check_store_path(store, integrity=True),
            "check + integrity, cold": lambda: (uncached(store / DB_NAME), check_store_path(store, integrity=True)),
            "PRAGMA integrity_check (not used)": lambda: integrity_check(store / DB_NAME),
        }
        print(f"{'variant':<36} {'median s':>9} {'runs':>40}")
        for name, action in variants.items():
            times = timed(action, args.repeats)
            print(f"{name:<36} {statistics.median(times):>9.3f} {', '.join(f'{t:.3f}' for t in times):>40}")


if __name__ == "__main__":
    main()
