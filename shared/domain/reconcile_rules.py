"""What reconcile_invoices reads from Business Central and the pure rules it decides by."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.domain.lifecycle import FINAL_INVOICE_STATUSES
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
class InvoicePage:
    """One server-driven page of a `salesInvoices` read."""

    rows: list[InvoiceState]


@dataclass(frozen=True)
class Watermark:
    """Per company: the newest `lastModifiedDateTime` read, when the last full read ran, and a full
    read under way (when it started, by our clock; how far it got, by Business Central's)."""

    modified_through: datetime | None
    full_read_at: datetime | None
    full_read_started_at: datetime | None = None
    full_read_through: datetime | None = None


@dataclass(frozen=True)
class ReadPlan:
    """Where this run's read starts, and whether it is (the rest of) a full read."""

    since: datetime | None
    full_read_started_at: datetime | None

    @property
    def full(self) -> bool:
        return self.full_read_started_at is not None


def plan_read(mark: Watermark | None, now: datetime) -> ReadPlan:
    """A full read cut off by a failure resumes where its last saved page ended; it is not begun
    again, so a company too big to read in one run is still read through in a few."""
    if mark is not None and mark.full_read_started_at is not None:
        through = mark.full_read_through
        return ReadPlan(through - WATERMARK_OVERLAP if through else None, mark.full_read_started_at)
    since = read_since(mark, now)
    return ReadPlan(since, now if since is None else None)


def progress(
    mark: Watermark | None, plan: ReadPlan, through: datetime | None, read_through: datetime | None
) -> Watermark:
    """The watermark after a page: pages come oldest change first, so everything up to this read's
    newest change (`read_through`) was read; a full read records it as how far it got."""
    full_read_at = mark.full_read_at if mark else None
    if plan.full:
        resumed_from = mark.full_read_through if mark and mark.full_read_started_at else None
        return Watermark(through, full_read_at, plan.full_read_started_at, read_through or resumed_from)
    return Watermark(through, full_read_at)


def finished(plan: ReadPlan, mark: Watermark | None, through: datetime | None) -> Watermark:
    if plan.full:
        return Watermark(through, plan.full_read_started_at)
    return Watermark(through, mark.full_read_at if mark else None)


def seen_posted(booking: Booking, invoice: InvoiceState) -> bool:
    """Is the booking's invoice posted? `Open` alone does not say so: codeunit 5477 "Sales Invoice
    Aggregator" (InsertOrModifyFromSalesHeader) shows a Released or Pending Prepayment draft as Open.
    Posting renames the aggregate to the posted invoice's number (OnBeforeSalesInvHeaderInsert) and
    keeps the id, so Open under another number than the draft's is posted; Paid, Canceled and
    Corrective exist for posted invoices only (SetStatusOptionFromSalesInvoiceHeader). A company whose
    posted-invoice series is the draft's own posts under the draft's number (codeunit "Sales-Post"
    draws a Posting No. only when the series differ): such an invoice stays 'unposted' here, still
    checked each run, never reopened while it exists."""
    if booking.invoice_posted or invoice.status in FINAL_INVOICE_STATUSES:
        return True
    return (
        invoice.status == "Open"
        and bool(invoice.number)
        and bool(booking.invoice_number)
        and invoice.number != booking.invoice_number
    )


def current_status(booking: Booking, invoice: InvoiceState | None) -> str | None:
    """The invoice's status as this run last saw it (the booking's own when not read this run)."""
    return invoice.status if invoice is not None else booking.invoice_status


def unposted(booking: Booking, invoice: InvoiceState | None) -> bool:
    """Not yet seen posted (Draft, In Review, released): a person may still delete it."""
    if booking.invoice_posted or (invoice is not None and seen_posted(booking, invoice)):
        return False
    return current_status(booking, invoice) not in FINAL_INVOICE_STATUSES


def read_since(mark: Watermark | None, now: datetime) -> datetime | None:
    """Where this run's read starts; None means a full read (first run, or one is due)."""
    if mark is None or mark.modified_through is None or mark.full_read_at is None:
        return None
    if now - mark.full_read_at >= FULL_READ_EVERY:
        return None
    return mark.modified_through - WATERMARK_OVERLAP


def differs(booking: Booking, invoice: InvoiceState) -> bool:
    """Does Business Central know the booking's invoice differently (id, number, status, posted)?"""
    return (booking.invoice_id, booking.invoice_number, booking.invoice_status, booking.invoice_posted) != (
        invoice.id,
        invoice.number or booking.invoice_number,
        invoice.status,
        seen_posted(booking, invoice),
    )


def deleted_draft_note(number: str | None, at: datetime) -> str:
    shown = number or "(no number)"
    return (
        f"Draft invoice {shown} was deleted in Business Central; the booking was put back to "
        f"Unbilled at {iso_utc(at)} and can be invoiced again."
    )
