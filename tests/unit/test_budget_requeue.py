"""A try that got no Business Central slot in time: a copy goes back on the queue, the claim is
handed to it, and the copy and the original can never both create an invoice."""

from __future__ import annotations

from typing import Any

import pytest

from shared.domain.bc_budget import BudgetTimeoutError
from shared.domain.models import Booking, BookingStatus, InvoiceMessage
from shared.services.budget_requeue import BudgetRequeue
from tests.unit.fakes import FakeQueue
from tests.unit.test_invoice_booking import World, queued


def budget_timeout() -> BudgetTimeoutError:
    return BudgetTimeoutError("no Business Central slot free within 60s", retry_in=12.0)


def timed_out(world: World, delivery_id: str, **invoice: Any) -> tuple[Booking, InvoiceMessage]:
    """A queued booking whose try by `delivery_id` found no Business Central slot in time."""
    booking, message = world.seed(queued())
    world.bc.fail("create_invoice", budget_timeout())
    with pytest.raises(BudgetTimeoutError):
        world.invoice(message, delivery_id=delivery_id, **invoice)
    return booking, message


def test_a_try_that_waited_too_long_requeues_a_copy_that_finishes_the_booking() -> None:
    world = World()
    queue = FakeQueue()
    requeue = BudgetRequeue(world.store, queue)
    booking, message = timed_out(world, "msg-1", dequeue_count=5, last_attempt=True)
    assert world.stored(booking).status is BookingStatus.INVOICING  # not marked Failed: not a failure
    copy_id = requeue(message, delivery_id="msg-1", retry_in=12.0)
    assert copy_id == "msg-1" and queue.delays == [12]  # FakeQueue ids restart at msg-1
    assert queue.sent == [message]  # same ids and trace context
    handed = world.stored(booking)
    assert handed.claimed_by == copy_id


def test_the_copy_and_the_original_never_both_create_an_invoice() -> None:
    world = World()
    queue = FakeQueue()
    requeue = BudgetRequeue(world.store, queue)
    _booking, message = timed_out(world, "orig")
    copy_id = requeue(message, delivery_id="orig", retry_in=5.0)
    assert copy_id is not None
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
    queue = FakeQueue()
    booking, message = world.seed(queued())
    copy_id = BudgetRequeue(world.store, queue)(message, delivery_id="orig", retry_in=1.0)
    assert copy_id is not None and queue.delays == [5]  # never sooner than 5 s
    assert world.stored(booking).claimed_by is None
    assert world.invoice(message, delivery_id=copy_id).status is BookingStatus.INVOICED


def test_no_copy_when_another_message_holds_the_booking_or_it_is_settled() -> None:
    world = World()
    queue = FakeQueue()
    requeue = BudgetRequeue(world.store, queue)
    booking, message = timed_out(world, "other")
    assert requeue(message, delivery_id="mine", retry_in=5.0) is None
    world.invoice(message, delivery_id="other", dequeue_count=2)
    assert world.stored(booking).status is BookingStatus.INVOICED
    assert requeue(message, delivery_id="other", retry_in=5.0) is None
    assert queue.sent == []
