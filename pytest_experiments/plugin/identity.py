"""Which tests are experiments, and the identity of a grid point.

A grid point is identified by its module, its experiment function and the hash of its
parameters, never by the node id string (which pytest derives from positions for
objects and long strings, so reordering a grid shifts ids). JSON values count as
themselves, numpy arrays by content, and any other value by the id the user gave it, else
by its repr; a function whose different values would count as one grid point is refused
at collection (:func:`check_distinct`).

Resume computes this for every collected item (100,000 in a big grid), so the per-item
work is kept small: names are computed once per function and marks once per parent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from pytest_experiments.values import (
    identity_hash,
    identity_values,
    is_plain,
    known_equal,
    to_json_value,
    volatile_params,
)

# The fixtures that make a test an experiment, when the test receives ours (defined in ``plugin/__init__.py``).
_RUN_FIXTURES = ("xp", "xp_run", "xp_dir")
_RUN_FIXTURE_NAMES = frozenset(_RUN_FIXTURES)
_FIXTURES_MODULE = "pytest_experiments.plugin"
# pytest-repeat's parameter (``--count``), and the name it is stored under.
_REPEAT_STEP = "__pytest_repeat_step_number"
REPEAT = "repeat"
# Per collector node: whether a mark on it or its parents makes its tests experiments.
_MARKED_KEY = pytest.StashKey[bool]()
# Per collector node: {function name: (module, experiment)}.
_NAMES_KEY = pytest.StashKey[dict[str, tuple[str, str]]]()
_IDENTITY_KEY = pytest.StashKey["Identity"]()
_PARAMETER_SET = type(pytest.param())
_ID_TYPES = (str, int, float, bool)
# Per collector node: {function name: per grid level, (its axes, {its values' key: {axis: id given}})}.
_GRID_IDS_KEY = pytest.StashKey[dict[str, list[tuple[list[str], dict[tuple[int, ...], dict[str, str]]]]]]()
# Per collector node: {id of a parametrize mark: {its values' key: position}}.
_POSITIONS_KEY = pytest.StashKey[dict[int, dict[tuple[int, ...], int]]]()


def is_experiment_mark(mark: pytest.Mark) -> bool:
    """``experiment``, or a ``grid`` with something in it: a bare ``@pytest.mark.grid`` may be
    another plugin's or the suite's own marker, and is left alone."""
    return mark.name == "experiment" or (mark.name == "grid" and bool(mark.args or mark.kwargs))


def _marked(node: pytest.Item | pytest.Collector | None) -> bool:
    if node is None:
        return False
    found = node.stash.get(_MARKED_KEY, None)
    if found is None:
        own = any(is_experiment_mark(mark) for mark in node.own_markers)
        found = node.stash[_MARKED_KEY] = own or _marked(node.parent)
    return found


def is_experiment(item: pytest.Item) -> bool:
    """Marked ``experiment`` or ``grid`` (function, class or module), or receiving this plugin's
    ``xp``, ``xp_run`` or ``xp_dir`` fixture (not a suite's own of that name)."""
    if not isinstance(item, pytest.Function):
        return False
    names = item.fixturenames
    # The set test first, in C: most experiments take none of these fixtures.
    if not _RUN_FIXTURE_NAMES.isdisjoint(names) and any(
        name in names and _receives_ours(item, name) for name in _RUN_FIXTURES
    ):
        return True
    # A grid mark means nothing without this plugin: a grid is always an experiment.
    return any(is_experiment_mark(mark) for mark in item.own_markers) or _marked(item.parent)


def _receives_ours(item: pytest.Function, name: str) -> bool:
    """Whether the fixture ``name`` that ``item`` receives is this plugin's (or one built on it).

    A suite may define a fixture of the same name: pytest gives the test the closest
    definition (a conftest, module or class one overrides a plugin's), which may request the
    one it overrides (``def xp(xp)``). pytest has no public API naming the definition an item
    uses, so this reads ``item._fixtureinfo`` (pytest 8 and 9: ``name2fixturedefs[name]``
    lists the definitions visible to the item, the one it uses last); without it, the name
    alone decides.
    """
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {}).get(name)
    if not definitions:
        return True
    for definition in reversed(definitions):
        if getattr(definition.func, "__module__", None) == _FIXTURES_MODULE:
            return True
        if name not in definition.argnames:  # overrides ours without using it
            return False
    return False


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


