"""Turning Python values into JSON: parameters, results and metrics.

Nothing here is ever pickled: a value JSON cannot hold is stored as its ``repr``. Every
conversion succeeds, whatever the value (a container holding itself, an ``int`` too long
to print, a ``__repr__`` that raises): what a test returned must never fail the test.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, overload

# A repr such as ``<Model object at 0x7f...>`` differs in every process.
_MEMORY_ADDRESS = re.compile(r"\bat 0x[0-9a-fA-F]+")
# Deeper than this, a value is stored as a note: JSON encoders and decoders recurse.
_MAX_DEPTH = 100
# Ints shorter than this always print; longer ones may pass ``sys.get_int_max_str_digits()``.
_ALWAYS_PRINTABLE_BITS = 13_000


def _numpy_scalar(value: object) -> Any | None:
    """Return the Python number behind a numpy scalar, else None (no numpy import)."""
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        item = value.item()  # type: ignore[attr-defined,unused-ignore]
        if isinstance(item, (bool, int, float, complex, str)):
            return item
    return None


def _numeric_array(value: object) -> bool:
    """Whether ``value`` is a numpy ndarray whose bytes are its content (no Python objects inside)."""
    kind = type(value)
    return kind.__name__ == "ndarray" and kind.__module__ == "numpy" and not value.dtype.hasobject  # type: ignore[attr-defined]


def _array_identity(value: Any) -> str:
    """A numpy array by content: dtype, shape and a digest of its bytes (its repr elides the middle)."""
    # Its own buffer when laid out in C order (no copy of a large array), else a C-order copy.
    digest = hashlib.sha256(value.data if value.flags.c_contiguous else value.tobytes()).hexdigest()[:32]
    return f"ndarray(dtype={value.dtype}, shape={tuple(value.shape)}, sha256={digest})"


def safe_repr(value: object) -> str:
    """``repr(value)``, or a description of the value when its ``__repr__`` raises."""
    try:
        return repr(value)
    except Exception as exc:
        return f"<{type(value).__qualname__} object; its repr raised {type(exc).__name__}>"


class Conversion:
    """One conversion of a value to JSON types.

    For storage a value JSON cannot hold becomes its repr; for identity (``identity=True``)
    a numpy array becomes its content instead. ``notes`` lists what was stored only
    approximately (for a warning); ``exact`` turns False once a value went in as its repr,
    which may be the same for two different values.
    """

    def __init__(self, identity: bool = False) -> None:
        self.identity = identity
        self.notes: list[str] = []
        self.exact = True
        self._open: set[int] = set()  # containers being converted: one met again holds itself

    def convert(self, value: Any, depth: int = 0) -> Any:
        """``value`` made of JSON types only (see the class doc)."""
        if value is None or isinstance(value, (bool, str, float)):
            return value
        if isinstance(value, int):
            return self._int(value)
        if isinstance(value, Mapping):
            return self._container(value, depth, "{...}")
        if isinstance(value, (list, tuple)):
            return self._container(value, depth, "[...]")
        scalar = _numpy_scalar(value)
        if scalar is not None and not isinstance(scalar, complex):
            return scalar
        if self.identity and _numeric_array(value):
            return _array_identity(value)
        return self.approximate(safe_repr(value))

    def approximate(self, text: str, note: str | None = None) -> str:
        """Store ``text`` for a value JSON cannot hold, noting (``note``, else ``text``) that it is approximate."""
        self.exact = False
        self.notes.append(note or text)
        return text

    def _int(self, value: int) -> int | str:
        if value.bit_length() < _ALWAYS_PRINTABLE_BITS:
            return value
        try:
            int.__repr__(value)
        except ValueError:  # longer than sys.get_int_max_str_digits(): hex has no such limit
            self.notes.append(f"an int of {value.bit_length()} bits, stored in hex")
            return hex(value)
        return value

    def _container(self, value: Mapping[Any, Any] | list[Any] | tuple[Any, ...], depth: int, marker: str) -> Any:
        if id(value) in self._open:
            return self.approximate(marker, f"{marker} (a container holding itself)")
        if depth >= _MAX_DEPTH:
            return self.approximate(marker, f"{marker} (nested deeper than {_MAX_DEPTH} levels)")
        self._open.add(id(value))
        try:
            if isinstance(value, Mapping):
                return {_key(key): self.convert(item, depth + 1) for key, item in value.items()}
            return [self.convert(item, depth + 1) for item in value]
        finally:
            self._open.discard(id(value))


def _key(key: object) -> str:
    if isinstance(key, str):
        return key
    try:
        return str(key)
    except Exception:  # a __str__ that raises, an int too long to print
        return safe_repr(key)


def to_json_value(value: Any, reprs: list[str] | None = None) -> Any:
    """Return ``value`` made of JSON types only; this never raises.

    Tuples become lists, numpy scalars Python numbers and mapping keys strings; any
    other value becomes its ``repr``. A container holding itself, or nested deeper than
    100 levels, is cut there (``{...}``); an int too long to print is stored in hex. What
    was stored approximately is appended to ``reprs`` when given, so the caller can warn.
    """
    if type(value) is dict:  # the usual result or metadata: a small dict of plain values
        copied = _plain_dict(value, 1)
        if copied is not None:
            return copied
    conversion = Conversion()
    try:
        converted = conversion.convert(value)
    except Exception:  # a container whose own methods raise: keep what the value says of itself
        converted = conversion.approximate(safe_repr(value))
    if reprs is not None:
        reprs.extend(conversion.notes)
    return converted


def _plain_dict(value: dict[Any, Any], nesting: int) -> dict[str, Any] | None:
    """A copy of ``value`` when it is JSON already (str keys; str, float, bool, None and ints that
    print as values, or such dicts ``nesting`` levels down), else None: what :class:`Conversion`
    would make of it, at a fraction of its cost."""
    # The types first, gathered in C: a flat dict of plain values (the usual result) is copied
    # without a Python step per entry.
    if not _STR_ONLY.issuperset(map(type, value)):
        return None
    kinds = set(map(type, value.values()))
    if kinds <= _PLAIN_SCALARS:
        return value.copy()
    if not kinds <= _PLAIN_OR_DICT:
        return None
    copy: dict[str, Any] = {}
    for key, item in value.items():
        kind = type(item)
        if kind is dict and nesting > 0:
            item = _plain_dict(item, nesting - 1)
            if item is None:
                return None
        elif kind is int:
            if item.bit_length() >= _ALWAYS_PRINTABLE_BITS:
                return None
        elif kind not in _PLAIN_SCALARS:
            return None
        copy[key] = item
    return copy


class RawJSON(str):
    """Text :func:`dumps` made already (a journal keeps values so): :func:`dumps` returns it as it is."""

    __slots__ = ()

    def decoded(self) -> Any:
        """The value it encodes."""
        return json.loads(self)


def dumps(value: Any) -> str:
    """Serialise JSON-typed ``value`` compactly (NaN and infinities allowed, as Python reads them),
    as text every database takes, and ``json.loads`` gives ``value`` back exactly.

    A lone surrogate (text decoded with ``surrogateescape``), which UTF-8 cannot encode and so
    no database can store as text, is written as a JSON escape (``\\udcff``), as NUL is anyway.
    A :class:`RawJSON` is that text already.
    """
    if type(value) is RawJSON:
        return value
    text = "".join(_compact_chunks(value, 0))
    if text.isascii() or _utf8(text):
        return text
    return _ASCII.encode(value)


@overload
def storable_text(text: str) -> str: ...
@overload
def storable_text(text: None) -> None: ...
def storable_text(text: str | None) -> str | None:
    """``text`` as a database's text column can hold it: a NUL (which PostgreSQL refuses) and lone
    surrogates (which UTF-8 cannot encode) become the backslash escapes ``repr`` shows for them."""
    if text is None:
        return None
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if text.isascii() or _utf8(text):
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _utf8(text: str) -> bool:
    """Whether ``text`` can be encoded as UTF-8 (it holds no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})
