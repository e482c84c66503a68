"""What a run costs in work, not time: counts that a busy or slow machine does not change.

``overhead.py`` times whole sessions; on a shared machine its ratios drift by more than most
changes to the plugin (a day when bare pytest ran at three times its usual time read 1.16x and
1.42x for the same code). This script counts instead, in the same projects as ``overhead.py``
(N trivial tests returning a dict of three numbers, ``-n 0``), for the variants ``bare``
(``-p no:experiments``), ``experiments`` and ``no-experiment`` (the plugin on, no experiment):

``--measure bytecodes`` (the default)
    the Python bytecodes each function runs, counted by a ``sys.settrace`` opcode tracer in the
    process that runs the tests, from the start of the session to its ``pytest_sessionfinish``
    (the store's folds are held back until then: the count does not depend on timing). The
    cost of a run is the slope between ``--n`` and twice ``--n`` tests, which leaves out what a
    session pays once. Prints bytecodes a run for each variant, the ratios to ``bare``, and the
    functions that add the most (``--top``).
``--measure instructions``
    the machine instructions of the thread that runs the tests, from valgrind's callgrind, over
    the same span (collection stops at ``pytest_sessionfinish``, through a client request from a
    small C helper built on the spot) and the same slope; ``PYTHONHASHSEED=0``, ``-p no:randomly``
    (both counts: pytest-randomly reseeds every session), and the garbage
    collector off unless ``--gc`` (a full pass is a discrete event that falls in one session and
    not the other: the README's ``xp_gc_freeze`` paragraph measures its share). Closer to time,
    C work included (JSON, hashing), and about 50 times slower to take; needs ``valgrind`` on
    the PATH, its headers and a C compiler. (Counted to the process's end instead, a session
    folds its whole journal as it closes, or not, by the clock: the slope then drifts by half.)

Run it from the repository root::

    .venv/bin/python benchmarks/run_cost.py                 # bytecodes, N=100 and 200
    .venv/bin/python benchmarks/run_cost.py --measure instructions --n 500
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from overhead import Variant, command, environment, write_project  # a sibling script

VARIANTS = (
    Variant("bare", 0, "bare", plugin=False),
    Variant("experiments", 0, "xp", plugin=True),
    Variant("no-experiment", 0, "bare", plugin=True),
)

# Runs in the measured process: pytest.main, counting until pytest_sessionfinish, with the store's
# folds held back until then (they depend on the clock otherwise, and a long session hands them to
# a folding process). Then either an opcode tracer's counts by function go to a file, or
# callgrind stops collecting (through a client request, from a helper compiled by ``_helper``).
_COUNTED = r"""
import collections, ctypes, json, sys
import pytest

mode, collect_garbage, out, args = sys.argv[1], sys.argv[2] == "gc", sys.argv[3], sys.argv[4:]
if not collect_garbage:
    import gc
    gc.disable()
counts = collections.Counter()

def tracer(frame, event, arg):
    frame.f_trace_opcodes = True
    code = frame.f_code
    key = f"{code.co_filename.split('site-packages/')[-1]}:{code.co_firstlineno}:{code.co_name}"

    def local(frame, event, arg):
        if event == "opcode":
            counts[key] += 1
        return local

    return local

stop_collecting = ctypes.CDLL(out).xp_stop_collecting if mode == "instructions" else None

class StopCounting:
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self):
        sys.settrace(None)
        if stop_collecting is not None:
            stop_collecting()

if "no:experiments" not in args:
    import pytest_experiments.plugin.store_access as access
    access.FOLD_EVERY_S = access.FOLDER_AFTER_S = access.FIRST_FOLD_AFTER_S = 1e9
if mode == "bytecodes":
    sys.settrace(tracer)
pytest.main(args, plugins=[StopCounting()])
sys.settrace(None)
if mode == "bytecodes":
    with open(out, "w") as file:
        json.dump(counts, file)
"""
# Callgrind's client request, which only C can make: collection stops when the session finishes.
_HELPER_C = "#include <valgrind/callgrind.h>\nvoid xp_stop_collecting(void) { CALLGRIND_TOGGLE_COLLECT; }\n"


def _pytest_args(variant: Variant, project: Path, store: Path) -> list[str]:
    """The session's arguments (``overhead.py``'s, after ``python -m pytest``), pytest-randomly
    left out where installed: it shuffles the tests and reseeds from a new seed every session,
    which moved the same session's count by over a percent."""
    return ["-p", "no:randomly", *command(variant, project, store if variant.plugin else None)[3:]]


def _helper(scratch: Path) -> Path:
    """The shared library that tells callgrind to stop collecting (needs a C compiler and valgrind's headers)."""
    source, library = scratch / "stop_collecting.c", scratch / "stop_collecting.so"
    source.write_text(_HELPER_C)
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        sys.exit("--measure instructions needs a C compiler (cc) to make callgrind stop at the session's end")
    built = subprocess.run(
        [compiler, "-shared", "-fPIC", "-o", str(library), str(source)], capture_output=True, text=True
    )
    if built.returncode != 0:
        sys.exit(f"cannot build the callgrind helper (valgrind's headers, Debian: valgrind): {built.stderr.strip()}")
    return library


