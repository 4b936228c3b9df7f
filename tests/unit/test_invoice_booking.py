"""`InvoiceBooking` over the fakes: one invoice per booking, adoption, errors, live claims."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from shared.domain.bc_records import Link
from shared.domain.errors import BusinessCentralError
from shared.domain.models import Booking, BookingStatus, ErrorCode, InvoiceMessage, external_document_number
from shared.services.invoice_booking import CLAIM_LEASE, InvoiceOutcome, InvoicingRetryError
from shared.services.links import CUSTOMER, ITEM, ItemLinks
from tests.unit.builders import LUNCH, make_booking
from tests.unit.wiring import fake_app


def transient(**flags: Any) -> BusinessCentralError:
    return BusinessCentralError("Business Central answered 503: busy", status=503, transient=True, **flags)


class World:
    """The app wired as in production (`tests/unit/wiring.py`), with a customer and an item in
    Business Central; `invoice` is the container's `InvoiceBooking`."""

    def __init__(self, *, sync_customers: bool = False, linked: bool = True) -> None:
        self.app = fake_app(SYNC_CUSTOMERS=str(sync_customers).lower(), SYNC_SERVICES="false")
        self.clock, self.store, self.bc = self.app.clock, self.app.store, self.app.bc
        self.links, self.queue = self.app.links, self.app.queue
        self.customer = self.bc.add_customer("customer1@example.com", "C00001")
        self.item = self.bc.add_item("Catered bento", "SVC-0001")
        if linked:  # links already known: invoicing costs one Business Central request
            self.links.record(CUSTOMER, "customer1@example.com", Link(self.customer.id, self.customer.number))
            self.links.record(ITEM, "svc-1", Link(self.item.id, self.item.number))
        self.invoice = self.app.container.invoice_booking

    def seed(self, booking: Booking) -> tuple[Booking, InvoiceMessage]:
        stored = self.store.put(booking)
        return stored, InvoiceMessage(stored.business_id, stored.key, "req-1")

    def stored(self, booking: Booking) -> Booking:
        found = self.store.get(booking.business_id, booking.key)
        assert found is not None
        return found


@pytest.fixture
def world() -> World:
    return World()


def queued(**changes: Any) -> Booking:
    return make_booking(LUNCH, 1, status=BookingStatus.QUEUED, request_id="req-1", **changes)


def test_the_normal_path_is_one_business_central_request(world: World) -> None:
    booking, message = world.seed(queued())
    result = world.invoice(message, delivery_id="msg-1")

    assert (result.outcome, result.status) == (InvoiceOutcome.INVOICED, BookingStatus.INVOICED)
    assert world.bc.calls == [("create_invoice", external_document_number(booking.key))]
    ((invoice_id, body),) = world.bc.invoice_bodies.items()
    assert body["customerId"] == world.customer.id
    assert body["salesInvoiceLines"][0]["itemId"] == world.item.id
    assert body["invoiceDate"] == "2026-01-20"  # the appointment's end, in Amsterdam
    stored = world.stored(booking)
    assert (stored.status, stored.invoice_id, stored.invoice_number) == (
        BookingStatus.INVOICED,
        invoice_id,
        result.invoice_number,
    )
    assert (stored.invoice_attempts, stored.claimed_by) == (1, "msg-1")


def test_links_are_looked_up_once_then_cached() -> None:
    world = World(linked=False)
    first, message = world.seed(queued())
    world.invoice(message)
    assert [name for name, _ in world.bc.calls] == [
        "find_customers_by_email",
        "find_service_items_by_name",
        "create_invoice",
    ]
    second, message = world.seed(
        make_booking(LUNCH, 2, status=BookingStatus.QUEUED, customer_email="customer1@example.com")
    )
    world.invoice(message)
    assert [name for name, _ in world.bc.calls][3:] == ["create_invoice"]
    assert {world.stored(first).status, world.stored(second).status} == {BookingStatus.INVOICED}


