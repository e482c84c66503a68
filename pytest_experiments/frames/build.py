"""How ``load()``'s frame is built from runs read as columns: the one place that decides its
columns, their order and their dtypes (a kept frame patched by :mod:`.patch` gives exactly
what this gives)."""

from __future__ import annotations

from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from pytest_experiments.frames.spread import INT, NAN, NONE, Section, spread
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
# The types a metric's value has (None: none), which numpy turns into floats as pandas does.
_NUMBERS = frozenset({float, int, bool, type(None)})


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
    data: dict[str, Any] = {
        "run_id": runs.run_id,
        "node_id": runs.node_id,
        "experiment": runs.experiment,
        "module": runs.module,
        "status": runs.status,
        "started_at": pd.to_datetime(pd.Series(runs.started_at, dtype="float64"), unit="s", utc=True),
        "finished_at": pd.to_datetime(pd.Series(runs.finished_at, dtype="float64"), unit="s", utc=True),
        "duration": pd.Series(runs.duration, dtype="float64"),
        "session_id": runs.session_id,
        "worker": runs.worker,
        "dir": runs.dir,
    }
    noting = originals is not None or sections is not None
    spread_ = {
        "params": spread((runs.params, runs.logged_params), codes=True),
        "metrics": spread((runs.metrics,)),
        "tags": spread((runs.tags,), codes=noting),
    }
    params = {f"params.{name}": values for name, values in spread_["params"].values.items()}
    codes = spread_["params"].codes
    data.update((name, _param_column(values, codes[name[7:]])) for name, values in params.items())
    for name, floats in spread_["metrics"].values.items():
        data[f"metrics.{name}"] = _float_column(floats)  # None: NaN
    for name, tags in spread_["tags"].lists().items():
        data[f"tags.{name}"] = tags
    if metadata and runs.metadata is not None:
        for name, values in _spread([_flattened(values) for values in runs.metadata]).items():
            data[f"metadata.{name}"] = param_column(values)
    data["error"] = [
        None if kind is None else f"{kind}: {message}" if message else kind
        for kind, message in zip(runs.error_type, runs.error_message, strict=True)
    ]
    if originals is not None:
        originals.update((name, values) for name, values in data.items() if name.startswith(INFERRED))
        originals.update((name, values.tolist()) for name, values in params.items())
    if sections is not None:
        sections.update(spread_)
    frame: pd.DataFrame = pd.DataFrame(data)
    return frame


def _param_column(values: np.ndarray, codes: np.ndarray) -> Any:
    """:func:`param_column` of ``values``, whose type codes are ``codes``."""
    present = np.bincount(codes, minlength=NAN + 1) > 0
    if present[INT] and present.sum() == 1 + present[NONE]:  # integers, None among them or not
        missing = codes == NONE
        filled = values.copy()
        filled[missing] = 0
        try:
            return pd.arrays.IntegerArray(filled.astype(np.int64), missing)
        except OverflowError:  # one beyond 64 bits: as pandas takes (and refuses) it
            return param_column(values.tolist())
    return values.tolist()


def _float_column(values: np.ndarray) -> pd.Series:
    """A metric's column of ``values``: floats, NaN for None."""
    column: pd.Series
    if set(map(type, values)) <= _NUMBERS:  # numpy converts these as pandas would
        column = pd.Series(values.astype(np.float64), copy=False)
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


def _spread(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """One list per name found in ``rows`` (in order of first appearance), None where a row lacks it."""
    names = dict.fromkeys(chain.from_iterable(rows))
    return {name: [row.get(name) for row in rows] for name in names}


def param_lists(runs: RunColumns) -> dict[str, list[Any]]:
    """The parameters of ``runs`` (a logged one over a declared one of the same name), one list
    per name in order of first appearance, None where a run lacks it."""
    if not any(runs.logged_params):
        return _spread(runs.params)
    pairs = list(zip(runs.params, runs.logged_params, strict=True))
    names = dict.fromkeys(chain.from_iterable(chain.from_iterable(pairs)))
    declared = dict.fromkeys(chain.from_iterable(runs.params))
    logged = dict.fromkeys(chain.from_iterable(runs.logged_params))
    lists: dict[str, list[Any]] = {}
    for name in names:
        if name not in logged:
            lists[name] = [values.get(name) for values in runs.params]
        elif name not in declared:
            lists[name] = [values.get(name) for values in runs.logged_params]
        else:  # both: the logged value wins where there is one
            lists[name] = [own[name] if name in own else values.get(name) for values, own in pairs]
    return lists


def param_column(values: list[Any]) -> Any:
    """Integers stay integers (nullable ``Int64``) where other experiments lack the parameter."""
    # Decoded JSON holds exact types: one look at the set of them, not an isinstance per value.
    kinds = set(map(type, values))
    kinds.discard(type(None))
    if kinds == {int}:
        return pd.array(values, dtype="Int64")
    return values
