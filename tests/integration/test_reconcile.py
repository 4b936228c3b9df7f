"""reconcile_invoices' use case on Azurite and the sandbox's Business Central (no host): unposted
invoices in every state (Draft, In Review, released), deletion of each, and a read bounded to the
app's own invoices, page by page. Also a person's exclude / markInvoiced of a booking whose last
POST may have created a draft."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from sandbox import SandboxHandle
from shared.adapters.bc_invoice_feed import InvoiceFeed
from shared.adapters.booking_store import BookingStore
from shared.adapters.business_central import BusinessCentralClient
from shared.adapters.reconcile_state import ReconcileStateStore
from shared.api.views import update_view
from shared.domain.models import Actor, Booking, BookingStatus, InvoiceSource, PriceType, booking_key
from shared.services.booking_queries import BookingQueries
from shared.services.booking_updates import BookingUpdate, BookingUpdates
from shared.services.reconcile import InvoiceReconciler
from tests.integration.test_business_central import invoice_body, make_client
from tests.sandbox.support import SandboxClient

BUSINESS = "reconcile@contoso.com"
START = datetime(2026, 2, 10, 9, 0, tzinfo=UTC)
BY_ID = "GET companies({companyId})/salesInvoices({id})"
LIST = "GET companies({companyId})/salesInvoices"


@dataclass
class World:
    sandbox: SandboxHandle
    store: BookingStore
    bc: BusinessCentralClient
    marks: ReconcileStateStore
    customer_id: str

    def invoiced(self, name: str) -> Booking:
        """A booking the app invoiced: its draft in Business Central, the booking Invoiced."""
        key = booking_key(BUSINESS, name)
        created = self.bc.create_invoice(invoice_body(self.customer_id, f"BKG-{key}"))
        booking = Booking(
            key=key,
            business_id=BUSINESS,
            appointment_id=name,
            service_id="svc",
            service_name="Catered bento",
            customer_name="Bob Kelly",
            customer_email="bob.kelly@tailspintoys.com",
            customer_phone=None,
            staff_member_ids=(),
            start=START,
            end=START + timedelta(minutes=30),
            price=10.0,
            price_type=PriceType.FIXED_PRICE,
            status=BookingStatus.INVOICED,
            invoice_id=created.id,
            invoice_number=created.number,
            invoice_status="Draft",
            invoice_source=InvoiceSource.APP,
            invoice_attempts=1,
        )
        return self.store.create(booking)

    def reconciler(self, feed: Any = None) -> InvoiceReconciler:
        return InvoiceReconciler(
            self.store,
            feed or InvoiceFeed(self.bc),
            self.marks,
            business_ids=[BUSINESS],
            company_id="company",
            clock=lambda: self.sandbox.clock.now(),
        )

    def status(self, booking: Booking) -> BookingStatus:
        found = self.store.get(BUSINESS, booking.key)
        assert found is not None
        return found.status

    def delete(self, invoice_id: str) -> None:
        """A person deletes the invoice in Business Central."""
        client = SandboxClient(self.sandbox)
        try:
            answer = client.bc("DELETE", f"/salesInvoices({invoice_id})", headers={"If-Match": "*"})
        finally:
            client.close()
        assert answer.status_code == 204, answer.text

    def requests(self, route: str) -> int:
        return self.sandbox.app.counters.route("bc", route)


@pytest.fixture
def world(fresh_sandbox: SandboxHandle, storage_connection_string: str, unique_name: str) -> World:
    tables = TableServiceClient.from_connection_string(storage_connection_string)
    store = BookingStore(tables.get_table_client(f"{unique_name}b"))
    store.ensure_table()
    marks = ReconcileStateStore(tables.get_table_client(f"{unique_name}r"))
    marks.ensure_table()
    bc = make_client(fresh_sandbox, storage_connection_string, sleep=lambda _s: None)
    customer = bc.find_customers_by_email("bob.kelly@tailspintoys.com")[0]
    return World(fresh_sandbox, store, bc, marks, customer.id)


def test_a_released_or_in_review_invoice_deleted_in_business_central_is_noticed(world: World) -> None:
    released, in_review, posted = (world.invoiced(n) for n in ("released", "review", "posted"))
    world.sandbox.admin.move_unposted_invoice(released.invoice_id or "", "release")
    world.sandbox.admin.move_unposted_invoice(in_review.invoice_id or "", "sendForApproval")
    world.sandbox.admin.post_invoice(posted.invoice_id or "")
    world.reconciler().run()
    assert world.store.get(BUSINESS, released.key).invoice_status == "Open"  # type: ignore[union-attr]

    world.sandbox.admin.move_unposted_invoice(in_review.invoice_id or "", "approve")  # released too
    world.sandbox.clock.advance(60)
    world.reconciler().run()
    for booking in (released, in_review):
        world.delete(booking.invoice_id or "")
    world.sandbox.clock.advance(60)
    world.reconciler().run()
    assert [world.status(b) for b in (released, in_review, posted)] == [
        BookingStatus.UNBILLED,
        BookingStatus.UNBILLED,
        BookingStatus.INVOICED,
    ]


def test_in_review_drafts_cost_no_by_id_reads(world: World) -> None:
    drafts = [world.invoiced(f"review-{n}") for n in range(5)]
    for booking in drafts:
        world.sandbox.admin.move_unposted_invoice(booking.invoice_id or "", "sendForApproval")
    world.reconciler().run()
    world.sandbox.clock.advance(60)
    before = world.requests(BY_ID)
    counts = world.reconciler().run()
    assert world.requests(BY_ID) == before and counts["checked"] == 0
    assert all(world.status(b) is BookingStatus.INVOICED for b in drafts)


def test_the_read_is_bounded_to_the_apps_invoices_and_counts_its_pages(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    for n in range(30):  # invoices made by people or other apps
        world.bc.create_invoice(invoice_body(world.customer_id, f"PO-{n}"))
    own = [world.invoiced(f"own-{n}") for n in range(3)]
    with caplog.at_level(logging.INFO, logger="bookings.reconcile"):
        counts = world.reconciler().run()
    assert counts["read"] == len(own)  # a full read, but of this app's invoices only
    assert counts["pages"] >= 1
    [line] = [r for r in caplog.records if getattr(r, "outcome", None) == "read"]
    assert (line.pages, line.rows) == (counts["pages"], counts["read"])  # type: ignore[attr-defined]
    assert f"{counts['read'] + counts['unposted_read']} invoice(s)" in line.getMessage()


class CutOff:
    """The real feed, with Business Central failing every request after the first page of changes."""

    def __init__(self, feed: InvoiceFeed, sandbox: SandboxHandle) -> None:
        self.feed, self.sandbox = feed, sandbox

    def changed_pages(self, since: datetime | None) -> Iterator[Any]:
        pages = self.feed.changed_pages(since)
        yield next(pages)
        self.sandbox.admin.replace_faults(
            {"failures": {"bc": [{"status": 504, "count": 100, "route": LIST}]}}
        )
        yield from pages

    def __getattr__(self, name: str) -> Any:
        return getattr(self.feed, name)


def test_a_read_cut_off_after_a_page_resumes_there_and_says_what_it_read(world: World) -> None:
    world.sandbox.app.paging.bc_max_page_size = 2
    bookings = []
    for n in range(4):  # changed further apart than the resumed read's overlap (10 minutes)
        bookings.append(world.invoiced(f"page-{n}"))
        world.sandbox.clock.advance(11 * 60)
    with pytest.raises(Exception, match="504"):
        world.reconciler(CutOff(InvoiceFeed(world.bc, page_size=2), world.sandbox)).run()
    mark = world.marks.get("company")
    assert mark is not None and mark.full_read_started_at is not None and mark.full_read_through is not None
    world.sandbox.admin.replace_faults({})
    counts: Counter[str] = world.reconciler().run()
    assert counts["full_read"] == 1 and counts["read"] < len(bookings)  # the rest, not all again
    mark = world.marks.get("company")
    assert mark is not None and mark.full_read_at is not None and mark.full_read_started_at is None
    assert replace(mark, modified_through=None).full_read_through is None


# -- a person's exclude / markInvoiced after an ambiguous POST ------------------------------------


@pytest.mark.parametrize("action", ["exclude", "markInvoiced"])
def test_exclude_or_mark_invoiced_after_a_lost_answer_adopts_the_draft(world: World, action: str) -> None:
    lost = world.invoiced(f"lost-{action}")  # the POST committed; its answer never came back
    failed = replace(
        lost,
        status=BookingStatus.FAILED,
        invoice_id=None,
        invoice_number=None,
        invoice_status=None,
        invoice_source=None,
        error_code="BC_UNAVAILABLE",
        error="Business Central POST salesInvoices failed: ReadTimeout",
    )
    world.store.save(failed)
    nothing = world.store.create(replace(failed, key=booking_key(BUSINESS, f"none-{action}"), etag=None))
    [draft] = [i for i in world.sandbox.admin.state(["invoices"])["invoices"] if i["id"] == lost.invoice_id]
    updates = BookingUpdates(
        world.store, BookingQueries(world.store, [BUSINESS]), clock=world.sandbox.clock.now, invoices=world.bc
    )
    result = updates.apply(BookingUpdate(action, (lost.key, nothing.key)), Actor("oid-1", "Bea"))
    assert update_view(result)["skipped"] == [{"key": lost.key, "status": "Invoiced"}]
    assert result.updated == [nothing.key]
    adopted = world.store.get(BUSINESS, lost.key)
    assert adopted is not None and adopted.status is BookingStatus.INVOICED
    assert (adopted.invoice_id, adopted.invoice_number, adopted.source) == (
        draft["id"],
        draft["number"],
        InvoiceSource.APP,
    )
    assert world.status(nothing) is (
        BookingStatus.EXCLUDED if action == "exclude" else BookingStatus.INVOICED
    )
