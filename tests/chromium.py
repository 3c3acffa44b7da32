"""Debian's headless Chromium for the tests (chromium + chromium-driver, driven by Selenium), and polling a page.

An MJPEG page never finishes loading, so the driver does not wait for ``load`` (page_load_strategy "none"); tests
poll the page's own state with :func:`wait_for` instead.
"""

from __future__ import annotations

import os
import time

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def unavailable() -> str | None:
    """Why Chromium cannot run here (a skip reason), or ``None``."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        return "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "needs selenium (the dev extra)"
    return None


def open_chromium(size: str = "1280,900"):
    """Debian's headless Chromium through its chromedriver; the caller quits it."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={size}"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    options.page_load_strategy = "none"  # an MJPEG <img> keeps the page loading for good
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))


def wait_for(driver, script: str, timeout: float = 30.0):
    """Poll ``script`` (a JS expression) until it is truthy; returns its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return {script}")
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"the page never got {script!r}: {driver.execute_script('return document.body.innerText')}")
