"""A kept frame patched with the runs changed since it was kept: exactly the frame a build from
the store gives, or None when that cannot be made sure (then the caller builds it).

Rows are simple: the runs not changed keep their row, the changed ones come from the store,
the deleted ones go, and :func:`~pytest_experiments.store.columns.run_columns`' order is
restored from each row's start time and row id. Columns are not: :func:`.build.columns_frame`
gives a column per name found in the runs, in the order names first appear, and pandas infers
the dtype of parameters, tags and ``error`` from the set of their values' types. So a kept
frame also notes, row by row, the names each run has (one id per distinct sequence of names)
and the type of each inferred value (:class:`Notes`). A column whose values' types, over the
patched rows, are those its kept column was built from, keeps its dtype: its rows are taken as
they are and the new ones converted to that dtype (as pandas would have). Any other inferred
column is built again from its values, as a build would (the kept ones given back exactly from
their column and types); a value that cannot be given back exactly (an integer of more than 53
bits held as a float) gives up.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd

from pytest_experiments.frames.build import BASE_COLUMNS, INFERRED, columns_frame, param_column
from pytest_experiments.frames.spread import INT, NAN, NONE, STR, Section, codes_of
from pytest_experiments.model import RunChanges, RunColumns

#: The sections whose names become columns, each under its prefix.
SECTIONS = {"params": "params.", "metrics": "metrics.", "tags": "tags."}
# Floats hold integers exactly up to here: a larger one read back from a float column may differ.
_EXACT_INT = 2**53


@dataclass
class Notes:
    """What a kept frame holds beside its columns, row for row, to be patched exactly."""

    #: The store's order of writing the runs, which breaks ties of start time.
    rowid: np.ndarray
    #: Start times as stored (the frame's own are rounded to nanoseconds).
    started: np.ndarray
    #: Each run's grid point: module, experiment and parameter hash joined by NUL.
    grid: list[str]
    #: For each inferred column, the type (NONE, INT...) of the value of each row.
    codes: dict[str, np.ndarray]
    #: For each section, the id of each row's sequence of names (in :attr:`names`).
    signatures: dict[str, np.ndarray]
    #: For each section, the names of each id, in order.
    names: dict[str, list[list[str]]]


def described(
    runs: RunColumns, rowid: list[int], param_hash: list[str], history: bool
) -> tuple[pd.DataFrame, Notes, dict[str, list[Any]]]:
    """The frame of ``runs`` (as :func:`.build.columns_frame` builds it), its notes, and the
    values its inferred columns were built from."""
    originals: dict[str, list[Any]] = {}
    sections: dict[str, Section] = {}
    frame = columns_frame(runs, originals=originals, sections=sections)
    return frame, notes_of(runs, originals, sections, rowid, param_hash, history), originals


def notes_of(
    runs: RunColumns,
    originals: dict[str, list[Any]],
    sections: dict[str, Section],
    rowid: list[int],
    param_hash: list[str],
    history: bool,
) -> Notes:
    """The notes of ``runs``, whose inferred columns were built from ``originals`` and whose
    sections were spread as ``sections`` (without grid points for a ``history`` frame, which
    keeps every run whatever its grid point)."""
    grid = [] if history else [f"{module}\0{experiment}\0{hash_}" for module, experiment, hash_ in zip(runs.module, runs.experiment, param_hash, strict=True)]  # fmt: skip
    codes = {}
    for name in originals:
        section, _, key = name.partition(".")
        spread = sections.get(section)
        # A parameter's or tag's types, found as it was spread; ``error``'s here.
        codes[name] = spread.codes[key] if spread is not None and key in spread.codes else codes_of(originals[name])
    return Notes(
        rowid=np.array(rowid, dtype=np.int64),
        started=np.array(runs.started_at, dtype=np.float64),
        grid=grid,
        codes=codes,
        signatures={section: sections[section].ids for section in SECTIONS},
        # A parameter's column comes from the declared names, then the logged ones (param_lists).
        names={section: [list(chain.from_iterable(key)) for key in sections[section].keys] for section in SECTIONS},
    )


# -- the rows ---------------------------------------------------------------------------


def _latest_rows(kept_mask: np.ndarray, notes: Notes, delta: Notes) -> tuple[np.ndarray, np.ndarray] | None:
    """The kept rows and changed runs that are the newest of their grid point (by start time,
    then row id: the store's rule), or None when one of the kept newest runs changed and no
    changed run is sure to follow it (the run that now does may be one this frame never held)."""
    newest: dict[str, tuple[float, int, int]] = {}
    for row, (grid, started, rowid) in enumerate(
        zip(delta.grid, delta.started.tolist(), delta.rowid.tolist(), strict=True)
    ):
        if grid not in newest or (started, rowid) > newest[grid][:2]:
            newest[grid] = (started, rowid, row)
    started, rowids = notes.started.tolist(), notes.rowid.tolist()
    for row in np.flatnonzero(~kept_mask).tolist():
        follower = newest.get(notes.grid[row])
        if follower is None or follower[:2] < (started[row], rowids[row]):
            return None
    position = {grid: row for row, grid in enumerate(notes.grid)}
    keep = kept_mask.copy()
    new = []
    for grid, (at, rowid, row) in newest.items():
        held = position.get(grid)
        if held is not None and keep[held]:
            if (started[held], rowids[held]) > (at, rowid):
                continue  # the kept run is still its grid point's newest
            keep[held] = False
        new.append(row)
    return np.flatnonzero(keep), np.array(sorted(new), dtype=np.int64)


def _ordered(notes: Notes, delta: Notes, kept: np.ndarray, new: np.ndarray, run_ids: list[str] | None) -> np.ndarray:
    """The order of ``columns.run_columns``: by start time, then by row id; for the latest runs
    (``run_ids`` given, kept rows' then new ones'), by run id instead whenever two start together."""
    started = np.concatenate([notes.started[kept], delta.started[new]])
    rowid = np.concatenate([notes.rowid[kept], delta.rowid[new]])
    order = np.lexsort((rowid, started))
    if run_ids is not None and len(order) > 1 and np.any(np.diff(started[order]) == 0):
        keys = list(zip(started.tolist(), run_ids, strict=True))
        order = np.array(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.int64)
    return order


# -- the columns ------------------------------------------------------------------------


@dataclass
class _Rows:
    """Which kept rows (``kept``) and changed runs (``new``) the patched frame holds, and in
    which ``order`` (positions in the kept rows, then the new ones)."""

    kept: np.ndarray
    new: np.ndarray
    order: np.ndarray


def patch(frame: pd.DataFrame, notes: Notes, changes: RunChanges, history: bool) -> tuple[pd.DataFrame, Notes] | None:
    """``frame`` (noted by ``notes``) with ``changes`` applied: the frame a build from the
    store would give now (``history``: every run, else each grid point's newest), or None."""
    delta_frame, delta, delta_values = described(changes.columns, changes.rowid, changes.param_hash, history)
    gone = set(changes.columns.run_id).union(changes.removed)
    kept_mask = ~frame["run_id"].isin(gone).to_numpy(dtype=bool)
    if history:
        kept, new = np.flatnonzero(kept_mask), np.arange(len(delta.rowid))
        order = _ordered(notes, delta, kept, new, None)
    else:
        chosen = _latest_rows(kept_mask, notes, delta)
        if chosen is None:
            return None
        kept, new = chosen
        run_ids = frame["run_id"].take(kept).tolist() + [changes.columns.run_id[row] for row in new.tolist()]
        order = _ordered(notes, delta, kept, new, run_ids)
    if len(order) == 0:
        return None
    return _Patcher(frame, notes, delta_frame, delta, delta_values, _Rows(kept, new, order)).result()


class _Patcher:
    """The columns of a patched frame, one at a time."""

    def __init__(
        self,
        frame: pd.DataFrame,
        notes: Notes,
        delta_frame: pd.DataFrame,
        delta: Notes,
        delta_values: dict[str, list[Any]],
        rows: _Rows,
    ) -> None:
        self.frame, self.notes, self.delta_frame, self.delta, self.delta_values = (
            frame, notes, delta_frame, delta, delta_values,
        )  # fmt: skip
        self.rows = rows
        # Where each row of the patched frame comes from, in the kept column followed by the
        # changed runs it holds (rows.new, in that order: the others never reach a column).
        self.source = np.concatenate([rows.kept, len(frame) + np.arange(len(rows.new))])[rows.order]
        self.slices = _slices(self.source)

    def result(self) -> tuple[pd.DataFrame, Notes] | None:
        data: dict[str, pd.Series] = {}
        for name in BASE_COLUMNS:
            column = self._same_dtype(name)
            if column is None:
                return None
            data[name] = column
        codes: dict[str, np.ndarray] = {}
        signatures, names = {}, {}
        for section, prefix in SECTIONS.items():
            ordered, signatures[section], names[section] = self._names(section)
            for name in ordered:
                column_name = f"{prefix}{name}"
                if section == "metrics":
                    data[column_name] = self._metric(column_name)
                    continue
                built = self._inferred(column_name, codes)
                if built is None:
                    return None
                data[column_name] = built
        error = self._inferred("error", codes)
        if error is None:
            return None
        data["error"] = error
        frame = pd.DataFrame(data, copy=False)
        return frame, self._notes(codes, signatures, names)

    def _taken(self, kept: np.ndarray, new: np.ndarray) -> np.ndarray:
        """Values of a kept array and a changed runs' one, in the patched frame's rows."""
        values: np.ndarray = np.concatenate([kept[self.rows.kept], new[self.rows.new]])[self.rows.order]
        return values

    def _notes(
        self, codes: dict[str, np.ndarray], signatures: dict[str, np.ndarray], names: dict[str, list[list[str]]]
    ) -> Notes:
        grid = self.notes.grid + [self.delta.grid[row] for row in self.rows.new.tolist()] if self.notes.grid else []
        return Notes(
            rowid=self._taken(self.notes.rowid, self.delta.rowid),
            started=self._taken(self.notes.started, self.delta.started),
            grid=[grid[row] for row in self.source.tolist()] if grid else [],
            codes=codes,
            signatures=signatures,
            names=names,
        )

    def _joined(self, kept: pd.Series, new: pd.Series) -> pd.Series:
        """The patched frame's column from the kept column and the one of the changed runs it
        holds (in the order of ``rows.new``; the same dtype)."""
        # Joined as pandas' arrays (the same dtype: the concatenation pd.concat makes of them),
        # without a Series and an index made per piece: half of a patch's time was those.
        both = _concatenated([kept.array, new.array]) if len(new) else kept.array
        if self.slices is None:
            both = both.take(self.source)
        elif not (len(self.slices) == 1 and self.slices[0] == (0, len(both))):
            # A few runs of rows, as most patches give: slices, which Arrow's text joins without a copy.
            both = _concatenated([both[start:end] for start, end in self.slices])
        column: pd.Series = pd.Series(both, copy=False)
        return column

    def _same_dtype(self, name: str) -> pd.Series | None:
        """A column with one dtype whatever the runs (the base columns but ``error``)."""
        kept, new = self.frame[name], self._new(self.delta_frame[name])
        if len(new) and new.dtype != kept.dtype:
            return None
        return self._joined(kept, new)

    def _metric(self, name: str) -> pd.Series:
        """A metric's column: floats, NaN where a run has none."""
        kept = self.frame[name] if name in self.frame else pd.Series(np.full(len(self.frame), np.nan))
        new = (
            self._new(self.delta_frame[name])
            if name in self.delta_frame
            else pd.Series(np.full(len(self.rows.new), np.nan))
        )
        return self._joined(kept, new)

    def _new(self, column: pd.Series) -> pd.Series:
        """The rows of a changed runs' column that the patched frame holds."""
        taken: pd.Series = column.take(self.rows.new).reset_index(drop=True)
        return taken

    def _names(self, section: str) -> tuple[list[str], np.ndarray, list[list[str]]]:
        """The names of ``section`` over the patched rows, in order of first appearance, with
        each row's signature id in a table of the kept and the changed runs' signatures."""
        kept_names, new_names = self.notes.names[section], self.delta.names[section]
        table = {tuple(names): index for index, names in enumerate(kept_names)}
        extra = [table.setdefault(tuple(names), len(table)) for names in new_names]
        remap = np.array(extra, dtype=np.int32) if extra else np.zeros(0, dtype=np.int32)
        ids = self._taken(self.notes.signatures[section], remap[self.delta.signatures[section]])
        distinct, first = np.unique(ids, return_index=True)
        every = [list(names) for names in table]
        ordered = dict.fromkeys(chain.from_iterable(every[distinct[row]] for row in np.argsort(first).tolist()))
        return list(ordered), ids, every

    def _inferred(self, name: str, codes: dict[str, np.ndarray]) -> pd.Series | None:
        """A column whose dtype pandas infers: kept with its dtype when its values' types are
        those it was built from, else built again from its values (None: not given back exactly)."""
        rows = len(self.frame)
        kept_codes = self.notes.codes.get(name, np.zeros(rows, dtype=np.int8))
        new_codes = self.delta.codes.get(name, np.zeros(len(self.delta_frame), dtype=np.int8))
        codes[name] = patched = self._taken(kept_codes, new_codes)
        every_value = self.delta_values.get(name)
        values = (
            [None] * len(self.rows.new) if every_value is None else [every_value[row] for row in self.rows.new.tolist()]
        )
        if name in self.frame and _kinds(patched) == _kinds(kept_codes):
            kept = self.frame[name]
            new = pd.Series(values, dtype=kept.dtype)  # as pandas converts them in the whole column
            return self._joined(kept, new)
        given_back = _given_back(self.frame[name], kept_codes) if name in self.frame else [None] * rows
        if given_back is None:
            return None
        every = given_back + values
        ordered = list(itemgetter(*self.source.tolist())(every)) if len(self.source) > 1 else [every[self.source[0]]]
        built = param_column(ordered) if name.startswith(INFERRED[0]) else ordered
        column: pd.Series = pd.DataFrame({name: built})[name]  # inferred as a build infers it
        return column


def _concatenated(arrays: list[Any]) -> Any:
    """pandas arrays of one dtype, one after the other."""
    return type(arrays[0])._concat_same_type(arrays)


def _slices(source: np.ndarray, most: int = 256) -> list[tuple[int, int]] | None:
    """``source`` as a few ranges of consecutive rows (start, end), or None when there are many."""
    if len(source) == 0:
        return None
    breaks = np.flatnonzero(np.diff(source) != 1) + 1
    if len(breaks) >= most:
        return None
    starts = np.concatenate([[0], breaks]).tolist()
    ends = [*breaks.tolist(), len(source)]
    return [(int(source[start]), int(source[start]) + end - start) for start, end in zip(starts, ends, strict=True)]


def _kinds(codes: np.ndarray) -> tuple[bool, ...]:
    """Which types a column's values have: what pandas decides its dtype by."""
    return tuple((np.bincount(codes, minlength=NAN + 1) > 0).tolist())


def _given_back(column: pd.Series, codes: np.ndarray) -> list[Any] | None:
    """The values a kept inferred column was built from, from the column and their types; None
    when its dtype cannot give them back exactly."""
    dtype = column.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "Ob":
        return column.tolist()  # the values themselves (read back from JSON: equal, same types)
    if isinstance(dtype, pd.Int64Dtype):
        return [None if missing else int(value) for value, missing in zip(column.to_numpy(dtype=np.int64, na_value=0).tolist(), column.isna().tolist(), strict=True)]  # fmt: skip
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        numbers = column.to_numpy()
        if np.any(np.abs(numbers[codes == INT]) >= _EXACT_INT):
            return None
        return [_number(value, code) for value, code in zip(numbers.tolist(), codes.tolist(), strict=True)]
    if isinstance(dtype, pd.StringDtype):
        if np.any((codes != STR) & (codes != NONE) & (codes != NAN)):
            return None
        text = column.astype(object).where(column.notna(), None).tolist()
        return [float("nan") if code == NAN else value for value, code in zip(text, codes.tolist(), strict=True)]
    return None


def _number(value: float, code: int) -> Any:
    """A value of a float column given back as the type it was built from."""
    if code == INT:
        return int(value)
    return None if code == NONE else value
