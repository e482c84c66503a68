"""``--xp-resume`` under xdist on a large grid: nothing left, and a few points left.

Under ``-n``, the controller collects and selects before any worker starts (to print the plan
at the start and to start no worker when nothing is left). This measures what that costs
and saves. Builds, in temporary directories, an ``--items`` grid whose every point passed
(see ``resume.py``), and the same grid grown by ``--left`` points never run; then times,
alternating, ``--repeats`` times, medians:

- done,  no xdist:  ``pytest --xp-resume -q`` (the reference: one collection, nothing runs)
- done,  -n W:      ``pytest -n W --xp-resume -q`` (nothing left: should cost what the reference does)
- left,  -n W:      ``pytest -n W --xp-resume -q`` (the controller's collection, then W workers
  collect again and run the points left)

    .venv/bin/python benchmarks/resume_xdist.py                      # 20,000 items, -n 2, 3 repeats
    .venv/bin/python benchmarks/resume_xdist.py --items 100000 --workers 2 --repeats 3

``--other PATH`` times every variant with another version of the plugin too (a folder
holding its ``pytest_experiments`` package, put first on ``PYTHONPATH``, which the workers
inherit), alternating with this one, e.g. the version before the controller collected::

    git archive <commit> pytest_experiments | tar -x -C /tmp/before
    .venv/bin/python benchmarks/resume_xdist.py --other /tmp/before
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from resume import MODULE, TEST_SOURCE, build


def timed(directory: Path, extra: list[str], plugin: Path | None) -> tuple[float, str]:
    """Seconds of one ``pytest --xp-resume -q`` in ``directory``, and its last line."""
    command = [sys.executable, "-m", "pytest", "--xp-resume", "-q", "-p", "no:cacheprovider", *extra]
    env = dict(os.environ)
    if plugin is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugin), env.get("PYTHONPATH")]))
    start = time.perf_counter()
    done = subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    lines = done.stdout.strip().splitlines()
    return elapsed, lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=20_000, help="grid size (default 20,000)")
    parser.add_argument("--left", type=int, default=10, help="points never run in the second grid (default 10)")
    parser.add_argument("--workers", type=int, default=2, help="xdist workers (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per variant (default 3)")
    parser.add_argument("--other", type=Path, help="a folder holding another version's pytest_experiments")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as done_dir, tempfile.TemporaryDirectory() as left_dir:
        done, left = Path(done_dir), Path(left_dir)
        build(done, args.items)
        store = build(left, args.items)
        (left / MODULE).write_text(TEST_SOURCE.format(items=args.items + args.left))
        pristine = left / "pristine"
        shutil.copytree(store, pristine)
        workers = ["-n", str(args.workers)]
        cases = {
            "done, no xdist": (done, []),
            f"done, -n {args.workers}": (done, workers),
            f"{args.left} left, -n {args.workers}": (left, workers),
        }
        versions: dict[str, Path | None] = {"this": None}
        if args.other is not None:
            versions["other"] = args.other.resolve()
        times: dict[str, list[float]] = {}
        last: dict[str, str] = {}
        for _ in range(args.repeats):
            for case, (directory, extra) in cases.items():
                for version, plugin in versions.items():
                    if directory == left:  # the points left are left again (not timed)
                        shutil.rmtree(store)
                        shutil.copytree(pristine, store)
                    name = f"{case} ({version})"
                    elapsed, last[name] = timed(directory, extra, plugin)
                    times.setdefault(name, []).append(elapsed)
        print(f"{args.items:,}-item grid, {args.repeats} repeats, medians")
        print(f"{'variant':<30} {'median s':>9} {'runs':>24}  last line")
        for name, values in times.items():
            runs = ", ".join(f"{value:.2f}" for value in values)
            print(f"{name:<30} {statistics.median(values):>9.2f} {runs:>24}  {last[name]}")


if __name__ == "__main__":
    main()
