"""How ``load()``'s frame is built from runs read as columns: the one place that decides its
columns, their order and their dtypes (a kept frame patched by :mod:`.patch` gives exactly
what this gives)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pytest_experiments.frames.spread import INT, NAN, NONE, STR, Section, spread
from pytest_experiments.model import RunColumns

#: The columns every frame has, in order; ``params.<name>`` and ``metrics.<name>`` follow,
#: then ``error``.
BASE_COLUMNS = (
    "run_id", "node_id", "experiment", "module", "status", "started_at", "finished_at",
    "duration", "session_id", "worker", "dir",
)  # fmt: skip

#: The columns whose dtype pandas infers from their values (the others have one dtype each):
#: by these prefixes, and ``error``.
INFERRED = ("params.", "tags.", "error")


def columns_frame(
    runs: RunColumns,
    *,
    metadata: bool = False,
    originals: dict[str, list[Any]] | None = None,
    sections: dict[str, Section] | None = None,
) -> pd.DataFrame:
    """Build the frame of :func:`load` from runs read as columns.

    ``originals``, when given, receives the values each column whose dtype pandas infers
    (parameters, tags, ``error``) was built from, and ``sections`` the parameters, metrics and
    tags spread (:func:`.spread.spread`, with type codes): what a kept frame notes of them.

    (Whatever changes these frames raises :data:`pytest_experiments.frames.cache.FORMAT`.)
    A column per parameter, metric, tag (and metadata key) in the order the names first appear
    in the runs, a run without one holding None (NaN for a metric); built one column at a time
    from the decoded values, never a row at a time.
    """
    text = _text_dtype()
    data: dict[str, Any] = {
        "run_id": _text(runs.run_id, text),
        "node_id": _text(runs.node_id, text),
        "experiment": _text(runs.experiment, text),
        "module": _text(runs.module, text),
        "status": _text(runs.status, text),
        "started_at": pd.to_datetime(pd.Series(runs.started_at, dtype="float64"), unit="s", utc=True),
        "finished_at": pd.to_datetime(pd.Series(runs.finished_at, dtype="float64"), unit="s", utc=True),
        "duration": pd.Series(runs.duration, dtype="float64"),
        "session_id": _text(runs.session_id, text),
        "worker": _text(runs.worker, text),
        "dir": _text(runs.dir, text),
    }
    spread_ = {
        "params": spread((runs.params, runs.logged_params), codes=True),
        "metrics": spread((runs.metrics,), floats=True),
        "tags": spread((runs.tags,), codes=originals is not None or sections is not None),
    }
    inferred: dict[str, list[Any]] = {}  # the values of the columns whose dtype pandas infers
    params = spread_["params"]
    for name, values in params.values.items():
        inferred[f"params.{name}"] = listed = values.tolist()
        data[f"params.{name}"] = _param_column(values, listed, params.codes[name], text)
    for name, floats in spread_["metrics"].values.items():
        data[f"metrics.{name}"] = _float_column(floats)  # None: NaN
    for name, tags in spread_["tags"].lists().items():
        inferred[f"tags.{name}"] = tags
        data[f"tags.{name}"] = _text(tags, text)
    if metadata and runs.metadata is not None:
        for name, found in spread(([_flattened(values) for values in runs.metadata],)).lists().items():
            data[f"metadata.{name}"] = param_column(found)
    inferred["error"] = [
        None if kind is None else f"{kind}: {message}" if message else kind
        for kind, message in zip(runs.error_type, runs.error_message, strict=True)
    ]
    data["error"] = _text(inferred["error"], text)
    if originals is not None:
        originals.update(inferred)
    if sections is not None:
        sections.update(spread_)
    frame: pd.DataFrame = pd.DataFrame(data)
    return frame


def _param_column(values: np.ndarray, listed: list[Any], codes: np.ndarray, text: pd.StringDtype | None) -> Any:
    """:func:`param_column` of ``values`` (``listed`` as a list), whose type codes are ``codes``."""
    present = np.bincount(codes, minlength=NAN + 1) > 0
    if present[INT] and present.sum() == 1 + present[NONE]:  # integers, None among them or not
        missing = codes == NONE
        filled = values.copy()
        filled[missing] = 0
        try:
            return pd.arrays.IntegerArray(filled.astype(np.int64), missing)
        except OverflowError:  # one beyond 64 bits: as pandas takes (and refuses) it
            return param_column(listed)
    if present[STR] and present.sum() == 1 + present[NONE]:
        return _text(listed, text)
    return listed


def _text_dtype() -> pd.StringDtype | None:
    """The dtype pandas gives a column of text (its options may change it), when Arrow holds it."""
    dtype = pd.Series(["x"]).dtype
    if not isinstance(dtype, pd.StringDtype) or dtype.storage != "pyarrow":
        return None
    try:
        import pyarrow  # noqa: F401  # pandas imported it already, unless it is hidden since
    except ImportError:
        return None
    return dtype


def _text(values: list[Any], text: pd.StringDtype | None) -> Any:
    """``values`` as pandas infers them: when they are text (None among it) and pandas keeps text
    in Arrow (``text``), an array made by Arrow straight away (pandas checks each value first:
    10 ms of 17 for a column of 100,000); else the list, for pandas to infer."""
    if text is None or not values:
        return values
    import pyarrow as pa  # installed: pandas keeps text in it

    array = _ascii_array(values)
    if array is None:
        try:
            array = pa.array(values, type=pa.large_string())
        except (pa.ArrowException, TypeError, ValueError):  # not all text, or not UTF-8: pandas decides
            return values
    if array.null_count == len(array):
        return values  # None alone: pandas makes that an object column
    return pd.array(array, dtype=text)


def _ascii_array(values: list[Any]) -> Any:
    """``values`` as an Arrow ``large_string`` array made from one joined text, when all are text
    (no None) and ASCII; else None. Arrow copies a list of distinct strings one at a time (15 ms
    for a column of 100,000 read from a store); one join, and lengths as byte offsets, take 5."""
    import pyarrow as pa

    try:
        joined = "".join(values)
    except TypeError:  # None or another type among them: Arrow (or pandas) decides
        return None
    if not joined.isascii():  # characters are not bytes: Arrow encodes each value
        return None
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, values), dtype=np.int64, count=len(values)), out=offsets[1:])
    data = joined.encode("ascii")
    return pa.LargeStringArray.from_buffers(len(values), pa.py_buffer(offsets), pa.py_buffer(data))


def _float_column(values: np.ndarray) -> pd.Series:
    """A metric's column of ``values`` (floats, or objects when some are not numbers): NaN for None."""
    column: pd.Series
    if values.dtype == np.float64:
        column = pd.Series(values, copy=False)
    else:
        column = pd.Series(values.tolist(), dtype="float64")
    return column


def _flattened(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level, keys joined with ``.`` (``{"timing": {"call": 1}}`` -> ``timing.call``)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(_flattened(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def param_lists(runs: RunColumns) -> dict[str, list[Any]]:
    """The parameters of ``runs`` (a logged one over a declared one of the same name), one list
    per name in order of first appearance, None where a run lacks it."""
    return spread((runs.params, runs.logged_params)).lists()


def param_column(values: list[Any]) -> Any:
    """Integers stay integers (nullable ``Int64``) where other experiments lack the parameter."""
    # Decoded JSON holds exact types: one look at the set of them, not an isinstance per value.
    kinds = set(map(type, values))
    kinds.discard(type(None))
    if kinds == {int}:
        return pd.array(values, dtype="Int64")
    return values
