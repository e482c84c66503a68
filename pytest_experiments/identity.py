"""Which tests are experiments, and the identity of a grid point.

A grid point is identified by its module, its experiment function and the hash of its
parameters, never by the node id string (which pytest derives from positions for
objects and long strings, so reordering a grid shifts ids).

Resume computes this for every collected item (100,000 in a big grid), so the per-item
work is kept small: names are computed once per function and marks once per parent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from pytest_experiments.values import is_plain, param_hash, to_json_value

_EXPERIMENT_MARKS = ("experiment", "grid")
# Per collector node: whether a mark on it or its parents makes its tests experiments.
_MARKED_KEY = pytest.StashKey[bool]()
# Per collector node: {function name: (module, experiment)}.
_NAMES_KEY = pytest.StashKey[dict[str, tuple[str, str]]]()
_GRID_POINT_KEY = pytest.StashKey["GridPoint"]()


def _marked(node: pytest.Item | pytest.Collector | None) -> bool:
    if node is None:
        return False
    found = node.stash.get(_MARKED_KEY, None)
    if found is None:
        own = any(mark.name in _EXPERIMENT_MARKS for mark in node.own_markers)
        found = node.stash[_MARKED_KEY] = own or _marked(node.parent)
    return found


def is_experiment(item: pytest.Item) -> bool:
    """Marked ``experiment`` or ``grid`` (function, class or module), or requesting ``xp`` / ``xp_dir``."""
    if not isinstance(item, pytest.Function):
        return False
    names = item.fixturenames
    if "xp" in names or "xp_dir" in names:
        return True
    # A grid mark means nothing without this plugin: a grid is always an experiment.
    return any(mark.name in _EXPERIMENT_MARKS for mark in item.own_markers) or _marked(item.parent)


def experiment_name(item: pytest.Function) -> str:
    """The test function's name, qualified by its classes (``TestModel.test_fit``)."""
    classes = [part for part in item.nodeid.split("::")[1:-1] if part != "()"]
    return ".".join([*classes, item.originalname])


def _names(item: pytest.Function) -> tuple[str, str]:
    """(module, experiment) of ``item``, computed once per function (grids have many items)."""
    parent = item.parent
    if parent is None:
        return item.nodeid.split("::", 1)[0], experiment_name(item)
    names = parent.stash.setdefault(_NAMES_KEY, {})
    found = names.get(item.originalname)
    if found is None:
        found = names[item.originalname] = (item.nodeid.split("::", 1)[0], experiment_name(item))
    return found


def _params(item: pytest.Function) -> tuple[dict[str, Any], dict[str, Any]]:
    """The item's parameter values, and the same made JSON-safe (the same dict when already plain)."""
    callspec = getattr(item, "callspec", None)
    params = dict(callspec.params) if callspec is not None else {}
    return params, (params if is_plain(params) else to_json_value(params))


def point_key(item: pytest.Function) -> tuple[str, str, str]:
    """(module, experiment, parameter hash): what resume looks a grid point up by."""
    module, experiment = _names(item)
    callspec = getattr(item, "callspec", None)
    return module, experiment, param_hash(callspec.params if callspec is not None else {})


@dataclass(slots=True)
class GridPoint:
    """Where a run belongs: its module, experiment and parameters."""

    module: str
    experiment: str
    #: The parameter values themselves, as the test receives them.
    params: dict[str, Any]
    #: The same values made JSON-safe, as stored.
    stored_params: dict[str, Any]
    param_hash: str


def grid_point(item: pytest.Function) -> GridPoint:
    """The grid point of ``item``, computed once per item."""
    found = item.stash.get(_GRID_POINT_KEY, None)
    if found is None:
        params, stored = _params(item)
        module, experiment = _names(item)
        found = item.stash[_GRID_POINT_KEY] = GridPoint(module, experiment, params, stored, param_hash(stored))
    return found
