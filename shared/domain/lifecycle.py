"""The booking lifecycle: every state a booking can be in and every way it may move, in one place.

    Unbilled -> Queued -> Invoicing -> Invoiced
    Queued/Invoicing -> Failed (errorCode, error);  Failed -> Queued (selected again by key)
    Invoicing: its claim handed to a fresh copy of its message (no Business Central slot in time)
    Queued -> its state before the claim (a claim undone because its message could not be sent)
    Queued -> Unbilled (its appointment has not ended: invoicing refuses it until it has)
    Unbilled -> Cancelled (gone from Bookings);  Cancelled -> Unbilled (it exists again)
    Unbilled/Failed/Excluded: descriptive fields refreshed by the sync, state kept
    Unbilled/Failed -> Excluded (a person: not to be billed);  Excluded -> Unbilled (included again)
    Unbilled/Failed -> Invoiced (a person: billed some other way; invoiceSource manual)
    Invoiced -> Unbilled (reconcile_invoices: the app's draft was deleted in Business Central)
    Invoiced: invoiceStatus/number follow Business Central (reconcile_invoices), state kept
    Invoiced (final or manual)/Cancelled/Excluded: deleted by retention once old enough

Only a booking whose appointment has ended is billable (`has_ended`): an appointment moved into
the future leaves the Unbilled list, no selection claims it (`claim` refuses it) and invoicing
puts a claimed one back (`postpone`), until it has ended again (CONTRACT.md "Booking states").

Each transition is a pure function from a booking to the new booking; it raises `IllegalTransition`
when the booking's state does not allow it. Nothing here writes: the store saves the result with
the ETag of the booking it was computed from, so a booking changed meanwhile is never overwritten.
`TRANSITIONS` is the table all of it derives from; a new state or action is one entry here plus
one row in the table-driven test (`tests/unit/test_lifecycle.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from types import MappingProxyType

from shared.domain.models import Actor, Booking, BookingStatus, InvoiceSource

UNBILLED = BookingStatus.UNBILLED
QUEUED = BookingStatus.QUEUED
INVOICING = BookingStatus.INVOICING
INVOICED = BookingStatus.INVOICED
FAILED = BookingStatus.FAILED
CANCELLED = BookingStatus.CANCELLED
EXCLUDED = BookingStatus.EXCLUDED

FINAL_INVOICE_STATUSES = frozenset({"Paid", "Canceled", "Corrective"})
"""Business Central invoice statuses after which retention may forget the booking."""


class IllegalTransition(ValueError):
    """The booking's state does not allow this transition (re-read it and decide again)."""

    def __init__(self, transition: str, status: BookingStatus, key: str = "") -> None:
        self.transition = transition
        self.status = status
        allowed = ", ".join(sorted(TRANSITIONS[transition].sources))
        what = f"booking {key} is" if key else "the booking is"
        super().__init__(f"cannot {transition}: {what} {status}, not one of {allowed}")


class NotEndedError(IllegalTransition):
    """The booking's appointment has not ended yet: it is not billable before it has."""

    def __init__(self, transition: str, booking: Booking) -> None:
        super().__init__(transition, booking.status, booking.key)
        self.args = (f"cannot {transition}: the appointment of booking {booking.key} has not ended yet",)


NOT_ENDED_REASON = "its appointment has not ended yet; it can be selected once it has"
"""Why a selection skips a booking whose appointment lies (partly) in the future."""


class _Transition:
    """From which states a transition may start and where it leads (None: the state is kept)."""

    def __init__(self, sources: frozenset[BookingStatus], target: BookingStatus | None) -> None:
        self.sources = sources
        self.target = target


