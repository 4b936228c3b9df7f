"""Headless Chromium for the portal tests: Debian's `chromium` + `chromium-driver`, driven by Selenium.

No browser is downloaded: the system's packages are used (`apt-get install -y chromium
chromium-driver`; `.ci/run` installs them). Without them the browser tests are skipped on a
developer's machine and FAIL in CI (`CI` set), so a CI image without a browser cannot pass silently.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    ElementNotInteractableException,
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import PRODUCT_ROOT

BROWSERS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
DRIVERS = ("/usr/bin/chromedriver",)
AXE = PRODUCT_ROOT / "node_modules" / "axe-core" / "axe.min.js"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
WAIT = 30.0  # seconds any one expected change of the page may take


def _first(paths: Sequence[str], env: str) -> str | None:
    candidates = [os.environ[env]] if os.environ.get(env) else list(paths)
    return next((p for p in candidates if Path(p).exists() or shutil.which(p)), None)


def browser_paths() -> tuple[str, str]:
    """Chromium and its driver; skips (developer machine) or fails (CI) when they are missing."""
    browser, driver = _first(BROWSERS, "CHROMIUM_BINARY"), _first(DRIVERS, "CHROMEDRIVER")
    if browser and driver:
        return browser, driver
    reason = "no Chromium/chromedriver: apt-get install -y chromium chromium-driver"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but the browser tests cannot run: {reason}")
    pytest.skip(reason)


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[WebDriver]:
    """A fresh headless Chromium (its own profile directory), quit afterwards."""
    browser, driver_path = browser_paths()
    with tempfile.TemporaryDirectory(prefix="portal-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def without_token_store(driver: WebDriver) -> None:
    """Make `/.auth/me` unreachable, as it is in Azure with the token store off (Learn, "Work with
    user identities in Azure App Service authentication": `/.auth/me` needs the token store).
    A page that still asks it gets a network error, which the console then reports."""
    driver.execute_cdp_cmd("Network.enable", {})  # type: ignore[attr-defined]
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/.auth/me*"]})  # type: ignore[attr-defined]


def wait(driver: WebDriver, timeout: float = WAIT) -> WebDriverWait[WebDriver]:
    """A bounded wait that looks again when the page replaced an element it was reading."""
    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,))


def click(driver: WebDriver, css: str) -> None:
    """Click an element once it is there and can be clicked (the list may be re-rendering)."""

    def clicked(d: WebDriver) -> bool:
        try:
            d.find_element(By.CSS_SELECTOR, css).click()
        except (NoSuchElementException, ElementNotInteractableException):
            return False
        return True

    wait(driver).until(clicked)


def by_id(driver: WebDriver, element_id: str) -> WebElement:
    return wait(driver).until(ec.presence_of_element_located((By.ID, element_id)))


def sign_in(driver: WebDriver, base_url: str, user: str, roles: Sequence[str]) -> None:
    """Through devhost's mock `/.auth/login/aad` form, as a person does; lands on the portal."""
    driver.get(f"{base_url}/.auth/login/aad?post_login_redirect_uri=/")
    name = by_id(driver, "userDetails")
    name.clear()
    name.send_keys(user)
    field = driver.find_element(By.ID, "userRoles")
    field.clear()
    field.send_keys("\n".join(roles))
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(driver).until(lambda d: "Signed in as" in d.find_element(By.ID, "user").text)


def rows(driver: WebDriver) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, "#rows tr")


def wait_for_rows(driver: WebDriver, predicate: Any = None, timeout: float = WAIT) -> list[WebElement]:
    """The list's rows once the list has loaded (and `predicate(rows)` holds)."""

    def ready(d: WebDriver) -> list[WebElement] | bool:
        found = rows(d)
        if not found and d.find_element(By.ID, "empty").is_displayed() and predicate is None:
            return [True]  # type: ignore[list-item]
        if found and (predicate is None or predicate(found)):
            return found
        return False

    result = wait(driver, timeout).until(ready)
    return [] if result == [True] else result


def console_errors(driver: WebDriver) -> list[dict[str, Any]]:
    return [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]


def axe_violations(
    driver: WebDriver, impacts: Sequence[str] = ("serious", "critical")
) -> list[dict[str, Any]]:
    """Run axe-core (pinned in package.json) in the page; its violations of the given impacts."""
    driver.execute_script(AXE.read_text(encoding="utf-8"))
    driver.set_script_timeout(WAIT)
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document).then("
        " r => done(JSON.stringify(r.violations)), e => done(JSON.stringify(String(e))));"
    )
    violations = json.loads(result)
    assert isinstance(violations, list), violations
    return [v for v in violations if v.get("impact") in impacts]
