"""``load()``'s frames kept beside the store, so that loading runs that have not changed reads
typed columns rather than every run's row and JSON again, and loading them after a few changed
patches the kept frame with those runs (:mod:`.patch`) rather than building it again.

A frame of 100,000 runs costs 1-2 s of CPU to build from the store (a Python object per
value: SQLite's rows and decoded JSON, then pandas' columns); the same frame read back from its
columns costs a few hundredths of that, and patched with a session's runs about a tenth. Only
the frames of ``load()`` and ``load(history=True)`` are kept (no selection, no metadata): one
file each, in the store's :attr:`~pytest_experiments.store.Store.side_folder`.

Never stale: a file holds the store's :meth:`~pytest_experiments.store.Store.change_token` of
the runs it was made of, and is read as it is only while the store gives that token. A store
that logs its changes (:meth:`~pytest_experiments.store.Store.run_changes`: SQLite, schema 7;
PostgreSQL, schema 5) gives the runs and its place in its change sequence in one snapshot, and
the file also holds that place and the number and random mark of the last change it saw: a
later call reads the runs changed since and patches the frame, once the store shows that it
still holds that very change (a copy restored from before it counts the same numbers with
other marks). A PostgreSQL store gives no token, only the changes since (maybe none: then the
kept frame is read as it is). A store that gives no changes (an older SQLite schema) keeps the
frame with the token read before and after it was built. A store that can give neither now
(runs stored as ``running``, journals not folded yet) or has no side folder for this reader
(who does not own the store folder or artefacts root) keeps nothing. Never half-read: written
under a temporary name then renamed (the part a writer killed while writing leaves is removed by
a later writer once it is an hour old), and a file that does not read back whole, with the
dtypes it names and notes that fit it, is ignored and replaced. Never executed: ``numpy.load``
with ``allow_pickle=False`` and JSON for the column names, kinds and notes. A reader that
cannot write (a read-only folder) builds the frame each time, as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
import zipfile
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pytest_experiments.frames import patch
from pytest_experiments.frames.spread import NAN
from pytest_experiments.model import RunChanges
from pytest_experiments.store import Store

#: Part of every file's key: raise it whenever ``load()``'s frames change (a column, a dtype,
#: an order) or what a file holds beside them, so that files written before are never read.
FORMAT = 3

_FILE_NAMES = {False: "load-latest.npz", True: "load-history.npz"}
#: Patched when at most this many runs changed, or this share of the kept rows: past that,
#: building the frame afresh costs about as much.
_FEW_CHANGES = 64
_MOST_CHANGED = 0.25
#: A patched frame of this many rows or more is written back only once the runs changed since
#: its file was written reach this share of them: until then each call patches the file as it
#: is with all of them, which costs less than writing the whole frame again each time (about
#: 0.06 s of 0.1 at 100,000 runs, most of a patched call).
_REWRITTEN_FROM = 10_000
_REWRITE_SHARE = 0.01
#: A part of a kept file untouched this long (seconds) was left by a writer killed while writing it.
_PARTIAL_STALE_S = 3600.0
#: The types of decoded JSON: what an ``object`` column of a frame holds (nested ones too).
_JSON_TYPES = frozenset({str, int, float, bool, type(None), list, dict})
# What a file that is not one of ours, or not whole, raises on reading (numpy, zipfile, JSON).
_UNREADABLE = (OSError, ValueError, KeyError, IndexError, TypeError, EOFError, ImportError, zipfile.BadZipFile)


def cached(store: Store, history: bool, build: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """The frame ``build()`` makes of ``store``'s runs (``history``: every run, else the latest
    of each grid point), read from the store's side file when it holds that frame of the same
    runs, patched from it when the store tells what changed since (:mod:`.patch`), else built
    and, where the store allows, kept for the next call."""
    folder = store.side_folder
    if folder is None:
        return build()
    # A token, where the store gives one, tells a kept frame still whole in one cheap read; a
    # server store gives none and tells what changed since instead (maybe nothing).
    token = store.change_token()
    path = folder / _FILE_NAMES[history]
    meta = _read_meta(path)
    if token is not None and meta is not None and meta.get("key") == _key(token, history):
        found = _read(path, meta)
        if found is not None:
            return found[0]
    if meta is not None and isinstance(meta.get("seq"), int | str) and isinstance(meta.get("marked"), int):
        patched = _patched(store, history, path, meta, keyed=token is not None)
        if patched is not None:
            return patched
    changes = store.run_changes(history=history)
    if changes is None:  # a store that counts no changes (or not now): the frame alone is kept
        frame = build()
        if token is not None and store.change_token() == token:  # no change while it was built
            _write(path, {"key": _key(token, history)}, frame)
        return frame
    frame, notes, _ = patch.described(changes.columns, changes.rowid, changes.param_hash, history)
    _write(path, _meta(changes, history), frame, notes)
    return frame


class _NotNow(Exception):
    """The store cannot say now which runs a kept frame would be made of."""


def keep(store: Store, history: bool) -> bool:
    """Keep ``load()``'s frame of ``store`` (``history``: every run) beside it, made or patched
    as :func:`cached` would, so that the next ``load()`` reads it; False, having built nothing,
    when the store cannot say now which runs it is made of (some stored as ``running``, an
    older schema) or keeps no side files for this process.

    What the session's writer runs once its runs are folded (``frame_keeper.py``): the first
    ``load()`` after a session then reads typed columns instead of decoding every run.
    """

    def refuse() -> pd.DataFrame:
        raise _NotNow  # what cached() builds only when it cannot keep the frame

    try:
        cached(store, history, refuse)
    except _NotNow:
        return False
    return True


def _patched(store: Store, history: bool, path: Path, meta: dict[str, Any], keyed: bool) -> pd.DataFrame | None:
    """The frame kept in ``path`` (``meta`` read of it) patched with the runs changed since,
    and kept in its place; None when the store cannot say what changed since, or the file
    was not of this store's past, or too much changed to be worth it, or the patch gave up.
    ``keyed``: the store gives a change token, which the file kept in its place is read by."""
    marked = meta["marked"]
    changes = store.run_changes(meta["seq"], history=history, marks=[marked])
    # The mark of the file's last change, found again: the store has lived through that very
    # change (a copy restored from before it counts the same numbers with other marks).
    if changes is None or meta.get("base") != _base(changes, history) or changes.marks.get(marked) != meta.get("mark"):
        return None
    changed = len(changes.columns) + len(changes.removed)
    if changed > max(_FEW_CHANGES, meta.get("rows", 0) * _MOST_CHANGED):
        return None  # building it afresh costs less
    if not changes.columns and not changes.removed and not keyed:
        # Nothing changed, in a store read without a token: the frame as kept (its notes not
        # read), and its file as it is (the changes since its place are those a later call reads).
        found = _read(path, meta)
        return None if found is None else found[0]
    kept = _read(path, meta, notes=True)
    if kept is None or kept[1] is None:
        return None
    try:
        result = patch.patch(kept[0], kept[1], changes, history)
    except _UNREADABLE:  # notes that read back whole but do not fit their frame: built instead
        return None
    if result is None:
        return None
    frame, notes = result
    if len(kept[0]) < _REWRITTEN_FROM or changed >= len(kept[0]) * _REWRITE_SHARE:
        _write(path, _meta(changes, history), frame, notes)
    return frame


def _meta(changes: RunChanges, history: bool) -> dict[str, Any]:
    """What a file written from ``changes`` is read under, and patched from."""
    return {
        "key": _key(changes.token, history),
        "base": _base(changes, history),
        "seq": changes.seq,
        "mark": changes.mark,
        "marked": changes.seq if changes.marked is None else changes.marked,
    }


def _base(changes: RunChanges, history: bool) -> str:
    """The key without the store's state: what a file must hold to be patched."""
    return _key(changes.place, history)


