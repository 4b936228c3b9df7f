"""Exclude, include and mark as invoiced from the portal (`POST /api/booking-updates`, issue 15)."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from shared.api.auth import ROLE_INVOICE, ROLE_READ
from shared.domain.models import BookingStatus
from tests.e2e.browser import chromium, click, console_errors, sign_in, wait, wait_for_rows
from tests.e2e.stack import Stack

pytestmark = pytest.mark.e2e


def test_exclude_include_and_mark_invoiced_with_a_reference(stack: Stack) -> None:
    assert stack.run_function("sync_bookings") == ["Succeeded"]
    with chromium() as driver:
        sign_in(driver, stack.url, "office@contoso.com", [ROLE_READ, ROLE_INVOICE])
        first, second = [str(r.get_attribute("data-key")) for r in wait_for_rows(driver)[:2]]
        click(driver, f'tr[data-key="{first}"] input.row-select')
        click(driver, "#exclude-selected")
        click(driver, "#confirm-ok")
        wait_for_rows(driver, lambda rows: first not in {r.get_attribute("data-key") for r in rows})
        assert stack.store.find(first).status == "Excluded"  # type: ignore[union-attr]

        driver.find_element(By.CSS_SELECTOR, '#f-status option[value="Excluded"]').click()
        click(driver, "#filters button[type=submit]")
        wait_for_rows(driver, lambda rows: first in {r.get_attribute("data-key") for r in rows})
        click(driver, f'tr[data-key="{first}"] input.row-select')
        click(driver, "#include-selected")
        click(driver, "#confirm-ok")
        wait(driver).until(lambda d: stack.store.find(first).status is BookingStatus.UNBILLED)  # type: ignore[union-attr]

        driver.find_element(By.CSS_SELECTOR, '#f-status option[value="Unbilled"]').click()
        click(driver, "#filters button[type=submit]")
        wait_for_rows(driver, lambda rows: second in {r.get_attribute("data-key") for r in rows})
        click(driver, f'tr[data-key="{second}"] input.row-select')
        driver.find_element(By.ID, "reference").send_keys("PAID-CASH-17")
        click(driver, "#mark-invoiced")
        click(driver, "#confirm-ok")
        wait(driver).until(lambda d: stack.store.find(second).status is BookingStatus.INVOICED)  # type: ignore[union-attr]
        marked = stack.store.find(second)
        assert marked is not None and marked.invoice_number == "PAID-CASH-17" and marked.invoice_id is None
        assert console_errors(driver) == []
