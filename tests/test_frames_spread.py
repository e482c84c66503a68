"""The runs' mappings spread into columns by groups of runs with the same names
(``frames/spread.py``), and the frames built from them: each column as a lookup per run and name
would give it, and ``load()`` (built, kept, patched) equal to the frame built row by row from the
records, whichever way pandas keeps text."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from frames_reference import reference_runs_frame
from test_store_contract import run_end, run_start, session_start

from pytest_experiments import Store, load
from pytest_experiments.frames.spread import BOOL, FLOAT, INT, NAN, NONE, OTHER, STR, spread

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="liveness reads /proc")


def looked_up(parts: list[list[dict[str, Any]]]) -> dict[str, list[Any]]:
    """What a lookup per run and name gives: names in order of first appearance, a later part winning."""
    merged = [{k: v for part in row for k, v in part.items()} for row in zip(*parts, strict=True)]
    names = dict.fromkeys(name for row in zip(*parts, strict=True) for part in row for name in part)
    return {name: [row.get(name) for row in merged] for name in names}


def test_columns_are_what_a_lookup_per_run_gives() -> None:
    declared = [{"b": 1, "a": "x"}, {"a": None}, {}, {"b": 2, "a": "y"}, {"c": [1, 2]}, {"a": "z", "b": 3}]
    logged = [{}, {"b": 5.5}, {"d": {"k": [3]}}, {"a": "w"}, {}, {}]
    section = spread((declared, logged), codes=True)
    expected = looked_up([declared, logged])
    assert list(section.values) == list(expected) == ["b", "a", "d", "c"]
    assert section.lists() == expected
    # A list or a mapping is one value, never spread by numpy into an array of its own.
    assert section.values["c"][4] == [1, 2]
    assert section.values["d"][2] == {"k": [3]}
    # The runs' keys: one per distinct sequence of names (order counts), in order of first appearance.
    assert section.keys == [(("b", "a"), ()), (("a",), ("b",)), ((), ("d",)), (("b", "a"), ("a",)), (("c",), ()), (("a", "b"), ())]  # fmt: skip
    assert section.ids.tolist() == [0, 1, 2, 3, 4, 5]
    assert section.codes["b"].tolist() == [INT, FLOAT, NONE, INT, NONE, INT]
    assert section.codes["a"].tolist() == [STR, NONE, NONE, STR, NONE, STR]
    assert section.codes["d"].tolist() == [NONE, NONE, OTHER, NONE, NONE, NONE]


def test_runs_with_the_same_names_share_a_key_and_their_types_are_found_per_value() -> None:
    rows = [{"x": 1.5}, {"x": math.nan}, {"x": True}, {"x": 2}, {"x": "s"}, {"x": None}, {"y": 1}]
    section = spread((rows,), codes=True)
    assert section.keys == [(("x",),), (("y",),)]
    assert section.ids.tolist() == [0, 0, 0, 0, 0, 0, 1]
    assert section.codes["x"].tolist() == [FLOAT, NAN, BOOL, INT, STR, NONE, NONE]
    values = section.lists()["x"]
    assert values[2] is True
    assert type(values[3]) is int
    assert values[5] is None


def test_metrics_are_floats_unless_one_is_not_a_number() -> None:
    rows: list[dict[str, Any]] = [{"loss": 0.5, "acc": 1}, {"loss": None}, {"acc": True, "loss": -math.inf}, {}]
    floats = spread((rows,), floats=True)
    assert floats.values["loss"].dtype == np.float64
    np.testing.assert_array_equal(floats.values["loss"], [0.5, np.nan, -np.inf, np.nan])
    np.testing.assert_array_equal(floats.values["acc"], [1.0, np.nan, 1.0, np.nan])
    # Text would be parsed by numpy ("1.5" -> 1.5): such a section is given as objects instead.
    objects = spread(([*rows, {"loss": "1.5"}],), floats=True)
    assert objects.values["loss"].dtype == object
    assert objects.lists()["loss"] == [0.5, None, -math.inf, None, "1.5"]


def test_no_runs_and_no_names() -> None:
    assert spread(([],), codes=True).values == {}
    empty = spread(([{}, {}], [{}, {}]), codes=True)
    assert empty.values == {}
    assert empty.keys == [((), ())]
    assert empty.ids.tolist() == [0, 0]


def test_keys_of_several_parts_come_in_order_of_first_appearance() -> None:
    # Each part's names numbered by first appearance would order the combinations (A, Y), (A, X),
    # (B, X); the runs show them (A, Y), (B, X), (A, X).
    declared = [{"a": 1}, {"b": 2}, {"a": 3}, {"b": 4}]
    logged = [{"y": 1}, {"x": 2}, {"x": 3}, {"x": 4}]
    section = spread((declared, logged), codes=True)
    assert section.keys == [(("a",), ("y",)), (("b",), ("x",)), (("a",), ("x",))]
    assert section.ids.tolist() == [0, 1, 2, 1]
    assert section.lists() == looked_up([declared, logged])


@pytest.mark.parametrize("seed", range(5))
def test_spread_equals_a_lookup_for_runs_of_many_shapes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    names = ["a", "b", "c", "d"]
    values: list[Any] = [0, 1.5, None, "t", True, [1], {"k": 2}, math.nan, -3]

    def mapping() -> dict[str, Any]:
        chosen = rng.permutation(names)[: rng.integers(0, 4)].tolist()
        return {name: values[rng.integers(0, len(values))] for name in chosen}

    parts = [[mapping() for _ in range(200)] for _ in range(2)]
    section = spread(parts, codes=True)
    expected = looked_up(parts)
    assert list(section.values) == list(expected)
    for name, column in section.lists().items():  # NaN != NaN: compared by identity first
        assert all(got is want or got == want for got, want in zip(column, expected[name], strict=True))
    # Each run's key is its names; the keys are distinct, in order of first appearance.
    ids = section.ids.tolist()
    assert [section.keys[ids[row]] for row in range(200)] == [(tuple(a), tuple(b)) for a, b in zip(*parts, strict=True)]
    assert len(set(section.keys)) == len(section.keys)
    assert [ids.index(key) for key in range(len(section.keys))] == sorted(ids.index(key) for key in set(ids))


def test_text_columns_made_by_arrow_equal_those_arrow_makes_of_the_values() -> None:
    from pytest_experiments.frames.build import _text, _text_dtype

    text = _text_dtype()
    if text is None:
        pytest.skip("pandas keeps text in Python objects here")
    # ASCII text (made from one joined text), text beyond ASCII, text with None.
    for values in (["ab", "", "c" * 70, "x"], ["é", "ab", "\x00"], ["ab", None, "c"]):
        pd.testing.assert_extension_array_equal(_text(values, text), pd.array(values, dtype=text))
    for values in (["ab", 1], [None, None]):  # not all text, or None alone: the list, for pandas
        assert _text(values, text) is values


def record(store: Store, session: Any, point: object, at: float, **fields: Any) -> None:
    options = {key: fields.pop(key) for key in ("experiment", "params") if key in fields}
    start = run_start(session, point, started_at=at, run_id=f"run-{at}", **options)
    store.start_run(start)
    store.finish_run(run_end(start.run_id, "passed", **fields))


def fill_mixed(store: Store) -> None:
    """Runs whose names come in different orders and whose text columns take each way: text with
    None (Arrow's), text beside a number (pandas'), None alone (an object column)."""
    session = session_start("mixed")
    store.record_session(session)
    base = time.time() - 100
    record(store, session, 0, base, params={"b": "t", "a": 1, "none": None}, metrics={"m": 1.0}, tags={"k": "v"})
    record(store, session, 1, base + 1, params={"a": 2, "b": None, "none": None}, metrics={"n": 2, "m": True})
    record(store, session, 2, base + 2, params={"b": "u\x00é", "mix": "x"}, logged_params={"a": 3.5})
    record(store, session, 3, base + 3, experiment="test_other", params={"mix": 4, "text": "only"})
    record(store, session, 0, base + 4, params={"b": "t", "a": 1, "none": None}, metrics={"m": 0.25})


@pytest.mark.parametrize("storage", ["pyarrow", "python"])
@pytest.mark.parametrize("history", [False, True], ids=["latest", "history"])
def test_load_equals_the_frame_built_from_records(tmp_path: Path, history: bool, storage: str) -> None:
    if storage == "pyarrow":
        pytest.importorskip("pyarrow")
    location = tmp_path / "store"
    with Store.open(location, create=True) as store:
        fill_mixed(store)
    with pd.option_context("mode.string_storage", storage):
        built = load(location, history=history)
        again = load(location, history=history)  # read back from the kept frame
        with Store.open(location) as store:
            reference = reference_runs_frame(store.runs(history=history))
            session = session_start("more")
            store.record_session(session)
            record(store, session, 5, time.time(), params={"b": None, "a": 7}, tags={"k": "w"})
        patched = load(location, history=history)
        with Store.open(location) as store:
            after = reference_runs_frame(store.runs(history=history))
    for frame in (built, again):
        pd.testing.assert_frame_equal(frame, reference, check_exact=True)
    pd.testing.assert_frame_equal(patched, after, check_exact=True)
    assert built["params.none"].dtype == object
    assert built["params.mix"].dtype == object


@contextlib.contextmanager
def mixed_store(location: Path, name: str) -> Iterator[tuple[Store, Any]]:
    """A new store at ``location`` holding :func:`fill_mixed`'s runs, and a session ``name`` recorded in it."""
    with Store.open(location, create=True) as store:
        fill_mixed(store)
        session = session_start(name)
        store.record_session(session)
        yield store, session


