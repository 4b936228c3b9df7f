"""Bookings appointments and businesses as the store keeps them, and the rules of their fields:
the v1.0 writable properties, price types, `dateTimeTimeZone` values and customer lists.
"""

from __future__ import annotations

import base64
import copy
import random
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sandbox.core.timefmt import (
    graph_datetime,
    parse_iso_datetime,
    parse_iso_duration,
    zone_named,
)

PRICE_TYPES = (
    "undefined",
    "fixedPrice",
    "startingAt",
    "hourly",
    "free",
    "priceVaries",
    "callUs",
    "notSet",
    "unknownFutureValue",
)

# Writable bookingAppointment properties of v1.0 (POST/PATCH through the Graph route).
_APPOINTMENT_WRITABLE = {
    "additionalInformation",
    "anonymousJoinWebUrl",
    "appointmentLabel",
    "customerEmailAddress",
    "customerName",
    "customerNotes",
    "customerPhone",
    "customerTimeZone",
    "customers",
    "endDateTime",
    "isCustomerAllowedToManageBooking",
    "isLocationOnline",
    "joinWebUrl",
    "maximumAttendeesCount",
    "optOutOfCustomerEmail",
    "postBuffer",
    "preBuffer",
    "price",
    "priceType",
    "reminders",
    "serviceId",
    "serviceLocation",
    "serviceName",
    "serviceNotes",
    "smsNotificationsEnabled",
    "staffMemberIds",
    "startDateTime",
}


def exchange_id(rng: random.Random | None = None) -> str:
    """An Exchange-style base64 item id that contains `+`, `/` and `=` (as real ids often do)."""
    prefix = b"\x00\x03\x24\x00"
    while True:
        body = rng.randbytes(46) if rng is not None else secrets.token_bytes(46)
        encoded = base64.b64encode(prefix + body).decode("ascii")
        if "+" in encoded and "/" in encoded and encoded.endswith("="):
            return encoded


@dataclass
class Appointment:
    id: str
    start: datetime
    end: datetime
    fields: dict[str, Any]
    """Every other v1.0 property (and, for admin-made appointments, any extra ones)."""
    time_zone: str | None = None
    """Render `startDateTime`/`endDateTime` in this zone (IANA or Windows name) as a local time
    without offset, as `dateTimeTimeZone` allows; None renders UTC."""

    @property
    def sort_key(self) -> tuple[datetime, str]:
        return (self.start, self.id)


@dataclass
class Business:
    id: str
    fields: dict[str, Any]
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    staff: dict[str, dict[str, Any]] = field(default_factory=dict)
    appointments: dict[str, Appointment] = field(default_factory=dict)
    _order: list[tuple[datetime, str]] = field(default_factory=list)
    _dirty: bool = False
    _max_duration: timedelta = timedelta(0)

    def add(self, appointment: Appointment) -> None:
        self.appointments[appointment.id] = appointment
        self._dirty = True
        self._max_duration = max(self._max_duration, appointment.end - appointment.start)

    def remove(self, appointment_id: str) -> Appointment | None:
        removed = self.appointments.pop(appointment_id, None)
        if removed is not None:
            self._dirty = True
        return removed

    def ordered_keys(self) -> list[tuple[datetime, str]]:
        if self._dirty:
            self._order = sorted(a.sort_key for a in self.appointments.values())
            self._dirty = False
        return self._order

    @property
    def max_duration(self) -> timedelta:
        return self._max_duration


