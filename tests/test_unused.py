"""Installed but unused, the plugin is invisible (issue 8).

A session whose collection holds no experiment never looks at the store (a read-only checkout
runs), takes no signal, runs no collector or session hook, also under ``-n 2``; a session with
experiments turns the plugin on, under xdist too, however xdist was loaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import PLUGINS_OFF, store_of

from pytest_experiments import Store

PLAIN = """
    import signal


    def test_plain():
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
"""

GRID = """
    import pytest


    @pytest.mark.grid(i=[0, 1, 2])
    def test_point(i):
        return {"value": i}
"""

# Logs the session hooks, and which of the plugin's objects each process registered.
LOG_CONFTEST = """
    import json
    import os
    from pathlib import Path

    HERE = Path(__file__).parent


    def pytest_experiments_session_start(session):
        session.metadata["from_hook"] = "yes"
        with (HERE / "session-hooks.log").open("a") as log:
            log.write(json.dumps(["start", session.id]) + "\\n")


    def pytest_experiments_session_finish(session, summary):
        with (HERE / "session-hooks.log").open("a") as log:
            log.write(json.dumps(["finish", session.id, summary.counts]) + "\\n")


    def pytest_unconfigure(config):
        worker = getattr(config, "workerinput", {}).get("workerid", "main")
        names = sorted(name for name, _ in config.pluginmanager.list_name_plugin() if name and name.startswith("xp-"))
        (HERE / f"plugins-{worker}.json").write_text(json.dumps(names))
"""


def hook_calls(path: Path) -> list[list[object]]:
    log = path / "session-hooks.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def registered(path: Path) -> dict[str, list[str]]:
    """Per process (``main``, ``gw0``...), the plugin objects registered under ``xp-*`` names."""
    return {found.stem.removeprefix("plugins-"): json.loads(found.read_text()) for found in path.glob("plugins-*.json")}


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["no-xdist", "n2"])
def test_a_plain_suite_registers_nothing_and_writes_nothing(pytester: pytest.Pytester, workers: list[str]) -> None:
    pytester.makeconftest(LOG_CONFTEST)
    pytester.makepyfile(test_plain=PLAIN)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *workers)
    result.assert_outcomes(passed=1)
    assert "xp:" not in result.stdout.str()
    assert not store_of(pytester).exists()
    assert hook_calls(pytester.path) == []
    seen = registered(pytester.path)
    assert set(seen) == ({"main", "gw0", "gw1"} if workers else {"main"})
    # No recorder, session side or collector (git status, the package list) in any process;
    # under -n only the controller's end of xdist's channel.
    assert seen.pop("main") == (["xp-xdist"] if workers else [])
    assert all(names == [] for names in seen.values()), seen


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["no-xdist", "n2"])
def test_experiments_turn_the_plugin_on_and_the_session_hooks_run_once(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    pytester.makeconftest(LOG_CONFTEST)
    pytester.makepyfile(test_grid=GRID, test_plain=PLAIN.replace("is signal.SIG_DFL", "is not None"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *workers)
    result.assert_outcomes(passed=4)
    with Store.open(store_of(pytester)) as store:
        [session] = store.sessions()
        runs = store.runs()
        assert len(runs) == 3
        # Under xdist the workers wrote the session before the hooks ran on the controller:
        # their metadata was added to it afterwards.
        assert all(store.run(run.run_id).session["from_hook"] == "yes" for run in runs)
        assert {"host", "packages", "command"} <= set(session.metadata)  # the collectors ran
    assert {run.worker for run in runs} <= ({"gw0", "gw1"} if workers else {"main"})
    assert hook_calls(pytester.path) == [
        ["start", session.session_id],
        ["finish", session.session_id, {"passed": 3}],
    ]
    assert "xp-git" in registered(pytester.path)["main"]


@pytest.mark.parametrize(
    "load",
    [["-p", "xdist.plugin"], []],
    ids=["p-xdist.plugin", "pytest_plugins"],
)
@pytest.mark.parametrize("suite", ["plain", "grid"])
def test_xdist_loaded_under_its_module_name(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, load: list[str], suite: str
) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    if not load:
        pytester.makeconftest('pytest_plugins = ["xdist.plugin", "pytest_experiments.plugin"]\n')
    else:
        load = [*load, "-p", "pytest_experiments.plugin"]
    pytester.makepyfile(test_suite=PLAIN if suite == "plain" else GRID)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *load, "-n", "2")
    output = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in output, output
    assert "2 workers" in output
    if suite == "plain":
        result.assert_outcomes(passed=1)
        assert not store_of(pytester).exists()
        return
    result.assert_outcomes(passed=3)
    with Store.open(store_of(pytester)) as store:
        [session] = store.sessions()
        workers = {run.worker for run in store.runs()}
    assert workers <= {"gw0", "gw1"}
    assert session.finished_at is not None
    assert session.exitstatus == 0


# -- SIGTERM ---------------------------------------------------------------------------------

# A test forks a child that waits for SIGTERM; the child's fate is written by the parent.
FORKS = """
    import os
    import signal
    import time
    from pathlib import Path

    import pytest

    OUT = Path(__file__).with_name("child-{name}.json")


    def fork_and_terminate():
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: say it is ready, then wait to be terminated
            try:
                os.close(read)
                handler = "default" if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL else "other"
                os.write(write, handler.encode())
                os.close(write)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    time.sleep(0.01)
            except BaseException as exc:
                os._exit(70 if isinstance(exc, KeyboardInterrupt) else 71)
            os._exit(72)
        os.close(write)
        handler = os.read(read, 100).decode()  # the child is past its start: it holds its handlers
        os.close(read)
        os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)
        return handler, os.waitstatus_to_exitcode(status)


    {decorator}
    def test_forks({argument}):
        handler, code = fork_and_terminate()
        OUT.write_text(f'["{{handler}}", {{code}}]')
        assert code == -signal.SIGTERM
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
@pytest.mark.parametrize("experiment", [False, True], ids=["plain", "experiment"])
def test_a_forked_child_dies_of_sigterm_as_without_the_plugin(pytester: pytest.Pytester, experiment: bool) -> None:
    name = "experiment" if experiment else "plain"
    decorator = "@pytest.mark.grid(i=[0])" if experiment else ""
    pytester.makepyfile(test_forks=FORKS.format(name=name, decorator=decorator, argument="i" if experiment else ""))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert json.loads((pytester.path / f"child-{name}.json").read_text()) == ["default", -signal.SIGTERM]
    assert store_of(pytester).exists() is experiment