def test_an_ambiguous_post_that_committed_is_adopted_not_repeated(world: World) -> None:
    booking, message = world.seed(queued())
    world.bc.fail("create_invoice", transient(may_have_committed=True), after_commit=True)
    result = world.invoice(message)
    assert result.outcome is InvoiceOutcome.ADOPTED
    assert len(world.bc.invoices) == 1
    assert world.bc.count("create_invoice") == 1
    assert world.bc.count("find_invoices_by_external_document_number") == 1
    (invoice,) = world.bc.invoices.values()
    assert world.stored(booking).invoice_id == invoice.id


def test_an_ambiguous_post_that_did_not_commit_is_sent_again_after_a_lookup(world: World) -> None:
    _, message = world.seed(queued())
    world.bc.fail("create_invoice", transient(may_have_committed=True))
    result = world.invoice(message)
    assert result.outcome is InvoiceOutcome.INVOICED
    assert [name for name, _ in world.bc.calls] == [
        "create_invoice",
        "find_invoices_by_external_document_number",
        "create_invoice",
    ]
    assert len(world.bc.invoices) == 1


def test_posts_that_never_answer_are_given_back_to_the_queue(world: World) -> None:
    booking, message = world.seed(queued())
    world.bc.fail("create_invoice", transient(may_have_committed=True), times=3)
    with pytest.raises(InvoicingRetryError):
        world.invoice(message)
    assert world.bc.count("create_invoice") == 3
    assert world.stored(booking).status is BookingStatus.INVOICING


def test_a_booking_found_in_invoicing_is_looked_up_first_and_its_invoice_adopted(world: World) -> None:
    stale = world.clock() - CLAIM_LEASE - timedelta(seconds=1)
    booking, message = world.seed(
        make_booking(
            LUNCH,
            1,
            status=BookingStatus.INVOICING,
            invoice_attempts=1,
            claimed_by="msg-0",
            status_changed_at=stale,
        )
    )
    existing = world.bc.add_invoice(external_document_number(booking.key), "S-INV-0042")
    result = world.invoice(message, delivery_id="msg-9")
    assert (result.outcome, result.invoice_number) == (InvoiceOutcome.ADOPTED, "S-INV-0042")
    assert world.bc.count("create_invoice") == 0
    stored = world.stored(booking)
    assert (stored.status, stored.invoice_id, stored.invoice_attempts) == (
        BookingStatus.INVOICED,
        existing.id,
        2,
    )


def test_an_earlier_attempt_means_a_lookup_before_creating(world: World) -> None:
    _, message = world.seed(queued(invoice_attempts=1))
    result = world.invoice(message)
    assert result.outcome is InvoiceOutcome.INVOICED
    assert [name for name, _ in world.bc.calls] == [
        "find_invoices_by_external_document_number",
        "create_invoice",
    ]


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"has_customer": False, "customer_name": None, "customer_email": None}, ErrorCode.NO_CUSTOMER),
        ({"customer_email": "  "}, ErrorCode.NO_CUSTOMER_EMAIL),
        ({"customer_email": "nobody@example.com"}, ErrorCode.CUSTOMER_NOT_FOUND),
        ({"service_id": "svc-2", "service_name": "Unknown service"}, ErrorCode.SERVICE_NOT_MAPPED),
    ],
)
def test_what_can_never_succeed_fails_with_its_code(changes: dict[str, Any], code: ErrorCode) -> None:
    world = World()
    booking, message = world.seed(queued(**changes))
    result = world.invoice(message)
    assert (result.outcome, result.error_code) == (InvoiceOutcome.FAILED, str(code))
    stored = world.stored(booking)
    assert (stored.status, stored.error_code) == (BookingStatus.FAILED, str(code))
    assert stored.error
    assert world.bc.count("create_invoice") == 0


