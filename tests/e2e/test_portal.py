"""The portal in a real browser (headless Chromium) against the whole stack: devhost playing App
Service Authentication, the sandbox (Entra, Graph, Business Central) and Azurite.

A person signs in through the mock `/.auth/login/aad` form, lists, filters, selects and invoices,
and watches the progress; a failure shows its reason in words and is retried; a read-only user sees
no actions and the API refuses a forged POST from that session. Every page is checked with axe-core
and for console errors.
"""

from __future__ import annotations

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from shared.api.auth import ROLE_INVOICE, ROLE_READ
from shared.domain.models import Booking, BookingStatus
from tests.e2e.browser import (
    axe_violations,
    by_id,
    chromium,
    click,
    console_errors,
    sign_in,
    wait,
    wait_for_rows,
    without_token_store,
)
from tests.e2e.stack import Stack
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e

INVOICER = "office@contoso.com"
READER = "reader@contoso.com"
NEWCOMER = "newcomer@contoso.com"


def synced(stack: Stack) -> list[Booking]:
    assert stack.run_function("sync_bookings") == ["Succeeded"]
    bookings = stack.bookings()
    assert bookings, "the sandbox's seed gives the sync bookings to list"
    return bookings


def blocked_emails(stack: Stack) -> set[str | None]:
    """Emails of the sandbox's Business Central customers blocked for invoicing (seeded on purpose)."""
    customers = stack.admin.state(["customers"])["customers"]
    return {c.get("email") for c in customers if str(c.get("blocked", "")).strip() in ("Invoice", "All")}


def listed_keys(driver: WebDriver) -> list[str]:
    return [str(row.get_attribute("data-key")) for row in wait_for_rows(driver)]


def assert_accessible_and_quiet(driver: WebDriver) -> None:
    violations = axe_violations(driver)
    assert violations == [], [(v["id"], v["help"], len(v["nodes"])) for v in violations]
    assert console_errors(driver) == []


def confirm(driver: WebDriver, expect: str) -> None:
    dialog = by_id(driver, "confirm")
    wait(driver).until(lambda d: dialog.is_displayed())
    assert expect in driver.find_element(By.ID, "confirm-text").text
    driver.find_element(By.ID, "confirm-ok").click()


def progress_finished(driver: WebDriver) -> str:
    return str(
        wait(driver, 90).until(
            lambda d: (t := d.find_element(By.ID, "progress-text").text).startswith("Finished") and t
        )
    )


def test_the_page_and_its_assets_carry_a_strict_policy_and_need_no_sign_in(stack: Stack) -> None:
    page = requests.get(f"{stack.url}/", timeout=30)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    policy = page.headers["Content-Security-Policy"]
    assert (
        "default-src 'self'" in policy
        and "unsafe-inline" not in policy
        and "frame-ancestors 'none'" in policy
    )
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "<script" in page.text and "<script>" not in page.text and "style=" not in page.text
    script = requests.get(f"{stack.url}/assets/portal.js", timeout=30)
    assert script.status_code == 200 and script.headers["Content-Type"].startswith("text/javascript")
    assert script.headers["Content-Security-Policy"] == policy
    for missing in ("/assets/../function_app.py", "/assets/nothing.js", "/function_app.py"):
        assert requests.get(f"{stack.url}{missing}", timeout=30).status_code == 404, missing
    # The API still lives under /api and still wants a caller.
    assert requests.get(f"{stack.url}/api/bookings", timeout=30).status_code == 401
    assert requests.get(f"{stack.url}/api/health", timeout=30).status_code == 200


def test_an_invoicer_lists_filters_invoices_three_and_watches_them_reach_invoiced(stack: Stack) -> None:
    stored = {b.key: b for b in synced(stack)}
    with chromium() as driver:
        driver.get(f"{stack.url}/")
        wait(driver).until(lambda d: d.find_element(By.ID, "signed-out").is_displayed())
        # Signed out, the page learns it from GET /api/me's 401, which the console reports.
        errors = [e["message"] for e in console_errors(driver)]
        assert len(errors) == 1 and "/api/me" in errors[0] and "401" in errors[0], errors
        sign_in(driver, stack.url, INVOICER, [ROLE_READ, ROLE_INVOICE])
        keys = listed_keys(driver)
        starts = [stored[key].start for key in keys]
        assert starts == sorted(starts, reverse=True), "newest appointment first"
        assert all(stored[key].status is BookingStatus.UNBILLED for key in keys)

        customer = next(stored[k] for k in keys if stored[k].customer_email)
        field = driver.find_element(By.ID, "f-customer")
        field.send_keys(str(customer.customer_email))
        driver.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
        wait_for_rows(driver, lambda found: len(found) < len(keys) or len(keys) == 1)
        filtered = listed_keys(driver)
        assert filtered and {stored[k].customer_email for k in filtered} == {customer.customer_email}

        driver.find_element(By.CSS_SELECTOR, "#filters button[type=reset]").click()
        wait_for_rows(driver, lambda found: len(found) == len(keys))
        blocked = blocked_emails(stack)
        chosen = [k for k in keys if stored[k].customer_email and stored[k].customer_email not in blocked][:3]
        for key in chosen:
            click(driver, f'tr[data-key="{key}"] input.row-select')
        assert "3 bookings selected" in driver.find_element(By.ID, "selection-summary").text
        driver.find_element(By.ID, "invoice-selected").click()
        confirm(driver, "3 selected bookings")
        assert progress_finished(driver) == "Finished: 3 of 3 invoiced, 0 failed."
        assert_accessible_and_quiet(driver)
    for key in chosen:
        booking = stack.store.get(stored[key].business_id, key)
        assert booking is not None and booking.status is BookingStatus.INVOICED and booking.invoice_id
    assert len({stack.store.get(stored[k].business_id, k).invoice_id for k in chosen}) == 3  # type: ignore[union-attr]