def _key(token: str, history: bool) -> str:
    """What a file must hold to be read: the runs, the call, and what decides the frame's dtypes."""
    from pytest_experiments import __version__  # a release may build other frames: never read its files

    strings = pd.Series(["x"]).dtype  # the dtype pandas gives text here (pandas' version and options)
    return json.dumps(
        [
            FORMAT,
            __version__,
            token,
            history,
            pd.__version__,
            np.__version__,
            repr(strings),
            getattr(strings, "storage", ""),
        ]
    )


# -- writing ----------------------------------------------------------------------------


def _write(path: Path, meta: dict[str, Any], frame: pd.DataFrame, notes: patch.Notes | None = None) -> None:
    """Keep ``frame`` (and its ``notes``) in ``path`` under ``meta`` (whole or not at all);
    nothing when a column has no encoding here or the folder cannot be written."""
    if frame.empty:
        return
    arrays: dict[str, np.ndarray] = {}
    kinds = []
    for position, (name, column) in enumerate(frame.items()):
        encoded = _encoded(column)
        if encoded is None:
            return  # a column of other values (lists, mixed types...): built each time
        kind, parts = encoded
        kinds.append([str(name), kind, str(column.dtype)])
        arrays.update({f"c{position}.{part}": values for part, values in parts.items()})
    if any(values.dtype.hasobject for values in arrays.values()):
        return  # numpy would pickle it: never written, since it would never be read
    meta = {**meta, "rows": len(frame), "columns": kinds}
    if notes is not None:
        meta["notes"] = _noted(notes, arrays)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    # A name of its own (threads of one process too), in the same folder so that the rename is atomic.
    partial = path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    _sweep_partials(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # the side folder's parent is the store's own
        with open(partial, "xb") as file:
            np.savez(file, **arrays)  # type: ignore[arg-type]  # numpy's stubs want positional arrays too
        os.replace(partial, path)  # readers see the old file or the new one, never a part
    except OSError:  # a read-only folder, a full disk: the frame is simply not kept
        _remove(partial)
    except BaseException:  # Ctrl-C while writing: no part left behind either
        _remove(partial)
        raise


def _sweep_partials(path: Path) -> None:
    """Remove the parts of ``path`` that writers killed while writing left behind (a SIGKILL
    runs no cleanup: a frame keeper killed with its cluster job, say). A part is a writer's
    own as long as it writes it, and a write takes seconds: one untouched for
    :data:`_PARTIAL_STALE_S` is nobody's (its writer may be on another host: its pid says nothing)."""
    now = time.time()
    try:
        parts = list(path.parent.glob(f"{path.name}.*.tmp"))
    except OSError:
        return
    for part in parts:
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to remove
            if now - part.stat().st_mtime > _PARTIAL_STALE_S:
                part.unlink()


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):  # there may be no folder to remove it from
        path.unlink(missing_ok=True)


