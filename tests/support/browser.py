"""Real headless Chromium for browser tests, driven through Selenium 4 and the Debian
``chromium`` and ``chromium-driver`` packages (/usr/bin/chromium, /usr/bin/chromedriver; the
Makefile installs both).

:func:`chromium` is a context manager giving a :class:`selenium.webdriver.Chrome` with a
1280×900 window, quit at the block's end; a test module makes its (module-scoped) fixture of it.
Tests sharing one browser leave it signed out (``driver.delete_all_cookies()``).

When the browser or its driver is missing, or does not start, :func:`start_browser` FAILS the
test (not skips) with ``install it: apt-get install chromium chromium-driver``.

Helpers: :func:`screenshot` saves a PNG into tests/artifacts/ (kept out of git by that
directory's .gitignore); :func:`wait_until` polls a condition in the browser and fails naming
it, with the page's address and the tail of its text.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from support.wait import wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL_HINT = "install it: apt-get install chromium chromium-driver"
"""The text a browser test fails with when Chromium or its driver is missing."""

OPTIONS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-dev-shm-usage")
"""Chromium's command-line switches: headless, no sandbox (root in a container), nothing that
phones home or needs /dev/shm larger than a container's."""

WINDOW = (1280, 900)
"""Window size in CSS pixels (and the screenshots' size)."""

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
"""tests/artifacts/: screenshots and other files a person looks at after a run."""

T = TypeVar("T")


def _missing() -> list[str]:
    return [p for p in (CHROMIUM, CHROMEDRIVER)
            if not (os.path.isfile(p) and os.access(p, os.X_OK))]


def start_browser(lang: str = "zh-CN"):
    """Start headless Chromium through chromedriver and return the driver (the caller quits
    it). ``lang`` is the browser's Accept-Language. ``pytest.fail`` with
    :data:`INSTALL_HINT` when either binary is missing or the browser does not start."""
    missing = _missing()
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found; {INSTALL_HINT}", pytrace=False)
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for switch in OPTIONS:
        options.add_argument(switch)
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    options.add_argument(f"--lang={lang}")
    options.add_experimental_option("prefs", {"intl.accept_languages": lang})
    # Selenium Manager would look for a driver on the network: the Debian one is given
    service = Service(executable_path=CHROMEDRIVER)
    try:
        driver = webdriver.Chrome(options=options, service=service)
    except WebDriverException as e:
        pytest.fail(f"Chromium did not start ({e.msg or e}); {INSTALL_HINT}", pytrace=False)
    driver.set_page_load_timeout(20)
    return driver


@contextlib.contextmanager
def chromium(lang: str = "zh-CN") -> Iterator:
    """Headless Chromium (a Selenium WebDriver) for the ``with`` block, quit at its end. A
    test module makes its fixture of it::

        @pytest.fixture(scope="module")
        def browser():
            with chromium() as driver:
                yield driver
    """
    driver = start_browser(lang)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver, name: str) -> Path:
    """Save the browser's viewport as tests/artifacts/``name``.png; returns the path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"no screenshot saved to {path}"
    return path


def page_tail(driver, chars: int = 600) -> str:
    """The page's address and the last ``chars`` characters of its visible text (for failure
    messages)."""
    try:
        text = driver.find_element("tag name", "body").text
    except Exception as e:  # the page may be gone or mid-navigation
        text = f"<no body: {e}>"
    return f"{driver.current_url}: …{text[-chars:]}"


def wait_until(driver, predicate: Callable[[], T], timeout: float = 10.0,
               what: str = "condition") -> T:
    """Poll ``predicate()`` (which reads the page) every 0.1 s until it returns something
    true, and return that; fail after ``timeout`` s naming ``what`` with the page's text.
    Selenium's stale-element errors during an update count as not yet."""
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
    )

    def attempt():
        try:
            return predicate()
        except (StaleElementReferenceException, NoSuchElementException):
            return None

    return wait_for(attempt, timeout=timeout, what=what, interval=0.1,
                    detail=lambda: page_tail(driver))
