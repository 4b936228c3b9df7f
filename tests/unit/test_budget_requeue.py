"""A try that got no Business Central slot in time: the use case puts a copy back on the queue,
hands the claim to it and completes (`requeued`), and the copy and the original can never both
create an invoice."""

from __future__ import annotations

from typing import Any

from shared.domain.bc_budget import BudgetTimeoutError
from shared.domain.models import Booking, BookingStatus, InvoiceMessage
from shared.services.budget_requeue import requeue_for_budget
from shared.services.invoice_booking import InvoiceOutcome, InvoiceResult
from tests.unit.test_invoice_booking import World, queued


def budget_timeout() -> BudgetTimeoutError:
    return BudgetTimeoutError("no Business Central slot free within 60s", retry_in=12.0)


def timed_out(
    world: World, delivery_id: str, **invoice: Any
) -> tuple[Booking, InvoiceMessage, InvoiceResult]:
    """A queued booking whose try by `delivery_id` found no Business Central slot in time."""
    booking, message = world.seed(queued())
    world.bc.fail("create_invoice", budget_timeout())
    result = world.invoice(message, delivery_id=delivery_id, **invoice)
    return booking, message, result


def test_a_try_that_waited_too_long_requeues_a_copy_that_finishes_the_booking() -> None:
    world = World()
    booking, message, result = timed_out(world, "msg-orig", dequeue_count=5, last_attempt=True)
    assert result.outcome is InvoiceOutcome.REQUEUED  # completes, so the try is not burnt
    assert world.stored(booking).status is BookingStatus.INVOICING  # not marked Failed: not a failure
    assert world.queue.sent == [message] and world.queue.delays == [12]  # same ids and trace context
    handed = world.stored(booking)
    assert handed.claimed_by == "msg-1"  # the copy's id (FakeQueue numbers its messages)
    assert world.invoice(message, delivery_id="msg-1").status is BookingStatus.INVOICED


def test_the_copy_and_the_original_never_both_create_an_invoice() -> None:
    world = World()
    _booking, message, _ = timed_out(world, "orig")
    copy_id = "msg-1"
    assert world.queue.sent == [message]
    # The original comes back anyway (its completion was lost): the claim is no longer its own.
    original = world.invoice(message, delivery_id="orig", dequeue_count=2)
    assert original.detail == "claimed by another worker moments ago"
    copy = world.invoice(message, delivery_id=copy_id)
    assert copy.status is BookingStatus.INVOICED
    # Both again, in the other order: the booking is settled, nothing more is created.
    assert world.invoice(message, delivery_id="orig", dequeue_count=3).status is BookingStatus.INVOICED
    assert world.invoice(message, delivery_id=copy_id, dequeue_count=2).status is BookingStatus.INVOICED
    assert world.bc.count("create_invoice") == 2  # the one that timed out never reached BC
    assert len(world.bc.invoices) == 1
    # The copy looked the invoice up first (the booking was Invoicing): a lost POST is adopted too.
    assert world.bc.count("find_invoices_by_external_document_number") == 1


def test_a_copy_of_a_queued_booking_claims_it_like_any_message() -> None:
    world = World()
    booking, message = world.seed(queued())
    requeued = requeue_for_budget(world.store, world.queue, message, delivery_id="orig", retry_in=1.0)
    assert requeued.copy_id is not None and world.queue.delays == [5]  # never sooner than 5 s
    assert world.stored(booking).claimed_by is None
    assert world.invoice(message, delivery_id=requeued.copy_id).status is BookingStatus.INVOICED


def test_no_copy_when_another_message_holds_the_booking_or_it_is_settled() -> None:
    world = World()
    booking, message, _ = timed_out(world, "other")
    world.queue.sent.clear()
    again = requeue_for_budget(world.store, world.queue, message, delivery_id="mine", retry_in=5.0)
    assert again.copy_id is None
    world.invoice(message, delivery_id="msg-1", dequeue_count=2)
    assert world.stored(booking).status is BookingStatus.INVOICED
    settled = requeue_for_budget(world.store, world.queue, message, delivery_id="msg-1", retry_in=5.0)
    assert settled.copy_id is None and settled.status is BookingStatus.INVOICED
    assert world.queue.sent == []


def test_a_timed_out_try_of_a_booking_another_message_holds_is_skipped_without_a_copy() -> None:
    world = World()
    booking, message, _ = timed_out(world, "orig")  # the claim is now the copy's ("msg-1")
    # A different message (a duplicate) within the lease: skipped before any BC request.
    assert world.invoice(message, delivery_id="dup").outcome is InvoiceOutcome.SKIPPED
    assert world.queue.sent == [message]
    assert world.stored(booking).claimed_by == "msg-1"