def test_a_refused_invoice_fails_with_business_centrals_message(world: World) -> None:
    booking, message = world.seed(queued())
    world.bc.fail(
        "create_invoice",
        BusinessCentralError(
            "The field Quantity must not be negative.",
            status=400,
            code="BadRequest_InvalidValue",
            transient=False,
        ),
    )
    result = world.invoice(message)
    assert (result.outcome, result.error_code) == (InvoiceOutcome.FAILED, "BC_REJECTED")
    stored = world.stored(booking)
    assert (stored.status, stored.error) == (BookingStatus.FAILED, "The field Quantity must not be negative.")
    assert world.bc.count("create_invoice") == 1


@pytest.mark.parametrize("code", ["Application_DialogException", "BadRequest_NotFound", None])
def test_a_deleted_linked_customer_is_found_out_by_reading_it_whatever_the_code(
    world: World, code: str | None
) -> None:
    """The decision is taken on `GET customers({id})` answering 404, never on the error code."""
    booking, message = world.seed(queued())
    world.bc.customers.pop(world.customer.id)  # deleted in Business Central after it was linked
    successor = world.bc.add_customer("customer1@example.com", "C00002")
    world.bc.fail(
        "create_invoice",
        BusinessCentralError("The sell-to customer cannot be found.", status=400, code=code, transient=False),
    )
    result = world.invoice(message)
    assert result.outcome is InvoiceOutcome.INVOICED
    assert [name for name, _ in world.bc.calls] == [
        "create_invoice",
        "get_customer",
        "get_item",
        "find_customers_by_email",
        "create_invoice",
    ]
    assert world.links.link_of(CUSTOMER, "customer1@example.com") == Link(successor.id, successor.number)
    [invoice] = world.bc.invoices.values()
    assert world.bc.invoice_bodies[invoice.id]["customerId"] == successor.id
    assert world.stored(booking).invoice_id == invoice.id


def test_a_rejection_with_both_linked_records_in_place_fails_without_a_second_post(world: World) -> None:
    booking, message = world.seed(queued())
    world.bc.fail(
        "create_invoice",
        BusinessCentralError(
            "Some AL rule said no.", status=400, code="Application_DialogException", transient=False
        ),
    )
    result = world.invoice(message)
    assert (result.outcome, result.error_code) == (InvoiceOutcome.FAILED, "BC_REJECTED")
    assert world.bc.count("create_invoice") == 1
    assert world.stored(booking).error == "Some AL rule said no."
    assert world.links.link_of(CUSTOMER, "customer1@example.com") == Link(
        world.customer.id, world.customer.number
    )


def test_a_linked_item_that_became_blocked_fails_item_blocked(world: World) -> None:
    booking, message = world.seed(queued())
    world.bc.items[world.item.id] = replace(world.item, blocked=True)
    world.bc.fail(
        "create_invoice",
        BusinessCentralError("Blocked must be equal to 'No'", status=400, transient=False),
    )
    result = world.invoice(message)
    assert (result.outcome, result.error_code) == (InvoiceOutcome.FAILED, "ITEM_BLOCKED")
    assert "SVC-0001" in (world.stored(booking).error or "")
    assert world.bc.count("create_invoice") == 1


def test_a_linked_customer_blocked_for_invoices_is_replaced_by_an_unblocked_one(world: World) -> None:
    _, message = world.seed(queued())
    world.bc.customers[world.customer.id] = replace(world.customer, blocked="Invoice")
    other = world.bc.add_customer("Customer1@Example.com", "C00003")
    world.bc.fail("create_invoice", BusinessCentralError("blocked", status=400, transient=False))
    assert world.invoice(message).outcome is InvoiceOutcome.INVOICED
    assert world.links.link_of(CUSTOMER, "customer1@example.com") == Link(other.id, other.number)


