"""Start-up cost of the installed plugin, measured on a one-test plain suite (issue 8).

What is measured: the wall time of whole ``python -m pytest -q -p no:cacheprovider`` processes
on a suite of one plain test, with the plugin (installed and loaded, no experiment in the suite)
and without it (``-p no:experiments``), in three settings.

``cache``      pytest's assert-rewrite cache of the plugin's modules exists (the usual case)
``no-cache``   ``PYTHONDONTWRITEBYTECODE=1`` and a fresh copy of the package (first on
               ``PYTHONPATH``) that has no ``__pycache__``: pytest rewrites every plugin module it
               imports, on every run (containers, read-only installs)
``n2``         with the cache, under ``-n 2`` (the controller and both workers import the plugin)
``inline``     with the cache, a suite of ``--sessions`` tests (40) that each run one in-process
               ``-n 1`` session through pytester, as pytest-xdist's own suite does: what the
               plugin costs each such session, and whether what it imports inside one (pytester
               drops it when the session ends) keeps that session alive: a session left alive
               makes every garbage collection after it slower. Not in the default settings (a
               run of this suite takes seconds): ``--settings inline``

Other installed pytest plugins (``pytest11`` entry points: asyncio, hypothesis, anyio... in the
test environment) are blocked with ``-p no:NAME`` on both sides, except xdist, which ``n2``
needs: their imports (hypothesis alone is about 250 ms) would only add noise to both sides alike.
``--other-plugins load`` keeps them.

Each repeat runs every (setting, side) pair once, alternating in a rotating order, from this one
process; the table shows the median wall milliseconds of each side, the median CPU milliseconds
(user + system of the pytest process tree), and for each the median of the paired differences
(the two sides of one repeat ran back to back). Targets from the issue: +5 ms with the cache,
+15 ms without. A difference this small is within the noise of a shared machine; with
``--instructions`` the script also counts the instructions of one run of each side under
``valgrind --tool=callgrind`` (noise-free, slow) and converts the difference to milliseconds at
the no-plugin side's instructions per CPU millisecond.

Run it from the repository root::

    .venv/bin/python benchmarks/startup.py                  # 30 repeats
    .venv/bin/python benchmarks/startup.py --repeats 60 --instructions
    .venv/bin/python benchmarks/startup.py --settings inline --repeats 5
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import entry_points
from pathlib import Path

import pytest_experiments

PACKAGE = Path(pytest_experiments.__file__).parent
TEST = "def test_one():\n    assert 1 + 1 == 2\n"
SETTINGS = ("cache", "no-cache", "n2", "inline")
DEFAULT_SETTINGS = ("cache", "no-cache", "n2")
SIDES = ("plugin", "no plugin")
# The inline suite: each test runs one in-process session under -n 1 (pytester clears
# PYTEST_ADDOPTS for it, so the inner command line comes through the environment).
INLINE_TEST = """\
import os

import pytest

pytest_plugins = ["pytester"]


@pytest.mark.parametrize("i", range(int(os.environ["XP_BENCH_SESSIONS"])))
def test_session(pytester, i):
    pytester.makepyfile(test_inner="def test_one():\\n    pass\\n")
    pytester.runpytest(*os.environ["XP_BENCH_INNER"].split()).assert_outcomes(passed=1)
"""


def make_suite(root: Path) -> tuple[Path, Path]:
    """The suite's folder and a folder holding a fresh copy of the package (no caches).

    The inline suite is the folder ``inline`` beside the suite's (inside it, the other settings
    would collect it).
    """
    suite = root / "suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\n")
    (suite / "test_one.py").write_text(TEST)
    inline = root / "inline"
    inline.mkdir()
    (inline / "pytest.ini").write_text("[pytest]\n")
    (inline / "test_inline.py").write_text(INLINE_TEST)
    fresh = root / "fresh"
    shutil.copytree(PACKAGE, fresh / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__"))
    return suite, fresh


#: Plugins the benchmark keeps: the measured one, and xdist (with its looponfail part) for ``n2``.
KEPT_PLUGINS = {"experiments", "xdist", "xdist.looponfail"}
BLOCKED: list[str] = []
#: Tests (one in-process session each) of the inline suite.
SESSIONS = [40]


def block_other_plugins() -> None:
    """Block every other installed pytest plugin on both sides (see the module's docstring)."""
    names = sorted({ep.name for ep in entry_points(group="pytest11")} - KEPT_PLUGINS)
    BLOCKED.extend(arg for name in names for arg in ("-p", f"no:{name}"))


def command(setting: str, side: str) -> list[str]:
    # Plugins load as installed (autoload): the entry points are scanned on both sides alike.
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *BLOCKED]
    if side == "no plugin":
        args += ["-p", "no:experiments"]
    if setting == "n2":
        args += ["-n", "2"]
    if setting == "inline":
        args.append(os.path.join(os.pardir, "inline"))  # run from the suite's folder, as every setting
    return args


def inner_command(side: str) -> list[str]:
    """The inline suite's in-process sessions: they do not inherit the outer command line."""
    return ["-p", "no:cacheprovider", *BLOCKED, *(["-p", "no:experiments"] if side == "no plugin" else []), "-n", "1"]


