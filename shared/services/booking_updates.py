"""`POST /api/booking-updates`: a person excludes, includes or marks bookings invoiced, audited.

Each booking moves alone, by a conditional write on the ETag it was read with: a booking claimed
(or changed) meanwhile is read again and decided again, so it lands in `skipped` with its current
state and is never overwritten. Who did it and when is stored on the booking and logged.

A booking that failed with BC_UNAVAILABLE may have a draft in Business Central: the POST may have
committed before its answer was lost. `exclude` and `markInvoiced` look it up by
`externalDocumentNumber` first (one request per such booking); a draft found makes the booking
Invoiced with it (listed in `skipped` as Invoiced), never Excluded or marked beside a live draft.
If Business Central cannot be asked, the booking is left Failed (skipped) rather than guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime

from shared.domain import lifecycle
from shared.domain.bc_records import BcInvoice
from shared.domain.errors import BusinessCentralError, ConcurrentChangeError
from shared.domain.lifecycle import IllegalTransition
from shared.domain.models import Actor, Booking, BookingStatus, ErrorCode, external_document_number
from shared.services.booking_queries import BookingQueries, fan_out
from shared.services.ports import BookingRepository, InvoiceLookup
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
        invoices: InvoiceLookup | None = None,
    ) -> None:
        self.store = store
        self.queries = queries
        self.executor = executor
        self.clock = clock
        self.invoices = invoices

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
        """None when the booking was updated; else the state that made it skip (Invoiced when the
        invoice of an ambiguous attempt was found and adopted instead)."""
        current: Booking | None = booking
        found: _Found = _NOT_ASKED
        for _ in range(MAX_TRIES):
            if current is None:
                return booking.status
            if found is _NOT_ASKED and self._may_have_invoice(update, current):
                found = self._lookup(current)
            if found is _UNKNOWN:
                return current.status
            try:
                changed = self._transition(update, caller, current, found)
            except IllegalTransition:
                return current.status
            try:
                self.store.save(changed)
            except ConcurrentChangeError:
                current = self.store.get(booking.business_id, booking.key)
                continue
            return changed.status if isinstance(found, BcInvoice) else None
        return current.status if current is not None else booking.status

    def _may_have_invoice(self, update: BookingUpdate, booking: Booking) -> bool:
        return (
            update.action in ("exclude", "markInvoiced")
            and booking.status is BookingStatus.FAILED
            and booking.error_code == ErrorCode.BC_UNAVAILABLE
            and self.invoices is not None
        )

    def _lookup(self, booking: Booking) -> _Found:
        assert self.invoices is not None
        try:
            found = self.invoices.find_invoices_by_external_document_number(
                external_document_number(booking.key)
            )
        except BusinessCentralError as exc:
            log.warning(
                "Booking %s failed with BC_UNAVAILABLE and Business Central cannot be asked whether the "
                "invoice exists (%s): left Failed",
                booking.key,
                exc,
                extra={"bookingKey": booking.key, "outcome": "lookup_failed"},
            )
            return _UNKNOWN
        return found[0] if found else None

    def _transition(
        self, update: BookingUpdate, caller: Actor | None, booking: Booking, found: _Found
    ) -> Booking:
        at = self.clock()
        if isinstance(found, BcInvoice):
            log.info(
                "Booking %s: Business Central already has invoice %s; %s adopts it instead",
                booking.key,
                found.number,
                update.action,
                extra={"bookingKey": booking.key, "invoiceNumber": found.number, "outcome": "adopted"},
            )
            return lifecycle.adopt_invoice(booking, found.id, found.number, found.status, caller, at)
        if update.action == "exclude":
            return lifecycle.exclude(booking, caller, update.note, at)
        if update.action == "include":
            return lifecycle.include(booking, caller, update.note, at)
        return lifecycle.mark_invoiced(booking, update.reference, caller, update.note, at)


class _Marker:
    pass


_NOT_ASKED = _Marker()
_UNKNOWN = _Marker()
_Found = BcInvoice | None | _Marker
"""What a lookup said: the invoice, None (there is none), not asked, or unknown (BC unreachable)."""


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