def _callspec_params(item: pytest.Function) -> dict[str, Any]:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return {}
    params: dict[str, Any] = callspec.params
    return _with_repeat(params) if _REPEAT_STEP in params else params


def _with_repeat(params: dict[str, Any]) -> dict[str, Any]:
    """pytest-repeat's step (0, 1, ... under ``--count``) as the parameter ``repeat`` (1, 2, ...,
    as its ids read): each repetition is a grid point of its own, which resume counts."""
    name = REPEAT if REPEAT not in params else _REPEAT_STEP  # the test's own ``repeat`` keeps its name
    return {
        (name if key == _REPEAT_STEP else key): (value + 1 if key == _REPEAT_STEP else value)
        for key, value in params.items()
    }


def _params(item: pytest.Function) -> tuple[dict[str, Any], dict[str, Any]]:
    """The item's parameter values, and the same made JSON-safe (the same dict when already plain)."""
    params = dict(_callspec_params(item))
    return params, (params if is_plain(params) else to_json_value(params))


@dataclass(frozen=True, slots=True)
class Identity:
    """What identifies an item's grid point among its function's."""

    hash: str
    #: Each parameter as it counts for identity (JSON).
    values: dict[str, Any]
    #: Parameters counted by a repr or an explicit id, which different values may share.
    ambiguous: frozenset[str]


def identity(item: pytest.Function) -> Identity:
    """The identity of ``item``'s parameters (see the module doc), computed once per item."""
    found = item.stash.get(_IDENTITY_KEY, None)
    if found is None:
        params = _callspec_params(item)
        if is_plain(params):
            found = Identity(identity_hash(params), params, frozenset())
        else:
            values, ambiguous = identity_values(params)
            if ambiguous:
                ids = explicit_ids(item)
                values.update((name, ids[name]) for name in ambiguous if name in ids)
            found = Identity(identity_hash(values), values, frozenset(ambiguous))
        item.stash[_IDENTITY_KEY] = found
    return found


def point_key(item: pytest.Function) -> tuple[str, str, str]:
    """(module, experiment, parameter hash): what resume looks a grid point up by."""
    module, experiment = _names(item)
    params = _callspec_params(item)
    # Plain values (the usual grid) are hashed directly: resume does this for every item.
    return module, experiment, (identity_hash(params) if is_plain(params) else identity(item).hash)


def volatile_parameters(item: pytest.Function) -> list[str]:
    """Parameters counted by a repr holding a memory address: never the same in two sessions."""
    found = identity(item)
    return volatile_params({name: found.values[name] for name in sorted(found.ambiguous)})


def _parametrize_arguments(mark: pytest.Mark) -> tuple[list[str], Any, Any]:
    """(argnames, argvalues, ids) of a ``parametrize`` mark, however they were passed."""
    args, kwargs = mark.args, mark.kwargs
    names = args[0] if args else kwargs.get("argnames")
    values = args[1] if len(args) > 1 else kwargs.get("argvalues")
    ids = args[3] if len(args) > 3 else kwargs.get("ids")
    if isinstance(names, str):
        return [name.strip() for name in names.split(",") if name.strip()], values, ids
    if isinstance(names, (list, tuple)):
        return [str(name) for name in names], values, ids
    return [], values, ids


def _id_of(value: Any, ids: Any, given: Any) -> str | None:
    """The explicit id of one parameter value, as pytest would take it; None for pytest's own."""
    if given is None and callable(ids):
        try:
            given = ids(value)
        except Exception:  # pytest reported it at collection already
            return None
    return str(given) if isinstance(given, _ID_TYPES) else None


def explicit_ids(item: pytest.Function) -> dict[str, str]:
    """Parameter name -> the id the user gave its value in a ``parametrize`` mark
    (``pytest.param(..., id=)``, ``ids=[...]`` or ``ids=callable``) or a ``grid`` mark
    (``pytest.param(value, id=)`` in an axis).

    pytest's own ids for objects (``model0``) are positions, so they never count.
    """
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return {}
    found: dict[str, str] = {}
    for mark in item.iter_markers("parametrize"):  # closest first: a function's mark wins
        names, values, ids = _parametrize_arguments(mark)
        if not names or any(name not in callspec.params for name in names):
            continue
        index = _position(item, mark, names, values)
        entry = values[index] if index is not None else None
        given = entry.id if isinstance(entry, _PARAMETER_SET) else None
        if given is None and index is not None and isinstance(ids, Sequence) and not isinstance(ids, str):
            given = ids[index] if index < len(ids) else None
        for name in names:
            own = _id_of(callspec.params.get(name), ids, given)
            if own is not None:
                found.setdefault(name, own)
    for name, given in _grid_ids(item).items():
        found.setdefault(name, given)
    return found