@pytest.mark.parametrize("history", [False, True], ids=["latest", "history"])
@pytest.mark.parametrize("case", ["separator", "started-before"])
def test_load_of_runs_the_database_joins_equals_the_frame_built_from_records(
    tmp_path: Path, history: bool, case: str
) -> None:
    # SQLite joins each text field of all runs with the unit separator: a value holding it is read
    # as rows instead. A run written after others but started before them is moved to its place.
    location = tmp_path / "store"
    with mixed_store(location, "late") as (store, session):
        if case == "separator":
            record(store, session, "a\x1fb", time.time() - 50, metrics={"m": 2.0}, tags={"k": "v\x1f"})
        else:
            record(store, session, 9, time.time() - 500, metrics={"m": 3.0})
    built = load(location, history=history)
    with Store.open(location) as store:
        reference = reference_runs_frame(store.runs(history=history))
    pd.testing.assert_frame_equal(built, reference, check_exact=True)
    if case == "separator":
        assert "test_mod.py::test_x[a\x1fb]" in set(built["node_id"])
    else:
        assert built["run_id"].iloc[0] == reference["run_id"].iloc[0]
        assert built["started_at"].is_monotonic_increasing


def test_runs_whose_joined_text_is_too_long_for_sqlite_are_read_as_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    import pytest_experiments.store.sqlite as backend

    location = tmp_path / "store"
    with mixed_store(location, "long") as (store, session):
        for point in range(30):
            record(store, session, point, time.time() - 40 + point, params={"long": "y" * 100})
    with Store.open(location) as store:
        reference = reference_runs_frame(store.runs(history=True))
    connect, read_as_rows = sqlite3.connect, []

    def short_texts(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection = connect(*args, **kwargs)
        connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1500)  # the parameters joined are longer
        return connection

    listed_rows = backend._listed_rows
    monkeypatch.setattr(sqlite3, "connect", short_texts)
    monkeypatch.setattr(backend, "_listed_rows", lambda *args: read_as_rows.append(1) or listed_rows(*args))
    pd.testing.assert_frame_equal(load(location, history=True), reference, check_exact=True)
    assert read_as_rows


def test_rows_come_in_start_order_ties_by_run_id_for_the_latest() -> None:
    from pytest_experiments.store.columns import _order

    def ordered(runs: list[tuple[str, float]], by_run_id: bool) -> list[str] | None:
        order = _order([started for _, started in runs], [run_id for run_id, _ in runs], by_run_id)
        return None if order is None else [runs[row][0] for row in order]

    in_order = [("b", 1.0), ("a", 2.0), ("c", 3.0)]
    assert ordered(in_order, True) is None  # as they came
    assert ordered(in_order, False) is None
    tied = [("b", 1.0), ("a", 1.0), ("c", 3.0)]
    assert ordered(tied, True) == ["a", "b", "c"]  # the latest: by run id
    assert ordered(tied, False) is None  # every run: as written
    late = [("b", 2.0), ("a", 1.0), ("c", 1.0), ("d", 0.5)]
    assert ordered(late, False) == ["d", "a", "c", "b"]
    assert ordered(late, True) == ["d", "a", "c", "b"]
