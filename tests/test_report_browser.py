"""The HTML report as a person sees it: a report of 301 runs written by a real ``-n 2`` session
(``--xp-html``), opened from disk in headless Chromium.

Every test fails on any message the page logs at error level. Screenshots are kept under the
pytest temporary folder (``screenshots/``) as the tests' artefacts.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import chromium, open_report, start_browser
from cli_helpers import cli
from processes import inner_env
from report_project import EVIL_ERROR, EVIL_FILE, EVIL_PARAM, EVIL_TAG, sweep_source
from selenium.webdriver.support.ui import WebDriverWait

from pytest_experiments import Store

pytestmark = pytest.mark.skipif(chromium() is None, reason="needs chromium and chromedriver (apt-get install)")

HELPER = Path(__file__).with_name("report_project.py")
RUNS = 301  # 2 names x 5 learning rates x 5 seeds x 6 sizes, and test_files


class Sweep:
    """The store of the sweep, its report, and where screenshots go."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.store = folder / ".experiments"
        self.report = folder / "report.html"
        self.screenshots = folder / "screenshots"
        self.screenshots.mkdir()
        with Store.open(self.store, readonly=True) as store:
            self.runs = store.runs()

    def run_id(self, node_suffix: str) -> str:
        return next(run.run_id for run in self.runs if run.node_id.endswith(node_suffix))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    folder = tmp_path_factory.mktemp("report-sweep")
    (folder / "report_project.py").write_text(HELPER.read_text())
    (folder / "test_sweep.py").write_text(sweep_source(lrs=5, seeds=5, sizes=6))
    command = [sys.executable, "-m", "pytest", "-p", "no:randomly", "-n", "2", "-q", "--xp-html=report.html"]
    done = subprocess.run(command, cwd=folder, env=inner_env(), capture_output=True, text=True, check=False)
    assert done.returncode == 1, done.stdout + done.stderr  # the one failing run
    assert f"xp: HTML report of {RUNS} runs written to" in done.stdout
    return Sweep(folder)


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    browser = start_browser()
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def page(driver: Any, sweep: Sweep, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The browser, its console checked after the test, a screenshot of where the test left it."""
    driver.get_log("browser")  # what earlier tests left
    yield driver
    driver.save_screenshot(str(sweep.screenshots / f"{request.node.name}.png"))
    errors = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
    # Nothing a value held was ever run: no dialog opened, no element from the data became markup.
    assert driver.execute_script("return document.querySelectorAll('script').length") == 2
    assert driver.execute_script("return document.querySelectorAll('img[src=x], b').length") == 0


def visible_rows(driver: Any) -> list[Any]:
    return driver.find_elements("css selector", "#results-body tr")


def column(driver: Any, name: str) -> list[str]:
    """The text of column ``name`` in the visible rows."""
    headers = [th.text.rstrip(" ▲▼") for th in driver.find_elements("css selector", "#results-table thead th")]
    index = headers.index(name)
    return [row.find_elements("css selector", "th, td")[index].text for row in visible_rows(driver)]


def count_line(driver: Any) -> str:
    text: str = driver.find_element("id", "results-count").text
    return text


def test_opens_with_every_run_and_no_console_error(page: Any, sweep: Sweep) -> None:
    ready = open_report(page, sweep.report)
    assert ready < 10_000  # the 10,000-run figure is benchmarks/report_10k.py's
    assert count_line(page) == f"Showing 100 of {RUNS} matching runs ({RUNS} in all)."
    assert len(visible_rows(page)) == 100
    summary = page.find_element("css selector", "#overview table").text
    assert "test_sweep.py::test_train 300 299 passed, 1 failed" in summary
    page.find_element("id", "show-more").click()
    assert len(visible_rows(page)) == 200


def test_numeric_columns_sort_as_numbers(page: Any, sweep: Sweep) -> None:
    open_report(page, sweep.report)
    sort = page.find_element("css selector", "button.sort[title='parameter size: sort']")
    sort.click()
    sizes = [int(text) for text in column(page, "size")]
    assert sizes == sorted(sizes)
    assert sizes[0] == 8  # as strings, 128 would come first
    assert sort.find_element("xpath", "..").get_attribute("aria-sort") == "ascending"
    sort.click()
    sizes = [int(text) for text in column(page, "size")]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[0] == 256
    assert sort.find_element("xpath", "..").get_attribute("aria-sort") == "descending"
    page.find_element("css selector", "button.sort[title='metric acc: sort']").click()
    accs = [float(text) for text in column(page, "acc")]
    assert accs == sorted(accs)


def test_filtering_changes_the_visible_rows(page: Any, sweep: Sweep) -> None:
    open_report(page, sweep.report)
    page.find_element("id", "filter").send_keys("alert(1)")
    assert count_line(page) == f"Showing 100 of 150 matching runs ({RUNS} in all)."
    assert set(column(page, "name")) == {EVIL_PARAM}  # the parameter shown as text
    page.find_element("id", "filter").clear()
    page.find_element("css selector", "#status-filter option[value=failed]").click()
    assert count_line(page) == f"Showing 1 of 1 matching runs ({RUNS} in all)."
    assert column(page, "status") == ["failed"]


def test_comparison_shows_differing_fields_and_overlays_series(page: Any, sweep: Sweep) -> None:
    open_report(page, sweep.report)
    page.find_element("id", "filter").send_keys("lr=0.01-seed=0-name=plain-size=")
    boxes = page.find_elements("css selector", "#results-body input[type=checkbox]")[:2]
    for box in boxes:
        box.click()
    button = page.find_element("id", "compare-selected")
    assert button.text == "Compare selected (2)"
    button.click()
    WebDriverWait(page, 10).until(lambda d: d.find_elements("id", "compare-table"))
    differing = [row.find_element("tag name", "th").text for row in page.find_elements("css selector", "tr.differs")]
    assert "≠ params.size\n(differs)" in differing  # "(differs)": for screen readers
    assert "≠ metadata.timing.call\n(differs)" in differing
    same = [row.find_element("tag name", "th").text for row in page.find_elements("css selector", "tr.same")]
    assert {"params.lr", "params.seed", "params.name", "metrics.loss", "status"} <= set(same)
    page.find_element("id", "only-differing").click()
    assert not any(row.is_displayed() for row in page.find_elements("css selector", "tr.same"))
    lines = page.find_elements("css selector", "#compare-series svg path.line")
    assert len(lines) == 2  # both runs' loss series in one plot
    assert {line.value_of_css_property("stroke") for line in lines} == {"rgb(31, 119, 180)", "rgb(214, 39, 40)"}


def test_compare_given_at_build_time_opens_on_it(
    page: Any, sweep: Sweep, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = sweep.runs[0], sweep.runs[-1]
    out = tmp_path / "compare.html"
    assert cli(capsys, "--store", sweep.store, "report", "-o", out, "--compare", first.run_id, second.run_id)[0] == 0
    open_report(page, out)
    assert page.find_element("id", "compare-h").text == "Comparison of 2 runs"
    assert page.find_element("id", "home").is_displayed() is False
    assert "fields differ" in page.find_element("id", "compare-count").text


def test_a_run_shows_its_images_tags_and_traceback_as_text(page: Any, sweep: Sweep) -> None:
    open_report(page, sweep.report, "run=" + sweep.run_id("::test_files"))
    images = page.find_elements("css selector", "figure.artefact img")
    assert [image.get_attribute("alt") for image in images] == ["curve.png", EVIL_FILE]
    for image in images:
        page.execute_script("arguments[0].scrollIntoView()", image)
        assert page.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 0
    captions = [caption.text for caption in page.find_elements("css selector", "figure.artefact figcaption")]
    assert captions == ["curve.png", EVIL_FILE]
    assert EVIL_TAG in page.find_element("id", "run").text

    failed = next(run for run in sweep.runs if run.status == "failed")
    open_report(page, sweep.report, "run=" + failed.run_id)
    assert page.find_element("css selector", "#run p.error").text == f"ValueError: {EVIL_ERROR}"
    assert "raise ValueError(EVIL_ERROR)" in page.find_element("css selector", "pre.traceback").text


def test_hovering_a_point_shows_its_run(page: Any, sweep: Sweep) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    open_report(page, sweep.report, "plots")
    point = page.find_elements("css selector", "#plots svg circle.point")[0]
    page.execute_script("arguments[0].scrollIntoView({block: 'center'})", point)
    ActionChains(page).move_to_element(point).perform()
    tooltip = page.find_element("id", "tooltip")
    assert tooltip.is_displayed()
    assert tooltip.text.startswith("test_sweep.py::test_train[")
    means = page.find_elements("css selector", "#plots svg rect.mean")
    assert means  # seed is a seed-like axis: means with intervals
    series = page.find_elements("css selector", "#plots svg path.line")
    assert len(series) == 200  # the first 200 of 300 runs' loss series
