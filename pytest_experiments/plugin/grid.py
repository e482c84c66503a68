"""``@pytest.mark.grid(name=values, ..., where=None)``: parameter grids.

Each mark is the cartesian product of its axes, filtered by ``where(**point) -> bool``;
several marks at one level (the function, its class, its module) give the union of their
grids (conditional grids); marks at different levels multiply, as stacked ``parametrize``
marks do. Ids read ``lr=0.01-seed=0``. A mark without axes is left alone.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

import pytest

from pytest_experiments.plugin.identity import keep_grid_ids
from pytest_experiments.values import canonical_json, identity_values, is_plain, known_equal, safe_repr

_ID_TYPES = (str, int, float, bool, type(None))
_MAX_ID_VALUE = 40
_PARAMETER_SET = type(pytest.param())


def _fail(function: str, message: str) -> NoReturn:
    __tracebackhide__ = True
    pytest.fail(f"grid on {function}: {message}", pytrace=False)


def _axes_of(
    mark: pytest.Mark, function: str, argnames: Iterable[str]
) -> tuple[dict[str, list[Any]], Callable[..., Any] | None]:
    if mark.args:
        _fail(function, "give axes as keywords, e.g. @pytest.mark.grid(lr=[0.1, 0.01])")
    axes = dict(mark.kwargs)
    where = axes.pop("where", None)
    if where is not None and not callable(where):
        _fail(function, f"where={where!r} is not callable; pass a function taking the axes as keywords")
    if not axes:
        _fail(function, "a grid needs at least one axis")
    known = set(argnames)
    values: dict[str, list[Any]] = {}
    for name, axis in axes.items():
        if name not in known:
            _fail(
                function,
                f"axis {name!r} is not an argument of the function; add it to the signature or remove the axis",
            )
        if isinstance(axis, (str, bytes)) or not isinstance(axis, Iterable):
            _fail(function, f"axis {name!r} must be a list of values, not {type(axis).__name__}")
        values[name] = list(axis)
        if not values[name]:
            _fail(function, f"axis {name!r} is empty; give it at least one value")
        for value in values[name]:
            if isinstance(value, _PARAMETER_SET) and len(value.values) != 1:
                _fail(
                    function, f"axis {name!r}: a pytest.param in a grid axis holds one value, not {len(value.values)}"
                )
    return values, where


def _check_where(where: Callable[..., Any], function: str, names: list[str]) -> None:
    """Fail collection unless ``where`` accepts every axis as a keyword argument."""
    try:
        signature = inspect.signature(where)
    except (TypeError, ValueError):
        return  # no signature to read (some builtins): its calls will tell
    try:
        signature.bind(**dict.fromkeys(names))
        return
    except TypeError as exc:
        problem = str(exc)
    # Failed outside the except block: the message alone, no chained exception.
    axes = ", ".join(names)
    _fail(
        function,
        f"where= must accept every axis as a keyword ({axes}), but {problem}; "
        f"write where=lambda {axes}: ..., or add **_ to take the axes it does not use",
    )


def _keep(where: Callable[..., Any], function: str, point: dict[str, Any]) -> bool:
    """``where(**point)``; an exception in it is a collection error naming the point."""
    try:
        return bool(where(**point))
    except Exception as exc:
        error = exc
    shown = ", ".join(f"{name}={safe_repr(value)}" for name, value in point.items())
    _fail(function, f"where= raised {type(error).__name__} for {shown[:80]}: {error}")


def _seen(seen: dict[str, list[dict[str, Any]]], point: dict[str, Any]) -> bool:
    """Whether ``point`` is in ``seen`` already (adding it if not).

    Points are told apart as grid points are (numpy arrays by content); values shown alike
    by their repr are compared, and different ones both kept, for collection to refuse.
    """
    values, ambiguous = (point, set()) if is_plain(point) else identity_values(point)
    same_key = seen.setdefault(canonical_json(values), [])
    if any(all(known_equal(point[name], other[name]) for name in ambiguous) for other in same_key):
        return True
    same_key.append(point)
    return False


def _format(name: str, value: Any, index: int, given: str | None) -> str:
    if given is not None:
        return f"{name}={given}"
    if isinstance(value, _ID_TYPES) and len(str(value)) <= _MAX_ID_VALUE:
        return f"{name}={value}"
    return f"{name}={name}{index}"


def _unwrap(entry: Any) -> tuple[Any, str | None, tuple[pytest.MarkDecorator | pytest.Mark, ...]]:
    """(value, explicit id, marks) of an axis entry, which may be ``pytest.param(value, id=, marks=)``."""
    if isinstance(entry, _PARAMETER_SET):
        return entry.values[0], entry.id if isinstance(entry.id, str) else None, tuple(entry.marks)
    return entry, None, ()


@dataclass(frozen=True)
class Grid:
    """The union of a function's grid marks, ready for ``metafunc.parametrize``."""

    names: list[str]
    #: One ``pytest.param`` a point, holding its id and the marks of its values.
    points: list[Any]
    #: Per point, the ids given to its values with ``pytest.param(value, id=...)``.
    given_ids: list[dict[str, str]]


