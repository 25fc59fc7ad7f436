"""Open a run report in a real headless Chromium (Debian's chromium + chromium-driver, driven offline by Selenium)."""

from __future__ import annotations

import base64
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PHONE = (390, 844)  # CSS pixels of a common phone screen


@dataclass
class PageCheck:
    images: list[dict[str, Any]]  # src, naturalWidth
    console_errors: list[str]
    ids: set[str]
    phone_overflow_px: int  # how far the page is wider than a phone's screen (0: no sideways scrolling)
    screenshot: Path


def _driver() -> Any:
    chromium, chromedriver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not chromium or not chromedriver:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium chromium-driver; "
                    "`make test` runs tools/setup_browser.sh, which does it where it can)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900",
                "--allow-file-access-from-files"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)


def _full_page_png(driver: Any) -> bytes:
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                  "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    return base64.b64decode(shot["data"])


_IMAGES = "return Array.from(document.images).map(i => ({src: i.getAttribute('src'), complete: i.complete, naturalWidth: i.naturalWidth}))"


def check_page(page: Path, screenshot: Path) -> PageCheck:
    """Load ``page`` from disk, wait for it, and collect what a reader would see go wrong."""
    driver = _driver()
    try:
        driver.get(page.resolve().as_uri())
        driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "Promise.all(Array.from(document.images).map(i => i.complete ? 1 : new Promise(r => { i.onload = i.onerror = r; })))"
            ".then(() => done(1));"
        )
        images = driver.execute_script(_IMAGES)
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        ids = set(driver.execute_script("return Array.from(document.querySelectorAll('[id]')).map(e => e.id)"))
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(_full_page_png(driver))
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": PHONE[0], "height": PHONE[1], "deviceScaleFactor": 2, "mobile": True})
        overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        return PageCheck(images, errors, ids, int(overflow), screenshot)
    finally:
        driver.quit()
