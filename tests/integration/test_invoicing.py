"""The create_invoice use case on Azurite and the sandbox's Business Central (no host)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from azure.data.tables import TableServiceClient
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueServiceClient

from functions.queue_triggers import MAX_DEQUEUE_COUNT, create_invoice
from sandbox import SandboxHandle
from shared.adapters.bc_budget import StorageBudget, budget_wait_limit
from shared.adapters.booking_store import BookingStore
from shared.adapters.business_central import BusinessCentralClient
from shared.adapters.invoice_queue import InvoiceQueue
from shared.adapters.link_store import LinkStore
from shared.domain.bc_budget import BudgetLimits
from shared.domain.errors import ConcurrentChangeError
from shared.domain.invoice_lines import PriceSource
from shared.domain.models import (
    Booking,
    BookingStatus,
    InvalidMessageError,
    InvoiceMessage,
    PriceType,
    booking_key,
)
from shared.services.invoice_booking import InvoiceBooking, InvoiceOutcome, InvoicingRetryError
from shared.services.links import CustomerLinks, ItemLinks
from shared.services.recovery import recover_stuck_bookings
from shared.settings import InvoiceDateRule
from tests.helpers import force_state
from tests.integration.test_business_central import make_client

START = datetime(2026, 2, 10, 9, 0, tzinfo=UTC)
INVOICE_POST = "POST companies({companyId})/salesInvoices"


class FlakyStore(BookingStore):
    """The real store, except that the next `fail_next` writes to Invoiced are lost."""

    fail_next = 0

    def save(self, booking: Booking) -> Booking:
        if booking.status is BookingStatus.INVOICED and self.fail_next:
            self.fail_next -= 1
            raise ConcurrentChangeError("injected: the write after the invoice was lost")
        return super().save(booking)


@dataclass
class World:
    sandbox: SandboxHandle
    store: FlakyStore
    bc: BusinessCentralClient
    business_id: str
    make: Callable[..., InvoiceBooking]

    def booking(
        self, appointment_id: str = "a1", status: BookingStatus = BookingStatus.QUEUED, **changes: Any
    ):
        base = Booking(
            key=booking_key(self.business_id, appointment_id),
            business_id=self.business_id,
            appointment_id=appointment_id,
            service_id="svc-bento",
            service_name="Catered bento",
            customer_name="Bob Kelly",
            customer_email="Bob.Kelly@TailspinToys.com",
            customer_phone="213-555-0108",
            staff_member_ids=("staff-1",),
            start=START,
            end=START + timedelta(minutes=30),
            price=10.0,
            price_type=PriceType.FIXED_PRICE,
            status=status,
            request_id="req-1",
        )
        return self.store.create(replace(base, **changes))

    def message(self, booking: Booking) -> InvoiceMessage:
        return InvoiceMessage(self.business_id, booking.key, "req-1")

    def get(self, booking: Booking) -> Booking:
        found = self.store.get(booking.business_id, booking.key)
        assert found is not None
        return found

    def invoices(self, booking: Booking) -> list[dict[str, Any]]:
        number = f"BKG-{booking.key}"
        return [
            i
            for i in self.sandbox.admin.state(["invoices"])["invoices"]
            if i["externalDocumentNumber"] == number
        ]

    def bc_requests(self, route: str | None = None) -> int:
        counters = self.sandbox.app.counters
        return counters.route("bc", route) if route else counters.total("bc")


@pytest.fixture
def world(fresh_sandbox: SandboxHandle, storage_connection_string: str, unique_name: str) -> World:
    tables = TableServiceClient.from_connection_string(storage_connection_string)
    store = FlakyStore(tables.get_table_client(f"{unique_name}b"))
    store.ensure_table()
    links = LinkStore(tables.get_table_client(f"{unique_name}l"))
    links.ensure_table()
    bc = make_client(fresh_sandbox, storage_connection_string, sleep=lambda _s: None)
    queue = InvoiceQueue(QueueServiceClient.from_connection_string(storage_connection_string), unique_name)
    queue.ensure_queues()

    def make(
        *,
        create: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        price_source: PriceSource = PriceSource.BOOKINGS,
        client: BusinessCentralClient = bc,
        invoice_queue: InvoiceQueue = queue,
    ) -> InvoiceBooking:
        return InvoiceBooking(
            store,
            client,
            CustomerLinks(links, client, template="CT-BOOKINGS", create=create),
            ItemLinks(links, client, template="IT-BOOKINGS", create=create),
            invoice_queue,
            time_zone=ZoneInfo("Europe/Amsterdam"),
            invoice_date=InvoiceDateRule.APPOINTMENT,
            price_source=price_source,
            clock=clock,
        )

    return World(fresh_sandbox, store, bc, f"{unique_name}@contoso.com", make)


def test_normal_path_costs_one_request_once_links_are_known(world: World) -> None:
    invoicer = world.make()
    first, second = world.booking("a1"), world.booking("a2")
    assert invoicer(world.message(first)).outcome is InvoiceOutcome.INVOICED
    before = world.bc_requests()
    result = invoicer(world.message(second))
    assert result.outcome is InvoiceOutcome.INVOICED
    assert world.bc_requests() - before == 1  # the POST only: no lookup, links from the table
    stored = world.get(second)
    [invoice] = world.invoices(second)
    assert stored.status is BookingStatus.INVOICED
    assert (stored.invoice_id, stored.invoice_number) == (invoice["id"], invoice["number"])
    assert invoice["invoiceDate"] == "2026-02-10" and invoice["customerName"] == "Bob Kelly"


def test_invoicing_state_is_looked_up_and_the_invoice_adopted(world: World) -> None:
    invoicer = world.make()
    booking = world.booking()
    world.store.fail_next = 1  # the invoice is created, but recording it fails
    with pytest.raises(InvoicingRetryError):
        invoicer(world.message(booking), delivery_id="m1")
    assert world.get(booking).status is BookingStatus.INVOICING
    posts = world.bc_requests(INVOICE_POST)
    # The same message comes back: its earlier try is over, so it takes its own claim over at once.
    result = invoicer(world.message(booking), dequeue_count=2, delivery_id="m1")
    assert result.outcome is InvoiceOutcome.ADOPTED
    assert world.bc_requests(INVOICE_POST) == posts  # no second POST
    [invoice] = world.invoices(booking)
    assert world.get(booking).invoice_number == invoice["number"]


def test_a_fresh_claim_of_another_message_is_left_alone_until_its_lease_ends(world: World) -> None:
    booking = world.booking(status=BookingStatus.INVOICING)
    claimed_at = world.get(booking).status_changed_at
    assert claimed_at is not None
    before = world.bc_requests()
    assert world.make(clock=lambda: claimed_at + timedelta(minutes=1))(world.message(booking)).outcome is (
        InvoiceOutcome.SKIPPED
    )
    assert world.bc_requests() == before and world.get(booking).status is BookingStatus.INVOICING
    later = world.make(clock=lambda: claimed_at + timedelta(minutes=11))
    assert later(world.message(booking)).outcome is InvoiceOutcome.INVOICED  # looked up, found none, created
    assert len(world.invoices(booking)) == 1


def test_a_retried_duplicate_message_never_takes_over_a_live_claim(world: World) -> None:
    """Two messages for one booking (a duplicate, a recovery re-enqueue): while the first one's
    worker holds the claim, the other one - even on a later try - must not POST a second invoice."""
    booking = world.booking()
    invoicer = world.make()
    world.store.fail_next = 1  # message m1 claims and creates the invoice; recording it fails
    with pytest.raises(InvoicingRetryError):
        invoicer(world.message(booking), delivery_id="m1")
    before = world.bc_requests()
    duplicate = invoicer(world.message(booking), dequeue_count=3, delivery_id="m2")
    assert duplicate.outcome is InvoiceOutcome.SKIPPED
    assert world.bc_requests() == before  # not even a lookup
    assert world.get(booking).claimed_by == "m1"
    assert (
        invoicer(world.message(booking), dequeue_count=2, delivery_id="m1").outcome is InvoiceOutcome.ADOPTED
    )
    assert len(world.invoices(booking)) == 1


@pytest.mark.parametrize("status", [BookingStatus.INVOICED, BookingStatus.CANCELLED, BookingStatus.FAILED])
def test_settled_bookings_are_a_no_op(world: World, status: BookingStatus) -> None:
    booking = world.booking(status=status)
    before = world.bc_requests()
    assert world.make()(world.message(booking), dequeue_count=3).outcome is InvoiceOutcome.SKIPPED
    assert world.bc_requests() == before and world.get(booking).status is status


@pytest.mark.parametrize(
    ("changes", "create", "code"),
    [
        ({"has_customer": False, "customer_email": None, "customer_name": None}, True, "NO_CUSTOMER"),
        ({"customer_email": None}, True, "NO_CUSTOMER_EMAIL"),
        ({"customer_email": "nobody@example.org"}, False, "CUSTOMER_NOT_FOUND"),
        ({"service_id": "svc-new", "service_name": "Aqua yoga"}, False, "SERVICE_NOT_MAPPED"),
        ({"customer_email": "jordanm@contoso.com"}, True, "CUSTOMER_BLOCKED"),  # blocked in BC
    ],
)
def test_permanent_problems_fail_the_booking_with_a_reason(
    world: World, changes: dict[str, Any], create: bool, code: str
) -> None:
    booking = world.booking(**changes)
    result = world.make(create=create)(world.message(booking))
    stored = world.get(booking)
    assert result.outcome is InvoiceOutcome.FAILED
    assert (stored.status, stored.error_code) == (BookingStatus.FAILED, code)
    assert stored.error
    assert world.invoices(booking) == []


def test_transient_failure_is_raised_and_the_last_try_marks_failed(world: World, caplog) -> None:
    caplog.set_level(logging.INFO, logger="bookings")
    booking = world.booking()
    world.sandbox.admin.set_faults({"failures": {"bc": [{"status": 503, "fraction": 1.0}]}})
    invoicer = world.make()
    with pytest.raises(Exception):  # noqa: B017 - any error makes the host retry
        invoicer(world.message(booking), dequeue_count=1, delivery_id="m1")
    assert world.get(booking).status is BookingStatus.INVOICING
    with pytest.raises(Exception):  # noqa: B017
        invoicer(world.message(booking), dequeue_count=MAX_DEQUEUE_COUNT, last_attempt=True, delivery_id="m1")
    stored = world.get(booking)
    assert (stored.status, stored.error_code) == (BookingStatus.FAILED, "BC_UNAVAILABLE")
    assert "503" in (stored.error or "")
    # The failed-bookings alert reads these fields: the last try says failed, with its code.
    outcomes = [
        (r.outcome, r.errorCode) for r in caplog.records if getattr(r, "bookingKey", None) == booking.key
    ]
    assert outcomes[-2:] == [("retry", None), ("failed", "BC_UNAVAILABLE")]


def test_reselected_after_failure_looks_up_before_posting(world: World) -> None:
    booking = world.booking()
    invoicer = world.make()
    world.store.fail_next = 1
    with pytest.raises(InvoicingRetryError):
        invoicer(world.message(booking))
    # The last try gave up (BC seemed down) and the user selected the booking again.
    failed = force_state(world.store,
        world.get(booking), BookingStatus.FAILED, error_code="BC_UNAVAILABLE", error="gave up",
    )  # fmt: skip
    # Re-selection clears the error fields; the attempt count still says an invoice may exist.
    force_state(world.store, failed, BookingStatus.QUEUED, error_code=None, error=None)
    assert invoicer(world.message(booking)).outcome is InvoiceOutcome.ADOPTED
    assert len(world.invoices(booking)) == 1


def test_a_deleted_linked_customer_is_linked_afresh(world: World) -> None:
    invoicer = world.make()
    first = world.booking("a1", customer_email="fresh@example.org", customer_name="Fresh Person")
    assert invoicer(world.message(first)).outcome is InvoiceOutcome.INVOICED
    # Someone merges or deletes customers in BC: the cached link now points nowhere.
    customer_id = world.invoices(first)[0]["customerId"]
    invoice_id = world.get(first).invoice_id
    company = world.sandbox.app.company  # deleted inside Business Central (If-Match as its API needs)
    company.delete(company.invoices, invoice_id, "Sales Invoice", "*")
    company.delete(company.customers, customer_id, "Customer", "*")
    second = world.booking("a2", customer_email="fresh@example.org", customer_name="Fresh Person")
    assert invoicer(world.message(second)).outcome is InvoiceOutcome.INVOICED
    assert world.invoices(second)[0]["customerId"] != customer_id


def test_recovery_reenqueues_only_bookings_stuck_beyond_the_threshold(
    world: World, storage_connection_string: str, unique_name: str
) -> None:
    queue = InvoiceQueue(QueueServiceClient.from_connection_string(storage_connection_string), unique_name)
    queue.ensure_queues()
    stuck_queued = world.booking("q", status=BookingStatus.QUEUED)
    stuck_invoicing = world.booking("i", status=BookingStatus.INVOICING)
    world.booking("done", status=BookingStatus.INVOICED)
    now = world.get(stuck_queued).status_changed_at
    assert now is not None
    assert recover_stuck_bookings(world.store, queue, lambda: now + timedelta(minutes=5)) == 0
    # Other tests' bookings live in other tables, so exactly these two are found.
    assert recover_stuck_bookings(world.store, queue, lambda: now + timedelta(minutes=31)) == 2
    sent = [InvoiceMessage.from_json(m.content) for m in queue.queue.receive_messages(max_messages=10)]
    assert {m.booking_key for m in sent} == {stuck_queued.key, stuck_invoicing.key}
    assert {m.request_id for m in sent} == {"req-1"}
    # The fresh message for the Invoicing booking takes over (its claim is older than the lease).
    later = world.make(clock=lambda: now + timedelta(minutes=31))
    assert later(world.message(stuck_invoicing)).outcome is InvoiceOutcome.INVOICED


def test_max_dequeue_count_matches_host_json() -> None:
    host = json.loads((Path(__file__).resolve().parents[2] / "host.json").read_text())
    assert host["extensions"]["queues"]["maxDequeueCount"] == MAX_DEQUEUE_COUNT


@pytest.mark.parametrize("body", [b"not json", b'{"businessId": "x"}', b"\xff\xfe"])
def test_a_malformed_message_is_raised_for_the_poison_queue(body: bytes) -> None:
    with pytest.raises((InvalidMessageError, UnicodeDecodeError)):
        create_invoice(QueueMessage(id="m1", body=body, dequeue_count=1), context=None)


def test_posting_date_is_the_invoice_date_and_its_refusal_is_bc_rejected(world: World) -> None:
    # The API page maps invoiceDate to the Document Date only (APIV2SalesInvoices: field(invoiceDate;
    # "Document Date")); without postingDate the invoice would post on the day it was created.
    invoicer = world.make(clock=lambda: datetime(2026, 3, 5, 12, tzinfo=UTC))
    booking = world.booking()
    assert invoicer(world.message(booking)).outcome is InvoiceOutcome.INVOICED
    [invoice] = world.invoices(booking)
    assert (invoice["invoiceDate"], invoice["postingDate"]) == ("2026-02-10", "2026-02-10")

    # A company that validates the date on the header (W1 checks it only when posting).
    world.sandbox.admin.set_allowed_posting_dates("2026-03-01", None, at_creation=True)
    refused = world.booking("a2")
    result = invoicer(world.message(refused))
    stored = world.get(refused)
    assert stored.status is BookingStatus.FAILED and stored.error_code == "BC_REJECTED", result
    assert "not within your range of allowed posting dates" in (stored.error or "")
    assert world.invoices(refused) == []


def test_a_try_without_a_business_central_slot_goes_back_on_the_queue_and_its_copy_invoices(
    world: World, fresh_sandbox: SandboxHandle, storage_connection_string: str, unique_name: str
) -> None:
    """The shared budget's only slot is held elsewhere: the try sends nothing, hands its claim to a
    fresh copy of its message on the real queue and completes (`requeued`), even on its last try."""
    tables = TableServiceClient.from_connection_string(storage_connection_string)
    limits = BudgetLimits(concurrency=1, limit=100, lease=120.0)
    budget_table = tables.get_table_client(f"{unique_name}g")
    holder = StorageBudget(budget_table, limits)
    held = holder.slot()
    held.__enter__()  # another instance holds the one slot
    bc = make_client(
        fresh_sandbox,
        storage_connection_string,
        sleep=lambda _s: None,
        budget=StorageBudget(budget_table, limits),
    )
    queue = InvoiceQueue(
        QueueServiceClient.from_connection_string(storage_connection_string), f"{unique_name}q"
    )
    queue.ensure_queues()
    invoicer = world.make(client=bc, invoice_queue=queue)
    booking = world.booking("budget")
    with budget_wait_limit(0.5):
        result = invoicer(
            world.message(booking), delivery_id="orig", dequeue_count=MAX_DEQUEUE_COUNT, last_attempt=True
        )
    assert result.outcome is InvoiceOutcome.REQUEUED
    stored = world.get(booking)
    assert stored.status is BookingStatus.INVOICING  # not Failed: waiting is not failing
    assert stored.claimed_by not in (None, "orig")  # handed to the copy
    assert queue.queue.get_queue_properties().approximate_message_count == 1
    assert world.bc_requests() == 0 and world.invoices(booking) == []
    held.__exit__(None, None, None)
    copy = invoicer(world.message(booking), delivery_id=stored.claimed_by)
    assert copy.outcome is InvoiceOutcome.INVOICED and len(world.invoices(booking)) == 1


def test_with_prices_from_business_central_the_line_has_no_unit_price_and_bc_prices_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PRICE_SOURCE=businessCentral: the POST leaves `unitPrice` out, so Business Central prices the
    line (the sandbox from the item's `unitPrice`; real BC also applies price lists and discounts)."""
    sent: list[dict[str, Any]] = []
    create = world.bc.create_invoice

    def spy(body: dict[str, Any]) -> Any:
        sent.append(body)
        return create(body)

    monkeypatch.setattr(world.bc, "create_invoice", spy)
    booking = world.booking(price=999.0)  # a Bookings price Business Central must not get
    assert world.make(price_source=PriceSource.BUSINESS_CENTRAL)(world.message(booking)).outcome is (
        InvoiceOutcome.INVOICED
    )
    [body] = sent
    item_line = next(line for line in body["salesInvoiceLines"] if line["lineType"] == "Item")
    assert "unitPrice" not in item_line and item_line["quantity"] == 1
    [invoice] = world.invoices(booking)
    [line] = [line for line in invoice["salesInvoiceLines"] if line["lineType"] == "Item"]
    items = {i["id"]: i for i in world.sandbox.admin.state(["items"])["items"]}
    assert line["unitPrice"] == items[line["itemId"]]["unitPrice"] != 999.0
