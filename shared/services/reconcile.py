"""reconcile_invoices: follow every invoice the app created in Business Central, at bounded cost.

Per run, whatever the number of bookings:
1. one incremental read of `salesInvoices` changed since the watermark (`$select`, paged; a full
   read once a day): posted, paid, cancelled and corrective invoices show up here and their status
   and number are copied onto the bookings;
2. if the app still has drafts, one read of the ids of all drafts: a known draft that is neither
   there nor seen as posted in step 1 was deleted (or posted meanwhile);
3. only for those: a by-id read (404 = gone) and a lookup by `externalDocumentNumber` (nothing =
   really gone). A deleted draft puts its booking back to Unbilled with a note naming the draft.
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
from shared.domain.reconcile_rules import InvoiceState, Watermark, deleted_draft_note, differs, read_since
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
        counts: Counter[str] = Counter()
        tracked = self._tracked()
        counts["tracked"] = len(tracked)
        now = self.clock()
        mark = self.watermarks.get(self.company_id)
        since = read_since(mark, now)
        counts["full_read"] = int(since is None)
        seen, latest = self._read_changes(since, tracked, counts)
        if mark is not None and mark.modified_through is not None:
            latest = max(latest, mark.modified_through) if latest else mark.modified_through
        self._check_missing_drafts(tracked, seen, counts)
        full_read_at = now if since is None else (mark.full_read_at if mark else None)
        self.watermarks.save(self.company_id, Watermark(latest, full_read_at), dict(counts))
        return counts

    def _tracked(self) -> dict[str, Booking]:
        """Invoiced bookings with an invoice of the app's, by booking key."""
        return {
            booking.key: booking
            for booking in self.store.iterate(_INVOICED, self.business_ids)
            if booking.source is InvoiceSource.APP and booking.invoice_id
        }

    def _read_changes(
        self, since: datetime | None, tracked: dict[str, Booking], counts: Counter[str]
    ) -> tuple[dict[str, InvoiceState], datetime | None]:
        seen: dict[str, InvoiceState] = {}
        latest: datetime | None = None
        by_id = {booking.invoice_id: booking for booking in tracked.values()}
        for invoice in self.feed.changed_since(since):
            counts["read"] += 1
            if invoice.last_modified is not None and (latest is None or invoice.last_modified > latest):
                latest = invoice.last_modified
            # Matched by id only: another invoice carrying the same BKG- number is not the booking's.
            booking = by_id.get(invoice.id)
            if booking is None:
                continue
            seen[booking.key] = invoice
            self._follow(booking, invoice, counts)
        return seen, latest

    def _check_missing_drafts(
        self, tracked: dict[str, Booking], seen: dict[str, InvoiceState], counts: Counter[str]
    ) -> None:
        drafts = [
            booking
            for booking in tracked.values()
            if lifecycle.is_draft(seen[booking.key].status if booking.key in seen else booking.invoice_status)
        ]
        if not drafts:
            return
        existing = self.feed.draft_ids()
        for booking in drafts:
            if booking.invoice_id in existing:
                continue
            counts["checked"] += 1
            self._check_one(booking, counts)

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
            lambda b: lifecycle.follow_invoice(b, invoice.id, invoice.number, invoice.status),
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