def _values_key(values: Sequence[Any]) -> tuple[int, ...]:
    """What finds a parameter set among a mark's: the identity of its values, which pytest
    hands to the item unchanged."""
    return tuple(id(value) for value in values)


def _position(item: pytest.Function, mark: pytest.Mark, names: list[str], values: Any) -> int | None:
    """Where ``item``'s values of ``names`` stand among the ``values`` of a ``parametrize`` mark.

    Not ``callspec.indices``: pytest (9) numbers a direct parameter's index over the whole
    product of stacked marks, not among its own mark's values. Each mark's positions are
    computed once (per parent node), so a large grid stays linear.
    """
    if not isinstance(values, Sequence):
        return None
    cache = item.parent.stash.setdefault(_POSITIONS_KEY, {}) if item.parent is not None else {}
    positions = cache.get(id(mark))  # marks live as long as the session's functions
    if positions is None:
        positions = cache[id(mark)] = {}
        for index, entry in enumerate(values):
            entry_values = entry.values if isinstance(entry, _PARAMETER_SET) else (entry,) if len(names) == 1 else entry
            if isinstance(entry_values, Sequence) and len(entry_values) == len(names):
                positions.setdefault(_values_key(entry_values), index)
    params = item.callspec.params
    return positions.get(_values_key([params[name] for name in names]))


def keep_grid_ids(definition: pytest.Function, levels: list[tuple[list[str], list[Any], list[dict[str, str]]]]) -> None:
    """Note the ids given to values in ``definition``'s grid marks, for :func:`explicit_ids`:
    per level (one ``parametrize`` call), its axes, its points (``pytest.param`` sets) and
    per point the ids given."""
    parent = definition.parent
    if isinstance(parent, (pytest.Module, pytest.Class)):
        kept = [
            (names, {_values_key(point.values): ids for point, ids in zip(points, given, strict=True) if ids})
            for names, points, given in levels
        ]
        parent.stash.setdefault(_GRID_IDS_KEY, {})[definition.originalname] = kept


def _grid_ids(item: pytest.Function) -> dict[str, str]:
    """The ids given to ``item``'s values in its grid marks (see :func:`keep_grid_ids`)."""
    parent = item.parent
    recorded = parent.stash.get(_GRID_IDS_KEY, {}).get(item.originalname) if parent is not None else None
    found: dict[str, str] = {}
    params = item.callspec.params
    for names, given in recorded or ():
        if all(name in params for name in names):
            found.update(given.get(_values_key([params[name] for name in names]), {}))
    return found


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
    """The grid point of ``item`` (computed once per run: a run keeps what it needs of it)."""
    params, stored = _params(item)
    module, experiment = _names(item)
    digest = identity_hash(params) if stored is params else identity(item).hash
    return GridPoint(module, experiment, params, stored, digest)


def check_distinct(items: list[pytest.Function]) -> None:
    """Fail collection when two of one function's experiment items have different values
    that count as the same grid point (same repr, same explicit id)."""
    for item in items:  # a loop: this runs for every collected item
        callspec = getattr(item, "callspec", None)
        if callspec is not None and not is_plain(callspec.params):
            break
    else:
        return  # plain values are their own identity: nothing to compare
    first: dict[str, pytest.Function] = {}
    for item in items:
        if not is_experiment(item):
            continue
        found = identity(item)
        other = first.setdefault(found.hash, item)
        if other is item:
            continue
        mine, theirs = _callspec_params(item), _callspec_params(other)
        for name in sorted(found.ambiguous | identity(other).ambiguous):
            if not known_equal(mine.get(name), theirs.get(name)):
                _refuse(experiment_name(item), name, found.values[name], other.name, item.name)


def _refuse(experiment: str, name: str, counted_as: Any, first: str, second: str) -> None:
    shown = json.dumps(counted_as, ensure_ascii=False)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    pytest.fail(
        f"{experiment}: parameter {name!r} has different values that count as one grid point, {shown} "
        f"({first} and {second}); give each value an id: @pytest.mark.parametrize(..., ids=[...]) "
        "or pytest.param(value, id=...) (in a grid axis too), or a repr that tells them apart",
        pytrace=False,
    )
