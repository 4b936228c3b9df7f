"""The product's vocabulary: booking keys, states, error codes, bookings and queue messages."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

KEY_LENGTH = 26
KEY_PATTERN = re.compile(r"^[A-Z2-7]{26}$")
EXTERNAL_DOCUMENT_PREFIX = "BKG-"


def booking_key(business_id: str, appointment_id: str, attendee_id: str | None = None) -> str:
    """The contract's booking key: base32 of SHA-256 of `businessId\\nappointmentId`, cut to 26.

    An attendee of a group appointment (`shared/domain/group_appointments.py`) has its own key:
    the same of `businessId\\nappointmentId\\nattendeeId`. URL-safe, a legal Table RowKey, and
    `BKG-<key>` fits Business Central's Code[35].
    """
    text = f"{business_id}\n{appointment_id}"
    if attendee_id is not None:
        text += f"\n{attendee_id}"
    digest = hashlib.sha256(text.encode()).digest()
    return base64.b32encode(digest).decode("ascii")[:KEY_LENGTH]


def is_booking_key(value: object) -> bool:
    return isinstance(value, str) and KEY_PATTERN.match(value) is not None


def external_document_number(key: str) -> str:
    return f"{EXTERNAL_DOCUMENT_PREFIX}{key}"


class BookingStatus(StrEnum):
    UNBILLED = "Unbilled"
    QUEUED = "Queued"
    INVOICING = "Invoicing"
    INVOICED = "Invoiced"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    EXCLUDED = "Excluded"


class InvoiceSource(StrEnum):
    """Who billed an Invoiced booking: this app (a Business Central invoice) or a person, elsewhere."""

    APP = "app"
    MANUAL = "manual"


class ErrorCode(StrEnum):
    NO_CUSTOMER = "NO_CUSTOMER"
    NO_CUSTOMER_EMAIL = "NO_CUSTOMER_EMAIL"
    CUSTOMER_NOT_FOUND = "CUSTOMER_NOT_FOUND"
    SERVICE_NOT_MAPPED = "SERVICE_NOT_MAPPED"
    BC_REJECTED = "BC_REJECTED"
    BC_UNAVAILABLE = "BC_UNAVAILABLE"
    CUSTOMER_BLOCKED = "CUSTOMER_BLOCKED"
    ITEM_BLOCKED = "ITEM_BLOCKED"


class PriceType(StrEnum):
    UNDEFINED = "undefined"
    FIXED_PRICE = "fixedPrice"
    STARTING_AT = "startingAt"
    HOURLY = "hourly"
    FREE = "free"
    PRICE_VARIES = "priceVaries"
    CALL_US = "callUs"
    NOT_SET = "notSet"
    UNKNOWN_FUTURE_VALUE = "unknownFutureValue"

    @classmethod
    def parse(cls, value: object) -> PriceType:
        try:
            return cls(str(value))
        except ValueError:
            return cls.UNKNOWN_FUTURE_VALUE


@dataclass(frozen=True)
class Actor:
    """Who made a change through the API (audit): the caller's object id and display name."""

    id: str
    name: str


@dataclass(frozen=True)
class Customer:
    """A customer of an appointment as Bookings has it (one attendee of a group appointment)."""

    name: str
    email: str | None
    phone: str | None = None
    bookings_customer_id: str | None = None


@dataclass(frozen=True)
class Appointment:
    """A Bookings appointment, parsed from Graph (both `startDateTime` and `start` shapes).

    `customer` is the one billed: the first of `attendees` as parsed, or, in the appointments
    `group_appointments.bookings_of` makes, the attendee the booking is for (`attendee_id` set,
    `group` true). `maximum_attendees` is Graph's `maximumAttendeesCount` (None when absent).
    """

    business_id: str
    id: str
    service_id: str
    service_name: str
    customer: Customer | None
    staff_member_ids: tuple[str, ...]
    start: datetime
    end: datetime
    price: float
    price_type: PriceType
    last_updated: datetime | None = None
    attendees: tuple[Customer, ...] = ()
    maximum_attendees: int | None = None
    attendee_id: str | None = None
    group: bool = False

    @property
    def key(self) -> str:
        return booking_key(self.business_id, self.id, self.attendee_id)


