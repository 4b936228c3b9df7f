"""`GET /api/booking-export`: every booking a filter matches as CSV, for the month-end check against
Business Central.

UTF-8 with a byte order mark, so Excel opens accents and currency signs right; RFC 4180 quoting
(comma separated, CRLF line ends). A text cell that begins with `=`, `+`, `-`, `@`, a tab or a
carriage return is prefixed with `'`, so a spreadsheet shows it as text instead of running it as a
formula (OWASP, "CSV Injection"). Amounts are written as plain numbers with a point.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from zoneinfo import ZoneInfo

from shared.domain.bc_web_client import InvoiceLinks
from shared.domain.invoice_lines import booking_amount
from shared.domain.models import Booking

BOM = "\ufeff"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
COLUMNS = (
    "Business",
    "Business id",
    "Appointment start",
    "Appointment end",
    "Customer",
    "Customer email",
    "Service",
    "Price type",
    "Price",
    "Amount",
    "Currency",
    "Status",
    "Invoice number",
    "Invoice status",
    "Invoice link",
    "Error",
    "Booking key",
)


def safe_cell(value: object) -> str:
    """The cell's text, neutralised if a spreadsheet would take it for a formula."""
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def _number(value: Decimal | float) -> str:
    return f"{Decimal(str(value)).quantize(Decimal('0.01'))}"


def _row(booking: Booking, context: ExportContext) -> list[str]:
    local = "%Y-%m-%d %H:%M"
    text = [
        context.business_names.get(booking.business_id, booking.business_id),
        booking.business_id,
        booking.start.astimezone(context.zone).strftime(local),
        booking.end.astimezone(context.zone).strftime(local),
        booking.customer_name,
        booking.customer_email,
        booking.service_name,
        str(booking.price_type),
    ]
    rest = [
        context.currency_code,
        str(booking.status),
        booking.invoice_number,
        booking.invoice_status,
        context.links.for_booking(booking) if context.links else None,
        booking.error,
        booking.key,
    ]
    prices = [_number(booking.price), _number(booking_amount(booking))]
    return [safe_cell(v) for v in text] + prices + [safe_cell(v) for v in rest]


class ExportContext:
    """What the rows need beside the bookings: names, currency, the time zone, invoice links."""

    def __init__(
        self,
        zone: ZoneInfo,
        business_names: Mapping[str, str],
        currency_code: str | None,
        links: InvoiceLinks | None,
    ) -> None:
        self.zone, self.business_names = zone, business_names
        self.currency_code, self.links = currency_code, links


def csv_chunks(
    bookings: Iterable[Booking], context: ExportContext, rows_per_chunk: int = 500
) -> Iterator[str]:
    """The document in pieces: the BOM and header first, then `rows_per_chunk` rows at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    yield BOM + buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    for count, booking in enumerate(bookings, start=1):
        writer.writerow(_row(booking, context))
        if count % rows_per_chunk == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if buffer.getvalue():
        yield buffer.getvalue()


def export_file_name(status: str, day: str) -> str:
    return f"bookings-{status.lower()}-{day}.csv"