def test_only_blocked_customers_with_the_email_fail_customer_blocked_naming_them() -> None:
    world = World(linked=False, sync_customers=True)
    world.bc.customers.pop(world.customer.id)
    world.bc.add_customer("customer1@example.com", "C00007", blocked="All")
    world.bc.add_customer("CUSTOMER1@example.com", "C00008", blocked="Invoice")
    booking, message = world.seed(queued())
    result = world.invoice(message)
    assert (result.outcome, result.error_code) == (InvoiceOutcome.FAILED, "CUSTOMER_BLOCKED")
    assert "C00007" in (world.stored(booking).error or "") and "C00008" in (world.stored(booking).error or "")
    assert world.bc.count("create_customer") == 0  # never created past the block
    assert world.bc.count("create_invoice") == 0


def test_blocked_items_are_passed_over_by_name_and_only_blocked_fails_item_blocked() -> None:
    world = World(linked=False)
    world.bc.items.pop(world.item.id)
    world.bc.add_item("Catered bento", "SVC-0001", blocked=True)
    usable = world.bc.add_item("catered BENTO", "SVC-0002")
    _, message = world.seed(queued())
    assert world.invoice(message).outcome is InvoiceOutcome.INVOICED
    assert world.links.link_of(ITEM, "svc-1") == Link(usable.id, usable.number)

    world = World(linked=False)
    world.bc.items[world.item.id] = replace(world.item, blocked=True)
    _, message = world.seed(queued())
    result = world.invoice(message)
    assert (result.outcome, result.error_code) == (InvoiceOutcome.FAILED, "ITEM_BLOCKED")


def test_a_transient_error_is_raised_for_a_retry_and_leaves_the_claim(world: World) -> None:
    booking, message = world.seed(queued())
    world.bc.fail("create_invoice", transient())
    with pytest.raises(BusinessCentralError):
        world.invoice(message, dequeue_count=1, last_attempt=False)
    stored = world.stored(booking)
    assert (stored.status, stored.error_code) == (BookingStatus.INVOICING, None)


def test_the_last_attempt_marks_the_booking_bc_unavailable(world: World) -> None:
    booking, message = world.seed(queued())
    world.bc.fail("create_invoice", transient())
    with pytest.raises(BusinessCentralError):
        world.invoice(message, dequeue_count=5, last_attempt=True)
    stored = world.stored(booking)
    assert (stored.status, stored.error_code) == (BookingStatus.FAILED, "BC_UNAVAILABLE")
    assert stored.error is not None and stored.error.startswith("still failing after the last try")


def claimed_by_msg_1(world: World, *, claimed_ago: timedelta) -> Booking:
    """A booking in Invoicing, claimed by the delivery `msg-1` `claimed_ago`."""
    return make_booking(
        LUNCH,
        1,
        status=BookingStatus.INVOICING,
        invoice_attempts=1,
        claimed_by="msg-1",
        status_changed_at=world.clock() - claimed_ago,
    )


def test_a_claim_held_by_another_message_within_the_lease_is_skipped(world: World) -> None:
    booking, message = world.seed(claimed_by_msg_1(world, claimed_ago=timedelta(minutes=1)))
    result = world.invoice(message, delivery_id="msg-2")
    assert (result.outcome, result.status) == (InvoiceOutcome.SKIPPED, BookingStatus.INVOICING)
    assert world.bc.calls == []
    assert world.stored(booking).claimed_by == "msg-1"


def test_a_redelivery_of_the_claiming_message_takes_the_claim_over_at_once(world: World) -> None:
    _, message = world.seed(claimed_by_msg_1(world, claimed_ago=timedelta(minutes=1)))
    result = world.invoice(message, delivery_id="msg-1")
    assert result.outcome is InvoiceOutcome.INVOICED
    assert world.bc.calls[0][0] == "find_invoices_by_external_document_number"


def test_a_claim_past_its_lease_is_taken_over(world: World) -> None:
    _, message = world.seed(claimed_by_msg_1(world, claimed_ago=CLAIM_LEASE))
    assert world.invoice(message, delivery_id="msg-2").outcome is InvoiceOutcome.INVOICED