class AppointmentError(ValueError):
    """An appointment body the API rejects; `status`/`code` say how."""

    def __init__(self, message: str, status: int = 400, code: str = "invalidRequest") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def apply_fields(fields: dict[str, Any], data: dict[str, Any], *, strict: bool) -> None:
    """Copy the writable properties of `data` into `fields`, checked as the API checks them."""
    for key, value in data.items():
        if key in (
            "id",
            "startDateTime",
            "endDateTime",
            "duration",
            "filledAttendeesCount",
        ) or key.startswith("@odata"):
            continue
        if key == "priceType" and value not in PRICE_TYPES:
            raise AppointmentError(f"Invalid priceType value '{value}'.", code="BadRequest")
        if key == "price" and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise AppointmentError("price must be a number.", code="BadRequest")
        if key in ("preBuffer", "postBuffer"):
            try:
                parse_iso_duration(str(value))
            except ValueError:
                raise AppointmentError(f"{key} is not an ISO 8601 duration.", code="BadRequest") from None
        if key == "customers":
            value = customer_list(value, strict=strict)
        fields[key] = copy.deepcopy(value)


def empty_location() -> dict[str, Any]:
    return {
        "displayName": "",
        "locationEmailAddress": None,
        "locationUri": "",
        "locationType": None,
        "uniqueId": None,
        "uniqueIdType": None,
        "address": {"street": "", "city": "", "state": "", "countryOrRegion": "", "postalCode": ""},
        "coordinates": {"altitude": "NaN", "latitude": "NaN", "longitude": "NaN", "accuracy": "NaN"},
    }


def reject_unknown(data: dict[str, Any]) -> None:
    for key in data:
        if key.startswith("@odata") or key in _APPOINTMENT_WRITABLE or key in ("id", "duration"):
            continue
        raise AppointmentError(
            f"The property '{key}' does not exist on type 'microsoft.graph.bookingAppointment'. Make sure to "
            "only use property names that are defined by the type or mark the type as open type.",
            code="BadRequest",
        )


def given_zone(value: Any) -> str | None:
    """The zone an admin-made appointment was given in, kept for rendering (None for UTC)."""
    if isinstance(value, dict) and isinstance(value.get("timeZone"), str):
        name = value["timeZone"].strip()
        if name and name.lower() not in ("utc", "coordinated universal time", "etc/utc"):
            return name
    return None


def render_dtz(instant: datetime, zone_name: str | None) -> dict[str, str]:
    """UTC with `Z`, or a local time without offset and the zone's (Windows or IANA) name."""
    if zone_name is None:
        return {"dateTime": graph_datetime(instant), "timeZone": "UTC"}
    local = instant.astimezone(zone_named(zone_name))
    return {
        "dateTime": local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond:06d}0",
        "timeZone": zone_name,
    }


def parse_dtz(value: Any, name: str) -> datetime:
    """A `dateTimeTimeZone` ({dateTime, timeZone}); an ISO string is tolerated for admin calls."""
    if isinstance(value, str):
        text, zone_name = value, "UTC"
    elif isinstance(value, dict) and isinstance(value.get("dateTime"), str):
        text, zone_name = value["dateTime"], value.get("timeZone") or "UTC"
    else:
        raise AppointmentError(f"{name} must be a dateTimeTimeZone object.", code="BadRequest")
    try:
        return parse_iso_datetime(text, default_zone=zone_named(zone_name))
    except ValueError as exc:
        raise AppointmentError(
            f"Cannot convert the literal '{text}' of {name}: {exc}.", code="BadRequest"
        ) from None


def customer_list(value: Any, *, strict: bool) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise AppointmentError("customers must be a collection.", code="BadRequest")
    result = []
    for entry in value:
        if not isinstance(entry, dict):
            raise AppointmentError(
                "customers must hold bookingCustomerInformation objects.", code="BadRequest"
            )
        customer = {
            "@odata.type": "#microsoft.graph.bookingCustomerInformation",
            "customerId": entry.get("customerId"),
            "name": entry.get("name"),
            "emailAddress": entry.get("emailAddress"),
            "phone": entry.get("phone"),
            "notes": entry.get("notes"),
            "location": entry.get("location"),
            "timeZone": entry.get("timeZone"),
            "customQuestionAnswers": entry.get("customQuestionAnswers", []),
        }
        if not strict:
            customer.update({k: v for k, v in entry.items() if k not in customer})
        result.append(customer)
    return result
