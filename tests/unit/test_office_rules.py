"""Rules behind the office's page: PRICE_SOURCE, invoice links, amounts, CSV cells, cached names."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from shared import bootstrap
from shared.api.csv_export import safe_cell
from shared.domain.bc_web_client import InvoiceLinks, environment_url, web_client_host
from shared.domain.invoice_lines import PriceSource, booking_amount, invoice_body
from shared.domain.models import InvoiceSource, PriceType
from shared.services.directory import Directory
from shared.services.setup_check import price_source_text
from shared.settings import SettingsError, load_settings
from tests.unit.builders import make_booking
from tests.unit.test_settings import valid_env

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def test_price_source_defaults_to_bookings_and_takes_either_spelling() -> None:
    assert load_settings(valid_env()).price_source is PriceSource.BOOKINGS
    for spelling in ("businessCentral", "BusinessCentral", "businesscentral"):
        assert load_settings(valid_env(PRICE_SOURCE=spelling)).price_source is PriceSource.BUSINESS_CENTRAL


def test_a_bad_price_source_is_one_clear_log_line(caplog: pytest.LogCaptureFixture) -> None:
    env = valid_env(PRICE_SOURCE="navision")
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert (
        str(caught.value) == "Setting PRICE_SOURCE must be one of bookings, businessCentral, got 'navision'"
    )
    with caplog.at_level(logging.ERROR, logger="bookings.bootstrap"), pytest.raises(SettingsError):
        bootstrap.current_settings(env)
    assert [r.getMessage() for r in caplog.records if r.name == "bookings.bootstrap"] == [str(caught.value)]


def test_with_business_central_prices_no_line_carries_a_unit_price() -> None:
    booking = make_booking(price=80.0, price_type=PriceType.HOURLY)
    body = invoice_body(
        booking, customer_id="c", item_id="i", zone=ZoneInfo("UTC"), rule=_rule(), now=NOW,
        price_source=PriceSource.BUSINESS_CENTRAL,
    )  # fmt: skip
    item = body["salesInvoiceLines"][0]
    assert "unitPrice" not in item and item["quantity"] == float(booking_amount(booking) / 80)
    default = invoice_body(booking, customer_id="c", item_id="i", zone=ZoneInfo("UTC"), rule=_rule(), now=NOW)
    assert default["salesInvoiceLines"][0]["unitPrice"] == 80
    assert "Business Central" in price_source_text("businessCentral") and "Bookings" in price_source_text(
        "bookings"
    )


def _rule() -> Any:
    from shared.domain.invoice_lines import InvoiceDateRule

    return InvoiceDateRule.APPOINTMENT


def test_amounts_follow_the_price_type() -> None:
    start = NOW
    hourly = make_booking(
        price=40.0, price_type=PriceType.HOURLY, start=start, end=start + timedelta(minutes=90)
    )
    assert booking_amount(hourly) == Decimal("60.00")
    assert booking_amount(replace(hourly, price_type=PriceType.FREE)) == 0
    assert booking_amount(replace(hourly, price_type=PriceType.FIXED_PRICE)) == Decimal("40.00")
    assert booking_amount(replace(hourly, price_type=PriceType.CALL_US)) == 0  # Business Central prices it


def test_web_client_host_follows_the_api_hosts_cloud() -> None:
    assert web_client_host("https://api.businesscentral.dynamics.com/v2.0") == "businesscentral.dynamics.com"
    assert web_client_host("https://api.businesscentral.dynamics.us/v2.0") == "businesscentral.dynamics.us"
    assert web_client_host("https://127.0.0.1:8443/bc/v2.0") == "businesscentral.dynamics.com"
    assert environment_url("https://api.businesscentral.dynamics.com/v2.0", "t-1", "My Sandbox") == (
        "https://businesscentral.dynamics.com/t-1/My%20Sandbox"
    )


def test_invoice_links_pick_the_draft_or_posted_page_and_quote_the_filter() -> None:
    links = InvoiceLinks("https://businesscentral.dynamics.com/t/Production", "CRONUS & Co")
    draft = make_booking(invoice_number="S-INV 1", invoice_source=InvoiceSource.APP)
    assert links.for_booking(draft) == (
        "https://businesscentral.dynamics.com/t/Production/"
        "?company=CRONUS%20%26%20Co&page=43&filter=%27No.%27%20IS%20%27S-INV%201%27"
    )
    posted = replace(draft, invoice_posted=True)
    assert "page=132" in str(links.for_booking(posted))
    assert links.for_booking(replace(draft, invoice_source=InvoiceSource.MANUAL)) is None
    assert links.for_booking(replace(draft, invoice_number="O'Brien")) is None
    assert InvoiceLinks(links.environment_url, None).for_booking(draft) is None


@pytest.mark.parametrize("text", ["=1+1", "+31 6", "-2", "@SUM(A1)", "\tx", "\rx"])
def test_cells_a_spreadsheet_would_run_are_neutralised(text: str) -> None:
    assert safe_cell(text) == "'" + text
    assert safe_cell("Anna =x") == "Anna =x" and safe_cell(None) == ""


def test_names_are_read_once_per_ttl_and_a_failure_is_not_retried_at_once() -> None:
    now = [NOW]
    calls: list[str] = []

    def business(business_id: str) -> dict[str, Any]:
        calls.append(business_id)
        if business_id == "down@x.com":
            raise ConnectionError("no route")
        return {"displayName": f"Name of {business_id}"}

    directory = Directory(
        lambda: {"name": "CRONUS", "displayName": "CRONUS B.V."},
        lambda: {"value": [{"currencyCode": "EUR"}]},
        business,
        ("up@x.com", "down@x.com"),
        lambda: now[0],
    )
    assert directory.business_names() == {"up@x.com": "Name of up@x.com"}
    assert directory.business_names() == {"up@x.com": "Name of up@x.com"}
    assert calls == ["up@x.com", "down@x.com"]
    now[0] += timedelta(minutes=6)  # the failure is retried after 5 minutes, the name after an hour
    directory.business_names()
    assert calls == ["up@x.com", "down@x.com", "down@x.com"]
    facts = directory.company()
    assert (facts.name, facts.display_name, facts.currency_code) == ("CRONUS", "CRONUS B.V.", "EUR")