def _encoded(column: pd.Series) -> tuple[str, dict[str, np.ndarray]] | None:
    """``column`` as numpy arrays of numbers, with the kind that reads it back; None when it
    holds values these kinds cannot give back exactly."""
    dtype = column.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "biuf":  # numbers and booleans as numpy holds them
        return "plain", {"data": column.to_numpy()}
    if isinstance(dtype, pd.Int64Dtype):
        return "int", {"data": column.to_numpy(dtype=np.int64, na_value=0), "mask": column.isna().to_numpy()}
    if isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) == "UTC":
        naive = column.dt.tz_convert(None).to_numpy()  # UTC's wall clock: the same instants
        return "utc", {"data": naive.view(np.int64)}
    if isinstance(dtype, pd.StringDtype):
        if pd.api.types.pandas_dtype(str(dtype)) != dtype:
            return None  # a string dtype its name does not give back
        return _text(column, dtype.storage)
    if pd.api.types.is_object_dtype(dtype):
        return _json(column.tolist())
    return None


def _json(values: list[Any]) -> tuple[str, dict[str, np.ndarray]] | None:
    """A column of decoded JSON values (mixed types, lists, mappings, None beside NaN) as one JSON
    array, which decodes to equal values of the same types; None for values of other types."""
    if not {type(value) for value in values} <= _JSON_TYPES:
        return None
    text = json.dumps(values, allow_nan=True, separators=(",", ":"))  # ASCII: a lone surrogate is escaped
    return "json", {"data": np.frombuffer(text.encode(), dtype=np.uint8)}


