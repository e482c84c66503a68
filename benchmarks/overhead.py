"""Per-run overhead of pytest-experiments, measured against bare pytest.

What is measured: the wall time of whole ``python -m pytest`` processes over N trivial tests (a
``@pytest.mark.parametrize("i", range(N))`` grid, each computing a dict of three numbers), in three
variants, for ``-n 0`` and ``-n 2``:

``bare``          the tests return None and the plugin is disabled (``-p no:experiments``): the reference
``experiments``   the tests are ``@pytest.mark.experiment`` and return the dict; plugin on with every built-in
                  metadata collector, recording into a fresh store each repeat
``no-experiment`` the plugin is installed and on, but the suite has no experiment (the ``bare`` tests)
``experiments-pg`` with ``--postgres URL``: ``experiments`` recording into a fresh PostgreSQL store there
``experiments-gcfreeze`` with ``--with-gc-freeze``: ``experiments`` with ``xp_gc_freeze=true`` (the
                  collected tree kept out of the garbage collector's full passes)
``experiments-against`` with ``--against PATH``: ``experiments`` with the plugin imported from another
                  checkout of this repository (``PYTHONPATH=PATH``), such as a worktree of the commit
                  before a change: before and after side by side, alternating in one run, the only
                  comparison of wall times this noisy a machine allows

A session that records for over 2 s leaves a frame keeper working after it (``xp_keep_frames``,
``frame_keeper.py``): it is waited for after each session, untimed, so that it does not take the
other core from the next session, and how long it went on is printed.

Each repeat runs every variant once, in a rotating order, all from this one process; the table shows
the median wall seconds, the ratio to the reference (``bare`` at the same ``-n``) and the cost added
per test, (t_variant - t_bare) / N, in microseconds, next to the targets (issue 12): ratio <= 1.10
for ``experiments`` at ``-n 0``, ratio <= 1.02 for ``no-experiment``, with the µs per run each target
allows on this machine. The CPU seconds of each pytest process tree are shown too: a steadier figure
when other work shares the machine (the script warns when the load average says so). It also checks
that importing the plugin does not import pandas
(``python -X importtime -c "import pytest_experiments.plugin"``).

The tests live in a temporary folder (a git repository with one commit by default, as a user's
project would be, so the git collector does its real work); ``-q -p no:cacheprovider`` everywhere.

Run it from the repository root::

    .venv/bin/python benchmarks/overhead.py              # N=2000, 5 repeats, -n 0 and -n 2
    .venv/bin/python benchmarks/overhead.py --n 500 --repeats 3 --workers 0
    .venv/bin/python benchmarks/overhead.py --n 10000 --repeats 3 --workers 0 --postgres postgresql://postgres@127.0.0.1:5432/postgres
    git worktree add --detach /tmp/before HEAD~3
    .venv/bin/python benchmarks/overhead.py --n 10000 --repeats 9 --workers 0 --against /tmp/before
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

RATIO_TARGET_EXPERIMENTS_N0 = 1.10
RATIO_TARGET_NO_EXPERIMENT = 1.02

_BARE_MODULE = """
import pytest


@pytest.mark.parametrize("i", range({n}))
def test_point(i):
    result = {{"loss": 1.0 / (i + 1), "accuracy": i % 7 / 7, "steps": float(i)}}
    assert result
"""

_EXPERIMENT_MODULE = """
import pytest


@pytest.mark.experiment
@pytest.mark.parametrize("i", range({n}))
def test_point(i):
    return {{"loss": 1.0 / (i + 1), "accuracy": i % 7 / 7, "steps": float(i)}}