_PLAIN_SCALARS = frozenset({str, float, bool, type(None)})
_PLAIN_OR_DICT = _PLAIN_SCALARS | {int, dict}
_STR_ONLY = frozenset({str})
#: The types of a dict of floats' values, checked in C: ``FLOAT_ONLY.issuperset(map(type, values))``.
FLOAT_ONLY = frozenset({float})
# One encoder for every hash: json.dumps with options builds a new encoder per call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_c_make_encoder: Callable[..., Callable[[Any, int], list[str]]] | None = getattr(json.encoder, "c_make_encoder", None)


def _prebuilt(encoder: json.JSONEncoder) -> Callable[[Any, int], list[str]]:
    """``encoder``'s C encoder, made once: ``encode`` makes one per call, a third of its cost for
    the small values a run writes several of. No circularity check (markers None): it takes
    JSON-typed values, which ``to_json_value`` made without cycles (deep nesting still raises
    RecursionError)."""
    if _c_make_encoder is None:
        return lambda value, _level: [encoder.encode(value)]
    strings = json.encoder.encode_basestring_ascii if encoder.ensure_ascii else json.encoder.encode_basestring
    return _c_make_encoder(
        None, encoder.default, strings, None, encoder.key_separator,
        encoder.item_separator, encoder.sort_keys, encoder.skipkeys, encoder.allow_nan,
    )  # fmt: skip


_compact_chunks = _prebuilt(_COMPACT)
# The identity hash every run computes.
_canonical_chunks = _prebuilt(_CANONICAL)
# Escapes every non-ASCII character, lone surrogates included.
_ASCII = json.JSONEncoder(separators=(",", ":"))
_ascii_chunks = _prebuilt(_ASCII)


def ascii_dumps(value: Any) -> str:
    """Serialise JSON-typed ``value`` compactly in ASCII (every other character escaped; NaN and
    infinities allowed): a journal's lines."""
    return "".join(_ascii_chunks(value, 0))