def _text(column: pd.Series, storage: str) -> tuple[str, dict[str, np.ndarray]] | None:
    """A column of text (missing values allowed) as UTF-8 bytes, the offsets of each value in
    them, and which are missing; None for text that has no UTF-8 (a lone surrogate, which JSON allows)."""
    missing = column.isna().to_numpy()
    if storage == "pyarrow":
        return "text", {**_arrow_text(column), "mask": missing}
    values = column.tolist()
    for row in np.flatnonzero(missing).tolist():
        values[row] = ""
    # One join and one encode, the values then found between NUL bytes (UTF-8 has no other).
    joined = "\x00".join(values)
    try:
        data = np.frombuffer(joined.encode(), dtype=np.uint8)
    except UnicodeEncodeError:
        return None
    separators = np.flatnonzero(data == 0)
    if len(separators) != len(values) - 1:
        return None  # a value holding NUL itself: built each time
    offsets = np.empty(len(values) + 1, dtype=np.int64)
    offsets[0] = 0
    offsets[1:-1] = separators - np.arange(len(separators))  # each value's end, less the NULs before it
    offsets[-1] = len(data) - len(separators)
    return "text", {"data": np.delete(data, separators), "offsets": offsets, "mask": missing}


def _arrow_text(column: pd.Series) -> dict[str, np.ndarray]:
    """The UTF-8 bytes and offsets of a column pandas keeps in Arrow: Arrow's own buffers."""
    import pyarrow as pa

    # pandas hands its Arrow data over as it is (through the array's own protocol, which does
    # not depend on pyarrow having found pandas: a session that hid pyarrow once loses that).
    array = pa.array(column.array)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    array = array.cast(pa.large_string())  # 64-bit offsets, as the reader takes them
    _, offset_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offset_buffer, dtype=np.int64)[array.offset : array.offset + len(array) + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, dtype=np.uint8)
    return {"data": data[offsets[0] : offsets[-1]], "offsets": offsets - offsets[0]}


