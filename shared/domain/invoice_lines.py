"""What goes on a booking's invoice: date, line description, quantity and price. Pure rules.

Kept apart from the use case so the contract's rules (price types, the business time zone, the
100-character description that always keeps its date) are tested without any I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from shared.domain.models import Booking, PriceType, external_document_number

DESCRIPTION_LENGTH = 100
"""salesInvoiceLine.description is Text[100] in Business Central."""

COMMENT_PREFIX = "Bookings appointment with "

# Price types whose booking price is what the customer pays for the whole appointment.
_UNIT_PRICE_TYPES = frozenset({PriceType.FIXED_PRICE, PriceType.STARTING_AT})
# Price types that carry no usable price: Business Central applies the item's own price.
_NO_PRICE_TYPES = frozenset({PriceType.CALL_US, PriceType.PRICE_VARIES, PriceType.NOT_SET})


class PriceSource(StrEnum):
    """Who prices an invoice line (setting `PRICE_SOURCE`)."""

    BOOKINGS = "bookings"
    """Quantity and price from the appointment, by `priceType`."""
    BUSINESS_CENTRAL = "businessCentral"
    """`unitPrice` left out of every line: Business Central's prices, price lists and discounts apply
    (the line takes the item's price as when a `callUs` booking is invoiced)."""


class InvoiceDateRule(StrEnum):
    """Which date a new invoice carries (setting `INVOICE_DATE`)."""

    APPOINTMENT = "appointment"
    TODAY = "today"


def local_time(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone)


def invoice_date(booking: Booking, rule: InvoiceDateRule, zone: ZoneInfo, now: datetime) -> date:
    """`appointment`: the appointment's end date in the business time zone; `today`: today there."""
    if rule is InvoiceDateRule.TODAY:
        return local_time(now, zone).date()
    return local_time(booking.end, zone).date()


def item_description(service_name: str, start: datetime, zone: ZoneInfo) -> str:
    """`<service name> <local start YYYY-MM-DD HH:MM>`, at most 100 characters, the date always kept."""
    when = local_time(start, zone).strftime("%Y-%m-%d %H:%M")
    room = DESCRIPTION_LENGTH - len(when) - 1
    name = " ".join(service_name.split())[:room].rstrip()
    return f"{name} {when}" if name else when


class Priced(Protocol):
    """What pricing a line reads of a booking (a whole `Booking`, or a projection of its row)."""

    @property
    def price(self) -> float: ...
    @property
    def price_type(self) -> PriceType: ...
    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...


@dataclass(frozen=True)
class PricedRow:
    """The four columns a total reads: a projection, not a whole booking."""

    price: float
    price_type: PriceType
    start: datetime
    end: datetime


def hours(booking: Priced) -> Decimal:
    """The appointment's duration in hours, 2 decimals (half up)."""
    seconds = Decimal(int((booking.end - booking.start).total_seconds()))
    return (seconds / Decimal(3600)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def quantity_and_price(booking: Priced) -> tuple[Decimal, Decimal | None]:
    """Quantity and unit price by `priceType`; a price of None means "leave `unitPrice` out"."""
    price = Decimal(str(booking.price))
    kind = booking.price_type
    if kind in _UNIT_PRICE_TYPES:
        return Decimal(1), price
    if kind is PriceType.HOURLY:
        return hours(booking), price
    if kind is PriceType.FREE:
        return Decimal(1), Decimal(0)
    if kind in _NO_PRICE_TYPES:
        return Decimal(1), None
    # undefined / a value newer than this code: a price given is still the price, 0 means none.
    return Decimal(1), (price if price > 0 else None)


def comment_text(booking: Booking) -> str | None:
    """The Comment line naming the customer, so the draft says whom it is for at a glance."""
    name = " ".join((booking.customer_name or "").split())
    if not name:
        return None
    return (COMMENT_PREFIX + name)[:DESCRIPTION_LENGTH]


def _number(value: Decimal) -> float | int:
    """JSON number: integral values as int, others as float with the decimal's digits."""
    return int(value) if value == value.to_integral_value() else float(value)


def booking_amount(booking: Priced) -> Decimal:
    """What the booking's line comes to by Bookings' prices (quantity x price; 0 where Business
    Central would price it): the amount the portal totals and exports."""
    quantity, price = quantity_and_price(booking)
    return (
        (quantity * price).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        if price is not None
        else Decimal(0)
    )


def invoice_body(
    booking: Booking,
    *,
    customer_id: str,
    item_id: str,
    zone: ZoneInfo,
    rule: InvoiceDateRule,
    now: datetime,
    price_source: PriceSource = PriceSource.BOOKINGS,
) -> dict[str, Any]:
    """The deep-insert body: header and lines in one request (atomic on Business Central's side)."""
    quantity, price = quantity_and_price(booking)
    if price_source is PriceSource.BUSINESS_CENTRAL:
        price = None
    item_line: dict[str, Any] = {
        "lineType": "Item",
        "itemId": item_id,
        "description": item_description(booking.service_name, booking.start, zone),
        "quantity": _number(quantity),
    }
    if price is not None:
        item_line["unitPrice"] = _number(price)
    lines = [item_line]
    comment = comment_text(booking)
    if comment:
        lines.append({"lineType": "Comment", "description": comment})
    day = invoice_date(booking, rule, zone, now).isoformat()
    # The API page maps `invoiceDate` to the Document Date only (APIV2SalesInvoices.Page.al,
    # `RegisterFieldSet(FieldNo("Document Date"))`); `postingDate` is the Posting Date, which would
    # otherwise stay the day the draft was created.
    return {
        "customerId": customer_id,
        "externalDocumentNumber": external_document_number(booking.key),
        "invoiceDate": day,
        "postingDate": day,
        "salesInvoiceLines": lines,
    }
