"""Recovery pass: re-enqueue bookings stuck in Queued or Invoicing.

A booking can get stuck when its message is lost (poisoned after a worker was killed on its last
try, deleted by hand, or never sent because the sender died between claim and send). The timer
calls this pass; it sends a fresh message for every booking that has been Queued or Invoicing for
longer than `threshold`. Invoicing is idempotent (a booking in Invoicing is looked up in Business
Central before anything is created), so a duplicate message is harmless: at worst a no-op.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from shared.domain import lifecycle
from shared.domain.models import Booking, InvoiceMessage
from shared.services.ports import BookingRepository, InvoiceQueuePort
from shared.telemetry import get_logger

log = get_logger("bookings.recovery")

DEFAULT_THRESHOLD = timedelta(minutes=30)
"""Longer than the claim lease (10 min) and than a normal queue backlog."""


def recover_stuck_bookings(
    store: BookingRepository,
    queue: InvoiceQueuePort,
    clock: Callable[[], datetime],
    threshold: timedelta = DEFAULT_THRESHOLD,
    *,
    limit: int = 5000,
) -> int:
    """Send a fresh message for each booking Queued/Invoicing since before `now - threshold`.

    Returns how many were re-enqueued. A failure to send one is logged and the pass goes on; the
    next pass tries again.
    """
    cutoff = clock() - threshold
    sent = 0
    for booking in store.stuck_since(lifecycle.IN_FLIGHT, cutoff):
        if sent >= limit:
            log.warning("Recovery stopped after %d bookings; the next pass continues", limit)
            break
        # The filter runs on the server; a row without StatusChangedAt never matches it, so this
        # check only guards against a clock that moved backwards.
        if booking.status_changed_at is not None and booking.status_changed_at >= cutoff:
            continue
        if _resend(booking, queue):
            sent += 1
    return sent


def _resend(booking: Booking, queue: InvoiceQueuePort) -> bool:
    """A fresh message for one stuck booking; a failure is logged and left for the next pass."""
    message = InvoiceMessage(
        business_id=booking.business_id,
        booking_key=booking.key,
        request_id=booking.request_id or f"recovery-{booking.key}",
    )
    try:
        queue.send(message)
    except Exception as exc:
        log.error(
            "Re-enqueueing stuck booking %s failed: %s",
            booking.key,
            type(exc).__name__,
            extra={"businessId": booking.business_id, "bookingKey": booking.key, "outcome": "error"},
        )
        return False
    log.warning(
        "Re-enqueued booking %s, %s since %s",
        booking.key,
        booking.status,
        booking.status_changed_at.isoformat() if booking.status_changed_at else "unknown",
        extra={
            "businessId": booking.business_id,
            "bookingKey": booking.key,
            "requestId": message.request_id,
            "outcome": "recovered",
        },
    )
    return True
