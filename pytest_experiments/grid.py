"""``@pytest.mark.grid(name=values, ..., where=None)``: parameter grids.

Each mark is the cartesian product of its axes, filtered by ``where(**point) -> bool``;
several marks on one function give the union of their grids (conditional grids). Ids
read ``lr=0.01-seed=0``.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

import pytest

from pytest_experiments.values import canonical_json, identity_values, is_plain, known_equal, safe_repr

_ID_TYPES = (str, int, float, bool, type(None))
_MAX_ID_VALUE = 40


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


def _format(name: str, value: Any, index: int) -> str:
    if isinstance(value, _ID_TYPES) and len(str(value)) <= _MAX_ID_VALUE:
        return f"{name}={value}"
    return f"{name}={name}{index}"


def grid_points(
    marks: list[pytest.Mark], function: str, argnames: Iterable[str]
) -> tuple[list[str], list[tuple[Any, ...]], list[str]]:
    """The axis names, the points (as value tuples) and their ids of ``marks``' union."""
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
    points: list[tuple[Any, ...]] = []
    ids: list[str] = []
    seen: dict[str, list[dict[str, Any]]] = {}
    for axes, where in grids:
        for combination in itertools.product(*(enumerate(axes[name]) for name in names)):
            point = {name: value for name, (_, value) in zip(names, combination, strict=True)}
            if where is not None and not _keep(where, function, point):
                continue
            if _seen(seen, point):  # the union of grids holds each point once
                continue
            points.append(tuple(point.values()))
            ids.append(
                "-".join(_format(name, value, index) for name, (index, value) in zip(names, combination, strict=True))
            )
    return names, points, ids


class GridPlugin:
    """Turns ``grid`` marks into ``metafunc.parametrize`` calls."""

    @pytest.hookimpl
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        marks = list(metafunc.definition.iter_markers("grid"))
        if not marks:
            return
        # Marks are found closest first; keep the order in which they were written.
        marks.reverse()
        names, points, ids = grid_points(marks, metafunc.function.__name__, metafunc.fixturenames)
        if not points:
            _fail(metafunc.function.__name__, "where= left no point in the grid")
        metafunc.parametrize(names, points, ids=ids)
