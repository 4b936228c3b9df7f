"""A queue try that found no Business Central slot in time goes back to the queue as a fresh copy.

The Functions host counts every receive of a message (`dequeueCount`) towards poison, so a try
that only waited for the shared budget (`adapters/bc_budget.py`) must not end in an exception: it
puts a copy of its message back on the queue (same ids and trace context, so the same booking and
the same trace; a fresh dequeue count) with a visibility delay, and then completes normally.

Exactly one invoice still holds, through the booking's conditional state machine:

- the try gave up *before* sending anything (the budget raises before a request goes out), and
  every request it did send has ended, so nothing of it is still in flight;
- if the booking is Invoicing under this message's claim, the claim is handed to the copy: a
  conditional write of `claimedBy` = the copy's message id. The copy then takes the claim over at
  once (like a redelivery of the same message), and since the booking is Invoicing it looks the
  invoice up before creating one. The original, should it ever come back, is a different message:
  it leaves a claim younger than the claim lease alone;
- if the booking is Queued, the copy claims it like any message (a conditional write: of the copy
  and any other message, one wins); if it is held by another message, or settled, no copy is sent.

If the hand-over write fails, the copy finds the claim not its own and skips the booking; the
error is raised, so the host retries the original, whose claim it still is.
"""

from __future__ import annotations

from dataclasses import replace

from shared.domain import lifecycle
from shared.domain.errors import ConcurrentChangeError
from shared.domain.models import BookingStatus, InvoiceMessage
from shared.services.ports import BookingRepository, InvoiceQueuePort
from shared.telemetry import get_logger

log = get_logger("bookings.budget_requeue")

MIN_DELAY = 5
MAX_DELAY = 300
HANDOVER_ROUNDS = 3


class BudgetRequeue:
    def __init__(self, store: BookingRepository, queue: InvoiceQueuePort) -> None:
        self.store = store
        self.queue = queue

    def __call__(self, message: InvoiceMessage, *, delivery_id: str | None, retry_in: float) -> str | None:
        """Send the copy (and hand the claim over); its message id, or None when none is needed."""
        delay = int(min(MAX_DELAY, max(MIN_DELAY, retry_in)))
        copy_id: str | None = None
        for _ in range(HANDOVER_ROUNDS):
            booking = self.store.get(message.business_id, message.booking_key)
            if booking is None or not lifecycle.may_start_invoicing(booking.status):
                return copy_id  # settled meanwhile: nothing left to do
            ours = booking.claimed_by is not None and booking.claimed_by in (delivery_id, copy_id)
            if booking.status is BookingStatus.INVOICING and not ours:
                return copy_id  # another message holds it and will finish it
            if copy_id is None:
                copy_id = self.queue.send(message, delay_seconds=delay)
                log.info(
                    "Booking %s waited too long for a Business Central slot: back on the queue in %ds",
                    message.booking_key,
                    delay,
                    extra={"outcome": "requeued_for_budget", "bookingKey": message.booking_key},
                )
            if booking.status is not BookingStatus.INVOICING or booking.claimed_by == copy_id:
                return copy_id
            try:
                self.store.save(replace(booking, claimed_by=copy_id))
            except ConcurrentChangeError:
                continue
            return copy_id
        raise ConcurrentChangeError(
            f"booking {message.booking_key} kept changing while handing its claim over"
        )
