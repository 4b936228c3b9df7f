"""reconcile_invoices: follow every invoice the app created in Business Central, at bounded cost.

Per run, whatever the number of bookings, and only ever over the app's own invoices (`BKG-`):
1. one read of `salesInvoices` changed since the watermark (paged, oldest change first, progress
   saved after every page; a full read once a day, resumed where it stopped if it was cut off):
   status and number are copied onto the bookings, and an invoice seen posted is marked so;
2. if the app has invoices not yet seen posted (Draft, In Review, or released and shown as Open),
   one read of the app's unposted invoices: one missing there was deleted (or posted meanwhile);
3. only for those: a by-id read (404 = gone) and a lookup by `externalDocumentNumber` (nothing =
   really gone). A deleted invoice puts its booking back to Unbilled with a note naming it.
Every booking write is conditional on the ETag it was read with: a booking that changed meanwhile
(selected again, marked by a person) is left as it is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime

from shared.domain import lifecycle
from shared.domain.errors import ConcurrentChangeError
from shared.domain.filters import BookingFilter
from shared.domain.lifecycle import IllegalTransition
from shared.domain.models import Booking, BookingStatus, InvoiceSource, external_document_number
from shared.domain.reconcile_rules import (
    InvoiceState,
    ReadPlan,
    Watermark,
    current_status,
    deleted_draft_note,
    differs,
    finished,
    plan_read,
    progress,
    seen_posted,
    unposted,
)
from shared.services.ports import BookingRepository, InvoiceFeed, WatermarkRepository
from shared.telemetry import get_logger

log = get_logger("bookings.reconcile")

_INVOICED = BookingFilter(status=BookingStatus.INVOICED)


class InvoiceReconciler:
    def __init__(
        self,
        store: BookingRepository,
        feed: InvoiceFeed,
        watermarks: WatermarkRepository,
        *,
        business_ids: Sequence[str],
        company_id: str,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.feed = feed
        self.watermarks = watermarks
        self.business_ids = tuple(business_ids)
        self.company_id = company_id
        self.clock = clock

    def run(self) -> Counter[str]:
        counts: Counter[str] = Counter({"pages": 0, "read": 0})
        tracked = self._tracked()
        counts["tracked"] = len(tracked)
        mark = self.watermarks.get(self.company_id)
        plan = plan_read(mark, self.clock())
        counts["full_read"] = int(plan.full)
        seen, latest = self._read_changes(plan, mark, tracked, counts)
        self._check_unposted(tracked, seen, counts)
        self.watermarks.save(self.company_id, finished(plan, mark, latest), dict(counts))
        log.info(
            "reconcile_invoices read %d page(s), %d invoice(s) of salesInvoices (%s)",
            counts["pages"] + counts["unposted_pages"],
            counts["read"] + counts["unposted_read"],
            "full read" if plan.full else "changes only",
            extra={"outcome": "read", "pages": counts["pages"], "rows": counts["read"]},
        )
        return counts

    def _tracked(self) -> dict[str, Booking]:
        """Invoiced bookings with an invoice of the app's, by booking key."""
        return {
            booking.key: booking
            for booking in self.store.iterate(_INVOICED, self.business_ids)
            if booking.source is InvoiceSource.APP and booking.invoice_id
        }

    def _read_changes(
        self, plan: ReadPlan, mark: Watermark | None, tracked: dict[str, Booking], counts: Counter[str]
    ) -> tuple[dict[str, InvoiceState], datetime | None]:
        """The changed invoices, page by page; progress is saved after each page, so a read cut off
        (a timeout, a restart) resumes there next run instead of starting over."""
        seen: dict[str, InvoiceState] = {}
        latest = mark.modified_through if mark else None
        read_through: datetime | None = None
        by_id = {booking.invoice_id: booking for booking in tracked.values()}
        for page in self.feed.changed_pages(plan.since):
            counts["pages"] += 1
            for invoice in page.rows:
                counts["read"] += 1
                read_through = _later(read_through, invoice.last_modified)
                latest = _later(latest, invoice.last_modified)
                # Matched by id only: another invoice carrying the same BKG- number is not the booking's.
                booking = by_id.get(invoice.id)
                if booking is None:
                    continue
                seen[booking.key] = invoice
                self._follow(booking, invoice, counts)
            self.watermarks.save(self.company_id, progress(mark, plan, latest, read_through), dict(counts))
        return seen, latest

    def _check_unposted(
        self, tracked: dict[str, Booking], seen: dict[str, InvoiceState], counts: Counter[str]
    ) -> None:
        """Every invoice not yet seen posted (Draft, In Review, released) is looked for in one read of
        the app's unposted invoices; one missing there is read by id: deleted, or posted meanwhile."""
        pending = [b for b in tracked.values() if unposted(b, seen.get(b.key))]
        if not pending:
            return
        include_open = any(current_status(b, seen.get(b.key)) == "Open" for b in pending)
        present: dict[str, InvoiceState] = {}
        for page in self.feed.unposted_pages(include_open):
            counts["unposted_pages"] += 1
            counts["unposted_read"] += len(page.rows)
            present.update((invoice.id, invoice) for invoice in page.rows)
        for booking in pending:
            invoice = present.get(str(booking.invoice_id))
            if invoice is None:
                counts["checked"] += 1
                self._check_one(booking, counts)
            elif booking.key not in seen:
                self._follow(booking, invoice, counts)

    def _check_one(self, booking: Booking, counts: Counter[str]) -> None:
        assert booking.invoice_id is not None
        invoice = self.feed.get(booking.invoice_id)
        if invoice is None:
            found = self.feed.find_by_external_document_number(external_document_number(booking.key))
            invoice = found[0] if found else None
        if invoice is not None:
            self._follow(booking, invoice, counts)
            return
        self._write(
            booking,
            lambda b: lifecycle.reopen(b, deleted_draft_note(b.invoice_number, self.clock()), self.clock()),
            counts,
            "reopened",
        )
        log.info(
            "Draft invoice %s of booking %s was deleted in Business Central: the booking is Unbilled again",
            booking.invoice_number,
            booking.key,
            extra={"bookingKey": booking.key, "invoiceNumber": booking.invoice_number, "outcome": "reopened"},
        )

    def _follow(self, booking: Booking, invoice: InvoiceState, counts: Counter[str]) -> None:
        if not differs(booking, invoice):
            counts["unchanged"] += 1
            return
        self._write(
            booking,
            lambda b: lifecycle.follow_invoice(
                b, invoice.id, invoice.number, invoice.status, seen_posted(booking, invoice)
            ),
            counts,
            "followed",
        )

    def _write(
        self, booking: Booking, change: Callable[[Booking], Booking], counts: Counter[str], outcome: str
    ) -> None:
        """Save `change(booking)`; if the booking changed meanwhile, apply it again only when it
        still holds the same invoice and state (else someone else owns it now)."""
        current: Booking | None = booking
        for _ in range(3):
            if current is None or current.status is not BookingStatus.INVOICED:
                break
            if current.invoice_id != booking.invoice_id:
                break
            try:
                self.store.save(change(current))
            except IllegalTransition:
                break
            except ConcurrentChangeError:
                current = self.store.get(booking.business_id, booking.key)
                continue
            counts[outcome] += 1
            return
        counts["changed_meanwhile"] += 1


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None or (b is not None and b > a) else a