def environment(setting: str, fresh: Path, side: str = "plugin") -> dict[str, str]:
    env = dict(os.environ)
    if setting == "inline":
        env["XP_BENCH_SESSIONS"] = str(SESSIONS[0])
        env["XP_BENCH_INNER"] = " ".join(inner_command(side))
    if setting != "no-cache":
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # the setting is "with the cache", whatever the shell says
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(fresh), env.get("PYTHONPATH")]))
    return env


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(setting: str, side: str, suite: Path, fresh: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one pytest process (tree)."""
    cpu_before = _children_cpu()
    start = time.perf_counter()
    result = subprocess.run(
        command(setting, side), cwd=suite, env=environment(setting, fresh, side), capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    passed = f"{SESSIONS[0] if setting == 'inline' else 1} passed"
    if result.returncode != 0 or passed not in result.stdout:
        raise SystemExit(f"{setting}/{side}: pytest failed\n{result.stdout}\n{result.stderr}")
    return elapsed, _children_cpu() - cpu_before


def instructions(setting: str, side: str, suite: Path, fresh: Path) -> int:
    """Instructions of one run (the main process), counted by callgrind."""
    with tempfile.TemporaryDirectory() as out:
        result = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.out", *command(setting, side)],
            cwd=suite,
            env=environment(setting, fresh, side),
            capture_output=True,
            text=True,
        )
        found = re.search(r"Collected : (\d+)", result.stderr)
        if found is None:
            raise SystemExit(f"callgrind gave no count:\n{result.stderr[-2000:]}")
        return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="runs of each (setting, side) pair (default 30)")
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(DEFAULT_SETTINGS))
    parser.add_argument(
        "--sessions", type=int, default=SESSIONS[0], help="in-process sessions of the inline suite (default 40)"
    )
    parser.add_argument("--instructions", action="store_true", help="also count instructions with callgrind")
    parser.add_argument(
        "--other-plugins", choices=("block", "load"), default="block", help="block (default) or load the other plugins"
    )
    args = parser.parse_args()
    if args.other_plugins == "block":
        block_other_plugins()
    SESSIONS[0] = args.sessions

    with tempfile.TemporaryDirectory(prefix="xp-startup-") as tmp:
        suite, fresh = make_suite(Path(tmp))
        pairs = [(setting, side) for setting in args.settings for side in SIDES]
        for pair in pairs:  # warm-up: the cache setting's rewrite cache is written here
            run_once(*pair, suite, fresh)
        times: dict[tuple[str, str], list[tuple[float, float]]] = {pair: [] for pair in pairs}
        for repeat in range(args.repeats):
            shift = repeat % len(pairs)
            for pair in pairs[shift:] + pairs[:shift]:
                times[pair].append(run_once(*pair, suite, fresh))
        inline = f"; inline: {SESSIONS[0]} in-process -n 1 sessions" if "inline" in args.settings else ""
        print(
            f"one-test plain suite{inline}, {args.repeats} repeats, median wall ms "
            f"(load average {os.getloadavg()[0]:.1f})"
        )
        print(
            f"{'setting':10} {'plugin':>9} {'no plugin':>10} {'difference':>11}   {'CPU ms: plugin':>15} {'no plugin':>10} {'difference':>11}"
        )
        cpu_ms: dict[str, float] = {}
        for setting in args.settings:
            plugin, bare = times[(setting, "plugin")], times[(setting, "no plugin")]
            wall = [statistics.median(t[0] for t in runs) * 1000 for runs in (plugin, bare)]
            cpu = [statistics.median(t[1] for t in runs) * 1000 for runs in (plugin, bare)]
            # The median of the paired differences (both sides of one repeat ran back to back):
            # steadier than the difference of the medians when the load drifts.
            wall_difference = statistics.median(a[0] - b[0] for a, b in zip(plugin, bare, strict=True)) * 1000
            cpu_difference = statistics.median(a[1] - b[1] for a, b in zip(plugin, bare, strict=True)) * 1000
            cpu_ms[setting] = cpu[1]
            print(
                f"{setting:10} {wall[0]:9.1f} {wall[1]:10.1f} {wall_difference:+11.1f}"
                f"   {cpu[0]:15.1f} {cpu[1]:10.1f} {cpu_difference:+11.1f}"
            )
        if args.instructions and shutil.which("valgrind"):
            print("\ninstructions of one run (main process, callgrind), millions; in ms at this machine's rate")
            print("(the no-plugin side's instructions per CPU millisecond above: a busy machine's rate is lower)")
            for setting in (s for s in args.settings if s not in ("n2", "inline")):
                counts = {side: instructions(setting, side, suite, fresh) / 1e6 for side in SIDES}
                difference = counts["plugin"] - counts["no plugin"]
                rate = counts["no plugin"] / cpu_ms[setting]
                print(
                    f"{setting:10} {counts['plugin']:9.1f} {counts['no plugin']:10.1f} {difference:+11.1f}"
                    f"   = {difference / rate:+.1f} ms"
                )


if __name__ == "__main__":
    main()
