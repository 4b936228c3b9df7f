"""The office's page after the first week, in headless Chromium against the whole stack (devhost,
the sandbox's Entra ID, Graph and Business Central, Azurite).

A bookkeeper sees the count and the total of everything the filter matches in the company's
currency, amounts with their currency on every row, the businesses by the names Bookings gives them,
invoice numbers that open the invoice in Business Central's web client, failures that say whose
booking it was and lead to its row, and an *Export CSV* of the filter. Prices from Business Central
show in Settings and in the setup check. Every view passes axe and keeps the console clean.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from shared.api.auth import ROLE_INVOICE, ROLE_READ
from shared.domain.invoice_lines import booking_amount
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
)
from tests.e2e.stack import E2E_NOW, Stack
from tests.e2e.test_portal import INVOICER, READER, blocked_emails, confirm, progress_finished, synced

pytestmark = pytest.mark.e2e


def money(driver: WebDriver, amount: Decimal | float, currency: str = "EUR") -> str:
    """An amount as this browser formats it in the company's currency (the page's own rule)."""
    return str(
        driver.execute_script(
            "return new Intl.NumberFormat(undefined, {style: 'currency', currency: arguments[1]})"
            ".format(arguments[0]);",
            float(amount),
            currency,
        )
    )


def unbilled(bookings: Sequence[Booking]) -> list[Booking]:
    """What the Unbilled list holds: Unbilled bookings whose appointment has ended."""
    return [b for b in bookings if b.status is BookingStatus.UNBILLED and b.end < E2E_NOW]


def totals_text(driver: WebDriver) -> str:
    element = by_id(driver, "totals")
    return str(wait(driver).until(lambda d: (t := element.text) and "match" in t and t))


def show(driver: WebDriver, status: str, customer: str = "") -> None:
    driver.find_element(By.CSS_SELECTOR, f"#f-status option[value='{status}']").click()
    field = driver.find_element(By.ID, "f-customer")
    field.clear()
    if customer:
        field.send_keys(customer)
    driver.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()


def fetch_text(driver: WebDriver, url: str) -> dict[str, Any]:
    """GET `url` from the page's own session (its cookie), as the browser's download would."""
    return dict(
        driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(arguments[0], {credentials: 'same-origin'}).then(async r => done({status: r.status,"
            " type: r.headers.get('Content-Type'),"
            " bytes: Array.from(new Uint8Array(await r.arrayBuffer()))}))"
            ".catch(e => done({status: 0, type: String(e), bytes: []}));",
            url,
        )
    )


def assert_accessible_and_quiet(driver: WebDriver) -> None:
    violations = axe_violations(driver)
    assert violations == [], [(v["id"], v["help"], len(v["nodes"])) for v in violations]
    assert console_errors(driver) == []


def test_totals_names_amounts_links_and_export_for_an_invoicer(stack: Stack) -> None:
    bookings = synced(stack)
    listed = unbilled(bookings)
    names = {b.id: b.fields["displayName"] for b in stack.sandbox.app.bookings.businesses()}
    assert len(stack.business_ids) > 1, "the sandbox seeds several businesses, so rows name theirs"
    with chromium() as driver:
        sign_in(driver, stack.url, INVOICER, [ROLE_READ, ROLE_INVOICE])
        rows = wait_for_rows(driver)
        # Count and total of every match (all pages), not of the 50 shown, in the company's currency.
        expected_total = sum((booking_amount(b) for b in listed), Decimal(0))
        assert len(listed) > len(rows) or len(rows) < 50
        assert totals_text(driver) == (
            f"{len(listed):,} Unbilled bookings match, {money(driver, expected_total)} in total."
        )
        # Names people know, the address as the tooltip: the business filter and every row.
        options = driver.find_elements(By.CSS_SELECTOR, "#f-business option[value]:not([value=''])")
        assert {(o.get_attribute("value"), o.text, o.get_attribute("title")) for o in options} == {
            (b, names[b], b) for b in stack.business_ids
        }
        by_key = {b.key: b for b in bookings}
        for row in rows[:10]:
            booking = by_key[str(row.get_attribute("data-key"))]
            business = row.find_element(By.CSS_SELECTOR, ".business")
            assert (business.text, business.get_attribute("title")) == (
                names[booking.business_id],
                booking.business_id,
            )
            amount = row.find_element(By.CSS_SELECTOR, "td.amount").text.splitlines()[0]
            assert amount == (
                "free" if booking.price_type == "free" else money(driver, booking_amount(booking))
            )

        # Export: the link carries the filter; the file is every match, UTF-8 with a BOM.
        customer = next(
            b for b in listed if b.customer_email and b.customer_email not in blocked_emails(stack)
        )
        show(driver, "Unbilled", str(customer.customer_email))
        wait_for_rows(
            driver,
            lambda found: all(
                by_key[str(r.get_attribute("data-key"))].customer_email == customer.customer_email
                for r in found
            ),
        )
        export = by_id(driver, "export")
        href = str(export.get_attribute("href"))
        assert parse_qs(urlsplit(href).query) == {
            "status": ["Unbilled"],
            "customerEmail": [customer.customer_email],
        }
        assert export.get_attribute("download") is not None
        answer = fetch_text(driver, href)
        assert answer["status"] == 200 and answer["type"] == "text/csv; charset=utf-8"
        content = bytes(answer["bytes"])
        assert content.startswith("\ufeff".encode())
        mine = [b for b in listed if b.customer_email == customer.customer_email]
        assert content.decode("utf-8-sig").count("\r\n") == 1 + len(mine)
        assert all(b.key in content.decode("utf-8") for b in mine)

        # Invoice two; the Invoiced list links each number to its draft in Business Central.
        chosen = [b.key for b in mine[:2]]
        for key in chosen:
            click(driver, f'tr[data-key="{key}"] input.row-select')
        driver.find_element(By.ID, "invoice-selected").click()
        confirm(driver, f"{len(chosen)} selected booking")
        assert progress_finished(driver).startswith(f"Finished: {len(chosen)} of {len(chosen)} invoiced")
        show(driver, "Invoiced")
        wait_for_rows(driver, lambda found: {r.get_attribute("data-key") for r in found} >= set(chosen))
        company = stack.admin.state(["company"])["company"]["name"]
        for key in chosen:
            stored = stack.store.get(by_key[key].business_id, key)
            assert stored is not None and stored.invoice_number
            link = driver.find_element(By.CSS_SELECTOR, f'tr[data-key="{key}"] a.invoice-link')
            assert link.text == stored.invoice_number and link.get_attribute("target") == "_blank"
            url = urlsplit(str(link.get_attribute("href")))
            assert url.netloc == "businesscentral.dynamics.com"
            assert url.path == f"/{stack.settings['ENTRA_TENANT_ID']}/{stack.settings['BC_ENVIRONMENT']}/"
            assert parse_qs(url.query) == {
                "company": [company],
                "page": ["43"],
                "filter": [f"'No.' IS '{stored.invoice_number}'"],
            }
        paid = sum((booking_amount(by_key[k]) for k in chosen), Decimal(0))
        assert (
            totals_text(driver) == f"{len(chosen)} Invoiced bookings match, {money(driver, paid)} in total."
        )
        assert_accessible_and_quiet(driver)
        screenshot = os.environ.get("PORTAL_SCREENSHOT")
        if screenshot:
            driver.execute_script("window.scrollTo(0, 0);")
            Path(screenshot).write_bytes(driver.get_screenshot_as_png())

        # Posted in Business Central; once reconcile has seen it, the posted number opens the
        # Posted Sales Invoice page.
        first = stack.store.get(by_key[chosen[0]].business_id, chosen[0])
        assert first is not None and first.invoice_id
        posted_number = stack.admin.post_invoice(first.invoice_id)["number"]
        assert posted_number != first.invoice_number
        assert stack.run_function("reconcile_invoices") == ["Succeeded"]
        show(driver, "Invoiced")
        css = f'tr[data-key="{chosen[0]}"] a.invoice-link'
        wait(driver).until(lambda d: d.find_element(By.CSS_SELECTOR, css).text == posted_number)
        posted = parse_qs(
            urlsplit(str(driver.find_element(By.CSS_SELECTOR, css).get_attribute("href"))).query
        )
        assert (posted["page"], posted["filter"]) == (["132"], [f"'No.' IS '{posted_number}'"])


def test_a_failure_names_the_booking_and_leads_to_its_row(make_stack: Any) -> None:
    stack: Stack = make_stack(SYNC_CUSTOMERS="false")
    bookings = synced(stack)
    known = {str(c.get("email", "")).lower() for c in stack.admin.state(["customers"])["customers"]}
    stranger = next(
        b
        for b in unbilled(bookings)
        if b.customer_email and b.customer_email.lower() not in known and b.customer_name
    )
    with chromium() as driver:
        sign_in(driver, stack.url, INVOICER, [ROLE_READ, ROLE_INVOICE])
        wait_for_rows(driver)
        show(driver, "Unbilled", str(stranger.customer_email))
        wait_for_rows(driver, lambda found: stranger.key in {r.get_attribute("data-key") for r in found})
        click(driver, f'tr[data-key="{stranger.key}"] input.row-select')
        driver.find_element(By.ID, "invoice-selected").click()
        confirm(driver, "1 selected booking")
        assert "1 failed" in progress_finished(driver)
        item = driver.find_element(By.CSS_SELECTOR, f'#failure-list li[data-key="{stranger.key}"]')
        link = item.find_element(By.CSS_SELECTOR, "a.failure-link")
        when = str(
            driver.execute_script(
                "return new Intl.DateTimeFormat(undefined, {timeZone: arguments[1], year: 'numeric',"
                " month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit'})"
                ".format(new Date(arguments[0]));",
                stranger.start.isoformat(),
                stack.settings["BOOKINGS_TIME_ZONE"],
            )
        )
        assert link.text == f"{stranger.customer_name}, {when}, {stranger.service_name}"
        assert "No Business Central customer has this email address" in item.text
        # The list moved on (the booking is no longer Unbilled); the link brings its row back, by keyboard.
        show(driver, "Unbilled")
        wait_for_rows(driver, lambda found: stranger.key not in {r.get_attribute("data-key") for r in found})
        link = driver.find_element(
            By.CSS_SELECTOR, f'#failure-list li[data-key="{stranger.key}"] a.failure-link'
        )
        link.send_keys(Keys.ENTER)
        wait(driver).until(
            lambda d: d.switch_to.active_element.get_attribute("id") == f"booking-{stranger.key}"
        )
        row = driver.find_element(By.ID, f"booking-{stranger.key}")
        assert "target" in str(row.get_attribute("class")) and "Failed" in row.text
        assert driver.find_element(By.ID, "f-status").get_attribute("value") == "Failed"
        assert_accessible_and_quiet(driver)


def test_on_a_phone_a_reader_sees_totals_export_and_business_central_prices(make_stack: Any) -> None:
    stack: Stack = make_stack(PRICE_SOURCE="businessCentral")
    synced(stack)
    with chromium(width=390, height=844) as driver:  # a phone held upright
        sign_in(driver, stack.url, READER, [ROLE_READ])
        wait_for_rows(driver)
        assert "Unbilled bookings match" in totals_text(driver)
        assert by_id(driver, "export").is_displayed()
        assert not driver.find_element(By.ID, "actions").is_displayed()
        assert "priced by Business Central" in driver.find_element(By.CSS_SELECTOR, "#rows td.amount").text
        assert_accessible_and_quiet(driver)
        driver.find_element(By.ID, "show-settings").click()
        settings = by_id(driver, "settings-list")
        wait(driver).until(lambda d: "Prices from" in settings.text)
        text = settings.text
        company = stack.admin.state(["company"])["company"]
        assert "Business Central (its prices, price lists and discounts; no unit price sent)" in text
        assert f"{company['displayName']} ({stack.settings['BC_COMPANY_ID']})" in text and "EUR" in text
        check = by_id(driver, "setup-checks")
        wait(driver).until(lambda d: check.find_elements(By.CSS_SELECTOR, "li[data-check='settings']"))
        detail = check.find_element(By.CSS_SELECTOR, "li[data-check='settings']").text
        assert "PRICE_SOURCE=businessCentral" in detail
        assert_accessible_and_quiet(driver)
