"""The ecosystem check: real third-party test suites, with pytest-experiments and without it.

For each suite of ``suites.py`` it runs the suite's released tests twice, each side in its own
fresh copy of the sdist: the **reference** side without the plugin (not importable, and ``-p
no:experiments``) and the **plugin** side with it installed and active, then

- compares the outcomes test by test (node id -> outcome, written by ``plugin/
  xp_ecosystem_outcomes.py``). A difference is re-checked by running those node ids again on
  both sides, up to ``--rechecks`` times; only one seen every time counts. One that goes away is
  reported as the suite's flakiness and does not fail the check;
- lists every file the plugin side created, changed or deleted, in the suite's tree or under
  its ``--basetemp``, that the reference side did not: what the suite writes itself shows up on
  both sides. pytest's caches stay out of the tree (``-p no:cacheprovider``,
  ``PYTHONDONTWRITEBYTECODE=1``); hypothesis' database goes to the side's scratch folder;
- exits with 1 on any counted difference, any such file or a side that did not finish; 0 when
  every suite matched; 2 when setting up failed (a download, a venv).

How the plugin is present on one side only: each suite's venv holds the suite's pins and this
project's dependencies but not the project; the project is built from the working tree into a
folder of its own once per check (``pip install --target``), and only the plugin side has that
folder on ``PYTHONPATH``. The environment reaches every process the suite starts (xdist
workers, pytester's sessions, in-process or not), so a suite that runs pytest sessions of its
own runs them with the plugin on one side and without it on the other. (``-p no:experiments``
alone would not do: pytester's sessions do not inherit the command line.)

Everything downloaded is cached in ``.ecosystem/`` at the repository root (git-ignored): the
sdists and one venv per suite, rebuilt only when its pins, the Python or ``pyproject.toml``
change. With the cache filled no network is needed. The suites run in a temporary folder outside
the repository (pytest would otherwise find this project's configuration above a suite that has
none of its own); each side's log and outcomes, and ``report.json``, are kept in
``.ecosystem/last-run/``.

Only the standard library: run it with any Python 3.10+ (``tox -e ecosystem``, or
``.venv/bin/python tests/ecosystem/run_ecosystem.py``). Options: ``--help``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from suites import BASE, BUILD, SUITES, Suite

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PROJECT = "pytest-experiments"
OUTCOMES_DIR = HERE / "plugin"  # holds the reporting plugin only: it goes on PYTHONPATH
OUTCOMES_PLUGIN = "xp_ecosystem_outcomes"

SIDES = ("reference", "plugin")
ABSENT = "(absent)"
# More differences than this are not flakiness: they are reported without re-checking them.
MAX_RECHECKED = 200
# How many differences or files are printed per suite (report.json has them all).
SHOWN = 15

# Settings of the calling environment that would change the suites' sessions.
_SCRUBBED_PREFIXES = ("PYTEST_", "HYPOTHESIS_", "XP_ECOSYSTEM", "COV_CORE_")
_SCRUBBED = ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONWARNINGS", "PYTHONHOME", "VIRTUAL_ENV")


# ----------------------------------------------------------------------------- set-up


class SetupError(Exception):
    """Preparing the check failed (a download, a venv, the build): one line for the user."""


def _run_logged(command: Sequence[str | Path], log: Path, what: str) -> None:
    """Run a set-up command, its output appended to ``log``; on failure print its tail and raise."""
    with log.open("a") as output:
        output.write(f"$ {' '.join(map(str, command))}\n")
        output.flush()
        code = subprocess.call([str(part) for part in command], stdout=output, stderr=subprocess.STDOUT)
    if code != 0:
        print("\n".join(log.read_text(errors="replace").splitlines()[-20:]), file=sys.stderr)
        raise SetupError(
            f"{what} failed (exit {code}, log {log}); check the pins in tests/ecosystem/suites.py and that PyPI answers"
        )


def ensure_venv(folder: Path, suite: Suite) -> Path:
    """The Python of the suite's venv, built unless ``folder`` holds one for the same pins, Python and project.

    It holds ``BUILD``, ``BASE``, the suite's release and test dependencies, and this project's
    dependencies, but not this project (see ``install_plugin``). One venv per suite: another
    suite's test dependencies would change this one's sessions (hypothesis' pytest plugin alone
    adds about a second to every pytest process it is loaded in).
    """
    requirements = list(dict.fromkeys([*BUILD, *BASE, suite.requirement, *suite.deps]))
    key = hashlib.sha256(json.dumps([sys.version, requirements, (ROOT / "pyproject.toml").read_text()]).encode())
    python = folder / "bin" / "python"
    marker = folder / "xp-ecosystem-key"
    if marker.exists() and marker.read_text() == key.hexdigest() and python.exists():
        return python
    print(f"ecosystem: building {folder} ({', '.join(requirements)})", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    log = folder.parent / f"{folder.name}.log"
    log.unlink(missing_ok=True)
    _run_logged([sys.executable, "-m", "venv", folder], log, f"creating the venv of {suite.name}")
    pip: list[str | Path] = [python, "-m", "pip", "-q"]
    # The project is installed to bring its dependencies, then removed: only the plugin side gets it.
    _run_logged([*pip, "install", *requirements, ROOT], log, f"installing the venv of {suite.name}")
    _run_logged([*pip, "uninstall", "-y", PROJECT], log, f"removing {PROJECT} from the venv of {suite.name}")
    marker.write_text(key.hexdigest())  # last: an interrupted build is rebuilt next time
    return python


def install_plugin(python: Path, target: Path, log: Path) -> None:
    """Build this project from the working tree and install it, alone, into ``target``.

    ``--no-build-isolation`` with the venv's pinned hatchling: no network needed.
    """
    command: list[str | Path] = [python, "-m", "pip", "-q", "install", "--no-deps", "--no-build-isolation"]
    _run_logged([*command, "--target", target, ROOT], log, f"building {PROJECT} from {ROOT}")


def _sdist_name(suite: Suite) -> str:
    # Sdist file names use the normalised name with underscores (PEP 625): pytest_xdist-3.8.0.tar.gz
    return re.sub(r"[-_.]+", "_", suite.name).lower() + f"-{suite.version}.tar.gz"


def _cached_sdist(suite: Suite, folder: Path) -> Path | None:
    matches = [path for path in folder.glob("*.tar.gz") if path.name.lower() == _sdist_name(suite)]
    return matches[0] if matches else None


def ensure_sdist(suite: Suite, folder: Path, python: Path) -> Path:
    """The suite's released sdist, from the cache or downloaded into it with pip."""
    folder.mkdir(parents=True, exist_ok=True)
    cached = _cached_sdist(suite, folder)
    if cached is not None:
        return cached
    print(f"ecosystem: downloading the sdist of {suite.requirement}", flush=True)
    with tempfile.TemporaryDirectory(dir=folder) as partial:
        # --no-binary for the suite alone: pip may still use wheels for its build backend.
        command: list[str | Path] = [python, "-m", "pip", "-q", "download", "--no-deps", "--no-binary", suite.name]
        _run_logged(
            [*command, "-d", partial, suite.requirement], folder / "download.log", f"downloading {suite.requirement}"
        )
        downloaded = _cached_sdist(suite, Path(partial))
        if downloaded is None:
            raise SetupError(f"pip gave no sdist for {suite.requirement}; choose a release that has one")
        return Path(shutil.move(str(downloaded), folder / downloaded.name))


