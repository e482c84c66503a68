"""Headless Chromium for the report's browser tests: Debian's ``chromium`` and ``chromium-driver``
driven by selenium (``.ci/run`` installs them when missing).

Imported as ``from browser import ...``. In CI (or with ``XP_REQUIRE_BROWSER=1``) a missing
browser stops the run in ``conftest.py``: the browser tests never skip there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

REQUIRE_ENV = "XP_REQUIRE_BROWSER"


def browser_required() -> bool:
    """Whether the browser tests must run (CI, or ``XP_REQUIRE_BROWSER=1``)."""
    return bool(os.environ.get("CI")) or os.environ.get(REQUIRE_ENV) == "1"


def chromium() -> tuple[str, str] | None:
    """The paths of chromium and its driver, or None when either is missing."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (binary, driver) if binary and driver else None


def start_browser(width: int = 1400, height: int = 1000) -> Any:
    """A headless Chromium that keeps the page's console messages (read with ``get_log("browser")``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = chromium()
    assert found is not None
    binary, driver = found
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def open_report(driver: Any, path: Path, fragment: str = "", timeout: float = 30.0) -> float:
    """Load the report at ``path`` (with ``#fragment``) and wait for its ready marker; return
    ``performance.now()`` at that marker (milliseconds since navigation started)."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(path.resolve().as_uri() + (f"#{fragment}" if fragment else ""))
    WebDriverWait(driver, timeout).until(lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))
    ready: float = driver.execute_script("return window.xpReadyAt")
    return ready
