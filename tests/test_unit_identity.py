"""Unit tests, no pytest session: a grid point's identity (the parameter hash) and run folder paths.

The golden hashes below are what stores already hold: a change of hashing would make every
stored grid point look never run to ``--xp-resume``. Change them only with a store migration.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_experiments.store.rundirs import inside, relative_run_dir, safe_name, within
from pytest_experiments.values import canonical_json, param_hash

PARAMS = {
    "lr": 0.01,
    "seed": 3,
    "model": "resnet",
    "layers": [64, 128],
    "dropout": None,
    "augment": True,
    "opts": {"b": 1, "a": "x"},
}


def test_the_parameter_hash_is_golden() -> None:
    assert canonical_json(PARAMS) == (
        '{"augment":true,"dropout":null,"layers":[64,128],"lr":0.01,"model":"resnet","opts":{"a":"x","b":1},"seed":3}'
    )
    assert param_hash(PARAMS) == "76267bca8310787c8c11"
    assert param_hash({"big": 2**80}) == "40c4a587556697350bd7"  # an int JSON cannot print: its hex


def test_the_parameter_hash_ignores_key_order_and_tells_values_apart() -> None:
    assert param_hash({"lr": 0.01, "seed": 3}) == param_hash({"seed": 3, "lr": 0.01}) == "7cf0f70aead397f64e11"
    assert param_hash({"lr": 0.01, "seed": 3}) != param_hash({"lr": 0.01, "seed": 4})
    assert param_hash({"seed": 1}) != param_hash({"seed": "1"})
    assert len(param_hash({})) == 20


@pytest.mark.parametrize(
    ("experiment", "run_id", "expected"),
    [
        ("test_train", "abc123", "runs/test_train/abc123"),
        ("../../etc", "x", "runs/etc/x"),
        ("test a/b", "r/../1", "runs/test_a_b/r_.._1"),
        ("..", "", "runs/experiment/run"),
        ("test_x", "ü-1", "runs/test_x/_-1"),  # not a plugin id: cleaned as any other
    ],
)
def test_run_folders_are_built_from_safe_names(experiment: str, run_id: str, expected: str) -> None:
    assert relative_run_dir(experiment, run_id) == expected


def test_safe_names_are_never_dots_or_empty_or_long() -> None:
    assert safe_name(".") == safe_name("..") == safe_name("") == "experiment"
    assert len(safe_name("x" * 500)) == 100


def test_a_path_inside_the_store_is_allowed_and_one_leaving_it_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "store"
    assert inside(root, "runs/test_x/1") == root / "runs" / "test_x" / "1"
    assert inside(root, "runs/../runs/x") == root / "runs" / "x"
    for leaving in ("../elsewhere", "runs/../../x", "/etc/passwd"):
        with pytest.raises(ValueError, match="would leave the store"):
            inside(root, leaving)


def test_containment_is_decided_on_normalised_paths(tmp_path: Path) -> None:
    root = tmp_path / "store"
    assert within(root, root)
    assert within(root, root / "runs" / "a")
    assert not within(root, tmp_path / "store-sibling")  # a shared prefix is not containment
    assert not within(root, root / ".." / "x")
    # A symlink made inside the store (runs/ on scratch storage) is followed: not resolved here.
    (tmp_path / "scratch").mkdir()
    root.mkdir()
    (root / "runs").symlink_to(tmp_path / "scratch")
    assert within(root, root / "runs" / "x")