"""

# Settings in the environment would change what is measured.
_SCRUBBED_ENV = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_XP_STORE", "PYTEST_XDIST_WORKER", "PYTEST_CURRENT_TEST")


@dataclass(frozen=True)
class Variant:
    name: str
    workers: int
    folder: str  # "bare" or "xp"
    plugin: bool
    #: A PostgreSQL server's URL: the store is a fresh one there (``?store=``), not a folder.
    server: str | None = None
    #: Ini settings given on the command line (``-o key=value``).
    settings: tuple[str, ...] = ()
    #: Where the plugin is imported from instead of this checkout (``PYTHONPATH``; None: here).
    pythonpath: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name} -n {self.workers}"


def write_project(root: Path, n: int, git: bool) -> None:
    for folder, template in (("bare", _BARE_MODULE), ("xp", _EXPERIMENT_MODULE)):
        directory = root / folder
        directory.mkdir()
        (directory / "pytest.ini").write_text("[pytest]\n")
        (directory / "test_overhead.py").write_text(textwrap.dedent(template.format(n=n)).lstrip())
    (root / ".gitignore").write_text("__pycache__/\nstore-*/\n")
    if git and shutil.which("git"):
        env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid"}
        env |= {"GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}
        for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "benchmark project"]):
            subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)


def command(variant: Variant, root: Path, store: Path | None, extra: tuple[str, ...] = ()) -> list[str]:
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", str(variant.workers)]
    if variant.plugin and variant.server is not None:
        assert store is not None
        args += [
            f"--xp-store={variant.server}?store=xp_overhead_{store.name.replace('-', '_')}",
            f"--xp-artifacts={store}",
        ]
    elif variant.plugin:
        assert store is not None
        args += [f"--xp-store={store}"]
    else:
        args += ["-p", "no:experiments"]
    for setting in variant.settings:
        args += ["-o", setting]
    return [*args, *extra, str(root / variant.folder / "test_overhead.py")]


def environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _SCRUBBED_ENV}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # the rewritten test module is cached by the warm-up
    return env


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def variant_environment(variant: Variant, env: dict[str, str]) -> dict[str, str]:
    """The environment ``variant``'s pytest runs in: ``env``, with its ``PYTHONPATH`` if it has one."""
    return env if variant.pythonpath is None else {**env, "PYTHONPATH": variant.pythonpath}


