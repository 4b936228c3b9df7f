"""A queue try that found no Business Central slot in time goes back to the queue as a fresh copy.

`InvoiceBooking` calls this when its try gave up waiting for the shared budget
(`adapters/bc_budget.py`). The Functions host counts every receive of a message (`dequeueCount`)
towards poison, so such a try must not end in an exception: it puts a copy of its message back on
the queue (same ids and trace context, so the same booking and the same trace; a fresh dequeue
count) with a visibility delay, and then completes normally.

Exactly one invoice still holds, through the booking's conditional state machine:

- the try gave up *before* sending anything (the budget raises before a request goes out), and
  every request it did send has ended, so nothing of it is still in flight;
- if the booking is Invoicing under this message's claim, the claim is handed to the copy
  (`lifecycle.hand_over_claim`, a conditional write of `claimedBy` = the copy's message id). The
  copy then takes the claim over at once (`lifecycle.may_take_over`, like a redelivery of the same
  message), and since the booking is Invoicing it looks the invoice up before creating one. The
  original, should it ever come back, is a different message: it leaves a claim younger than the
  claim lease alone;
- if the booking is Queued, the copy claims it like any message (a conditional write: of the copy
  and any other message, one wins); if it is held by another message, or settled, no copy is sent.

If the hand-over write fails, the copy finds the claim not its own and skips the booking; the
error is raised, so the host retries the original, whose claim it still is.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.domain import lifecycle
from shared.domain.errors import ConcurrentChangeError
from shared.domain.models import BookingStatus, InvoiceMessage
from shared.services.ports import BookingRepository, InvoiceQueuePort

MIN_DELAY = 5
MAX_DELAY = 300
HANDOVER_ROUNDS = 3


@dataclass(frozen=True)
class Requeued:
    """What became of the booking: the copy's message id (None: no copy was needed) and its state."""

    copy_id: str | None
    status: BookingStatus | None
    delay: int


def requeue_for_budget(
    store: BookingRepository,
    queue: InvoiceQueuePort,
    message: InvoiceMessage,
    *,
    delivery_id: str | None,
    retry_in: float,
) -> Requeued:
    """Send the copy (and hand the claim over), unless the booking needs no more work of ours."""
    delay = int(min(MAX_DELAY, max(MIN_DELAY, retry_in)))
    copy_id: str | None = None
    for _ in range(HANDOVER_ROUNDS):
        booking = store.get(message.business_id, message.booking_key)
        if booking is None or not lifecycle.may_start_invoicing(booking.status):
            return Requeued(copy_id, booking.status if booking else None, delay)  # settled meanwhile
        ours = lifecycle.holds_claim(booking, delivery_id) or lifecycle.holds_claim(booking, copy_id)
        if booking.status is BookingStatus.INVOICING and not ours:
            return Requeued(copy_id, booking.status, delay)  # another message holds it and finishes it
        if copy_id is None:
            copy_id = queue.send(message, delay_seconds=delay)
        if booking.status is not BookingStatus.INVOICING or lifecycle.holds_claim(booking, copy_id):
            return Requeued(copy_id, booking.status, delay)
        try:
            store.save(lifecycle.hand_over_claim(booking, copy_id))
        except ConcurrentChangeError:
            continue
        return Requeued(copy_id, booking.status, delay)
    raise ConcurrentChangeError(f"booking {message.booking_key} kept changing while handing its claim over")
