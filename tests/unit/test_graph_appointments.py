"""Parsing Graph appointments: Windows time zone names, group attendees, flat customer fields.

Sources: Graph docs `resources/datetimetimezone.md` (a Windows or IANA name, local `dateTime`);
CLDR `windowsZones.xml` through `tzlocal.windows_tz`; the v1.0 CSDL (`customers` is a collection,
`maximumAttendeesCount`; flat `customerName`/`customerEmailAddress`/`customerPhone`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.adapters import time_zones
from shared.adapters.graph_bookings import AppointmentParseError, parse_appointment, parse_graph_datetime
from shared.adapters.time_zones import UnknownTimeZoneError, zone_named

BUSINESS = "biz@contoso.com"


def appointment(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "AAMk/1+=",
        "serviceId": "svc-1",
        "serviceName": "Group class",
        "startDateTime": {"dateTime": "2026-01-12T17:00:00.0000000Z", "timeZone": "UTC"},
        "endDateTime": {"dateTime": "2026-01-12T17:45:00.0000000Z", "timeZone": "UTC"},
        "price": 15.0,
        "priceType": "fixedPrice",
        "customers": [],
    }
    body.update(fields)
    return body


def customer(name: str, email: str | None, customer_id: str = "") -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.bookingCustomerInformation",
        "customerId": customer_id,
        "name": name,
        "emailAddress": email,
        "phone": None,
    }


@pytest.mark.parametrize(
    ("local", "zone", "utc"),
    [
        # Winter: W. Europe Standard Time (CLDR -> Europe/Berlin) is UTC+1; 23:30 local is 22:30 UTC.
        ("2026-01-12T23:30:00.0000000", "W. Europe Standard Time", datetime(2026, 1, 12, 22, 30, tzinfo=UTC)),
        # Summer: UTC+2, and a local time after midnight is the previous day in UTC.
        ("2026-07-13T00:30:00", "W. Europe Standard Time", datetime(2026, 7, 12, 22, 30, tzinfo=UTC)),
        ("2026-07-13T09:00:00", "Pacific Standard Time", datetime(2026, 7, 13, 16, 0, tzinfo=UTC)),
        ("2026-07-13T09:00:00", "GMT Standard Time", datetime(2026, 7, 13, 8, 0, tzinfo=UTC)),
        ("2026-07-13T09:00:00", "Europe/Amsterdam", datetime(2026, 7, 13, 7, 0, tzinfo=UTC)),
        ("2026-07-13T09:00:00", "UTC", datetime(2026, 7, 13, 9, 0, tzinfo=UTC)),
    ],
)
def test_windows_and_iana_zone_names_are_converted(local: str, zone: str, utc: datetime) -> None:
    assert parse_graph_datetime({"dateTime": local, "timeZone": zone}, "startDateTime") == utc


def test_windows_names_come_from_cldr_case_insensitively() -> None:
    assert str(zone_named("w. europe standard time")) == "Europe/Berlin"
    assert str(zone_named("Tokyo Standard Time")) == "Asia/Tokyo"
    assert zone_named(None) is UTC and zone_named("") is UTC


def test_an_unknown_zone_is_logged_once_and_the_appointment_is_invalid_with_that_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    time_zones._reported.discard("Mars Standard Time")
    start = {"dateTime": "2026-01-12T17:00:00", "timeZone": "Mars Standard Time"}
    with caplog.at_level(logging.WARNING, logger="bookings.time_zones"):
        for _ in range(3):
            with pytest.raises(AppointmentParseError, match="unknown time zone 'Mars Standard Time'"):
                parse_appointment(BUSINESS, appointment(startDateTime=start, endDateTime=start))
        with pytest.raises(UnknownTimeZoneError):
            zone_named("Mars Standard Time")
    assert len([r for r in caplog.records if "Mars Standard Time" in r.getMessage()]) == 1


def test_every_attendee_of_a_group_appointment_is_parsed() -> None:
    parsed = parse_appointment(
        BUSINESS,
        appointment(
            maximumAttendeesCount=10,
            filledAttendeesCount=3,
            customers=[
                customer("Ann", "ann@example.com", "c-1"),
                customer("Ben", "Ben@Example.com"),
                customer("", None, "c-3"),  # no name, no email: nothing to bill
            ],
        ),
    )
    assert parsed.maximum_attendees == 10
    assert [(c.name, c.email, c.bookings_customer_id) for c in parsed.attendees] == [
        ("Ann", "ann@example.com", "c-1"),
        ("Ben", "Ben@Example.com", None),
    ]
    assert parsed.customer == parsed.attendees[0]


def test_flat_customer_fields_are_the_fallback_when_customers_is_empty() -> None:
    flat = {"customerName": "Flat Fay", "customerEmailAddress": "fay@example.com", "customerPhone": "555"}
    parsed = parse_appointment(BUSINESS, appointment(**flat))
    assert parsed.customer is not None
    assert (parsed.customer.name, parsed.customer.email, parsed.customer.phone) == (
        "Flat Fay",
        "fay@example.com",
        "555",
    )


def test_customers_always_win_over_the_flat_fields() -> None:
    flat = {"customerName": "Flat Fay", "customerEmailAddress": "fay@example.com"}
    parsed = parse_appointment(BUSINESS, appointment(customers=[customer("Ann", "ann@example.com")], **flat))
    assert [c.email for c in parsed.attendees] == ["ann@example.com"]
