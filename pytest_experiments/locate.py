"""Where the store is: ``--xp-store``, else ``PYTEST_XP_STORE``, else the ``xp_store`` ini key,
else ``<rootdir>/.experiments``.

The plugin asks pytest's own config; :func:`find_store` answers the same question from a
plain directory (for ``load()`` and the command line) by looking for the ini file the way
pytest does.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_VAR = "PYTEST_XP_STORE"
INI_KEY = "xp_store"
DEFAULT_DIRNAME = ".experiments"


def resolve(option: str | None, ini_value: str, ini_dir: Path, rootdir: Path, cwd: Path) -> Path:
    """Apply the precedence rule; relative paths are taken from where each value was given."""
    if option:
        return _absolute(option, cwd)
    env = os.environ.get(ENV_VAR)
    if env:
        return _absolute(env, cwd)
    if ini_value:
        return _absolute(ini_value, ini_dir)
    return rootdir / DEFAULT_DIRNAME


def _absolute(path: str, base: Path) -> Path:
    candidate = Path(os.path.expanduser(path))
    return candidate if candidate.is_absolute() else base / candidate


def find_store(start: str | Path | None = None) -> Path:
    """The store pytest would use when started in ``start`` (default: the current directory)."""
    cwd = Path(start or os.getcwd()).resolve()
    found = _find_ini(cwd)
    if found is None:
        rootdir = _find_upwards(cwd, "setup.py") or _find_upwards(cwd, "pyproject.toml") or cwd
        return resolve(None, "", rootdir, rootdir, cwd)
    ini_dir, value = found
    return resolve(None, value, ini_dir, ini_dir, cwd)


def _find_upwards(start: Path, filename: str) -> Path | None:
    for directory in (start, *start.parents):
        if (directory / filename).is_file():
            return directory
    return None


def _find_ini(start: Path) -> tuple[Path, str] | None:
    """The first directory upwards with a pytest configuration, and its ``xp_store`` value."""
    for directory in (start, *start.parents):
        for name in (
            "pytest.toml",
            ".pytest.toml",
            "pytest.ini",
            ".pytest.ini",
            "pyproject.toml",
            "tox.ini",
            "setup.cfg",
        ):
            path = directory / name
            if path.is_file():
                value = _read_ini(path)
                if value is not None:
                    return directory, value
    return None


def _read_ini(path: Path) -> str | None:
    """The ``xp_store`` value of a pytest config file ("" when unset), or None if not a pytest config."""
    # Imported here: only load() and the command line look for ini files themselves.
    import configparser

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

    try:
        if path.suffix == ".toml":
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            if path.name == "pyproject.toml":
                tool = data.get("tool", {}).get("pytest")
                if not isinstance(tool, dict):
                    return None
                section = tool.get("ini_options", tool)
            else:
                section = data.get("pytest", data)
            return str(section.get(INI_KEY, ""))
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(path, encoding="utf-8")
    except (OSError, ValueError, configparser.Error):
        return None
    section_name = "tool:pytest" if path.name == "setup.cfg" else "pytest"
    if path.name in ("pytest.ini", ".pytest.ini") or parser.has_section(section_name):
        return parser.get(section_name, INI_KEY, fallback="")
    return None