@dataclass(frozen=True)
class AppointmentPage:
    """One page of `calendarView`: the appointments we could read, and the ids we could not."""

    appointments: tuple[Appointment, ...]
    invalid: tuple[tuple[str | None, str], ...]  # (appointment id if any, reason)
    fetched_at: datetime

    @property
    def appointment_ids(self) -> tuple[str, ...]:
        """Every id Graph returned on this page, readable or not (they all exist in Bookings)."""
        return tuple(a.id for a in self.appointments) + tuple(i for i, _ in self.invalid if i)


@dataclass
class Booking:
    """A booking as stored in the `Bookings` table: the appointment plus its invoicing state."""

    key: str
    business_id: str
    appointment_id: str
    service_id: str
    service_name: str
    customer_name: str | None
    customer_email: str | None
    customer_phone: str | None
    staff_member_ids: tuple[str, ...]
    start: datetime
    end: datetime
    price: float
    price_type: PriceType
    status: BookingStatus = BookingStatus.UNBILLED
    has_customer: bool = True
    group_appointment: bool = False
    invoice_id: str | None = None
    invoice_number: str | None = None
    error_code: str | None = None
    error: str | None = None
    request_id: str | None = None
    # How many times a worker claimed it (Queued -> Invoicing). Never reset: once a claim happened,
    # an invoice may exist in Business Central, so later tries look it up before creating one.
    invoice_attempts: int = 0
    # The queue message (its id) whose worker holds the Invoicing claim: a redelivery of that same
    # message may take the claim over at once; any other message must wait out the claim's lease.
    claimed_by: str | None = None
    updated_at: datetime | None = None
    status_changed_at: datetime | None = None
    # Business Central's status of the invoice (Draft, Open, Paid, Canceled, Corrective, ...), as
    # last seen by invoicing or reconcile_invoices; None for manual outcomes and unbilled bookings.
    invoice_status: str | None = None
    invoice_source: InvoiceSource | None = None
    # Seen posted by reconcile_invoices (a posted number, or Paid/Canceled/Corrective): the API's
    # `Open` alone is also a released, unposted draft, which a person may still delete.
    invoice_posted: bool = False
    note: str | None = None
    # The person or application whose API request last changed this booking (None: only the app).
    updated_by: Actor | None = None
    etag: str | None = field(default=None, compare=False)
    # Stored properties this version does not know (written by a newer one): kept on every write.
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def source(self) -> InvoiceSource | None:
        """`invoice_source`, or `app` for an Invoiced booking stored before the field existed."""
        if self.invoice_source is not None:
            return self.invoice_source
        if self.status is BookingStatus.INVOICED and self.invoice_id:
            return InvoiceSource.APP
        return None


class InvalidMessageError(ValueError):
    """A queue message that is not an invoice request (it can never succeed: poison it)."""


@dataclass(frozen=True)
class InvoiceMessage:
    """One message on `bookings-to-invoice`: ids and trace context only, never booking data."""

    business_id: str
    booking_key: str
    request_id: str
    traceparent: str | None = None
    tracestate: str | None = None

    def to_json(self) -> str:
        document = {
            "businessId": self.business_id,
            "bookingKey": self.booking_key,
            "requestId": self.request_id,
        }
        if self.traceparent:
            document["traceparent"] = self.traceparent
        if self.tracestate:
            document["tracestate"] = self.tracestate
        return json.dumps(document, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> InvoiceMessage:
        try:
            document = json.loads(text)
        except ValueError:
            raise InvalidMessageError("message body is not JSON") from None
        if not isinstance(document, dict):
            raise InvalidMessageError("message body is not a JSON object")
        business_id = document.get("businessId")
        key = document.get("bookingKey")
        request_id = document.get("requestId")
        if not isinstance(business_id, str) or not business_id:
            raise InvalidMessageError("businessId is missing")
        if not is_booking_key(key):
            raise InvalidMessageError("bookingKey is not a booking key")
        if not isinstance(request_id, str) or not request_id:
            raise InvalidMessageError("requestId is missing")
        traceparent = document.get("traceparent")
        tracestate = document.get("tracestate")
        return cls(
            business_id=business_id,
            booking_key=str(key),
            request_id=request_id,
            traceparent=traceparent if isinstance(traceparent, str) else None,
            tracestate=tracestate if isinstance(tracestate, str) else None,
        )
