"""Built-in metadata collectors: ordinary implementations of our own hooks.

Each is a small plugin object registered under its own name, so ``-p no:<name>``
switches it off:

========================  ==============================================================
``xp-code``               the experiment function's source (without decorators) and sha256
``xp-git``                commit, branch, dirty flag and remote of the rootdir's repository
``xp-host``               hostname, platform and Python version
``xp-packages``           versions of pytest, pytest-experiments and every installed package
``xp-command``            the command line and the directory it ran in
``xp-capture``            captured stdout / stderr saved as ``stdout.txt`` / ``stderr.txt``
========================  ==============================================================

Whatever is the same for the whole session is collected once, on the controller.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import os
import platform
import shlex
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pytest_experiments.run import ExperimentSession, Run


def function_source(function: Any) -> str | None:
    """The source of ``function`` from its ``def`` line on (decorators left out), dedented."""
    try:
        source = textwrap.dedent(inspect.getsource(function))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            # Since Python 3.8 a function's lineno is its ``def`` line, after the decorators.
            return "\n".join(source.splitlines()[node.lineno - 1 :]) + "\n"
    return source


def function_hash(function: Any) -> str | None:
    """sha256 of :func:`function_source` (what ``--xp-rerun-changed`` compares)."""
    source = function_source(function)
    return None if source is None else hashlib.sha256(source.encode()).hexdigest()


class CodeCollector:
    """``xp-code``: what code ran. Editing a grid mark leaves the hash unchanged."""

    def __init__(self) -> None:
        self._cache: dict[object, tuple[str, str] | None] = {}

    @pytest.hookimpl
    def pytest_experiments_run_start(self, run: Run) -> None:
        code = getattr(run.function, "__code__", None)
        if code is None:
            return
        if code not in self._cache:
            source = function_source(run.function)
            self._cache[code] = None if source is None else (source, hashlib.sha256(source.encode()).hexdigest())
        found = self._cache[code]
        if found is not None:
            run.code_source, run.code_sha256 = found


def git_state(directory: Path) -> dict[str, Any]:
    """Commit, branch, dirty flag and remote of the repository holding ``directory``.

    Empty outside git; a repository without commits or without a remote gives what it has.
    """

    def git(*args: str) -> subprocess.CompletedProcess[str] | None:
        try:
            return subprocess.run(
                ["git", *args], cwd=directory, capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None

    # One call gives commit, branch and the changed tracked files.
    status = git("status", "--porcelain=v2", "--branch", "--untracked-files=no")
    if status is None or status.returncode != 0:
        return {}
    state: dict[str, Any] = {"dirty": False}
    for line in status.stdout.splitlines():
        if line.startswith("# branch.oid "):
            oid = line.split()[-1]
            state["commit"] = None if oid == "(initial)" else oid
        elif line.startswith("# branch.head "):
            head = line.split(maxsplit=2)[-1]
            state["branch"] = None if head == "(detached)" else head
        elif not line.startswith("#"):
            state["dirty"] = True
    remote = git("config", "--get", "remote.origin.url")
    if remote is not None and remote.returncode == 0 and remote.stdout.strip():
        state["remote"] = remote.stdout.strip()
    return state


class GitCollector:
    """``xp-git``: the rootdir repository's state, once per session."""

    @pytest.hookimpl
    def pytest_experiments_session_start(self, session: ExperimentSession) -> None:
        state = git_state(session.config.rootpath)
        if state:
            session.metadata["git"] = state


class HostCollector:
    """``xp-host``: where the session ran. (Each run also records its host, pid and worker.)"""

    @pytest.hookimpl
    def pytest_experiments_session_start(self, session: ExperimentSession) -> None:
        uname = os.uname()  # not platform.platform(), which reads the interpreter binary (ms)
        session.metadata["host"] = {
            "hostname": socket.gethostname(),
            "platform": f"{uname.sysname}-{uname.release}-{uname.machine}",
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
        }


def installed_distributions() -> dict[str, str]:
    """Name -> version of every distribution on ``sys.path``, read from folder names.

    ``name-version.dist-info`` (and ``.egg-info``) folder names carry both, so nothing is
    parsed: about 100 times faster than reading each distribution's metadata file.
    """
    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            stem, dot, suffix = name.rpartition(".")
            if dot and suffix in ("dist-info", "egg-info") and "-" in stem:
                distribution, _, version = stem.partition("-")
                found.setdefault(distribution.replace("_", "-").lower(), version.split("-")[0])
    return dict(sorted(found.items()))


class PackagesCollector:
    """``xp-packages``: versions of the installed distributions, once per session."""

    @pytest.hookimpl
    def pytest_experiments_session_start(self, session: ExperimentSession) -> None:
        from pytest_experiments import __version__

        session.metadata["versions"] = {"pytest": pytest.__version__, "pytest_experiments": __version__}
        session.metadata["packages"] = installed_distributions()


class CommandCollector:
    """``xp-command``: the command line (any password in a store URL masked) and the directory
    it was given in."""

    @pytest.hookimpl
    def pytest_experiments_session_start(self, session: ExperimentSession) -> None:
        from pytest_experiments.store.server_url import masked_in

        params = session.config.invocation_params
        session.metadata["command"] = shlex.join(["pytest", *(masked_in(str(arg)) for arg in params.args)])
        session.metadata["cwd"] = str(params.dir)


class CaptureCollector:
    """``xp-capture``: pytest's captured output of the run, kept as run artefacts."""

    @pytest.hookimpl
    def pytest_experiments_run_end(self, run: Run) -> None:
        for name, text in (("stdout.txt", run.stdout), ("stderr.txt", run.stderr)):
            if text:
                (run.dir / name).write_text(text, encoding="utf-8", errors="replace")


#: Name under which each collector is registered (``-p no:<name>`` blocks it).
BUILTIN_COLLECTORS: dict[str, type] = {
    "xp-code": CodeCollector,
    "xp-git": GitCollector,
    "xp-host": HostCollector,
    "xp-packages": PackagesCollector,
    "xp-command": CommandCollector,
    "xp-capture": CaptureCollector,
}
#: The collectors' classes: a hook implemented by these alone is called without pluggy's dispatch.
BUILTIN_TYPES = frozenset(BUILTIN_COLLECTORS.values())
