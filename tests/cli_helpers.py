"""Calling the ``pytest-experiments`` command line in-process (``cli.main``), output read with capsys.

Imported as ``from cli_helpers import ...`` (pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_experiments.cli import main


def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """``pytest-experiments *args``: its exit code, stdout and stderr."""
    capsys.readouterr()  # drop what in-process pytest sessions printed
    code = main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return code, out, err


def user_error(capsys: pytest.CaptureFixture[str], *args: str | Path) -> str:
    """Run a command that must fail with exit code 2, nothing on stdout and one line on stderr; return that line."""
    code, out, err = cli(capsys, *args)
    assert (code, out) == (2, ""), (code, out, err)
    assert err.count("\n") == 1, err
    assert err.endswith("\n"), err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pytest-experiments: error: ")
    assert "Traceback" not in err
    return lines[0]
