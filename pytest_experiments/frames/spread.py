"""The runs' JSON mappings (parameters, metrics, tags, metadata) as one column per name.

A store holds few distinct sequences of names (one per experiment, give or take a logged
parameter or a tag), so the runs are grouped by theirs: each group's values are transposed in
one call and placed in their column by numpy, rather than looked up once per run and name
(1.6 million ``dict.get`` calls for 100,000 runs). The groups are also what a kept frame notes
of each run (:class:`.patch.Notes`), and the type of each value is found per group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, count, repeat
from operator import itemgetter
from typing import Any

import numpy as np

#: The type of a value an inferred column is built from (missing or None: NONE).
NONE, INT, FLOAT, BOOL, STR, OTHER, NAN = range(7)
_CODES = {type(None): NONE, int: INT, float: FLOAT, bool: BOOL, str: STR}
# The types of a metric's values (None: none) that numpy turns into floats as pandas does.
_NUMBERS = frozenset({float, int, bool, type(None)})

#: A run's names in one section: a tuple of names per part (parameters: declared, then logged).
Key = tuple[tuple[str, ...], ...]


@dataclass
class Section:
    """One section of the runs spread into columns, with what a kept frame notes of it."""

    #: The distinct keys of the runs, in order of first appearance.
    keys: list[Key]
    #: Each run's key, as its position in :attr:`keys`.
    ids: np.ndarray
    #: One array of values per name (None where a run has none), names in order of first appearance.
    values: dict[str, np.ndarray]
    #: The type code of each value (:data:`NONE`...) of each name, when asked for.
    codes: dict[str, np.ndarray]

    def lists(self) -> dict[str, list[Any]]:
        """The values of each name as a list."""
        return {name: values.tolist() for name, values in self.values.items()}


def spread(parts: Sequence[Sequence[dict[str, Any]]], *, codes: bool = False, floats: bool = False) -> Section:
    """The mappings of ``parts`` (each a mapping per run; where two parts of a run hold the same
    name, the later one's value wins) spread into one array per name; with ``codes``, the type
    code of every value too. With ``floats`` (metrics), the arrays are of floats (NaN for None
    and where a run has none) when every value is a number, None or a boolean."""
    if floats:
        try:
            return _spread(parts, codes, floats=True)
        except _NotNumbers:
            pass  # given as they are, for pandas to convert (or refuse) as it does
    return _spread(parts, codes, floats=False)


class _NotNumbers(Exception):
    """A value that numpy would convert otherwise than pandas does (text: ``"1.5"``)."""


def _spread(parts: Sequence[Sequence[dict[str, Any]]], codes: bool, floats: bool) -> Section:
    rows = len(parts[0])
    keys, ids = _keys(parts)
    names = dict.fromkeys(chain.from_iterable(chain.from_iterable(keys)))
    section = Section(keys, ids, {name: _empty(rows, floats) for name in names}, {})
    if codes:
        section.codes = {name: np.zeros(rows, dtype=np.int8) for name in names}
    if not names:
        return section
    order = np.argsort(ids, kind="stable")  # the rows of each key, together and in order
    ends = np.cumsum(np.bincount(ids, minlength=len(keys))).tolist()
    for key, start, end in zip(keys, [0, *ends[:-1]], ends, strict=True):
        members = order[start:end]
        positions = members.tolist()
        for part, part_names in zip(parts, key, strict=True):
            if part_names:
                _place(section, part_names, _gathered(part, positions), members, floats)
    return section


def _keys(parts: Sequence[Sequence[dict[str, Any]]]) -> tuple[list[Key], np.ndarray]:
    """The distinct keys of the runs (a tuple of names per part), in order of first appearance,
    and each run's key as its position among them.

    Found per part as the first run with the same names (one hash of a tuple per run and part,
    where a tuple of those tuples per run was hashed twice), the parts then combined as numbers."""
    rows = len(parts[0])
    combined: np.ndarray | None = None
    for part in parts:
        table: dict[tuple[str, ...], int] = {}
        # Each run's first run with its names: setdefault keeps the first row number it was given.
        first = np.fromiter(map(table.setdefault, map(tuple, part), count()), dtype=np.int64, count=rows)
        # The parts so far, renumbered from 0 (so that the next combination stays below rows squared).
        combined = first if combined is None else _first_seen(combined * rows + first)
    assert combined is not None  # one part at least
    if len(parts) == 1:
        # First rows ascending are the keys in order of first appearance: their rank is the id.
        firsts, ids = np.unique(combined, return_inverse=True)
        return [(tuple(parts[0][row]),) for row in firsts.tolist()], ids.reshape(-1).astype(np.int32)
    firsts = np.unique(combined, return_index=True)[1] if rows else np.zeros(0, dtype=np.int64)
    keys: list[Key] = [tuple(tuple(part[row]) for part in parts) for row in firsts.tolist()]
    return keys, combined.astype(np.int32)


def _first_seen(numbers: np.ndarray) -> np.ndarray:
    """``numbers`` renumbered 0, 1, 2... in order of first appearance."""
    distinct, first, inverse = np.unique(numbers, return_index=True, return_inverse=True)
    rank = np.empty(len(distinct), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(distinct))
    renumbered: np.ndarray = rank[inverse.reshape(-1)]
    return renumbered


def _gathered(part: Sequence[dict[str, Any]], positions: list[int]) -> Sequence[dict[str, Any]]:
    """The mappings of ``part`` at ``positions`` (ascending): all of it as it is when they are all."""
    if len(positions) == len(part):
        return part
    return itemgetter(*positions)(part) if len(positions) > 1 else [part[positions[0]]]


def _empty(rows: int, floats: bool) -> np.ndarray:
    """A column of ``rows`` runs without a value: NaN, or None."""
    return np.full(rows, np.nan) if floats else np.full(rows, None, dtype=object)


def _place(
    section: Section, names: tuple[str, ...], mappings: Sequence[dict[str, Any]], rows: np.ndarray, floats: bool
) -> None:
    """The values of ``mappings`` (each holding ``names``, in that order) in the rows ``rows``."""
    # Every value of every mapping in one list (run by run), each name's then a slice with a
    # step: no tuple per run, nor an iterator per run and name as a transposition makes.
    width = len(names)
    flat = list(chain.from_iterable(map(dict.values, mappings)))
    if len(flat) != width * len(mappings):
        raise ValueError("mappings of other names than their key's")
    if floats:
        if not set(map(type, flat)) <= _NUMBERS:
            raise _NotNumbers
        table = np.array(flat, dtype=np.float64).reshape(len(mappings), width)  # None: NaN
        for column, name in enumerate(names):
            section.values[name][rows] = table[:, column]
        return
    for column, name in enumerate(names):
        values = flat[column::width]
        section.values[name][rows] = objects(values)
        if section.codes:
            section.codes[name][rows] = codes_of(values)


def objects(values: Sequence[Any]) -> np.ndarray:
    """``values`` as a 1-d object array, lists and mappings among them held as they are."""
    try:
        return np.fromiter(values, dtype=object, count=len(values))
    except (TypeError, ValueError):  # a numpy without object iterators (before 1.23)
        array = np.empty(len(values), dtype=object)
        for row, value in enumerate(values):
            array[row] = value
        return array


def codes_of(values: Sequence[Any]) -> np.ndarray:
    """The type code of each of ``values``; NaN has its own (pandas tells it from None)."""
    kinds = set(map(type, values))
    if len(kinds) == 1 and float not in kinds:  # most often: one type, one code
        return np.full(len(values), _CODES.get(kinds.pop(), OTHER), dtype=np.int8)
    codes = np.fromiter(map(_CODES.get, map(type, values), repeat(OTHER)), dtype=np.int8, count=len(values))
    floats = np.flatnonzero(codes == FLOAT)
    if len(floats):
        numbers = np.array(itemgetter(*floats.tolist())(values) if len(floats) > 1 else [values[floats[0]]])
        codes[floats[np.isnan(numbers.astype(np.float64))]] = NAN
    return codes
