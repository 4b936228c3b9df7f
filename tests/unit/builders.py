"""Small builders of bookings and appointments for the unit tests (fixed times, no wall clock)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain.models import Appointment, Booking, BookingStatus, Customer, PriceType, booking_key

LUNCH = "lunch@contoso.com"
DINNER = "dinner@contoso.com"
BASE_START = datetime(2026, 1, 20, 9, 0, tzinfo=UTC)
STAMPED = datetime(2026, 1, 25, 8, 0, tzinfo=UTC)


def appointment_id(number: int) -> str:
    return f"AAMk{number:06d}/x+Y="


def make_appointment(
    business: str = LUNCH,
    number: int = 1,
    *,
    start: datetime | None = None,
    minutes: int = 30,
    customer: Customer | bool | None = True,
    **changes: Any,
) -> Appointment:
    begin = start or BASE_START + timedelta(hours=number)
    if customer is True:
        customer = Customer(name=f"Customer {number}", email=f"customer{number}@example.com")
    appointment = Appointment(
        business_id=business,
        id=appointment_id(number),
        service_id="svc-1",
        service_name="Catered bento",
        customer=customer or None,
        staff_member_ids=("staff-1",),
        start=begin,
        end=begin + timedelta(minutes=minutes),
        price=10.0,
        price_type=PriceType.FIXED_PRICE,
    )
    return replace(appointment, **changes)


def make_booking(
    business: str = LUNCH,
    number: int = 1,
    *,
    status: BookingStatus = BookingStatus.UNBILLED,
    **changes: Any,
) -> Booking:
    begin = BASE_START + timedelta(hours=number)
    booking = Booking(
        key=booking_key(business, appointment_id(number)),
        business_id=business,
        appointment_id=appointment_id(number),
        service_id="svc-1",
        service_name="Catered bento",
        customer_name=f"Customer {number}",
        customer_email=f"customer{number}@example.com",
        customer_phone=None,
        staff_member_ids=("staff-1",),
        start=begin,
        end=begin + timedelta(minutes=30),
        price=10.0,
        price_type=PriceType.FIXED_PRICE,
        status=status,
        updated_at=STAMPED,
        status_changed_at=STAMPED,
    )
    return replace(booking, **changes)