def extract(sdist: Path, target: Path) -> Path:
    """A fresh copy of the sdist's tree under ``target``; returns the tree's root."""
    target.mkdir(parents=True)
    with tarfile.open(sdist) as archive:
        # The "data" filter refuses members that would land outside ``target`` (Python 3.10.12+, 3.11.4+).
        extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(target, **extra)  # type: ignore[arg-type]
    (root,) = target.iterdir()
    return root


# ----------------------------------------------------------------------------- running one side


@dataclass
class SideRun:
    """One pytest process over one side's tree."""

    outcomes: dict[str, str]
    exitstatus: int | None  # pytest's, from the reporting plugin; None when the session did not finish
    returncode: int | None  # the process's; None when it was killed at its timeout
    seconds: float
    cpu_seconds: float
    plugin_active: bool | None
    rootdir: Path | None
    log: Path

    @property
    def finished(self) -> bool:
        return self.exitstatus is not None


class Running:
    """The process groups of the runs under way, so that an interrupted check ends them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pids: set[int] = set()

    def add(self, pid: int) -> None:
        with self._lock:
            self._pids.add(pid)

    def discard(self, pid: int) -> None:
        with self._lock:
            self._pids.discard(pid)

    def kill_all(self) -> None:
        """SIGKILL every group still running; their waits then return at once."""
        with self._lock:
            for pid in self._pids:
                _kill_group(pid)


@dataclass(frozen=True)
class Settings:
    """What every run shares."""

    work: Path  # the temporary folder: trees, scratch folders, the plugin's install
    plugin_site: Path  # this project installed alone: on the plugin side's PYTHONPATH
    jobs: int  # 2: both sides at once
    rechecks: int
    running: Running


def _environment(settings: Settings, side: str, scratch: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_SCRUBBED_PREFIXES) and key not in _SCRUBBED
    }
    paths = [OUTCOMES_DIR] + ([settings.plugin_site] if side == "plugin" else [])
    env["PYTHONPATH"] = os.pathsep.join(map(str, paths))
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ (nor pytest's rewrite cache) in the tree
    env["XP_ECOSYSTEM_OUTCOMES"] = str(scratch / "outcomes.json")
    env["HYPOTHESIS_STORAGE_DIRECTORY"] = str(scratch / "hypothesis")
    return env


def _kill_group(pid: int) -> None:
    # A run's whole process group: xdist workers, processes its tests started and left behind.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _wait(pid: int, timeout: float) -> tuple[int | None, float]:
    """Wait (bounded) for ``pid``, then end what is left of its process group.

    Returns its exit code (None on timeout) and the CPU seconds of the process and of the
    children it waited for (xdist workers, pytester's subprocesses): a figure that depends less
    on the machine's load than the wall time does.
    """
    deadline = time.monotonic() + timeout
    finished = False
    while not finished and time.monotonic() < deadline:
        # WNOWAIT leaves it a zombie, so its pid (the group's id) cannot be reused before the kill below.
        finished = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        if not finished:
            time.sleep(0.05)
    _kill_group(pid)
    _, status, usage = os.wait4(pid, 0)
    return (os.waitstatus_to_exitcode(status) if finished else None), usage.ru_utime + usage.ru_stime


def run_side(
    settings: Settings, python: Path, side: str, tree: Path, scratch: Path, args: Sequence[str], timeout: float
) -> SideRun:
    """``python -m pytest *args`` in ``tree``, with the plugin on the plugin side only."""
    scratch.mkdir(parents=True, exist_ok=True)
    outcomes_file, log = scratch / "outcomes.json", scratch / "pytest.log"
    command = [str(python), "-m", "pytest", "-p", "no:cacheprovider", "-p", OUTCOMES_PLUGIN]
    command += [f"--basetemp={scratch / 'basetemp'}", *([] if side == "plugin" else ["-p", "no:experiments"]), *args]
    start = time.monotonic()
    with log.open("w") as output:
        output.write(f"$ cd {tree} && {' '.join(command)}\n")
        output.flush()
        proc = subprocess.Popen(
            command,
            cwd=tree,
            env=_environment(settings, side, scratch),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, ended as a whole by _wait
        )
        settings.running.add(proc.pid)
        try:
            returncode, cpu = _wait(proc.pid, timeout)
        finally:
            settings.running.discard(proc.pid)
        proc.returncode = -9 if returncode is None else returncode  # reaped by _wait already
        if returncode is None:
            output.write(f"\necosystem: killed after {timeout:.0f} s\n")
    return _side_result(outcomes_file, returncode, time.monotonic() - start, cpu, log)


def _side_result(outcomes_file: Path, returncode: int | None, seconds: float, cpu: float, log: Path) -> SideRun:
    if not outcomes_file.exists():
        return SideRun({}, None, returncode, seconds, cpu, None, None, log)
    data = json.loads(outcomes_file.read_text())
    return SideRun(
        outcomes=data["outcomes"],
        exitstatus=data["exitstatus"],
        returncode=returncode,
        seconds=seconds,
        cpu_seconds=cpu,
        plugin_active=data["experiments_plugin"],
        rootdir=Path(data["rootdir"]),
        log=log,
    )


# ----------------------------------------------------------------------------- comparing


def compare(reference: dict[str, str], plugin: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Node id -> (reference outcome, plugin outcome) wherever they differ; a missing node id is ``ABSENT``."""
    return {
        nodeid: (reference.get(nodeid, ABSENT), plugin.get(nodeid, ABSENT))
        for nodeid in sorted(reference.keys() | plugin.keys())
        if reference.get(nodeid, ABSENT) != plugin.get(nodeid, ABSENT)
    }


def still_differing(
    differences: dict[str, tuple[str, str]], reference: dict[str, str], plugin: dict[str, str]
) -> dict[str, tuple[str, str]]:
    """The differences a re-check did not clear: one clears only when both sides ran it again, alike."""
    still = {}
    for nodeid, first in differences.items():
        again = (reference.get(nodeid, ABSENT), plugin.get(nodeid, ABSENT))
        if ABSENT in again or again[0] != again[1]:
            still[nodeid] = first  # a node id that cannot be run again alone keeps its difference
    return still


Snapshot = dict[str, tuple[int, int]]  # relative path -> (size, mtime in ns); folders end with "/"


def snapshot(root: Path) -> Snapshot:
    """Every file and folder under ``root`` (symlinks not followed)."""
    entries: Snapshot = {}
    for folder, dirnames, filenames in os.walk(root):
        base = Path(folder)
        for name in dirnames:
            entries[f"{(base / name).relative_to(root)}/"] = (0, 0)
        for name in filenames:
            info = (base / name).lstat()
            entries[str((base / name).relative_to(root))] = (info.st_size, info.st_mtime_ns)
    return entries


def changes(before: Snapshot, after: Snapshot) -> set[str]:
    """What a run did to a tree: ``created``, ``deleted`` and ``changed`` paths."""
    found = {f"created {path}" for path in after.keys() - before.keys()}
    found |= {f"deleted {path}" for path in before.keys() - after.keys()}
    found |= {
        f"changed {path}"
        for path in before.keys() & after.keys()
        if not path.endswith("/") and before[path] != after[path]
    }
    return found


# ----------------------------------------------------------------------------- one suite


@dataclass
class SuiteResult:
    """What one suite showed: the basis of the printed summary and of ``report.json``."""

    suite: Suite
    sides: dict[str, SideRun] = field(default_factory=dict)
    differences: dict[str, tuple[str, str]] = field(default_factory=dict)  # node id -> (reference, plugin)
    flaky: dict[str, tuple[str, str]] = field(default_factory=dict)  # differences gone on a re-check
    files: list[str] = field(default_factory=list)  # written by the plugin side only
    problems: list[str] = field(default_factory=list)  # a side that did not finish, a plugin (in)active
    load: tuple[float, float] = (0.0, 0.0)  # the 1-minute load average before and after

    @property
    def ok(self) -> bool:
        return not (self.differences or self.files or self.problems)


class SuiteCheck:
    """Runs one suite on both sides, compares them, re-checks differences, finds the plugin's files."""

    def __init__(self, suite: Suite, sdist: Path, python: Path, settings: Settings) -> None:
        self.suite = suite
        self.python = python
        self.settings = settings
        self.folder = settings.work / suite.name
        self.trees = {side: extract(sdist, self.folder / side / "src") for side in SIDES}
        self.result = SuiteResult(suite)

    def run(self) -> SuiteResult:
        """The whole check of this suite."""
        result = self.result
        before = {side: snapshot(self.trees[side]) for side in SIDES}
        print(f"ecosystem: {self.suite.requirement}: running both sides ...", flush=True)
        load_before = os.getloadavg()[0]
        result.sides = self._both(lambda side: self._run(side, self.folder / side, self.suite.paths))
        result.load = (load_before, os.getloadavg()[0])
        result.files = self._plugin_files(before)
        result.problems = _problems(result.sides)
        if result.problems:
            return result
        first = compare(result.sides["reference"].outcomes, result.sides["plugin"].outcomes)
        result.differences = self._recheck(first)
        statuses = tuple(result.sides[side].exitstatus for side in SIDES)
        if not first and statuses[0] != statuses[1]:
            result.differences["(the session's exit status)"] = (str(statuses[0]), str(statuses[1]))
        return result

    def _run(self, side: str, scratch: Path, targets: Iterable[str]) -> SideRun:
        args = [*self.suite.options, *(f"--deselect={nodeid}" for nodeid in self.suite.known_flaky), *targets]
        return run_side(self.settings, self.python, side, self.trees[side], scratch, args, self.suite.timeout)

    def _both(self, run: Callable[[str], SideRun]) -> dict[str, SideRun]:
        """Run the two sides, at the same time with ``--jobs 2`` (they then share the machine's load alike)."""
        with ThreadPoolExecutor(max_workers=self.settings.jobs) as pool:
            futures = {side: pool.submit(run, side) for side in SIDES}
            try:
                return {side: future.result() for side, future in futures.items()}
            except BaseException:
                self.settings.running.kill_all()  # Ctrl-C or SIGTERM: the sides run in their own process groups
                raise

    def _recheck(self, differences: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
        """Run the differing node ids again on both sides; return those that differed every time."""
        if len(differences) > MAX_RECHECKED:
            return differences
        remaining = differences
        for attempt in range(1, self.settings.rechecks + 1):
            selectable = [nodeid for nodeid in remaining if nodeid]  # "" (the session's collection) is not
            if not selectable:
                break
            print(f"ecosystem: {self.suite.requirement}: re-checking {len(selectable)} difference(s), try {attempt}")

            def again(side: str, attempt: int = attempt, selectable: list[str] = selectable) -> SideRun:
                rootdir = self.result.sides[side].rootdir or self.trees[side]
                targets = [f"{rootdir}/{nodeid}" for nodeid in selectable]  # node ids are relative to the rootdir
                return self._run(side, self.folder / side / f"recheck-{attempt}", targets)

            rechecked = self._both(again)
            still = still_differing(remaining, rechecked["reference"].outcomes, rechecked["plugin"].outcomes)
            self.result.flaky.update({nodeid: remaining[nodeid] for nodeid in remaining.keys() - still.keys()})
            remaining = still
            if not remaining:
                break
        return remaining

    def _plugin_files(self, before: dict[str, Snapshot]) -> list[str]:
        """Changes to the tree, and paths under basetemp, that the plugin side has and the reference side has not."""
        tree = {side: changes(before[side], snapshot(self.trees[side])) for side in SIDES}
        written = {f"tree: {change}" for change in tree["plugin"] - tree["reference"]}
        basetemp = {side: snapshot(self.folder / side / "basetemp").keys() for side in SIDES}
        written |= {f"basetemp: created {path}" for path in basetemp["plugin"] - basetemp["reference"]}
        return sorted(written)


def _problems(sides: dict[str, SideRun]) -> list[str]:
    problems = []
    for side, run in sides.items():
        if not run.finished:
            tail = run.log.read_text(errors="replace").splitlines()[-8:]
            problems.append(f"the {side} side did not finish (exit {run.returncode}): " + " | ".join(tail))
    if sides["plugin"].plugin_active is False:
        problems.append("pytest-experiments was not active on the plugin side: the comparison would prove nothing")
    if sides["reference"].plugin_active:
        problems.append("pytest-experiments was active on the reference side")
    return problems


# ----------------------------------------------------------------------------- reporting


def _counts(outcomes: dict[str, str]) -> str:
    counted = Counter(outcome.split(" [")[0] for outcome in outcomes.values())
    return ", ".join(f"{count} {outcome}" for outcome, count in counted.most_common())


def _shown(lines: Iterable[str], total: int) -> list[str]:
    shown = [f"    {line}" for line in list(lines)[:SHOWN]]
    if total > SHOWN:
        shown.append(f"    ... and {total - SHOWN} more (all of them in report.json)")
    return shown


def describe(result: SuiteResult, work: Path) -> list[str]:
    """The lines printed for one suite; logs are named relative to the last-run folder."""
    lines = [f"== {result.suite.requirement}: {'ok' if result.ok else 'DIFFERS'}"]
    for side, run in result.sides.items():
        lines.append(
            f"  {side:9} {len(run.outcomes):6} tests ({_counts(run.outcomes) or 'none'}); exit {run.exitstatus}; "
            f"{run.seconds:.1f} s wall, {run.cpu_seconds:.1f} s CPU; log {run.log.relative_to(work)}"
        )
    lines.append(f"  load average (1 min): {result.load[0]:.1f} before, {result.load[1]:.1f} after")
    lines += [f"  problem: {problem}" for problem in result.problems]
    pairs = {"differences": result.differences, "flaky": result.flaky}
    titles = {
        "differences": "difference(s), reference -> plugin, seen on every re-check:",
        "flaky": "difference(s) gone on a re-check (the suite's flakiness, not counted):",
    }
    for name, found in pairs.items():
        if found:
            lines.append(f"  {len(found)} {titles[name]}")
            lines += _shown((f"{nodeid}: {ref} -> {plug}" for nodeid, (ref, plug) in found.items()), len(found))
    if result.files:
        lines.append(f"  {len(result.files)} path(s) written by the plugin side only:")
        lines += _shown(result.files, len(result.files))
    return lines


def _as_json(result: SuiteResult) -> dict[str, object]:
    return {
        "suite": result.suite.requirement,
        "ok": result.ok,
        "sides": {
            side: {
                "tests": len(run.outcomes),
                "counts": _counts(run.outcomes),
                "exitstatus": run.exitstatus,
                "seconds": round(run.seconds, 2),
                "cpu_seconds": round(run.cpu_seconds, 2),
            }
            for side, run in result.sides.items()
        },
        "load_average": result.load,
        "problems": result.problems,
        "differences": {nodeid: list(pair) for nodeid, pair in result.differences.items()},
        "flaky": {nodeid: list(pair) for nodeid, pair in result.flaky.items()},
        "files_written_by_plugin": result.files,
    }


def keep_last_run(results: list[SuiteResult], work: Path, last_run: Path) -> None:
    """Copy each run's log and outcomes, and write ``report.json``, into ``last_run``."""
    shutil.rmtree(last_run, ignore_errors=True)
    last_run.mkdir(parents=True)
    for pattern in ("*/*/pytest.log", "*/*/outcomes.json", "*/*/recheck-*/pytest.log", "*/*/recheck-*/outcomes.json"):
        for path in work.glob(pattern):
            target = last_run / path.relative_to(work)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    (last_run / "report.json").write_text(json.dumps([_as_json(result) for result in results], indent=2) + "\n")


# ----------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_ecosystem.py",
        description="Run real third-party suites with pytest-experiments and without it; "
        "fail on any difference in outcomes or any file the plugin wrote.",
    )
    default = ", ".join(suite.name for suite in SUITES if suite.default)
    parser.add_argument(
        "--suite",
        action="append",
        choices=[suite.name for suite in SUITES],
        help=f"only this suite (repeatable; default: {default})",
    )
    parser.add_argument("--all", action="store_true", help="every suite, those off by default too")
    parser.add_argument(
        "--cache", type=Path, default=ROOT / ".ecosystem", help="downloads, venvs, last run (%(default)s)"
    )
    parser.add_argument(
        "--jobs", type=int, choices=(1, 2), default=2, help="2 (default): both sides at once; 1: one after the other"
    )
    parser.add_argument("--rechecks", type=int, default=2, help="re-runs of differing node ids (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder with the suites' trees")
    parser.add_argument("--list", action="store_true", help="list the suites and exit")
    return parser


def _prepare(chosen: list[Suite], cache: Path, work: Path) -> dict[str, tuple[Path, Path]]:
    """Every suite's sdist and venv, and the plugin's install: all before any run."""
    prepared = {}
    for suite in chosen:
        python = ensure_venv(cache / "venvs" / suite.name, suite)
        prepared[suite.name] = (ensure_sdist(suite, cache / "sdists", python), python)
    if chosen:
        install_plugin(prepared[chosen[0].name][1], work / "plugin-site", work / "plugin-site.log")
    return prepared


def main(argv: Sequence[str] | None = None) -> int:
    """Run the check; exit status 0 when every suite matched, 1 when one did not, 2 when set-up failed."""
    options = _parser().parse_args(argv)
    if options.list:
        for suite in SUITES:
            print(
                f"{suite.requirement:28} {' '.join(suite.paths):12} {'default' if suite.default else 'off by default'}"
            )
        return 0
    chosen = [s for s in SUITES if (s.name in options.suite if options.suite else options.all or s.default)]
    cache = options.cache.resolve()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="xp-ecosystem-"))
    results: list[SuiteResult] = []
    try:
        prepared = _prepare(chosen, cache, work)
        print(f"ecosystem: set up in {time.monotonic() - started:.0f} s", flush=True)
        settings = Settings(work, work / "plugin-site", options.jobs, options.rechecks, Running())
        for suite in chosen:
            result = SuiteCheck(suite, *prepared[suite.name], settings).run()
            print("\n".join(describe(result, work)), flush=True)
            results.append(result)
    except SetupError as error:
        print(f"ecosystem: error: {error}", file=sys.stderr)
        return 2
    finally:
        keep_last_run(results, work, cache / "last-run")
        if options.keep:
            print(f"ecosystem: the suites' trees are kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    failed = sum(not result.ok for result in results)
    print(f"ecosystem: {time.monotonic() - started:.0f} s in all; logs and report.json in {cache / 'last-run'}")
    print(f"ecosystem: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    # SIGTERM (a CI time limit) unwinds like Ctrl-C, so the suites' process groups are ended too.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("ecosystem: interrupted; the suites' runs were ended", file=sys.stderr)
        sys.exit(130)
