"""Turning Python values into JSON: parameters, results and metrics.

Nothing here is ever pickled: a value JSON cannot hold is stored as its ``repr``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

# A repr such as ``<Model object at 0x7f...>`` differs in every process.
_MEMORY_ADDRESS = re.compile(r"\bat 0x[0-9a-fA-F]+")


def _numpy_scalar(value: object) -> Any | None:
    """Return the Python number behind a numpy scalar, else None (no numpy import)."""
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        item = value.item()  # type: ignore[attr-defined,unused-ignore]
        if isinstance(item, (bool, int, float, complex, str)):
            return item
    return None


def to_json_value(value: Any, reprs: list[str] | None = None) -> Any:
    """Return ``value`` made of JSON types only.

    Tuples become lists, numpy scalars Python numbers and mapping keys strings; any
    other value becomes its ``repr``, whose text is appended to ``reprs`` when given so
    the caller can warn about it.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, Mapping):
        return {str(key): to_json_value(item, reprs) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(item, reprs) for item in value]
    scalar = _numpy_scalar(value)
    if scalar is not None and not isinstance(scalar, complex):
        return scalar
    text = repr(value)
    if reprs is not None:
        reprs.append(text)
    return text


def dumps(value: Any) -> str:
    """Serialise JSON-typed ``value`` compactly (NaN and infinities allowed, as Python reads them)."""
    return _COMPACT.encode(value)


_PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})
# One encoder for every hash: json.dumps with options builds a new encoder per call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def is_plain(params: Mapping[str, Any]) -> bool:
    """Whether every value is a str, int, float, bool or None (already JSON, nothing to convert)."""
    return all(type(value) in _PLAIN_TYPES for value in params.values())


def canonical_json(params: Mapping[str, Any]) -> str:
    """Canonical JSON of a parameter mapping: sorted keys, compact, JSON types only."""
    # Fast path for the usual grid of plain values (resume hashes every collected item).
    converted = params if is_plain(params) else to_json_value(params)
    return _CANONICAL.encode(converted)


def param_hash(params: Mapping[str, Any]) -> str:
    """Identity of a grid point: a short sha256 over the canonical JSON of its parameters."""
    return hashlib.sha256(canonical_json(params).encode()).hexdigest()[:20]


def volatile_params(params: Mapping[str, Any]) -> list[str]:
    """Names of parameters whose stored form holds a memory address (never the same twice)."""
    names = []
    for name, value in params.items():
        text = canonical_json({"v": value})
        if _MEMORY_ADDRESS.search(text):
            names.append(name)
    return names


def as_number(value: object) -> float | None:
    """Return ``value`` as a float when it is a real number (numpy included, bool excluded)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    scalar = _numpy_scalar(value)
    if isinstance(scalar, (int, float)) and not isinstance(scalar, bool):
        return float(scalar)
    return None


def metrics_from_result(result: Any) -> dict[str, float]:
    """Metrics carried by a return value.

    A bare number is the metric ``result``; a mapping contributes each numeric leaf,
    nested keys joined with ``.``. Anything else carries no metric.
    """
    number = as_number(result)
    if number is not None:
        return {"result": number}
    metrics: dict[str, float] = {}
    if isinstance(result, Mapping):
        _collect_leaves(result, "", metrics)
    return metrics


def _collect_leaves(mapping: Mapping[Any, Any], prefix: str, out: dict[str, float]) -> None:
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            _collect_leaves(value, name + ".", out)
            continue
        number = as_number(value)
        if number is not None:
            out[name] = number
