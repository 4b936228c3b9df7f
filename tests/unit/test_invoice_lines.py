"""Invoice content rules: price types, business time zone, description length, invoice date."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from shared.domain.invoice_lines import (
    DESCRIPTION_LENGTH,
    hours,
    invoice_body,
    invoice_date,
    item_description,
    quantity_and_price,
)
from shared.domain.models import Booking, PriceType, booking_key
from shared.settings import InvoiceDateRule
from tests.unit.builders import make_booking

AMSTERDAM = ZoneInfo("Europe/Amsterdam")


def booking(**changes: Any) -> Booking:
    """The shared builder's booking, on the appointment these line rules are read against."""
    appointment = {
        "key": booking_key("lunch@contoso.com", "appt-1"),
        "appointment_id": "appt-1",
        "customer_name": "Bob Kelly",
        "customer_email": "bob@x.com",
        "staff_member_ids": (),
        "start": datetime(2026, 1, 15, 12, 0, tzinfo=UTC),
        "end": datetime(2026, 1, 15, 13, 30, tzinfo=UTC),
    }
    return make_booking(**{**appointment, **changes})


@pytest.mark.parametrize(
    ("price_type", "price", "expected"),
    [
        (PriceType.FIXED_PRICE, 10.0, (Decimal(1), Decimal("10.0"))),
        (PriceType.STARTING_AT, 250.0, (Decimal(1), Decimal("250.0"))),
        (PriceType.HOURLY, 45.0, (Decimal("1.50"), Decimal("45.0"))),
        (PriceType.FREE, 12.0, (Decimal(1), Decimal(0))),
        (PriceType.CALL_US, 0.0, (Decimal(1), None)),
        (PriceType.PRICE_VARIES, 0.0, (Decimal(1), None)),
        (PriceType.NOT_SET, 0.0, (Decimal(1), None)),
        (PriceType.UNDEFINED, 0.0, (Decimal(1), None)),
        (PriceType.UNDEFINED, 7.5, (Decimal(1), Decimal("7.5"))),
        (PriceType.UNKNOWN_FUTURE_VALUE, 0.0, (Decimal(1), None)),
    ],
)
def test_quantity_and_price_follow_the_price_type(
    price_type: PriceType, price: float, expected: tuple[Decimal, Decimal | None]
) -> None:
    assert quantity_and_price(booking(price_type=price_type, price=price)) == expected


def test_hours_are_rounded_to_two_decimals_half_up() -> None:
    start = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    assert hours(booking(start=start, end=start + timedelta(minutes=50))) == Decimal("0.83")
    assert hours(booking(start=start, end=start + timedelta(minutes=45))) == Decimal("0.75")
    assert hours(booking(start=start, end=start + timedelta(seconds=18))) == Decimal("0.01")  # 0.005 up


def test_description_is_in_the_business_time_zone() -> None:
    start = datetime(2026, 1, 14, 23, 30, tzinfo=UTC)  # 00:30 the next day in Amsterdam
    assert item_description("Night run", start, AMSTERDAM) == "Night run 2026-01-15 00:30"
    assert item_description("Night run", start, ZoneInfo("UTC")) == "Night run 2026-01-14 23:30"


def test_a_long_description_is_cut_to_100_characters_keeping_the_date() -> None:
    text = item_description("x" * 150, datetime(2026, 7, 1, 8, 5, tzinfo=UTC), AMSTERDAM)
    assert len(text) == DESCRIPTION_LENGTH
    assert text.endswith(" 2026-07-01 10:05")


def test_invoice_date_is_the_local_end_date_or_local_today() -> None:
    crossing = booking(
        start=datetime(2026, 3, 1, 21, 30, tzinfo=UTC),  # 22:30 local
        end=datetime(2026, 3, 1, 23, 30, tzinfo=UTC),  # 00:30 local on 2 March
    )
    now = datetime(2026, 3, 5, 23, 10, tzinfo=UTC)  # already 6 March in Amsterdam
    assert str(invoice_date(crossing, InvoiceDateRule.APPOINTMENT, AMSTERDAM, now)) == "2026-03-02"
    assert str(invoice_date(crossing, InvoiceDateRule.APPOINTMENT, ZoneInfo("UTC"), now)) == "2026-03-01"
    assert str(invoice_date(crossing, InvoiceDateRule.TODAY, AMSTERDAM, now)) == "2026-03-06"


def test_body_is_one_deep_insert_with_item_and_comment_lines() -> None:
    subject = booking(price_type=PriceType.HOURLY, price=45.0)
    body = invoice_body(
        subject,
        customer_id="c-id",
        item_id="i-id",
        zone=AMSTERDAM,
        rule=InvoiceDateRule.APPOINTMENT,
        now=datetime(2026, 2, 1, tzinfo=UTC),
    )
    assert body["externalDocumentNumber"] == f"BKG-{subject.key}"
    assert body["customerId"] == "c-id" and body["invoiceDate"] == "2026-01-15"
    assert body["postingDate"] == body["invoiceDate"]  # invoiceDate alone is only the Document Date
    item, comment = body["salesInvoiceLines"]
    assert item == {
        "lineType": "Item",
        "itemId": "i-id",
        "description": "Catered bento 2026-01-15 13:00",
        "quantity": 1.5,
        "unitPrice": 45,
    }
    assert comment == {"lineType": "Comment", "description": "Bookings appointment with Bob Kelly"}


def test_no_usable_price_leaves_unit_price_out_and_no_name_leaves_the_comment_out() -> None:
    body = invoice_body(
        booking(price_type=PriceType.CALL_US, price=0.0, customer_name=None),
        customer_id="c",
        item_id="i",
        zone=AMSTERDAM,
        rule=InvoiceDateRule.APPOINTMENT,
        now=datetime(2026, 2, 1, tzinfo=UTC),
    )
    assert len(body["salesInvoiceLines"]) == 1
    assert "unitPrice" not in body["salesInvoiceLines"][0]
    assert body["salesInvoiceLines"][0]["quantity"] == 1
