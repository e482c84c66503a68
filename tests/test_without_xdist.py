"""Sessions without xdist: switched off with ``-p no:xdist``, and not installed at all.

Recording, resume and status work as with xdist installed: real ``python -m pytest``
processes on a real store, the second with every import of ``xdist`` refused.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from processes import TIMEOUT, history, inner_env

GRID = """
    import pytest


    @pytest.mark.grid(i=range({size}))
    def test_point(i):
        return {{"value": i}}
"""

# pytest in an interpreter where xdist cannot be imported, as if it were not installed.
# Plugins are not autoloaded (pytest would import xdist's entry point): ours is named with -p.
WITHOUT_XDIST = """
import importlib.abc
import sys


class NoXdist(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "xdist" or name.startswith("xdist."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NoXdist())
try:
    import xdist  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    sys.exit("xdist was imported after all")

import pytest

code = pytest.main(sys.argv[1:])
print(f"xdist imported: {'xdist' in sys.modules}")
sys.exit(code)
"""

MODES = {
    "switched-off": ([sys.executable, "-m", "pytest", "-p", "no:xdist"], {}),
    "not-installed": (
        [sys.executable, "-c", WITHOUT_XDIST, "-p", "pytest_experiments.plugin"],
        {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    ),
}


def run(pytester: pytest.Pytester, mode: str, *args: str) -> tuple[int, list[str]]:
    """A pytest session without xdist in ``pytester.path``: its exit code and output lines."""
    command, env = MODES[mode]
    done = subprocess.run(
        [*command, "-p", "no:cacheprovider", *args],
        cwd=pytester.path,
        env=inner_env(**env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    return done.returncode, (done.stdout + done.stderr).splitlines()


def write_grid(pytester: pytest.Pytester, size: int) -> None:
    (pytester.path / "test_grid.py").write_text(textwrap.dedent(GRID.format(size=size)))


@pytest.mark.parametrize("mode", list(MODES))
def test_records_resumes_and_shows_status_without_xdist(pytester: pytest.Pytester, mode: str) -> None:
    write_grid(pytester, 4)
    code, lines = run(pytester, mode)
    assert code == 0, "\n".join(lines)
    assert any(line.startswith("xp: 4 runs recorded (4 passed)") for line in lines), lines
    if mode == "not-installed":
        assert "plugins: experiments" not in "\n".join(lines)  # autoloading was off: only ours is there
        assert lines[-1] == "xdist imported: False"

    write_grid(pytester, 6)
    code, lines = run(pytester, mode, "--xp-resume", "-v")
    assert code == 0, "\n".join(lines)
    summary = lines.index("xp: resume: 4 done, 2 to run (2 never run)")
    # Printed at the start, before the tests run (as always without xdist).
    first_result = next(number for number, line in enumerate(lines) if " PASSED" in line)
    assert summary < first_result
    assert sorted(line.split(" ")[0] for line in lines if " PASSED" in line) == [
        "test_grid.py::test_point[i=4]",
        "test_grid.py::test_point[i=5]",
    ]

    code, lines = run(pytester, mode, "--xp-status")
    assert code == 0, "\n".join(lines)
    [row] = [line for line in lines if line.startswith("test_grid.py::test_point")]
    assert row.split()[1:3] == ["6", "6"]  # grid, done

    runs = history(pytester)
    assert len(runs) == 6
    assert {run.status for run in runs} == {"passed"}
    assert {run.worker for run in runs} == {"main"}
    assert sorted(run.params["i"] for run in runs) == list(range(6))