def grid_points(marks: list[pytest.Mark], function: str, argnames: Iterable[str]) -> Grid:
    """The points of ``marks``' union, each point once, with their ids."""
    argnames = list(argnames)
    grids = [_axes_of(mark, function, argnames) for mark in marks]
    names = list(grids[0][0])
    for axes, _ in grids[1:]:
        missing = set(names) ^ set(axes)
        if missing:
            axis = sorted(missing)[0]
            _fail(
                function,
                f"axis {axis!r} is missing from one of its grid marks; every grid mark must name the same axes (use {axis}=[None] where it does not apply)",
            )
    for _, where in grids:
        if where is not None:
            _check_where(where, function, names)
    grid = Grid(names, [], [])
    seen: dict[str, list[dict[str, Any]]] = {}
    for axes, where in grids:
        for combination in itertools.product(*(enumerate(axes[name]) for name in names)):
            entries = {name: (index, *_unwrap(entry)) for name, (index, entry) in zip(names, combination, strict=True)}
            point = {name: value for name, (_, value, _, _) in entries.items()}
            if where is not None and not _keep(where, function, point):
                continue
            if _seen(seen, point):  # the union of grids holds each point once
                continue
            item_id = "-".join(_format(name, value, index, given) for name, (index, value, given, _) in entries.items())
            marks_of = [mark for _, _, _, own in entries.values() for mark in own]
            grid.points.append(pytest.param(*point.values(), id=item_id, marks=marks_of))
            grid.given_ids.append({name: given for name, (_, _, given, _) in entries.items() if given is not None})
    return grid


def marks_by_level(definition: pytest.Item) -> list[list[pytest.Mark]]:
    """``definition``'s grid marks with axes, grouped by the node carrying them (function,
    class, module), closest level first, each level's marks in the order they were written.

    A bare ``@pytest.mark.grid`` may be the suite's own marker of that name: left out.
    """
    levels: dict[int, list[pytest.Mark]] = {}  # id(node): nodes hash in Python, and id is enough here
    for node, mark in definition.iter_markers_with_node("grid"):
        if mark.args or mark.kwargs:
            levels.setdefault(id(node), []).append(mark)
    # Marks are found closest first; keep the order in which they were written.
    return [marks[::-1] for marks in levels.values()]


def _check_levels(grids: list[Grid], function: str) -> None:
    """Each axis at one level: the levels' grids multiply, and a value is given once."""
    seen: set[str] = set()
    for grid in grids:
        twice = seen.intersection(grid.names)
        if twice:
            axis = sorted(twice)[0]
            _fail(
                function,
                f"axis {axis!r} is in grid marks at two levels (function, class, module); "
                "marks at different levels multiply, so give each axis at one level",
            )
        seen.update(grid.names)


def generate_grid(metafunc: pytest.Metafunc) -> None:
    """Turn ``metafunc``'s ``grid`` marks into ``metafunc.parametrize`` calls: one per level
    (function, class, module), which pytest multiplies as it does stacked ``parametrize``
    marks; the marks of one level give the union of their grids."""
    levels = marks_by_level(metafunc.definition)
    if not levels:
        return
    function = metafunc.function.__name__
    grids = [grid_points(marks, function, metafunc.fixturenames) for marks in levels]
    _check_levels(grids, function)
    for grid in grids:
        if not grid.points:
            _fail(function, "where= left no point in the grid")
    for grid in grids:
        metafunc.parametrize(grid.names, grid.points)
    given = [(grid.names, grid.points, grid.given_ids) for grid in grids if any(grid.given_ids)]
    if given:  # they identify values JSON cannot hold (see identity.py)
        keep_grid_ids(metafunc.definition, given)
