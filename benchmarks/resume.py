"""What ``--xp-resume`` adds to collection on a large, fully done grid.

Builds, in a temporary directory, a 100,000-item experiment grid and a store holding one
``passed`` run for every item (written through the public store API, not timed), then
times, alternating, several repeats, medians:

- reference: ``pytest --collect-only -q`` (the plugin on, no selection)
- resume:    ``pytest --xp-resume --collect-only -q`` (snapshot + hashing + deselection)

and prints the ratio and the added seconds. Targets: under 1 second added, under 10%.

    .venv/bin/python benchmarks/resume.py            # 100,000 items, 3 repeats
    .venv/bin/python benchmarks/resume.py --items 20000 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_experiments.model import RunEnd, RunStart, SessionStart
from pytest_experiments.store import Store
from pytest_experiments.values import param_hash

MODULE = "test_grid.py"
TEST_SOURCE = """
import pytest

@pytest.mark.experiment
@pytest.mark.parametrize("i", range({items}))
def test_point(i):
    return i
"""


def build(directory: Path, items: int) -> Path:
    """Write the grid module and a store where every grid point passed; return the store path."""
    (directory / MODULE).write_text(TEST_SOURCE.format(items=items))
    (directory / "pytest.ini").write_text("[pytest]\n")
    store_path = directory / ".experiments"
    session = SessionStart("bench-session", time.time(), socket.gethostname(), os.getpid(), {})
    with Store.open(store_path, create=True) as store:
        store.record_session(session)
        for i in range(items):
            run_id = f"bench-{i:07d}"
            params = {"i": i}
            start = RunStart(
                run_id=run_id,
                session_id=session.session_id,
                node_id=f"{MODULE}::test_point[{i}]",
                module=MODULE,
                experiment="test_point",
                param_hash=param_hash(params),
                params=params,
                started_at=time.time(),
                worker="main",
                host=session.host,
                pid=session.pid,
                dir=f"runs/test_point/{run_id}",
            )
            store.start_run(start)
            end = RunEnd(run_id, "passed", time.time(), 0.001, i, {"result": float(i)}, [], {}, {})
            store.finish_run(end)
        store.finish_session(session.session_id, time.time(), 0)
    return store_path


def timed(directory: Path, extra: list[str]) -> tuple[float, str]:
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *extra]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=directory, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    summary = next((line for line in done.stdout.splitlines() if line.startswith("xp:")), "")
    return elapsed, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000, help="grid size (default 100,000)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per variant (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        start = time.perf_counter()
        build(directory, args.items)
        print(f"built a store of {args.items:,} passed runs in {time.perf_counter() - start:.1f} s")
        plain: list[float] = []
        resume: list[float] = []
        summary = ""
        for _ in range(args.repeats):
            plain.append(timed(directory, [])[0])
            elapsed, summary = timed(directory, ["--xp-resume"])
            resume.append(elapsed)
        reference, resumed = statistics.median(plain), statistics.median(resume)
        added = resumed - reference
        ratio = resumed / reference
        print(f"resume said: {summary}")
        print(f"{'variant':<40} {'median s':>9} {'runs':>30}")
        print(f"{'pytest --collect-only -q':<40} {reference:>9.2f} {', '.join(f'{t:.2f}' for t in plain):>30}")
        print(
            f"{'pytest --xp-resume --collect-only -q':<40} {resumed:>9.2f} {', '.join(f'{t:.2f}' for t in resume):>30}"
        )
        print(f"added: {added:.2f} s ({'PASS' if added < 1 else 'MISS'}: < 1 s)")
        print(f"ratio: {ratio:.3f} ({'PASS' if ratio < 1.10 else 'MISS'}: < 1.10)")


if __name__ == "__main__":
    main()