def _noted(notes: patch.Notes, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """``notes`` as arrays (added to ``arrays``) and what the file's meta says of them."""
    arrays["n.rowid"] = notes.rowid.astype(np.int64, copy=False)
    arrays["n.started"] = notes.started.astype(np.float64, copy=False)
    arrays["n.grid"] = np.frombuffer(json.dumps(notes.grid).encode(), dtype=np.uint8)
    for position, codes in enumerate(notes.codes.values()):
        arrays[f"n.code{position}"] = codes.astype(np.int8, copy=False)
    for section, signatures in notes.signatures.items():
        arrays[f"n.sig.{section}"] = signatures.astype(np.int32, copy=False)
    return {"codes": list(notes.codes), "names": notes.names}


# -- reading ----------------------------------------------------------------------------


def _read_meta(path: Path) -> dict[str, Any] | None:
    """What the file in ``path`` says of itself; None when there is none, or not whole."""
    try:
        with open(path, "rb") as file, np.load(file, allow_pickle=False) as archive:
            meta = json.loads(archive["meta"].tobytes())
    except FileNotFoundError:
        return None
    except _UNREADABLE:
        return None
    return meta if isinstance(meta, dict) else None


def _read(path: Path, meta: dict[str, Any], notes: bool = False) -> tuple[pd.DataFrame, patch.Notes | None] | None:
    """The frame kept in ``path`` when the file still says ``meta`` of itself (and its notes,
    with ``notes``); None when there is none, or not whole."""
    try:
        # Opened here: numpy leaves a file it opened itself open when it is not a whole archive.
        with open(path, "rb") as file, np.load(file, allow_pickle=False) as archive:
            if json.loads(archive["meta"].tobytes()) != meta:
                return None  # replaced since its meta was read
            rows = int(meta["rows"])
            columns = {
                name: _decoded(kind, dtype, rows, archive, f"c{position}")
                for position, (name, kind, dtype) in enumerate(meta["columns"])
            }
            noted = _notes(meta, rows, archive) if notes and "notes" in meta else None
    except FileNotFoundError:
        return None
    except _UNREADABLE:
        return None  # not whole, or not ours: built again and replaced
    frame: pd.DataFrame = pd.DataFrame(columns)
    if [str(dtype) for dtype in frame.dtypes] != [dtype for _, _, dtype in meta["columns"]]:
        return None
    return frame, noted


def _notes(meta: dict[str, Any], rows: int, archive: Any) -> patch.Notes:
    """The notes kept beside a frame of ``rows`` rows, as :func:`_noted` wrote them."""
    said = meta["notes"]
    grid = json.loads(archive["n.grid"].tobytes())
    if not isinstance(grid, list) or len(grid) not in (0, rows):
        raise ValueError("a grid of another length")
    names = {section: [list(map(str, row)) for row in said["names"][section]] for section in patch.SECTIONS}
    signatures = {section: _sized(archive[f"n.sig.{section}"], rows, np.int32) for section in patch.SECTIONS}
    for section, ids in signatures.items():
        if rows and (ids.min() < 0 or ids.max() >= len(names[section])):
            raise ValueError("a signature out of its table")
    codes = {}
    for position, name in enumerate(said["codes"]):
        codes[str(name)] = _sized(archive[f"n.code{position}"], rows, np.int8)
        if rows and (codes[str(name)].min() < 0 or codes[str(name)].max() > NAN):
            raise ValueError("an unknown type code")
    return patch.Notes(
        rowid=_sized(archive["n.rowid"], rows, np.int64),
        started=_sized(archive["n.started"], rows, np.float64),
        grid=[str(value) for value in grid],
        codes=codes,
        signatures=signatures,
        names=names,
    )


def _decoded(kind: str, dtype: str, rows: int, archive: Any, prefix: str) -> pd.Series:
    """One column of ``rows`` values read back from ``archive`` (its arrays ``<prefix>.*``), as
    ``_encoded`` wrote it."""
    data: np.ndarray = archive[f"{prefix}.data"]
    column: pd.Series
    if kind == "plain":
        column = pd.Series(_sized(data, rows, np.dtype(dtype)), copy=False)
    elif kind == "int":
        mask = _sized(archive[f"{prefix}.mask"], rows, np.bool_)
        column = pd.Series(pd.arrays.IntegerArray(_sized(data, rows, np.int64), mask), copy=False)
    elif kind == "utc":
        unit = pd.api.types.pandas_dtype(dtype).unit  # type: ignore[union-attr]  # ValueError for another dtype
        naive = _sized(data, rows, np.int64).view(f"datetime64[{unit}]")
        column = pd.Series(naive, copy=False).dt.tz_localize("UTC")
    elif kind == "json":
        values = json.loads(data.tobytes())
        if not isinstance(values, list) or len(values) != rows:
            raise ValueError("a column of another length")
        column = pd.Series(values, dtype=dtype)  # as given to pandas first: the same values, in a list
    elif kind == "text":
        offsets = _sized(archive[f"{prefix}.offsets"], rows + 1, np.int64)
        missing = _sized(archive[f"{prefix}.mask"], rows, np.bool_)
        if data.dtype != np.uint8 or offsets[0] != 0 or offsets[-1] != len(data) or np.any(np.diff(offsets) < 0):
            raise ValueError("text offsets out of order")
        column = _text_column(data, offsets, missing, dtype)
    else:
        raise ValueError(f"unknown column kind {kind!r}")
    return column


def _sized(values: np.ndarray, rows: int, dtype: Any = None) -> np.ndarray:
    """``values``, checked to hold ``rows`` items (of ``dtype``): a file made otherwise is not read."""
    if values.ndim != 1 or len(values) != rows or (dtype is not None and values.dtype != dtype):
        raise ValueError("a column of another length or type")
    return values


def _text_column(data: np.ndarray, offsets: np.ndarray, missing: np.ndarray, dtype: str) -> pd.Series:
    """The text column of UTF-8 ``data`` cut at ``offsets``."""
    strings = pd.api.types.pandas_dtype(dtype)
    if not isinstance(strings, pd.StringDtype):
        raise ValueError(f"text kept for a column of {dtype}")
    if strings.storage == "pyarrow":
        # Arrow holds text as exactly these buffers: no Python object per value.
        import pyarrow as pa

        valid = np.packbits(~missing, bitorder="little")
        array = pa.LargeStringArray.from_buffers(
            len(missing), pa.py_buffer(offsets), pa.py_buffer(data), pa.py_buffer(valid), int(missing.sum())
        )
        array.validate(full=True)  # offsets within the data, and UTF-8: else ValueError (pyarrow's is one)
        column: pd.Series = pd.Series(pd.array(array, dtype=strings), copy=False)
        return column
    raw = data.tobytes()
    bounds = list(pairwise(offsets.tolist()))
    if raw.isascii():  # byte offsets are character offsets: one decode, then slices
        text = raw.decode()
        values: list[str | None] = [text[start:end] for start, end in bounds]
    else:
        values = [raw[start:end].decode() for start, end in bounds]
    for row in np.flatnonzero(missing).tolist():
        values[row] = None
    column = pd.Series(pd.array(values, dtype=strings), copy=False)
    return column
