"""What reconcile_invoices reads from Business Central and the pure rules it decides by."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.domain.models import EXTERNAL_DOCUMENT_PREFIX, KEY_LENGTH, Booking, is_booking_key
from shared.domain.moments import iso_utc

WATERMARK_OVERLAP = timedelta(minutes=10)
"""Each incremental read starts this long before the newest `lastModifiedDateTime` seen last time:
a change committed late (a long posting) or shifted between two pages is read again, never missed."""
FULL_READ_EVERY = timedelta(hours=24)
"""How often the read is a full one (every invoice, `$select`ed): in case a status change in
Business Central ever leaves `lastModifiedDateTime` alone (payments are applied to ledger entries)."""


@dataclass(frozen=True)
class InvoiceState:
    """One `salesInvoices` row as reconcile reads it (`$select`)."""

    id: str
    number: str
    external_document_number: str
    status: str
    last_modified: datetime | None = None

    @property
    def booking_key(self) -> str | None:
        """The booking an app-created invoice belongs to (`BKG-<key>`), else None."""
        text = self.external_document_number.strip().upper()
        key = text[len(EXTERNAL_DOCUMENT_PREFIX) :]
        if text.startswith(EXTERNAL_DOCUMENT_PREFIX) and len(key) == KEY_LENGTH and is_booking_key(key):
            return key
        return None


@dataclass(frozen=True)
class Watermark:
    """Per company: the newest `lastModifiedDateTime` read, and when the last full read ran."""

    modified_through: datetime | None
    full_read_at: datetime | None


def read_since(mark: Watermark | None, now: datetime) -> datetime | None:
    """Where this run's read starts; None means a full read (first run, or one is due)."""
    if mark is None or mark.modified_through is None or mark.full_read_at is None:
        return None
    if now - mark.full_read_at >= FULL_READ_EVERY:
        return None
    return mark.modified_through - WATERMARK_OVERLAP


def differs(booking: Booking, invoice: InvoiceState) -> bool:
    """Does Business Central know the booking's invoice differently (id, number or status)?"""
    return (booking.invoice_id, booking.invoice_number, booking.invoice_status) != (
        invoice.id,
        invoice.number or booking.invoice_number,
        invoice.status,
    )


def deleted_draft_note(number: str | None, at: datetime) -> str:
    shown = number or "(no number)"
    return (
        f"Draft invoice {shown} was deleted in Business Central; the booking was put back to "
        f"Unbilled at {iso_utc(at)} and can be invoiced again."
    )
