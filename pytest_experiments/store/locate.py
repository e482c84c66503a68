"""Where the store is: ``--xp-store``, else ``PYTEST_XP_STORE``, else the ``xp_store`` ini key,
else ``<rootdir>/.experiments``; and where a server store's run folders are: ``--xp-artifacts``,
else ``PYTEST_XP_ARTIFACTS``, else the ``xp_artifacts`` ini key, else
``<rootdir>/.experiments-artifacts``.

A store is a folder (a path, made absolute) or a server store's URL (``postgresql://...``,
kept as it is).

Which store a session or a command uses; what can be asked of a location once chosen (its
backend, whether it exists) is :mod:`location`. The plugin asks pytest's own config;
:func:`find_store` answers the same question from a plain directory (for ``load()`` and the
command line) by looking for the ini file the way pytest does.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

ENV_VAR = "PYTEST_XP_STORE"
INI_KEY = "xp_store"
DEFAULT_DIRNAME = ".experiments"
ARTIFACTS_ENV_VAR = "PYTEST_XP_ARTIFACTS"
ARTIFACTS_INI_KEY = "xp_artifacts"
#: A server store's run folders when no artefacts folder is given: beside the store's default.
DEFAULT_ARTIFACTS_DIRNAME = ".experiments-artifacts"


def resolve(option: str | None, ini_value: str, ini_dir: Path, rootdir: Path, cwd: Path) -> Path | str:
    """Apply the precedence rule; relative paths are taken from where each value was given,
    a server store's URL is returned as it is (a ``str``)."""
    for value, base in ((option, cwd), (os.environ.get(ENV_VAR), cwd), (ini_value, ini_dir)):
        if value:
            # Imported only when a store is named: a plain session's start-up stays without it.
            from pytest_experiments.store.server_url import is_server_url

            return value.strip() if is_server_url(value.strip()) else absolute(value, base)
    return rootdir / DEFAULT_DIRNAME


def resolve_artifacts(option: str | None, ini_value: str, ini_dir: Path, cwd: Path) -> Path | None:
    """The artefacts folder given (option > environment > ini), or None when none is."""
    for value, base in ((option, cwd), (os.environ.get(ARTIFACTS_ENV_VAR), cwd), (ini_value, ini_dir)):
        if value:
            return absolute(value, base)
    return None


def absolute(path: str, base: Path) -> Path:
    candidate = Path(os.path.expanduser(path))
    return candidate if candidate.is_absolute() else base / candidate


def find_store(start: str | Path | None = None) -> Path | str:
    """The store pytest would use when started in ``start`` (default: the current directory)."""
    cwd = Path(start or os.getcwd()).resolve()
    found = find_ini(cwd)
    if found is None:
        rootdir = _find_upwards(cwd, "setup.py") or _find_upwards(cwd, "pyproject.toml") or cwd
        return resolve(None, "", rootdir, rootdir, cwd)
    ini_dir, values = found
    return resolve(None, str(values.get(INI_KEY, "")), ini_dir, ini_dir, cwd)


def find_artifacts(start: str | Path | None = None) -> Path:
    """The artefacts folder of a server store pytest would use when started in ``start``."""
    cwd = Path(start or os.getcwd()).resolve()
    found = find_ini(cwd)
    if found is None:
        rootdir = _find_upwards(cwd, "setup.py") or _find_upwards(cwd, "pyproject.toml") or cwd
        given = resolve_artifacts(None, "", rootdir, cwd)
    else:
        rootdir, values = found
        given = resolve_artifacts(None, str(values.get(ARTIFACTS_INI_KEY, "")), rootdir, cwd)
    return given if given is not None else rootdir / DEFAULT_ARTIFACTS_DIRNAME


def ini_lines(key: str, start: str | Path | None = None) -> list[str]:
    """A line-list ini key (such as ``xp_compare``) of the pytest config pytest would use."""
    found = find_ini(Path(start or os.getcwd()).resolve())
    value = found[1].get(key, "") if found else ""
    if isinstance(value, list):
        return [str(line) for line in value]
    return [line for line in str(value).splitlines() if line.strip()]


def _find_upwards(start: Path, filename: str) -> Path | None:
    for directory in (start, *start.parents):
        if (directory / filename).is_file():
            return directory
    return None


def find_ini(start: Path) -> tuple[Path, dict[str, Any]] | None:
    """The first directory upwards with a pytest configuration, and that configuration's values."""
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
                values = _read_ini(path)
                if values is not None:
                    return directory, values
    return None


def _read_ini(path: Path) -> dict[str, Any] | None:
    """The pytest section of a config file, or None if the file is not a pytest config."""
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
            return dict(section) if isinstance(section, dict) else None
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(path, encoding="utf-8")
    except (OSError, ValueError, configparser.Error):
        return None
    section_name = "tool:pytest" if path.name == "setup.cfg" else "pytest"
    if parser.has_section(section_name):
        return dict(parser.items(section_name))
    return {} if path.name in ("pytest.ini", ".pytest.ini") else None


def artifacts_for(location: str | Path, start: str | Path | None = None) -> Path | None:
    """What ``Store.open`` takes as ``artifacts`` for ``location``: for a server store, the
    artefacts folder pytest would use from ``start``; None for a store folder (its run folders
    are inside it)."""
    from pytest_experiments.store.server_url import is_server_url

    return find_artifacts(start) if is_server_url(location) else None
