"""Headless Debian Chromium for the browser tests: one place that finds it, starts it and decides skip or fail."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
CHROMEDRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
HAVE_CHROMIUM = bool(CHROMIUM and CHROMEDRIVER)
NO_CHROMIUM = "Debian chromium/chromedriver not installed (`make browser` installs them; it needs root)"

CHROME_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000",
]


def needs_chromium(test):
    """Skipped without Chromium, except where RLHF_REQUIRE_BROWSER=1 (make test, CI): there it fails."""
    if os.environ.get("RLHF_REQUIRE_BROWSER") == "1":
        return test
    return pytest.mark.skipif(not HAVE_CHROMIUM, reason=NO_CHROMIUM)(test)


def chrome(user_data_dir, capabilities: dict | None = None):
    """A Selenium driver for headless Chromium with its own profile (None when Chromium is missing)."""
    if not HAVE_CHROMIUM:
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in [*CHROME_FLAGS, f"--user-data-dir={user_data_dir}"]:
        opts.add_argument(flag)
    for name, value in (capabilities or {}).items():
        opts.set_capability(name, value)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def wait_for(cond, timeout: float = 20.0, what: str = "condition"):
    """Poll ``cond`` until it returns something truthy (returned) or fail after ``timeout`` seconds."""
    end = time.time() + timeout
    while time.time() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