def test_an_experiment_session_still_stops_on_sigterm_and_restores_the_handler(pytester: pytest.Pytester) -> None:
    """In-process: the handler is the plugin's while experiments run, the previous one after."""
    pytester.makepyfile(
        test_grid="""
        import signal

        import pytest


        @pytest.mark.grid(i=[0])
        def test_point(i):
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
        """
    )
    before = signal.getsignal(signal.SIGTERM)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert signal.getsignal(signal.SIGTERM) is before


# -- a read-only checkout --------------------------------------------------------------------


@pytest.fixture
def read_only_checkout() -> Iterator[Path]:
    """A project folder nobody may write into (as root: run as nobody, whom permissions bind)."""
    base = Path(tempfile.mkdtemp(prefix="xp-readonly-", dir="/tmp"))
    base.chmod(0o755)
    project = base / "project"
    project.mkdir()
    try:
        yield project
    finally:
        for path in (project, *project.rglob("*")):
            path.chmod(0o755)
        shutil.rmtree(base)


def run_read_only(project: Path, files: dict[str, str]) -> subprocess.CompletedProcess[str]:
    for name, text in files.items():
        (project / name).write_text(text)
    for path in (*project.iterdir(), project):
        path.chmod(0o555 if path.is_dir() else 0o444)
    user = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups") if os.geteuid() == 0 else ()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_XP_STORE", None)
    command = [*user, sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly"]
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(sys.platform != "linux", reason="setpriv, permissions")
def test_a_plain_suite_runs_in_a_read_only_checkout(read_only_checkout: Path) -> None:
    files = {"pytest.ini": "[pytest]\n", "test_plain.py": "def test_plain():\n    assert True\n"}
    result = run_read_only(read_only_checkout, files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(path.name for path in read_only_checkout.iterdir()) == ["pytest.ini", "test_plain.py"]

    # Experiments need a store: one line saying so, exit 4.
    (read_only_checkout).chmod(0o755)
    result = run_read_only(
        read_only_checkout, {"test_grid.py": "import pytest\n\n@pytest.mark.experiment\ndef test_x():\n    pass\n"}
    )
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert "ERROR: xp: cannot create store" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


MODULES_CONFTEST = """
import json
import sys


def pytest_unconfigure(config):
    worker = getattr(config, "workerinput", {}).get("workerid", "main")
    names = sorted(name for name in sys.modules if name.startswith("pytest_experiments"))
    (config.rootpath / f"modules-{worker}.json").write_text(json.dumps(names))
"""
#: All a plain session imports of the package (each module costs start-up time: pytest rewrites
#: the asserts of every module of a plugin as it imports it).
START_UP_MODULES = [
    "pytest_experiments",
    "pytest_experiments.plugin",
]


def test_a_plain_session_imports_only_the_start_up_modules(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(MODULES_CONFTEST)
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert json.loads((pytester.path / "modules-main.json").read_text()) == START_UP_MODULES
    # Under -n the workers import as much; the controller adds its end of xdist's channel (and
    # the session it hands to its workers), not the settings, the store or the recorder.
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2").assert_outcomes(passed=1)
    for worker in ("gw0", "gw1"):
        assert json.loads((pytester.path / f"modules-{worker}.json").read_text()) == START_UP_MODULES
    controller = set(json.loads((pytester.path / "modules-main.json").read_text()))
    assert "pytest_experiments.plugin.xdist" in controller
    late = {"settings", "hookspecs", "activation", "recorder", "session", "collectors", "store_access"}
    assert not controller & {f"pytest_experiments.plugin.{name}" for name in late}
    assert not controller & {"pytest_experiments.store.sqlite", "pytest_experiments.store.locate"}


def test_an_experiment_session_loads_the_settings_and_the_hook_specifications(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(MODULES_CONFTEST)
    pytester.makepyfile(test_grid=GRID)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=3)
    loaded = json.loads((pytester.path / "modules-main.json").read_text())
    assert {"pytest_experiments.plugin.settings", "pytest_experiments.plugin.hookspecs"} <= set(loaded)


def test_the_start_up_lists_are_in_step_with_what_they_name(pytester: pytest.Pytester) -> None:
    """The names the entry point keeps so as not to import their modules at start-up."""
    from pytest_experiments import plugin
    from pytest_experiments.plugin import HOOK_NAMES, hookspecs
    from pytest_experiments.store import locate

    assert sorted(HOOK_NAMES) == sorted(name for name in vars(hookspecs) if name.startswith("pytest_experiments_"))
    # pytest and pluggy find the hooks and fixtures through dir(): it must list every one.
    fixture_type = type(plugin.xp)
    assert dir(plugin) == sorted(
        name for name, value in vars(plugin).items() if name.startswith("pytest_") or type(value) is fixture_type
    )
    config = pytester.parseconfig()
    assert sorted(name for name in vars(config.option) if name.startswith("xp_")) == sorted(plugin.OPTION_DESTS)
    help_text = pytester.runpytest_subprocess("--help").stdout.str()
    assert sorted(set(re.findall(r"^  (xp_\w+) \(", help_text, re.MULTILINE))) == sorted(plugin.INI_KEYS)
    assert (plugin.STORE_ENV_VAR, plugin.STORE_INI_KEY) == (locate.ENV_VAR, locate.INI_KEY)
    assert (plugin.ARTIFACTS_ENV_VAR, plugin.ARTIFACTS_INI_KEY) == (
        locate.ARTIFACTS_ENV_VAR,
        locate.ARTIFACTS_INI_KEY,
    )
    from pytest_experiments.store import DEFAULT_LEASE_S

    assert plugin.DEFAULT_LEASE_S == DEFAULT_LEASE_S


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["no-xdist", "n2"])
def test_a_conftest_of_a_subfolder_may_implement_the_hooks(pytester: pytest.Pytester, workers: list[str]) -> None:
    # Its conftest registers during collection, after start-up: the specifications come in time.
    sub = pytester.mkpydir("sub")
    (sub / "conftest.py").write_text("def pytest_experiments_run_end(run):\n    run.log_metric('from_hook', 1.0)\n")
    (sub / "test_grid.py").write_text(textwrap.dedent(GRID))
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    pytester.runpytest_subprocess("-p", "no:cacheprovider", *workers).assert_outcomes(passed=4)
    with Store.open(store_of(pytester)) as store:
        runs = store.runs()
    assert len(runs) == 3
    assert all(run.metrics.get("from_hook") == 1.0 for run in runs)


def test_a_misspelt_hook_of_ours_is_still_refused(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("def pytest_experiments_run_ended(run):\n    pass\n")
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret != 0
    assert "pytest_experiments_run_ended" in result.stdout.str() + result.stderr.str()


# An outer suite whose tests each run one in-process session (pytester.runpytest, as
# pytest-xdist's own suite does), then checks that the sessions that ended were freed.
INLINE_SESSIONS = """
    import gc
    import weakref

    import pytest

    pytest_plugins = ["pytester"]
    CONFIGS = []


    class Remember:
        def pytest_configure(self, config):
            CONFIGS.append(weakref.ref(config))


    @pytest.mark.parametrize("i", range(3))
    def test_inline_session(pytester, i):
        pytester.makepyfile(test_inner=INNER)
        result = pytester.runpytest("-p", "no:cacheprovider", *ARGS, plugins=[Remember()])
        result.assert_outcomes(passed=PASSED)


    def test_the_ended_sessions_are_freed():
        gc.collect()
        assert len(CONFIGS) == 3
        # The last one may be held until the next replaces it: pytester restores sys.modules,
        # not the attributes a package gets for its submodules (xdist's own do the same).
        assert [ref() for ref in CONFIGS[:-1]] == [None, None]
"""


@pytest.mark.parametrize("workers", [[], ["-n", "1"]], ids=["no-xdist", "n1"])
@pytest.mark.parametrize("suite", ["plain", "grid"])
def test_in_process_sessions_are_freed_when_they_end(pytester: pytest.Pytester, suite: str, workers: list[str]) -> None:
    """A module the plugin imports inside a pytester session is imported afresh in the next one
    (pytester drops what a session imported): it must leave nothing behind that outlives it.
    Each of these kept every such session alive, with its config, items and plugins, through the
    module's globals, whose ``__loader__`` is that session's assertion rewriter: an
    ``os.register_at_fork`` handler (``ids``, which an xdist controller imports to name its
    session, even without experiments; ``activation``); ``from package import module``, which
    takes the copy an earlier session left as the package's attribute; ``StashKey[Run]``, which
    typing caches. pytest-xdist's own suite took 27% more CPU time, spent in garbage
    collection. (The test extra's other plugins are off in the inner sessions: some of them keep
    sessions alive by themselves.)"""
    inner, passed = (PLAIN, 1) if suite == "plain" else (GRID, 3)
    pytester.makepyfile(
        test_outer=textwrap.dedent(INLINE_SESSIONS)
        + f"\nINNER = {textwrap.dedent(inner)!r}\nARGS = {[*PLUGINS_OFF.split(), *workers]!r}\nPASSED = {passed}\n"
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly").assert_outcomes(passed=4)


def test_the_installed_metadata_is_short() -> None:
    """pytest reads an installed plugin's metadata at every session start (its version, for the
    header and for ``required_plugins``), all of it, description included: the package's
    description is a short page (``docs/pypi.md``), not the README (114 KB, 16 million
    instructions a session more, measured with callgrind)."""
    from importlib.metadata import distribution

    metadata = distribution("pytest-experiments").read_text("METADATA")
    assert metadata is not None
    assert len(metadata.encode()) < 16_384, "pyproject.toml's readme must stay a short page"