def _project(root: Path, n: int) -> Path:
    folder = root / f"n{n}"
    folder.mkdir()
    write_project(folder, n, git=True)
    return folder


def count_bytecodes(variant: Variant, project: Path, scratch: Path, env: dict[str, str]) -> Counter[str]:
    """Bytecodes by function of one traced session of ``variant`` in ``project``."""
    out = scratch / f"{variant.name}-{project.name}.json"
    store = scratch / f"store-{variant.name}-{project.name}"
    pytest_args = _pytest_args(variant, project, store)
    script = [sys.executable, "-c", _COUNTED, "bytecodes", "gc", str(out), *pytest_args]
    completed = subprocess.run(script, cwd=project / variant.folder, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        sys.exit(f"{variant.name} failed ({completed.returncode}):\n{completed.stdout[-2000:]}\n{completed.stderr}")
    return Counter(json.loads(out.read_text()))


def count_instructions(
    variant: Variant, project: Path, scratch: Path, env: dict[str, str], collect_garbage: bool = False
) -> int:
    """Instructions of the main thread of one session of ``variant`` under callgrind."""
    out = scratch / f"cg-{variant.name}-{project.name}.out"
    store = scratch / f"store-{variant.name}-{project.name}"
    pytest_args = _pytest_args(variant, project, store)
    collect = "gc" if collect_garbage else "no-gc"
    script = [
        sys.executable,
        "-c",
        _COUNTED,
        "instructions",
        collect,
        str(scratch / "stop_collecting.so"),
        *pytest_args,
    ]
    callgrind = ["valgrind", "--tool=callgrind", "--separate-threads=yes", f"--callgrind-out-file={out}"]
    subprocess.run([*callgrind, *script], cwd=project / variant.folder, env=env, capture_output=True, check=True)
    for line in Path(f"{out}-01").read_text().splitlines():  # thread 1: the one that runs the tests
        if line.startswith("summary:"):
            return int(line.split()[1])
    sys.exit(f"no summary in {out}-01")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--measure", choices=("bytecodes", "instructions"), default="bytecodes")
    parser.add_argument("--n", type=int, default=100, help="the smaller session's tests (the other has twice as many)")
    parser.add_argument("--top", type=int, default=15, help="functions listed that add the most bytecodes")
    parser.add_argument(
        "--gc",
        action="store_true",
        help="instructions: leave the garbage collector on (its full passes, each about 100M instructions "
        "over a big session's objects, fall in one session and not the other, and move the slope by a sixth)",
    )
    options = parser.parse_args()
    if options.measure == "instructions" and shutil.which("valgrind") is None:
        sys.exit("--measure instructions needs valgrind on the PATH (Debian: apt-get install valgrind)")
    env = environment() | {"PYTHONHASHSEED": "0"}
    sizes = (options.n, 2 * options.n)
    with tempfile.TemporaryDirectory(prefix="xp-run-cost-") as temporary:
        root = Path(temporary)
        projects = [_project(root, n) for n in sizes]
        if options.measure == "instructions":
            _helper(root)
        for variant in VARIANTS:
            # Warm-up, a whole session: the rewritten test modules and the .pyc files of every
            # module a run imports are cached (compiling them would count in the first session).
            warm_up = command(variant, projects[0], root / f"warm-{variant.name}")
            subprocess.run(warm_up, cwd=projects[0] / variant.folder, env=env, capture_output=True, check=False)
        per_run: dict[str, float] = {}
        by_function: dict[str, Counter[str]] = {}
        for variant in VARIANTS:
            if options.measure == "bytecodes":
                small, large = (count_bytecodes(variant, project, root, env) for project in projects)
                slope = Counter({key: large[key] - small[key] for key in small.keys() | large.keys()})
                by_function[variant.name] = slope
                per_run[variant.name] = sum(slope.values()) / options.n
            else:
                small_count, large_count = (
                    count_instructions(variant, project, root, env, options.gc) for project in projects
                )
                per_run[variant.name] = (large_count - small_count) / options.n
            print(f"  {variant.name}: {per_run[variant.name]:,.0f} {options.measure} a run", flush=True)
    bare = per_run["bare"]
    print(
        f"\n{options.measure} a run, slope between {sizes[0]} and {sizes[1]} tests, -n 0 (python {sys.version.split()[0]})"
    )
    for name, value in per_run.items():
        print(f"{name:15s} {value:12,.0f}  ratio {value / bare:6.3f}  added {value - bare:+10,.0f}")
    if by_function:
        added = by_function["experiments"]
        added.subtract(by_function["bare"])
        print(f"\nfunctions adding the most bytecodes a run (experiments over bare), top {options.top}:")
        for key, value in added.most_common(options.top):
            print(f"{value / options.n:10.1f}  {key}")


if __name__ == "__main__":
    main()