TRANSITIONS: Mapping[str, _Transition] = MappingProxyType(
    {
        # HTTP selection: a person names bookings by key (Failed ones may be retried that way).
        "claim": _Transition(frozenset({UNBILLED, FAILED}), QUEUED),
        # A worker takes the booking; Invoicing again when a redelivery takes a claim over.
        "start_invoicing": _Transition(frozenset({QUEUED, INVOICING}), INVOICING),
        "record_invoice": _Transition(frozenset({INVOICING}), INVOICED),
        "fail": _Transition(frozenset({QUEUED, INVOICING}), FAILED),
        # A try that got no Business Central slot in time hands its claim to its message's copy.
        "hand_over_claim": _Transition(frozenset({INVOICING}), None),
        # A claim whose message could not be sent goes back to the state it was claimed from.
        "release_claim": _Transition(frozenset({QUEUED}), None),
        # Invoicing meets a claimed booking whose appointment has not ended: back to the list.
        "postpone": _Transition(frozenset({QUEUED}), UNBILLED),
        # The sync: Bookings' data refreshed on a booking at rest; gone -> Cancelled; back -> Unbilled.
        "refresh": _Transition(frozenset({UNBILLED, FAILED, EXCLUDED}), None),
        "cancel": _Transition(frozenset({UNBILLED}), CANCELLED),
        "revive": _Transition(frozenset({CANCELLED}), UNBILLED),
        # A person (POST /api/booking-updates), audited with who and when.
        "exclude": _Transition(frozenset({UNBILLED, FAILED}), EXCLUDED),
        "include": _Transition(frozenset({EXCLUDED}), UNBILLED),
        "mark_invoiced": _Transition(frozenset({UNBILLED, FAILED}), INVOICED),
        # ... unless the failed attempt's POST did create a draft (its answer lost): that is adopted.
        "adopt_invoice": _Transition(frozenset({FAILED}), INVOICED),
        # reconcile_invoices: the app's draft is gone -> billable again; or its status followed.
        "reopen": _Transition(frozenset({INVOICED}), UNBILLED),
        "follow_invoice": _Transition(frozenset({INVOICED}), None),
        # Retention deletes the row (no target state); Invoiced only once final or manual.
        "purge": _Transition(frozenset({INVOICED, CANCELLED, EXCLUDED}), None),
    }
)

FILTER_SELECTABLE = UNBILLED
"""The one state `{"all": true}` selects: a filter never re-selects failures by accident."""

IN_FLIGHT = TRANSITIONS["fail"].sources
"""States owned by a queue message: recovery re-enqueues them when they stay too long."""


def allows(transition: str, status: BookingStatus) -> bool:
    return status in TRANSITIONS[transition].sources


def next_status(transition: str, status: BookingStatus, key: str = "") -> BookingStatus:
    """The state `transition` leads to from `status`, or `IllegalTransition`."""
    rule = TRANSITIONS[transition]
    if status not in rule.sources:
        raise IllegalTransition(transition, status, key)
    return rule.target if rule.target is not None else status


# -- questions -------------------------------------------------------------------------------------


def selectable_by_key(status: BookingStatus) -> bool:
    """May a person select this booking for invoicing by naming its key?"""
    return allows("claim", status)


def has_ended(booking: Booking, now: datetime) -> bool:
    """Is the booking's appointment over (its end before `now`)? Only then is it billable: the
    sync's rule for a completed appointment, applied again where a booking is selected or invoiced,
    because an Unbilled booking's appointment may since have been moved into the future."""
    return booking.end < now


def lists_only_ended(status: BookingStatus) -> bool:
    """Does the list (and `{"all": true}`) of this state show only bookings whose appointment has
    ended? The Unbilled list is what can be billed now."""
    return status == FILTER_SELECTABLE


def selectable_by_filter(status: BookingStatus) -> bool:
    """Does `{"all": true}` select a booking in this state?"""
    return status == FILTER_SELECTABLE and allows("claim", status)


def may_start_invoicing(status: BookingStatus) -> bool:
    """Does a queue message for this booking still have work to do?"""
    return allows("start_invoicing", status)


def holds_claim(booking: Booking, delivery_id: str | None) -> bool:
    """Is the booking's Invoicing claim held by the queue message `delivery_id`?"""
    return delivery_id is not None and booking.claimed_by == delivery_id


def may_take_over(booking: Booking, delivery_id: str | None, now: datetime, lease: timedelta) -> bool:
    """May the message `delivery_id` take this booking's Invoicing claim over? A claim is its own if
    this very message made it (a redelivery: its previous try is over); anyone else's holds until
    its lease ends, so two workers never POST the same invoice at once."""
    if holds_claim(booking, delivery_id):
        return True
    changed = booking.status_changed_at
    return changed is None or now - changed >= lease


def sync_may_refresh(status: BookingStatus) -> bool:
    """May the sync write Bookings' data onto this booking (keeping its state)?"""
    return allows("refresh", status)


