"""The sync's decision table: what one appointment (or one absence) means for its stored booking.

Pure: it answers with a `Decision` and never writes. The store applies it with a conditional write
(create, or replace/merge with the ETag read), so a booking that invoicing or a person changed
meanwhile is re-read and decided again, never overwritten. Which states the sync may touch comes
from `lifecycle`; this module only adds the sync's own evidence rules:

- no stored booking: create it (Unbilled);
- a state the sync may not touch (in invoicing's hands): leave it (`locked`);
- stored data newer than our evidence (a slow, overlapping run): theirs wins (`stale`);
- Cancelled and seen again: revive it (the cancellation was only inferred from its absence);
- same descriptive data: nothing to write (`unchanged`, costs no table write);
- otherwise refresh the descriptive fields, keeping state, invoice fields and error.

An Unbilled booking missing from a fully-read window is cancelled by the same rules.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from shared.domain import lifecycle
from shared.domain.models import Appointment, Booking, BookingStatus
from shared.domain.moments import iso_utc


class SyncOutcome(StrEnum):
    """What happened to one booking in one sync."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    LOCKED = "locked"  # in invoicing's hands: left alone
    REVIVED = "revived"  # Cancelled -> Unbilled, it exists again
    CANCELLED = "cancelled"
    STALE = "stale"  # someone wrote newer data after our evidence was read: theirs wins
    CONFLICT = "conflict"  # still contended after the store's retries: left for the next run


class Write(StrEnum):
    CREATE = "create"
    REFRESH = "refresh"
    REVIVE = "revive"
    CANCEL = "cancel"


@dataclass(frozen=True)
class Decision:
    outcome: SyncOutcome
    write: Write | None = None  # None: nothing to write


_WRITE_OUTCOME = {
    Write.CREATE: SyncOutcome.CREATED,
    Write.REFRESH: SyncOutcome.UPDATED,
    Write.REVIVE: SyncOutcome.REVIVED,
    Write.CANCEL: SyncOutcome.CANCELLED,
}


def _write(kind: Write) -> Decision:
    return Decision(_WRITE_OUTCOME[kind], kind)


def _newer_than(stored: Booking, evidence_at: datetime) -> bool:
    changed = last_changed(stored)
    return changed is not None and changed > evidence_at


def decide(
    appointment: Appointment, stored: Booking | None, evidence_at: datetime, *, check_age: bool
) -> Decision:
    """The write an appointment needs given its stored booking, or why none is needed.

    `check_age` drops the write when the stored booking changed after the evidence was read
    (needed after a re-read; a booking from the run's own snapshot predates the evidence).
    """
    if stored is None:
        return _write(Write.CREATE)
    status = stored.status
    if not (lifecycle.sync_may_refresh(status) or lifecycle.sync_may_revive(status)):
        return Decision(SyncOutcome.LOCKED)
    if check_age and _newer_than(stored, evidence_at):
        return Decision(SyncOutcome.STALE)
    if lifecycle.sync_may_revive(status):
        return _write(Write.REVIVE)
    if fingerprint(stored) == fingerprint(booking_from_appointment(appointment)):
        return Decision(SyncOutcome.UNCHANGED)
    return _write(Write.REFRESH)


def decide_missing(stored: Booking, evidence_at: datetime) -> Decision:
    """A stored booking that a fully-read window did not return (`evidence_at`: when reading began)."""
    if not lifecycle.sync_may_cancel(stored.status):
        already = stored.status == lifecycle.TRANSITIONS["cancel"].target
        return Decision(SyncOutcome.UNCHANGED if already else SyncOutcome.LOCKED)
    if _newer_than(stored, evidence_at):
        return Decision(SyncOutcome.STALE)
    return _write(Write.CANCEL)


def apply(
    decision: Decision, appointment: Appointment | None, stored: Booking | None, at: datetime
) -> Booking:
    """The booking a write decision produces (through the lifecycle's transitions)."""
    if decision.write is Write.CREATE:
        assert appointment is not None
        return booking_from_appointment(appointment, at)
    assert stored is not None
    if decision.write is Write.CANCEL:
        return lifecycle.cancel(stored, at)
    assert appointment is not None
    fresh = booking_from_appointment(appointment)
    if decision.write is Write.REVIVE:
        return lifecycle.revive(stored, fresh, at)
    return lifecycle.refresh(stored, fresh)


def booking_from_appointment(appointment: Appointment, at: datetime | None = None) -> Booking:
    """A new, Unbilled booking for an appointment. No customer -> `has_customer=False`."""
    customer = appointment.customer
    return Booking(
        key=appointment.key,
        business_id=appointment.business_id,
        appointment_id=appointment.id,
        service_id=appointment.service_id,
        service_name=appointment.service_name,
        customer_name=customer.name if customer else None,
        customer_email=customer.email if customer else None,
        customer_phone=customer.phone if customer else None,
        staff_member_ids=appointment.staff_member_ids,
        start=appointment.start,
        end=appointment.end,
        price=appointment.price,
        price_type=appointment.price_type,
        status=BookingStatus.UNBILLED,
        has_customer=customer is not None,
        group_appointment=appointment.group,
        updated_at=at,
        status_changed_at=at,
    )


def last_changed(booking: Booking) -> datetime | None:
    moments = [m for m in (booking.updated_at, booking.status_changed_at) if m is not None]
    return max(moments) if moments else None


def _normal(value: object) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        return iso_utc(value if value.tzinfo else value.replace(tzinfo=UTC)) or ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(float(value))
    if isinstance(value, tuple | list):
        return "\x1d".join(str(item) for item in value)
    return str(getattr(value, "value", value))


def fingerprint(booking: Booking) -> str:
    """A digest of the descriptive fields: equal digests mean the sync has nothing to refresh."""
    digest = hashlib.blake2b(digest_size=16)
    for name, value in lifecycle.descriptive_fields(booking).items():
        digest.update(name.encode())
        digest.update(b"\x1f")
        digest.update(_normal(value).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()