def test_a_failed_booking_shows_its_reason_and_is_retried(make_stack: object) -> None:
    stack: Stack = make_stack(SYNC_CUSTOMERS="false")  # type: ignore[operator]
    bookings = synced(stack)
    known = {str(c.get("email", "")).lower() for c in stack.admin.state(["customers"])["customers"]}
    stranger = next(
        b for b in bookings if b.customer_email and b.customer_email.lower() not in known and b.customer_name
    )
    with chromium() as driver:
        sign_in(driver, stack.url, INVOICER, [ROLE_READ, ROLE_INVOICE])
        assert listed_keys(driver)
        driver.find_element(By.ID, "f-customer").send_keys(str(stranger.customer_email))
        driver.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
        wait_for_rows(driver, lambda found: stranger.key in {r.get_attribute("data-key") for r in found})
        click(driver, f'tr[data-key="{stranger.key}"] input.row-select')
        driver.find_element(By.ID, "invoice-selected").click()
        confirm(driver, "1 selected booking")
        assert "1 failed" in progress_finished(driver)
        reason = driver.find_element(By.CSS_SELECTOR, f'#failure-list li[data-key="{stranger.key}"]').text
        assert "No Business Central customer has this email address" in reason and "then retry" in reason
        # The bookkeeper creates the customer in Business Central, then retries from the page.
        stack.sandbox.app.company.create_customer(
            {"displayName": stranger.customer_name, "type": "Person", "email": stranger.customer_email}
        )
        driver.find_element(By.ID, "retry-failed").click()
        wait(driver, 90).until(
            lambda d: d.find_element(By.ID, "progress-text").text == "Finished: 1 of 1 invoiced, 0 failed."
        )
        assert driver.find_element(By.ID, "failures").is_displayed() is False
        assert console_errors(driver) == []
    done = wait_for(lambda: stack.store.get(stranger.business_id, stranger.key), what="the booking")
    assert done.status is BookingStatus.INVOICED and done.invoice_id


def test_a_read_only_user_sees_no_actions_and_a_forged_post_is_refused(stack: Stack) -> None:
    bookings = synced(stack)
    with chromium(width=820, height=1180) as driver:  # a tablet held upright
        sign_in(driver, stack.url, READER, [ROLE_READ])
        assert listed_keys(driver)
        for hidden in ("actions", "progress"):
            assert not driver.find_element(By.ID, hidden).is_displayed(), hidden
        assert driver.find_elements(By.CSS_SELECTOR, "input.row-select, button.invoice-customer") == []
        assert_accessible_and_quiet(driver)  # before the forgery, whose 403 the console reports
        forged = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch('/api/invoice-requests', {method: 'POST', credentials: 'same-origin',"
            " headers: {'Content-Type': 'application/json'}, body: JSON.stringify({all: true})})"
            ".then(r => done(r.status), e => done(String(e)));"
        )
        assert forged == 403
        driver.find_element(By.ID, "show-settings").click()
        settings = by_id(driver, "settings-list")
        wait(driver).until(lambda d: settings.is_displayed())
        text = settings.text
        assert stack.business_ids[0] in text and stack.settings["BOOKINGS_TIME_ZONE"] in text
        source = driver.page_source
        assert stack.settings["ENTRA_CLIENT_SECRET"] not in source and "AccountKey" not in source
        assert axe_violations(driver) == []
        errors = [e["message"] for e in console_errors(driver)]
        assert len(errors) == 1 and "/api/invoice-requests" in errors[0] and "403" in errors[0], errors
    assert {b.status for b in stack.bookings()} == {b.status for b in bookings}
    assert all(b.status is not BookingStatus.QUEUED for b in stack.bookings())


def test_without_the_token_store_a_user_without_a_role_is_told_to_ask_and_a_reader_gets_in(
    stack: Stack,
) -> None:
    """Azure serves `/.auth/me` only with the token store on, which infra/ leaves off: the page asks
    `GET /api/me`. A signed-in user without Bookings.Read is told so, never sent to sign in again."""
    synced(stack)
    with chromium() as driver:
        without_token_store(driver)
        sign_in(driver, stack.url, NEWCOMER, [])
        notice = by_id(driver, "no-access-text")
        wait(driver).until(lambda d: notice.is_displayed())
        assert notice.text == (
            f"Signed in as {NEWCOMER}, without access; ask an administrator for the {ROLE_READ} role."
        )
        assert by_id(driver, "user").text == f"Signed in as {NEWCOMER}"
        for hidden in ("signed-out", "sign-in", "views", "bookings-view", "settings-view"):
            assert not driver.find_element(By.ID, hidden).is_displayed(), hidden
        assert driver.find_element(By.ID, "sign-out").is_displayed()
        assert_accessible_and_quiet(driver)  # also: no request to the unreachable /.auth/me

    with chromium() as driver:
        without_token_store(driver)
        sign_in(driver, stack.url, READER, [ROLE_READ])
        assert listed_keys(driver)
        assert not driver.find_element(By.ID, "no-access").is_displayed()
        assert not driver.find_element(By.ID, "actions").is_displayed()
        assert_accessible_and_quiet(driver)