def sync_may_cancel(status: BookingStatus) -> bool:
    return allows("cancel", status)


def sync_may_revive(status: BookingStatus) -> bool:
    return allows("revive", status)


def may_purge(booking: Booking) -> bool:
    """May retention delete this booking (once its appointment is old enough)?"""
    if not allows("purge", booking.status):
        return False
    if booking.status is not INVOICED:
        return True
    return booking.source is InvoiceSource.MANUAL or booking.invoice_status in FINAL_INVOICE_STATUSES


def purge(booking: Booking) -> Booking:
    """Retention's check before it deletes a booking: the booking, or `IllegalTransition`."""
    next_status("purge", booking.status, booking.key)
    if not may_purge(booking):
        raise IllegalTransition("purge", booking.status, booking.key)
    return booking


# -- transitions -----------------------------------------------------------------------------------


def _move(booking: Booking, transition: str, at: datetime, **changes: object) -> Booking:
    status = next_status(transition, booking.status, booking.key)
    return replace(booking, status=status, status_changed_at=at, **changes)  # type: ignore[arg-type]


def claim(booking: Booking, request_id: str, at: datetime, by: Actor | None = None) -> Booking:
    """Unbilled/Failed -> Queued under a request made `by` someone (audited on the booking); an
    earlier failure's error is cleared. A booking whose appointment has not ended is refused."""
    next_status("claim", booking.status, booking.key)
    if not has_ended(booking, at):
        raise NotEndedError("claim", booking)
    return _move(booking, "claim", at, request_id=request_id, error_code=None, error=None, updated_by=by)


def postpone(booking: Booking, at: datetime) -> Booking:
    """Queued -> Unbilled: invoicing met a booking whose appointment has not ended (moved into the
    future after it was claimed). It is back on the list once the appointment has ended."""
    if has_ended(booking, at):
        raise IllegalTransition("postpone", booking.status, booking.key)
    note = f"Not invoiced: the appointment has not ended yet (it ends {booking.end.isoformat()})."
    return _move(booking, "postpone", at, request_id=None, note=note)


def start_invoicing(booking: Booking, delivery_id: str | None, at: datetime) -> Booking:
    """Queued/Invoicing -> Invoicing, held by one queue message; counts the attempt (never reset)."""
    return _move(
        booking,
        "start_invoicing",
        at,
        error_code=None,
        error=None,
        invoice_attempts=booking.invoice_attempts + 1,
        claimed_by=delivery_id,
    )


def hand_over_claim(booking: Booking, delivery_id: str) -> Booking:
    """Invoicing, state kept: the claim now held by the message `delivery_id` (a fresh copy of the
    message that held it), which takes it over at once like a redelivery would."""
    next_status("hand_over_claim", booking.status, booking.key)
    return replace(booking, claimed_by=delivery_id)


def record_invoice(
    booking: Booking, invoice_id: str, invoice_number: str, at: datetime, invoice_status: str = "Draft"
) -> Booking:
    return _move(booking, "record_invoice", at, **_app_invoice(invoice_id, invoice_number, invoice_status))


def _app_invoice(invoice_id: str, number: str, status: str) -> dict[str, object]:
    """The fields of a booking billed by an invoice this app created (its error cleared)."""
    return {
        "invoice_id": invoice_id,
        "invoice_number": number,
        "invoice_status": status or "Draft",
        "invoice_source": InvoiceSource.APP,
        "error_code": None,
        "error": None,
    }


def fail(booking: Booking, error_code: str, error: str, at: datetime) -> Booking:
    return _move(booking, "fail", at, error_code=error_code, error=error)


def release_claim(claimed: Booking, previous: Booking) -> Booking:
    """Undo a claim: the booking as it was before it was claimed (same state, request and error)."""
    next_status("release_claim", claimed.status, claimed.key)
    if not selectable_by_key(previous.status):
        raise IllegalTransition("claim", previous.status, previous.key)
    return replace(
        claimed,
        status=previous.status,
        request_id=previous.request_id,
        error_code=previous.error_code,
        error=previous.error,
        status_changed_at=previous.status_changed_at,
        updated_by=previous.updated_by,
    )


