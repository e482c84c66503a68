"""The README's screenshots of the HTML report, made by the project's own code.

Runs the realistic example (``examples/training``, with matplotlib for its loss-curve
figures) into a temporary store with ``-n 2 --xp-html``, then opens the report in headless
Chromium (Debian's chromium and chromedriver, through selenium) and saves four PNGs here:
the overview and results table, the plots, one run, and the comparison of two runs.

    .venv/bin/pip install -e '.[test,plots]' && .venv/bin/python docs/make_screenshots.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from browser import open_report, start_browser

from pytest_experiments import Store

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        shutil.copytree(ROOT / "examples" / "training", project / "training")
        command = [
            sys.executable,
            "-m",
            "pytest",
            "training",
            "-q",
            "-n",
            "2",
            "-p",
            "no:randomly",
            "--xp-html=report.html",
        ]
        subprocess.run(command, cwd=project, check=True)
        report = project / "report.html"
        with Store.open(project / ".experiments", readonly=True) as store:
            runs = store.runs()
        first = next(run for run in runs if "lr=0.1-seed=0-size=200" in run.node_id)
        second = next(run for run in runs if "lr=0.01-seed=0-size=200" in run.node_id)
        driver = start_browser(1280, 860)
        try:
            open_report(driver, report)
            driver.save_screenshot(str(DOCS / "report-results.png"))
            open_report(driver, report, "plots")
            driver.execute_script("document.getElementById('plots').scrollIntoView()")
            driver.save_screenshot(str(DOCS / "report-plots.png"))
            open_report(driver, report, f"run={first.run_id}")
            driver.execute_script("document.querySelector('#run .files').scrollIntoView()")
            driver.save_screenshot(str(DOCS / "report-run.png"))
            open_report(driver, report, f"compare={first.run_id},{second.run_id}")
            driver.execute_script("document.getElementById('only-differing').click()")
            driver.save_screenshot(str(DOCS / "report-compare.png"))
        finally:
            driver.quit()
    for name in ("results", "plots", "run", "compare"):
        print(DOCS / f"report-{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
