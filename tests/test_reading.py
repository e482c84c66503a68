"""Reading results: ``load()``'s filters and the default ``runs`` table, on stores written
by real pytest sessions."""

from __future__ import annotations

from pathlib import Path

import pandas  # imported once here: in-process sessions cannot import numpy's C modules twice
import pytest
from cli_helpers import cli

from pytest_experiments import load
from pytest_experiments.cli.results import default_columns
from pytest_experiments.model import STATUSES

pytestmark = pytest.mark.usefixtures("clean_env")

# Two modules with an experiment of the same name, and a method.
SAME_NAMES = {
    "test_a": """
        import pytest


        @pytest.mark.grid(i=[0, 1])
        def test_x(i):
            return i
    """,
    "test_b": """
        import pytest


        @pytest.mark.grid(i=[0])
        def test_x(i):
            return i


        class TestNet:
            @pytest.mark.grid(width=[8])
            def test_fit(self, width):
                return width
    """,
}


@pytest.fixture
def same_names(pytester: pytest.Pytester) -> Path:
    pytester.makepyfile(**SAME_NAMES)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=4)
    return pytester.path / ".experiments"


@pytest.mark.parametrize(
    ("experiment", "expected"),
    [
        ("test_a.py::test_x", ["test_a.py::test_x[i=0]", "test_a.py::test_x[i=1]"]),
        ("test_b.py::test_x", ["test_b.py::test_x[i=0]"]),
        ("test_x", ["test_a.py::test_x[i=0]", "test_a.py::test_x[i=1]", "test_b.py::test_x[i=0]"]),
        ("test_b.py::TestNet.test_fit", ["test_b.py::TestNet::test_fit[width=8]"]),
        (
            ["test_a.py::test_x", "TestNet.test_fit"],
            ["test_a.py::test_x[i=0]", "test_a.py::test_x[i=1]", "test_b.py::TestNet::test_fit[width=8]"],
        ),
        ("test_c.py::test_x", []),
    ],
    ids=["module-a", "module-b", "name", "method", "mixed", "unknown-module"],
)
def test_load_accepts_module_and_name_as_the_command_line_does(
    same_names: Path, experiment: str | list[str], expected: list[str]
) -> None:
    frame = load(same_names, experiment=experiment)
    assert sorted(frame["node_id"]) == expected
    assert sorted(load(same_names, experiment=experiment, history=True)["node_id"]) == expected


@pytest.mark.parametrize("status", ["passd", ["passed", "Failed"]])
def test_load_names_the_statuses_for_an_unknown_one(same_names: Path, status: str | list[str]) -> None:
    bad = status if isinstance(status, str) else status[1]
    with pytest.raises(ValueError, match=f"unknown status '{bad}'; statuses are {', '.join(STATUSES)}"):
        load(same_names, status=status)
    assert len(load(same_names, status=["passed", "failed"])) == 4


# -- the default runs table -----------------------------------------------------------------

SWEEPS = {
    "test_vision": """
        import pytest


        @pytest.mark.grid(dataset=["iris", "wine"], lr=[0.1, 0.01], seed=[0, 1])
        def test_classifier(dataset, lr, seed, xp):
            xp.log_param("train_size", 120)
            return {"acc": 0.9 - lr, "loss": lr * 2, "f1": 0.8 + seed / 100}
    """,
    "test_text": """
        import pytest


        @pytest.mark.grid(model=["crf", "hmm"], window=[3, 5])
        def test_tagger(model, window):
            return {"token_f1": 0.7 + window / 100, "speed": 1000.0 / window}
    """,
}
VISION_METRICS = ["metrics.acc", "metrics.loss", "metrics.f1"]
TEXT_METRICS = ["metrics.token_f1", "metrics.speed"]
GRID_PARAMS = ["params.dataset", "params.lr", "params.seed", "params.model", "params.window"]


@pytest.fixture
def sweeps(pytester: pytest.Pytester) -> Path:
    """Latest runs in start order: wine (session 1), tagger (session 2), iris (session 3)."""
    pytester.makepyfile(**SWEEPS)
    pytester.runpytest("test_vision.py", "-p", "no:cacheprovider").assert_outcomes(passed=8)
    pytester.runpytest("test_text.py", "-p", "no:cacheprovider").assert_outcomes(passed=4)
    pytester.runpytest("test_vision.py", "-k", "iris", "-p", "no:cacheprovider").assert_outcomes(passed=4, deselected=4)
    return pytester.path / ".experiments"