def refresh(booking: Booking, fresh: Booking) -> Booking:
    """Bookings' current data on a booking at rest; its state, invoice fields and error are kept."""
    next_status("refresh", booking.status, booking.key)
    return replace(booking, **descriptive_fields(fresh))


def cancel(booking: Booking, at: datetime) -> Booking:
    return _move(booking, "cancel", at)


def revive(booking: Booking, fresh: Booking, at: datetime) -> Booking:
    """A Cancelled booking that exists again: Unbilled with Bookings' current data."""
    return _move(booking, "revive", at, **descriptive_fields(fresh))


DESCRIPTIVE_FIELDS = (
    "appointment_id",
    "service_id",
    "service_name",
    "has_customer",
    "group_appointment",
    "staff_member_ids",
    "start",
    "end",
    "price",
    "price_type",
    "customer_name",
    "customer_email",
    "customer_phone",
)
"""The fields that come from Bookings; everything else belongs to invoicing."""


def descriptive_fields(booking: Booking) -> dict[str, object]:
    return {name: getattr(booking, name) for name in DESCRIPTIVE_FIELDS}


# -- manual outcomes (a person) ----------------------------------------------------------------------


def exclude(booking: Booking, by: Actor | None, note: str | None, at: datetime) -> Booking:
    """Unbilled/Failed -> Excluded: not to be billed; an earlier failure's error is cleared."""
    return _move(booking, "exclude", at, error_code=None, error=None, note=note, updated_by=by)


def include(booking: Booking, by: Actor | None, note: str | None, at: datetime) -> Booking:
    """Excluded -> Unbilled: billable again."""
    return _move(booking, "include", at, note=note, updated_by=by)


def mark_invoiced(
    booking: Booking, reference: str | None, by: Actor | None, note: str | None, at: datetime
) -> Booking:
    """Unbilled/Failed -> Invoiced, billed some other way: no Business Central invoice of ours."""
    return _move(
        booking,
        "mark_invoiced",
        at,
        invoice_id=None,
        invoice_number=reference,
        invoice_status=None,
        invoice_source=InvoiceSource.MANUAL,
        error_code=None,
        error=None,
        note=note,
        updated_by=by,
    )


def adopt_invoice(
    booking: Booking, invoice_id: str, number: str, status: str, by: Actor | None, at: datetime
) -> Booking:
    """Failed -> Invoiced with the app's invoice found in Business Central: a POST whose answer was
    lost (BC_UNAVAILABLE) did create it, so the booking is billed; never Excluded beside a live draft."""
    return _move(
        booking,
        "adopt_invoice",
        at,
        **_app_invoice(invoice_id, number, status),
        invoice_posted=False,
        note=(
            f"Business Central already has invoice {number} for this booking (an earlier attempt "
            "created it; its answer was lost): the booking is Invoiced with it."
        ),
        updated_by=by,
    )


MANUAL_ACTIONS = {"exclude": "exclude", "include": "include", "markInvoiced": "mark_invoiced"}
"""The API's action names and the transitions they stand for."""


# -- reconcile_invoices ----------------------------------------------------------------------------


def _require_app_invoice(booking: Booking, transition: str) -> None:
    next_status(transition, booking.status, booking.key)
    if booking.source is not InvoiceSource.APP or not booking.invoice_id:
        raise IllegalTransition(transition, booking.status, booking.key)


def reopen(booking: Booking, note: str, at: datetime) -> Booking:
    """Invoiced -> Unbilled: the app's draft was deleted in Business Central. The attempt count is
    kept, so the next invoicing looks the invoice up by externalDocumentNumber before creating one."""
    _require_app_invoice(booking, "reopen")
    return _move(
        booking,
        "reopen",
        at,
        invoice_id=None,
        invoice_number=None,
        invoice_status=None,
        invoice_source=None,
        invoice_posted=False,
        request_id=None,
        note=note,
    )


def follow_invoice(
    booking: Booking, invoice_id: str, number: str, status: str, posted: bool = False
) -> Booking:
    """Business Central's current id, number (the posted one once posted) and status; state kept.
    Once seen posted, an invoice stays posted."""
    _require_app_invoice(booking, "follow_invoice")
    return replace(
        booking,
        invoice_id=invoice_id,
        invoice_number=number or booking.invoice_number,
        invoice_status=status,
        invoice_posted=booking.invoice_posted or posted,
    )
