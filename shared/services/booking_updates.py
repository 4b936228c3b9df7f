"""`POST /api/booking-updates`: a person excludes, includes or marks bookings invoiced, audited.

Each booking moves alone, by a conditional write on the ETag it was read with: a booking claimed
(or changed) meanwhile is read again and decided again, so it lands in `skipped` with its current
state and is never overwritten. Who did it and when is stored on the booking and logged.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime

from shared.domain import lifecycle
from shared.domain.errors import ConcurrentChangeError
from shared.domain.lifecycle import IllegalTransition
from shared.domain.models import Actor, Booking, BookingStatus
from shared.services.booking_queries import BookingQueries, fan_out
from shared.services.ports import BookingRepository
from shared.services.selection import SkippedBooking
from shared.telemetry import get_logger

log = get_logger("bookings.updates")

MAX_TRIES = 4
"""Re-reads of one booking that keeps changing under us before it is reported as skipped."""


@dataclass(frozen=True)
class BookingUpdate:
    """A checked body: the API action (`exclude`, `include`, `markInvoiced`), keys and texts."""

    action: str
    keys: tuple[str, ...]
    reference: str | None = None
    note: str | None = None


@dataclass
class UpdateResult:
    updated: list[str] = field(default_factory=list)
    skipped: list[SkippedBooking] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)


class BookingUpdates:
    def __init__(
        self,
        store: BookingRepository,
        queries: BookingQueries,
        *,
        executor: Executor | None = None,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.queries = queries
        self.executor = executor
        self.clock = clock

    def apply(self, update: BookingUpdate, caller: Actor | None) -> UpdateResult:
        if update.action not in lifecycle.MANUAL_ACTIONS:
            raise ValueError(f"unknown action {update.action!r}")
        found = self.queries.get_many(update.keys)
        result = UpdateResult(not_found=[key for key in update.keys if key not in found])
        present = [found[key] for key in update.keys if key in found]
        outcomes = fan_out(self.executor, lambda booking: self._one(update, caller, booking), present)
        for booking, outcome in zip(present, outcomes, strict=True):
            if outcome is None:
                result.updated.append(booking.key)
            else:
                result.skipped.append(SkippedBooking(booking.key, outcome))
        _log(update, caller, result)
        return result

    def _one(self, update: BookingUpdate, caller: Actor | None, booking: Booking) -> BookingStatus | None:
        """None when the booking was updated; else the state that made it skip."""
        current: Booking | None = booking
        for _ in range(MAX_TRIES):
            if current is None:
                return booking.status
            try:
                changed = self._transition(update, caller, current)
            except IllegalTransition:
                return current.status
            try:
                self.store.save(changed)
                return None
            except ConcurrentChangeError:
                current = self.store.get(booking.business_id, booking.key)
        return current.status if current is not None else booking.status

    def _transition(self, update: BookingUpdate, caller: Actor | None, booking: Booking) -> Booking:
        at = self.clock()
        if update.action == "exclude":
            return lifecycle.exclude(booking, caller, update.note, at)
        if update.action == "include":
            return lifecycle.include(booking, caller, update.note, at)
        return lifecycle.mark_invoiced(booking, update.reference, caller, update.note, at)


def _log(update: BookingUpdate, caller: Actor | None, result: UpdateResult) -> None:
    who = caller.id if caller and caller.id else "unknown caller"
    log.info(
        "Booking update %s by %s (%s): %d updated, %d skipped, %d not found",
        update.action,
        who,
        caller.name if caller and caller.name else "no name",
        len(result.updated),
        len(result.skipped),
        len(result.not_found),
        extra={
            "action": update.action,
            "updatedById": caller.id if caller else None,
            "updatedByName": caller.name if caller else None,
            "updated": len(result.updated),
            "skipped": len(result.skipped),
            "notFound": len(result.not_found),
            "outcome": "updated" if result.updated else "nothing_updated",
        },
    )
