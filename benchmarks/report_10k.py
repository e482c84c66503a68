"""The HTML report at 10,000 runs: how long it takes to build, how big it is, and how soon the
page is interactive in headless Chromium.

Builds, in a temporary folder, a store of ``--runs`` finished runs of one experiment (four
parameters of a full grid, two metrics, a 50-step loss series each, 1% failed with a traceback),
written in one transaction through ``Store.add_copies``. Then, ``--repeats`` times, medians:

- build:  ``pytest-experiments report -o report.html`` in a subprocess (read, gather, render, write)
- ready:  the page opened from disk in headless Chromium (Debian's chromium and chromedriver,
  driven by selenium): ``performance.now()`` read at the page's ready marker, i.e. milliseconds
  from the start of navigation until the summary, the results table's first page and the first
  experiment's plots are drawn and every control answers
- sort:   clicking a metric's sort button until the table is redrawn (``performance.now()`` in the page)

    .venv/bin/python benchmarks/report_10k.py                   # 10,000 runs, 3 repeats
    .venv/bin/python benchmarks/report_10k.py --runs 2000 --repeats 5
"""

from __future__ import annotations

import argparse
import math
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from browser import chromium, open_report, start_browser

from pytest_experiments import Store
from pytest_experiments.model import MetricPoint
from pytest_experiments.store.copies import RunCopy, SessionCopy
from pytest_experiments.values import param_hash

TRACEBACK = 'Traceback (most recent call last):\n  File "test_train.py", line 12, in test_train\nValueError: diverged'


def build_store(path: Path, runs: int) -> None:
    """A store of ``runs`` finished runs of ``test_train``, one session."""
    rng = random.Random(0)
    now = time.time() - runs
    session = SessionCopy("bench-session", now, now + runs, "bench", 1, 1, {"git": {"commit": "0" * 40}})
    side = max(2, math.ceil(runs ** (1 / 4)))
    copies = []
    for index in range(runs):
        lr, seed, size, depth = (index // side**k % side for k in range(4))
        params = {"lr": 10 ** -(lr % 6) * (1 + lr // 6), "seed": seed, "size": 100 * (size + 1), "depth": depth + 1}
        failed = index % 100 == 99
        loss = [1 / (1 + step * params["lr"] * 10) + rng.random() / 50 for step in range(50)]
        metrics = {} if failed else {"loss": loss[-1], "acc": 1 - loss[-1] / 2 + rng.random() / 20}
        points = tuple(MetricPoint("loss", step, step, value) for step, value in enumerate(loss))
        node = "test_train.py::test_train[" + "-".join(f"{k}={v}" for k, v in params.items()) + "]"
        run_id = f"bench-{index:06d}"
        copy = RunCopy(
            run_id, session.session_id, node, "test_train.py", "test_train", param_hash(params), params, {},
            "failed" if failed else "passed", now + index, now + index + 0.5, 0.5, "gw0", "bench", 1,
            f"runs/test_train/{run_id}", metrics, None, {"timing": {"call": 0.5}}, None, None,
            "ValueError" if failed else None, "diverged" if failed else None, TRACEBACK if failed else None,
            points,
        )  # fmt: skip
        copies.append(copy)
    with Store.open(path, create=True) as store:
        store.add_copies([session], copies)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if chromium() is None:
        print("needs chromium and chromedriver: apt-get install -y chromium chromium-driver", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as folder:
        store, report = Path(folder) / "store", Path(folder) / "report.html"
        started = time.perf_counter()
        build_store(store, args.runs)
        print(f"store of {args.runs:,} runs written in {time.perf_counter() - started:.1f} s")
        command = [sys.executable, "-m", "pytest_experiments", "--store", str(store), "report", "-o", str(report)]
        builds, readies, sorts = [], [], []
        driver = start_browser()
        try:
            for _ in range(args.repeats):
                started, cpu = time.perf_counter(), _children_cpu()
                subprocess.run(command, check=True, capture_output=True)
                builds.append((time.perf_counter() - started, _children_cpu() - cpu))
                driver.get("about:blank")
                readies.append(open_report(driver, report, timeout=120))
                sorts.append(_sort_time(driver))
            errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        finally:
            driver.quit()
        size = report.stat().st_size
    print(f"report: {size / 1e6:.1f} MB")
    wall, cpu = (statistics.median(values) for values in zip(*builds, strict=True))
    print(f"build (pytest-experiments report), median of {args.repeats}: {wall:.1f} s wall, {cpu:.1f} s CPU")
    print(f"ready in headless chromium (performance.now() at the marker), median: {statistics.median(readies):.0f} ms")
    print(f"sort 10,000 rows by a metric and redraw, median: {statistics.median(sorts):.0f} ms")
    print(f"console errors: {len(errors)}")
    return 1 if errors else 0


def _children_cpu() -> float:
    """CPU seconds of the subprocesses waited for so far (the machine may be busy: wall time says less)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _sort_time(driver: object) -> float:
    """Milliseconds from a click on the ``acc`` sort button to the redrawn table (measured in the page)."""
    elapsed: float = driver.execute_script(  # type: ignore[attr-defined]
        "var t = performance.now();"
        "document.querySelector(\"button.sort[title='metric acc: sort']\").click();"
        "return performance.now() - t;"
    )
    return elapsed


if __name__ == "__main__":
    sys.exit(main())