def run_once(variant: Variant, root: Path, store: Path, n: int, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (the process and its xdist workers) of one pytest run."""
    args = command(variant, root, store if variant.plugin else None)
    env = variant_environment(variant, env)
    cpu = _children_cpu()
    start = time.perf_counter()
    completed = subprocess.run(args, cwd=root / variant.folder, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    cpu = _children_cpu() - cpu
    if completed.returncode != 0:
        sys.exit(f"{variant.label} failed ({completed.returncode}):\n{completed.stdout[-3000:]}\n{completed.stderr}")
    last = completed.stdout.strip().splitlines()[-1] if completed.stdout.strip() else ""
    # A frozen collection hides its objects from gc.get_referrers: Hypothesis, imported by trio
    # during the first test, then warns about its random generator (see plugin/gc_freeze.py).
    warned = "warning" in last and "xp_gc_freeze=true" not in variant.settings
    if f"{n} passed" not in last or warned:
        sys.exit(f"{variant.label}: unexpected summary {last!r}")
    keeping = wait_for_keeper(store)
    if keeping is not None:
        KEEPER_SECONDS.setdefault(variant.label, []).append(keeping)
    check_store(variant, store, n)
    return elapsed, cpu


#: By variant, how long each session's frame keeper went on after the session (not timed).
KEEPER_SECONDS: dict[str, list[float]] = {}


def wait_for_keeper(store: Path) -> float | None:
    """Wait, untimed, for the frame keeper a session leaves working in the background
    (``frame_keeper.py``: its lock is held from before the session ends): it would take the
    other core from the next session. Its wall seconds after the session, or None: no keeper."""
    import fcntl

    from pytest_experiments.store.children import KEEPER_LOCK

    start = time.perf_counter()
    locks = sorted(store.rglob(KEEPER_LOCK)) if store.exists() else []
    for lock in locks:
        with open(lock, "rb") as file:
            fcntl.flock(file, fcntl.LOCK_EX)  # released when the keeper ends, however it ends
    return time.perf_counter() - start if locks else None


def check_store(variant: Variant, store: Path, n: int) -> None:
    """Outside the timing: experiments recorded all N runs, a suite without any created no store."""
    if variant.folder == "bare":
        if store.exists():
            sys.exit(f"{variant.label}: a suite without experiments created a store at {store}")
        return
    if variant.server is not None:
        from pytest_experiments import Store

        url = f"{variant.server}?store=xp_overhead_{store.name.replace('-', '_')}"
        with Store.open(url, readonly=True, artifacts=store) as opened:
            counts = dict(Counter(run.status for run in opened.runs(history=True)))
        import psycopg

        with psycopg.connect(variant.server, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA xp_overhead_{store.name.replace('-', '_')} CASCADE")
        if counts != {"passed": n}:
            sys.exit(f"{variant.label}: expected {n} passed runs in the store, found {counts}")
        return
    # A writer folds the journals first: the table as a later session finds it.
    from pytest_experiments import Store

    Store.open(store).close()
    database = sqlite3.connect(store / "experiments.sqlite")
    try:
        counts = dict(database.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())
    finally:
        database.close()
    if counts != {"passed": n}:
        sys.exit(f"{variant.label}: expected {n} passed runs in the store, found {counts}")


def _importtime(code: str, env: dict[str, str]) -> dict[str, int]:
    """Cumulative import microseconds by module, from ``python -X importtime -c code``."""
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], env=env, capture_output=True, text=True, check=True
    )
    modules: dict[str, int] = {}
    for line in completed.stderr.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        _, cumulative, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        if cumulative.isdigit():
            modules[name] = int(cumulative)
    return modules


def import_check(env: dict[str, str]) -> tuple[bool, float, float]:
    """Whether importing the plugin imports pandas; its import time alone and on top of pytest (ms, best of 3)."""
    alone = [_importtime("import pytest_experiments.plugin", env) for _ in range(3)]
    pandas = any(name == "pandas" or name.startswith("pandas.") for modules in alone for name in modules)
    after = [_importtime("import pytest, xdist.plugin; import pytest_experiments.plugin", env) for _ in range(3)]
    best = min(modules.get("pytest_experiments.plugin", 0) for modules in alone) / 1000
    own = min(modules.get("pytest_experiments.plugin", 0) for modules in after) / 1000
    return pandas, best, own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="number of tests (grid points) per run (default 2000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of every variant (default 5)")
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[0, 2],
        metavar="N",
        help="values of pytest-xdist's -n to measure (default: 0 2)",
    )
    parser.add_argument("--no-git", action="store_true", help="do not make the test project a git repository")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="also record into a fresh PostgreSQL store at this server (the variant experiments-pg)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary project folder and print its path")
    parser.add_argument(
        "--with-gc-freeze",
        action="store_true",
        help="also measure experiments with xp_gc_freeze=true (the variant experiments-gcfreeze)",
    )
    parser.add_argument(
        "--against",
        metavar="PATH",
        help="also measure experiments with the plugin of another checkout at PATH (the variant experiments-against)",
    )
    options = parser.parse_args()
    if options.n < 1 or options.repeats < 1:
        parser.error("--n and --repeats must be at least 1")
    if options.against is not None and not (Path(options.against) / "pytest_experiments" / "plugin").is_dir():
        parser.error(
            f"--against {options.against}: no pytest_experiments package there; give a checkout of this "
            "repository (git worktree add --detach PATH REV)"
        )

    env = environment()
    pandas_imported, plugin_import_ms, plugin_own_ms = import_check(env)

    gc_freeze = ("xp_gc_freeze=true",)
    against = str(Path(options.against).resolve()) if options.against is not None else None
    variants = [
        Variant(name, workers, folder, plugin, server, settings, pythonpath)
        for workers in options.workers
        for name, folder, plugin, server, settings, pythonpath in (
            ("bare", "bare", False, None, (), None),
            ("experiments", "xp", True, None, (), None),
            ("no-experiment", "bare", True, None, (), None),
            *([("experiments-pg", "xp", True, options.postgres, (), None)] if options.postgres else []),
            *([("experiments-gcfreeze", "xp", True, None, gc_freeze, None)] if options.with_gc_freeze else []),
            *([("experiments-against", "xp", True, None, (), against)] if against else []),
        )
    ]
    root = Path(tempfile.mkdtemp(prefix="xp-overhead-"))
    wall: dict[str, list[float]] = {variant.label: [] for variant in variants}
    cpu: dict[str, list[float]] = {variant.label: [] for variant in variants}
    loads = [os.getloadavg()[0]]
    try:
        write_project(root, options.n, git=not options.no_git)
        # Warm-up, not timed: byte-compiles the test modules and every module a run imports (one
        # test run, not only collected: the recorder's modules are imported by a run), fills the OS caches.
        for variant in variants:
            args = command(variant, root, root / f"store-warmup-{variant.name}")
            args[-1] += "::test_point[0]"
            subprocess.run(
                args, cwd=root / variant.folder, env=variant_environment(variant, env), capture_output=True, check=True
            )
        print(
            f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, N={options.n} tests, {options.repeats} repeats"
            f", git project: {'no' if options.no_git else 'yes'}",
            flush=True,
        )
        for repeat in range(options.repeats):
            shift = repeat % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                store = root / f"store-{repeat}-{variant.name}-n{variant.workers}"
                seconds, cpu_seconds = run_once(variant, root, store, options.n, env)
                wall[variant.label].append(seconds)
                cpu[variant.label].append(cpu_seconds)
                shutil.rmtree(store, ignore_errors=True)
            loads.append(os.getloadavg()[0])
            done = ", ".join(f"{label} {values[-1]:.2f}s" for label, values in wall.items())
            print(f"  repeat {repeat + 1}/{options.repeats}: {done}", flush=True)
    finally:
        if options.keep:
            print(f"project kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    print()
    header = (
        f"{'variant':<26} {'median s':>8} {'min s':>6} {'ratio':>6} {'added µs/run':>12}  {'target (budget/run)':<24}"
        f" | {'cpu s':>6} {'cpu ratio':>9}"
    )
    print(header)
    print("-" * len(header))
    verdicts: list[bool] = []
    for variant in variants:
        label, reference_label = variant.label, f"bare -n {variant.workers}"
        median, reference = statistics.median(wall[label]), statistics.median(wall[reference_label])
        cpu_median = statistics.median(cpu[label])
        cpu_ratio = cpu_median / statistics.median(cpu[reference_label])
        if variant.name == "bare":
            ratio_text, added_text, target = "1.000", "-", "reference"
        else:
            ratio = median / reference
            ratio_text = f"{ratio:.3f}"
            added_text = f"{(median - reference) / options.n * 1e6:+.0f}"
            limit = None
            if variant.name == "no-experiment":
                limit = RATIO_TARGET_NO_EXPERIMENT
            elif variant.name == "experiments" and variant.workers == 0:
                limit = RATIO_TARGET_EXPERIMENTS_N0
            if limit is None:
                target = "(no target)"
            else:
                verdicts.append(ratio <= limit)
                budget = (limit - 1) * reference / options.n * 1e6
                target = f"<= {limit:.2f} {'PASS' if ratio <= limit else 'MISS'} ({budget:.0f} µs)"
        print(
            f"{label:<26} {median:>8.3f} {min(wall[label]):>6.3f} {ratio_text:>6} {added_text:>12}  {target:<24}"
            f" | {cpu_median:>6.2f} {cpu_ratio:>9.3f}"
        )
    print(
        "ratio, added µs: median wall time against bare pytest at the same -n; budget: the added µs per run the "
        "target allows here; cpu: user+sys seconds of the process tree"
    )
    for label, seconds in KEEPER_SECONDS.items():
        print(
            f"{label}: the frame keeper (frame_keeper.py) went on {statistics.median(seconds):.2f} s after the "
            "session, in the background (median; waited for before the next session, not timed)"
        )
    bare_n0 = wall.get("bare -n 0")
    if bare_n0:
        print(f"\nbare pytest: {statistics.median(bare_n0) / options.n * 1e3:.2f} ms per test at -n 0 (whole process)")
    busy = max(loads)
    if busy > (os.cpu_count() or 1) * 0.75:
        print(
            f"note: load average reached {busy:.1f} during the run: other work competed for the CPUs, figures are noisy"
        )
    print(
        f"import pytest_experiments.plugin: {plugin_import_ms:.0f} ms ({plugin_own_ms:.0f} ms on top of pytest and "
        "xdist, paid by every process); pandas imported: ",
        end="",
    )
    print("yes  MISS" if pandas_imported else "no  PASS")
    assert not pandas_imported, "importing pytest_experiments.plugin imports pandas"
    print(f"targets: {sum(verdicts)}/{len(verdicts)} PASS")


if __name__ == "__main__":
    main()
