"""reconcile_invoices at scale: 10,000 Invoiced bookings in Azurite, 1 % of their drafts deleted and
10 % posted in Business Central since the last run. Prints Business Central requests and seconds
per run (printed, not asserted) and a JSON line for `bench/results.py`.

The bookings live in a real `Bookings` table (Azurite, the real `BookingStore`); Business Central is
an in-process stand-in paging as the app asks (`Prefer: odata.maxpagesize`) that counts requests, so the
figures isolate the app's own cost: requests per run and the time to read and write the table.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from azure.data.tables import TableServiceClient

from bench import support
from bench.support import storage
from shared.adapters.bc_invoice_feed import PAGE_SIZE
from shared.adapters.booking_entities import BOOKINGS_TABLE
from shared.adapters.booking_store import BookingStore
from shared.adapters.reconcile_state import RECONCILE_STATE_TABLE, ReconcileStateStore
from shared.domain.models import Booking, BookingStatus, InvoiceSource, PriceType, booking_key
from shared.domain.reconcile_rules import InvoicePage, InvoiceState
from shared.services.reconcile import InvoiceReconciler

BUSINESS = "bench@contoso.com"
PAGE = PAGE_SIZE
T0 = datetime(2026, 3, 1, tzinfo=UTC)


class CountingFeed:
    """salesInvoices with Business Central's paging; one request per page, by-id read or lookup."""

    def __init__(self) -> None:
        self.invoices: dict[str, InvoiceState] = {}
        self.requests = 0

    def _pages(self, rows: list[InvoiceState]) -> Iterator[InvoicePage]:
        for start in range(0, max(len(rows), 1), PAGE):
            self.requests += 1
            yield InvoicePage(rows[start : start + PAGE])

    def changed_pages(self, since: datetime | None) -> Iterator[InvoicePage]:
        rows = [i for i in self.invoices.values() if since is None or (i.last_modified or T0) > since]
        return self._pages(sorted(rows, key=lambda i: i.last_modified or T0))

    def unposted_pages(self, include_open: bool) -> Iterator[InvoicePage]:
        statuses = {"Draft", "In Review"} | ({"Open"} if include_open else set())
        return self._pages([i for i in self.invoices.values() if i.status in statuses])

    def get(self, invoice_id: str) -> InvoiceState | None:
        self.requests += 1
        return self.invoices.get(invoice_id)

    def find_by_external_document_number(self, number: str) -> list[InvoiceState]:
        self.requests += 1
        return [i for i in self.invoices.values() if i.external_document_number == number]


def _booking(n: int) -> Booking:
    key = booking_key(BUSINESS, f"appt-{n}")
    return Booking(
        key=key, business_id=BUSINESS, appointment_id=f"appt-{n}", service_id="svc", service_name="Bento",
        customer_name="C", customer_email="c@example.com", customer_phone=None, staff_member_ids=(),
        start=T0 - timedelta(days=2), end=T0 - timedelta(days=2, hours=-1), price=10.0,
        price_type=PriceType.FIXED_PRICE, status=BookingStatus.INVOICED, invoice_id=f"inv-{n}",
        invoice_number=f"S-INV-{n}", invoice_status="Draft", invoice_source=InvoiceSource.APP,
        invoice_attempts=1,
    )  # fmt: skip


def seed(connection: str, count: int, feed: CountingFeed) -> None:
    """The Invoiced bookings (with their list index rows, as the app stores them) and their drafts."""
    bookings = [_booking(n) for n in range(count)]
    for booking in bookings:
        feed.invoices[booking.invoice_id or ""] = InvoiceState(
            booking.invoice_id or "", booking.invoice_number or "", f"BKG-{booking.key}", "Draft", T0
        )
    support.seed(connection, bookings)


def run(connection: str, count: int) -> dict[str, float]:
    feed = CountingFeed()
    seed(connection, count, feed)
    tables = TableServiceClient.from_connection_string(connection)
    now = [T0]
    store = BookingStore(tables.get_table_client(BOOKINGS_TABLE), clock=lambda: now[0])
    marks = ReconcileStateStore(tables.get_table_client(RECONCILE_STATE_TABLE), clock=lambda: now[0])
    marks.ensure_table()
    reconciler = InvoiceReconciler(
        store, feed, marks, business_ids=[BUSINESS], company_id="bench", clock=lambda: now[0]
    )
    reconciler.run()  # the first run: a full read, sets the watermark
    now[0] = T0 + timedelta(hours=1)
    ids = sorted(feed.invoices)
    deleted, posted = ids[: count // 100], ids[count // 100 : count // 100 + count // 10]
    for invoice_id in deleted:
        del feed.invoices[invoice_id]
    for invoice_id in posted:
        feed.invoices[invoice_id] = replace(
            feed.invoices[invoice_id], number=f"PS-{invoice_id}", status="Open", last_modified=now[0]
        )
    feed.requests = 0
    started = time.perf_counter()
    counts = reconciler.run()
    seconds = time.perf_counter() - started
    assert counts["reopened"] == len(deleted) and counts["followed"] == len(posted), counts
    return {
        "bookings": count,
        "deleted": len(deleted),
        "posted": len(posted),
        "bcRequests": feed.requests,
        "pages": counts["pages"] + counts["unposted_pages"],
        "seconds": round(seconds, 2),
        "naiveRequests": count,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=10_000, help="Invoiced bookings")
    args = parser.parse_args(argv)
    with storage(fresh=True) as connection:
        figures = run(connection, args.count)
    print(
        f"reconcile: {figures['bookings']:,} Invoiced bookings, {figures['deleted']} drafts deleted, "
        f"{figures['posted']} posted: {figures['bcRequests']} Business Central requests, "
        f"{figures['seconds']:.2f} s per run"
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