def runs_table(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, width: int, *args: str
) -> list[str]:
    monkeypatch.setenv("COLUMNS", str(width))
    code, out, err = cli(capsys, "runs", *args)
    assert (code, err) == (0, ""), err
    lines = out.splitlines()
    assert all(len(line) <= width for line in lines), lines
    return lines


@pytest.mark.parametrize("width", [80, 160])
def test_default_table_shows_metrics_first_and_no_parameter_the_node_id_shows(
    sweeps: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    lines = runs_table(capsys, monkeypatch, width, "--store", str(sweeps), "--experiment", "test_classifier")
    assert lines[0] == "node ids below start with test_vision.py::"
    header = lines[1].split()
    assert header[:5] == ["node_id", "status", *VISION_METRICS]
    assert not set(GRID_PARAMS) & set(header)  # each node id says dataset=...-lr=...-seed=...
    if width == 160:
        assert header[5:] == ["params.train_size", "duration", "started_at", "run_id"]  # a logged parameter stays
    rows = [line.split() for line in lines[2:10]]
    # Grouped by experiment, in start order: the wine runs of the first session, then the iris
    # runs of the third; the ends of the node ids stay when they are shortened.
    expected = [
        f"test_classifier[dataset={dataset}-lr={lr}-seed={seed}]"
        for dataset in ("wine", "iris")
        for lr in ("0.1", "0.01")
        for seed in (0, 1)
    ]
    if width == 160:
        assert [row[0] for row in rows] == expected
    else:
        assert [row[0][-12:] for row in rows] == [node_id[-12:] for node_id in expected]
    assert [row[1:5] for row in rows[:2]] == [["passed", "0.8", "0.2", "0.8"], ["passed", "0.8", "0.2", "0.81"]]


@pytest.mark.parametrize("width", [80, 160])
def test_default_table_of_several_experiments_groups_rows_and_shows_their_metrics(
    sweeps: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    lines = runs_table(capsys, monkeypatch, width, "--store", str(sweeps))
    header = lines[0].split()
    metrics = TEXT_METRICS + VISION_METRICS  # the frame's order: the first group's come first
    assert header[:2] == ["node_id", "status"]
    assert not set(GRID_PARAMS) & set(header)
    if width == 160:
        assert header[2:] == [*metrics, "params.train_size"]
        assert "not shown: duration, started_at, run_id;" in lines[13]
    else:
        assert header[2:] == TEXT_METRICS
        assert "more columns not shown: metrics.acc, metrics.loss, metrics.f1," in lines[13]
    # Grouped by experiment (module, then function), each in start order: the tagger's runs,
    # then the classifier's wine runs of the first session and its iris runs of the third.
    assert [line.split("::")[0] for line in lines[1:13]] == ["test_text.py"] * 4 + ["test_vision.py"] * 8
    if width == 160:
        datasets = [line.split("[")[1].split("-")[0] for line in lines[5:13]]
        assert datasets == ["dataset=wine"] * 4 + ["dataset=iris"] * 4
        assert lines[5].split()[2:] == ["0.8", "0.2", "0.8", "120"]  # the classifier's own metrics


def test_a_parameter_counts_as_shown_only_where_its_node_id_spells_it_out() -> None:
    frame = pandas.DataFrame(
        {
            "node_id": ["m.py::t[lr=0.1-seed=0]", "m.py::t[lr=0.15-seed=1]", "m.py::u[cfg0]", "m.py::v"],
            "params.lr": [0.1, 0.1, None, None],
            "params.seed": [0, 1, None, None],
            "params.cfg": [None, None, "{'a': 1}", None],
            "metrics.acc": [0.5, 0.6, 0.7, 0.8],
            "duration": [1.0] * 4,
            "started_at": [None] * 4,
            "run_id": list("abcd"),
            "error": [None] * 4,
        }
    )
    # lr=0.1 is not what "lr=0.15" shows; seed is shown wherever it is set; cfg never.
    columns = default_columns(frame)
    assert columns == [
        "node_id",
        "status",
        "metrics.acc",
        "params.lr",
        "params.cfg",
        "duration",
        "started_at",
        "run_id",
    ]
    assert default_columns(frame.iloc[[0]]) == ["node_id", "status", "metrics.acc", "duration", "started_at", "run_id"]
