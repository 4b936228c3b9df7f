"""The setup check in the portal (headless Chromium): the header warns when a check failed, the
Settings view lists the checks failed first with their fixes, and *Check again* shows a repair."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from shared.api.auth import ROLE_READ
from tests.e2e.browser import axe_violations, by_id, chromium, console_errors, sign_in, wait
from tests.e2e.stack import Stack

pytestmark = pytest.mark.e2e


def test_the_settings_view_shows_each_check_and_its_fix(stack: Stack) -> None:
    template = stack.sandbox.identity.item_template
    stack.admin.edit_bc_record("items", template, {"type": "Inventory"})
    with chromium() as driver:
        sign_in(driver, stack.url, "admin@contoso.com", [ROLE_READ])
        warning = by_id(driver, "setup-warning")
        wait(driver).until(lambda d: warning.is_displayed())
        assert "1 failed" in warning.text
        warning.click()
        checks = by_id(driver, "setup-checks")
        wait(driver).until(lambda d: checks.is_displayed())
        items = checks.find_elements(By.CSS_SELECTOR, "li")
        first = items[0]
        assert first.get_attribute("data-check") == "bc-item-template"
        assert "failed" in first.text.lower() and "Fix: Set ITEM_TEMPLATE" in first.text
        names = {item.get_attribute("data-check") for item in items}
        assert {"graph-token", "bc-company", "storage", "app-authentication", "last-sync"} <= names
        assert {f"graph-business:{b}" for b in stack.business_ids} <= names
        assert axe_violations(driver) == []
        assert console_errors(driver) == []

        # The administrator fixes the item; after the reuse window, Check again shows it.
        stack.admin.edit_bc_record("items", template, {"type": "Service"})
        stack.clock.advance(61)
        driver.find_element(By.ID, "check-again").click()
        wait(driver).until(
            lambda d: (
                "ok"
                in d.find_element(
                    By.CSS_SELECTOR, "li[data-check='bc-item-template'] .check-status"
                ).text.lower()
            )
        )
        assert not by_id(driver, "setup-warning").is_displayed()
        assert stack.settings["ENTRA_CLIENT_SECRET"] not in driver.page_source