def is_plain(params: Mapping[str, Any]) -> bool:
    """Whether every value is a str, int, float, bool or None (already JSON, nothing to convert)."""
    # A loop, not all(...): called for every collected item, twice with resume.
    for value in params.values():  # noqa: SIM110
        if type(value) not in _PLAIN_TYPES:
            return False
    return True


def canonical_json(params: Mapping[str, Any]) -> str:
    """Canonical JSON of a parameter mapping: sorted keys, compact, JSON types only."""
    # Fast path for the usual grid of plain values (resume hashes every collected item).
    if is_plain(params):
        try:
            return _CANONICAL.encode(params)
        except ValueError:  # an int too long to print
            pass
    return _CANONICAL.encode(to_json_value(params))


def param_hash(params: Mapping[str, Any]) -> str:
    """Identity of a grid point: a short sha256 over the canonical JSON of its parameters
    (numpy arrays by content, see :func:`identity_values`; no explicit ids)."""
    return identity_hash(params if is_plain(params) else identity_values(params)[0])


def identity_hash(values: Mapping[str, Any]) -> str:
    """The hash of parameters already made of JSON types (plain ones, or from :func:`identity_values`)."""
    try:
        text = "".join(_canonical_chunks(values, 0))
    except ValueError:  # a plain int too long to print: identity_values writes it in hex
        text = _CANONICAL.encode(identity_values(values)[0])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def identity_values(params: Mapping[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """Each parameter as it counts for the grid point's identity, and the names of those
    whose identity different values may share.

    JSON values count as themselves and numpy arrays by content; any other value as its
    repr, which may be the same for values that differ (the caller compares those).
    """
    values: dict[str, Any] = {}
    ambiguous: set[str] = set()
    for name, value in params.items():
        conversion = Conversion(identity=True)
        values[name] = conversion.convert(value)
        if not conversion.exact:
            ambiguous.add(name)
    return values, ambiguous


def known_equal(one: object, other: object) -> bool:
    """Whether two values are known to be equal (an ``==`` that raises or is not a bool: not known)."""
    if one is other:
        return True
    try:
        return (one == other) is True
    except Exception:
        return False


def volatile_params(params: Mapping[str, Any]) -> list[str]:
    """Names of parameters whose stored form holds a memory address (never the same twice)."""
    names = []
    for name, value in params.items():
        text = canonical_json({"v": value})
        if _MEMORY_ADDRESS.search(text):
            names.append(name)
    return names


def as_number(value: object) -> float | None:
    """Return ``value`` as a float when it is a real number a float can hold (numpy included, bool excluded)."""
    if isinstance(value, bool):
        return None
    if not isinstance(value, (int, float)):
        value = _numpy_scalar(value)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return None
    try:
        return float(value)
    except OverflowError:  # an int beyond 1.8e308
        return None


def too_large(value: object) -> bool:
    """Whether ``value`` is an int no float can hold."""
    return isinstance(value, int) and not isinstance(value, bool) and as_number(value) is None


def metrics_from_result(result: Any, skipped: list[str] | None = None) -> dict[str, float]:
    """Metrics carried by a return value.

    A bare number is the metric ``result``; a mapping contributes each numeric leaf,
    nested keys joined with ``.``. Anything else carries no metric. The names of ints too
    large for a float are appended to ``skipped`` when given: they are no metrics.
    """
    if (
        type(result) is dict
        and FLOAT_ONLY.issuperset(map(type, result.values()))
        and _STR_ONLY.issuperset(map(type, result))
    ):
        return result.copy()  # the usual result, floats by name: its own metrics
    skipped = [] if skipped is None else skipped
    if type(result) is not dict:  # a dict is no number: the usual result goes straight on
        number = as_number(result)
        if number is not None:
            return {"result": number}
        if too_large(result):
            skipped.append("result")
    metrics: dict[str, float] = {}
    if isinstance(result, Mapping):
        # A mapping whose own methods raise keeps the metrics found before.
        with contextlib.suppress(Exception):
            _collect_leaves(result, "", metrics, skipped, {id(result)})
    return metrics


def _collect_leaves(
    mapping: Mapping[Any, Any], prefix: str, out: dict[str, float], skipped: list[str], open_: set[int]
) -> None:
    for key, value in mapping.items():
        name = prefix + key if type(key) is str else f"{prefix}{_key(key)}"
        kind = type(value)
        if kind is float:  # the usual leaf
            out[name] = value
            continue
        if kind is dict or (kind is not int and isinstance(value, Mapping)):
            # A mapping holding itself, or nested too deep, has no further metrics.
            if id(value) not in open_ and len(open_) < _MAX_DEPTH:
                open_.add(id(value))
                _collect_leaves(value, name + ".", out, skipped, open_)
                open_.discard(id(value))
            continue
        number = as_number(value)
        if number is not None:
            out[name] = number
        elif too_large(value):
            skipped.append(name)