@pytest.mark.parametrize("status", [BookingStatus.INVOICED, BookingStatus.UNBILLED, BookingStatus.CANCELLED])
def test_a_booking_with_nothing_to_do_is_skipped(world: World, status: BookingStatus) -> None:
    booking, message = world.seed(make_booking(LUNCH, 1, status=status, invoice_number="S-1"))
    result = world.invoice(message)
    assert (result.outcome, result.status) == (InvoiceOutcome.SKIPPED, status)
    assert world.bc.calls == []
    assert world.stored(booking).status == status


def test_a_missing_booking_is_skipped(world: World) -> None:
    result = world.invoice(InvoiceMessage(LUNCH, "A" * 26, "req-1"))
    assert (result.outcome, result.status) == (InvoiceOutcome.SKIPPED, None)


def test_losing_the_claim_race_rereads_and_sees_the_winner(world: World) -> None:
    booking, message = world.seed(queued())

    def another_worker_wins(kind: str, bookings: object) -> None:
        world.store.before_write = None
        world.store.touch(LUNCH, booking.key, status=BookingStatus.INVOICED, invoice_number="S-INV-7")

    world.store.before_write = another_worker_wins
    result = world.invoice(message)
    assert (result.outcome, result.invoice_number) == (InvoiceOutcome.SKIPPED, "S-INV-7")
    assert world.bc.calls == []


def test_a_customer_is_created_when_syncing_customers_is_on() -> None:
    world = World(sync_customers=True, linked=False)
    booking, message = world.seed(
        queued(customer_email="New.Person@Example.com", customer_name="New  Person")
    )
    assert world.invoice(message).outcome is InvoiceOutcome.INVOICED
    created = [c for c in world.bc.customers.values() if c.email == "New.Person@Example.com"]
    assert len(created) == 1 and created[0].display_name == "New Person"
    assert world.links.link_of(CUSTOMER, "new.person@example.com") == Link(created[0].id, created[0].number)
    assert world.stored(booking).status is BookingStatus.INVOICED


def test_a_stale_link_of_a_service_without_id_is_forgotten_under_its_name_key(world: World) -> None:
    """A service without id is linked under `name:<name>`; the relink must forget that very row."""
    stale = world.bc.add_item("Catered bento", "SVC-OLD")
    name_key = ItemLinks.link_key("", "Catered  Bento ")
    assert name_key == "name:catered bento"
    world.links.record(ITEM, name_key, Link(stale.id, stale.number))
    world.bc.items.pop(stale.id)  # deleted in Business Central after it was linked
    _, message = world.seed(queued(service_id=""))
    world.bc.fail(
        "create_invoice",
        BusinessCentralError(
            "Item does not exist.", status=400, code="Application_DialogException", transient=False
        ),
    )
    result = world.invoice(message)
    assert result.outcome is InvoiceOutcome.INVOICED
    assert world.links.link_of(ITEM, name_key) == Link(world.item.id, world.item.number)


def test_a_claimed_booking_whose_appointment_has_not_ended_goes_back_to_unbilled(world: World) -> None:
    # CONTRACT.md "Booking states": a booking whose appointment has not ended is not billable.
    # A claim made before the appointment was moved into the future is refused here, without a
    # Business Central request; the booking is on the Unbilled list again once it has ended.
    start = world.clock() + timedelta(days=2)
    booking, message = world.seed(queued(start=start, end=start + timedelta(hours=1)))

    result = world.invoice(message, delivery_id="msg-1")

    assert (result.outcome, result.status) == (InvoiceOutcome.SKIPPED, BookingStatus.UNBILLED)
    assert world.bc.calls == []
    stored = world.stored(booking)
    assert stored.status is BookingStatus.UNBILLED and stored.invoice_attempts == 0
    assert stored.note and "not ended" in stored.note
