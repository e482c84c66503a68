"""The HTML report's structure, without a browser: ``pytest-experiments report`` and ``--xp-html``
on stores written by real sessions, the page parsed with ``html.parser``.

What a person sees is tested in ``test_report_browser.py``; here: one self-contained file, the
data embedded so that no value can break out of its block, every option of the command.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import cli, user_error
from report_project import EVIL_ERROR, EVIL_FILE, EVIL_PARAM, EVIL_TAG, sweep_source

from pytest_experiments import Store
from pytest_experiments.frames import runs_frame  # noqa: F401  (pandas once, at collection: pytester drops what a test imports first)
from pytest_experiments.report.gather import json_safe, thin
from pytest_experiments.report.page import embedded_json

pytestmark = pytest.mark.usefixtures("clean_env")

HELPER = Path(__file__).with_name("report_project.py")


class Page(HTMLParser):
    """Every element of a page with its attributes, and the text of its script blocks."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._in_script: dict[str, str | None] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = dict(attrs)
            self.scripts.append((self._in_script, ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = None

    def handle_data(self, data: str) -> None:
        if self._in_script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def data(self) -> dict[str, Any]:
        """The embedded report data."""
        blocks = [text for attrs, text in self.scripts if attrs.get("type") == "application/json"]
        assert len(blocks) == 1
        parsed: dict[str, Any] = json.loads(blocks[0])
        return parsed


@pytest.fixture
def sweep(pytester: pytest.Pytester) -> Path:
    """A store holding a sweep of 18 runs with markup in its values (one failed) and a run with images."""
    pytester.makepyfile(report_project=HELPER.read_text(), test_sweep=sweep_source())
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=18, failed=1)
    return pytester.path / ".experiments"


def read_page(path: Path) -> tuple[str, Page]:
    text = path.read_text(encoding="utf-8")
    return text, Page(text)


def test_one_self_contained_file_with_every_value_as_data(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.html"
    code, stdout, _ = cli(capsys, "--store", sweep, "report", "-o", out)
    assert code == 0
    assert stdout == f"wrote {out} (19 runs)\n"
    text, page = read_page(out)
    # Two scripts only: the data (never run) and the page's own code; nothing loaded from anywhere.
    assert [attrs for attrs, _ in page.scripts] == [{"type": "application/json", "id": "xp-data"}, {}]
    for tag, attrs in page.elements:
        assert tag not in ("link", "iframe", "object", "embed", "img"), tag
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert not any(name in ("src", "href") and value and "//" in value for name, value in attrs.items())
    # No value can end the data block, open a comment, or be seen as markup by the parser.
    for raw in (EVIL_PARAM, EVIL_FILE, EVIL_TAG, EVIL_ERROR, "</script", "<!--"):
        assert raw not in text.split('<script type="application/json"', 1)[1].split("</script>", 1)[0]
    assert "alert(1)</script>" not in text
    data = page.data()
    runs = {run["node"]: run for run in data["runs"]}
    assert len(runs) == 19
    evil = next(run for run in data["runs"] if run["params"].get("name") == EVIL_PARAM)
    assert evil["tags"] == {"name": EVIL_PARAM}
    failed = next(run for run in data["runs"] if run["status"] == "failed")
    assert failed["error"] == f"ValueError: {EVIL_ERROR}"
    assert "raise ValueError(EVIL_ERROR)" in failed["traceback"]
    files = next(run for run in data["runs"] if run["node"].endswith("test_files"))
    assert files["tags"] == {"team": EVIL_TAG}
    assert [(f["name"], f["type"], f["kind"]) for f in files["files"]] == [
        ("curve.png", "image/png", "file"),
        (EVIL_FILE, "image/png", None),
    ]
    assert all(f["data"] for f in files["files"])  # embedded
    assert evil["series"]["loss"][:2] == [
        [0, pytest.approx(evil["series"]["loss"][0][1])],
        [1, pytest.approx(evil["series"]["loss"][1][1])],
    ]
    assert len(evil["series"]["loss"]) == 8
    train = next(exp for exp in data["experiments"] if exp["name"] == "test_train")
    assert (train["runs"], train["counts"], train["seed"]) == (18, {"passed": 17, "failed": 1}, "seed")
    assert train["varied"] == ["lr", "seed", "name"]  # size has one value: nothing to plot against


def test_where_experiment_and_status_select_the_runs(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.html"
    assert cli(capsys, "--store", sweep, "report", "-o", out, "--where", "params.lr > 0.005")[0] == 0
    assert {run["params"]["lr"] for run in read_page(out)[1].data()["runs"]} == {0.01, 0.1}
    assert cli(capsys, "--store", sweep, "report", "-o", out, "--experiment", "test_files")[0] == 0
    assert [run["exp"] for run in read_page(out)[1].data()["runs"]] == ["test_sweep.py::test_files"]
    assert cli(capsys, "--store", sweep, "report", "-o", out, "--status", "failed")[0] == 0
    assert [run["status"] for run in read_page(out)[1].data()["runs"]] == ["failed"]


def test_compare_opens_on_the_runs_given(sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Store.open(sweep, readonly=True) as store:
        runs = store.runs()
    first, second = runs[0].run_id, runs[1].run_id
    out = tmp_path / "r.html"
    code, _, _ = cli(capsys, "--store", sweep, "report", "-o", out, "--compare", first[:-2], runs[1].node_id)
    assert code == 0
    assert read_page(out)[1].data()["compare"] == [first, second]


def test_a_compared_run_outside_the_selection_comes_along(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Store.open(sweep, readonly=True) as store:
        train, files = store.runs(experiment="test_train")[0], store.runs(experiment="test_files")[0]
    out = tmp_path / "r.html"
    args = ("--experiment", "test_train", "--compare", train.run_id, files.run_id)
    assert cli(capsys, "--store", sweep, "report", "-o", out, *args)[0] == 0
    data = read_page(out)[1].data()
    assert len(data["runs"]) == 19
    assert data["compare"] == [train.run_id, files.run_id]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--compare", "20"), "--compare needs two or more runs"),
        (("--compare", "nope", "nada"), "no run with id or node id 'nope'"),
        (("--where", "params.nope > 1"), "unknown column 'params.nope'"),
        (("--experiment", "test_nothing"), "no experiment 'test_nothing' in the store"),
        (("-o", "."), "is a folder; give a file name"),
    ],
)
def test_bad_options_are_one_line(
    sweep: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    assert message in user_error(capsys, "--store", sweep, "report", *args)


def test_a_store_without_runs_is_one_line(pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]) -> None:
    assert "no experiment store at" in user_error(capsys, "--store", pytester.path / "none", "report")
    assert not (pytester.path / "report.html").exists()


@pytest.mark.parametrize("workers", [None, "2"])
def test_xp_html_is_written_at_the_end_of_the_session(pytester: pytest.Pytester, workers: str | None) -> None:
    pytester.makepyfile(report_project=HELPER.read_text(), test_sweep=sweep_source())
    pytester.makepyfile(test_other="def test_other(xp):\n    return {'x': 1}\n")
    options = ["-n", workers] if workers else []
    result = pytester.runpytest("-p", "no:randomly", "test_sweep.py", "--xp-html=out/report.html", *options)
    result.assert_outcomes(passed=18, failed=1)
    result.stdout.fnmatch_lines(["xp: HTML report of 19 runs written to */out/report.html"])
    # A later session of another experiment: its report shows that experiment only.
    pytester.runpytest("-p", "no:randomly", "test_other.py", "--xp-html=out/other.html").assert_outcomes(passed=1)
    data = read_page(pytester.path / "out" / "report.html")[1].data()
    assert len(data["runs"]) == 19
    assert [run["exp"] for run in read_page(pytester.path / "out" / "other.html")[1].data()["runs"]] == [
        "test_other.py::test_other"
    ]


def test_xp_html_path_is_checked_before_anything_runs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_one="def test_one(xp):\n    return {'x': 1}\n")
    pytester.makefile(".txt", blocker="")
    result = pytester.runpytest("--xp-html=blocker.txt/report.html")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: xp: --xp-html: cannot write */blocker.txt/report.html: * is not a folder"])
    assert not (pytester.path / ".experiments").exists()


def test_xp_html_as_two_tokens_is_refused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_one="def test_one(xp):\n    return {'x': 1}\n")
    result = pytester.runpytest("--xp-html", "report.html")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*write --xp-html=report.html as one token*"])


def test_without_experiments_no_report_is_written(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    pytester.runpytest("--xp-html=report.html").assert_outcomes(passed=1)
    assert not (pytester.path / "report.html").exists()
    assert not (pytester.path / ".experiments").exists()


def test_embedded_json_cannot_close_its_block() -> None:
    text = embedded_json({"a": "</script><!-- & -->", "b": [1.5, None]})
    assert not {"<", ">", "&"} & set(text)
    assert json.loads(text) == {"a": "</script><!-- & -->", "b": [1.5, None]}


def test_non_finite_numbers_become_strings_json_can_hold() -> None:
    assert json_safe({"m": [float("nan"), float("inf"), -float("inf"), 1.0]}) == {"m": ["nan", "inf", "-inf", 1.0]}
    embedded_json(json_safe({"x": float("nan")}))  # allow_nan=False would raise on a NaN left


def test_long_series_are_thinned_evenly_keeping_both_ends() -> None:
    points = [[step, float(step)] for step in range(10_001)]
    kept = thin(points, 500)
    assert len(kept) == 500
    assert (kept[0], kept[-1]) == ([0, 0.0], [10_000, 10_000.0])
    assert thin(points[:10], 500) == points[:10]


def test_a_report_that_cannot_be_written_at_the_end_is_one_line_and_exit_status_1(pytester: pytest.Pytester) -> None:
    # The path was fine at the start; the experiment itself takes it away.
    pytester.makepyfile(
        test_one="""
        from pathlib import Path

        def test_one(xp):
            Path("report.html").mkdir()
            return {"x": 1}
        """
    )
    result = pytester.runpytest("--xp-html=report.html")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["xp: error: could not write the HTML report */report.html: Is a directory"])
    result.stdout.no_fnmatch_line("*Traceback*")
    with Store.open(pytester.path / ".experiments", readonly=True) as store:
        assert [run.status for run in store.runs()] == ["passed"]  # the run is kept whatever happens
