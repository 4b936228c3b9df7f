"""The sync's decision table (`decide`, `decide_missing`), `apply` and `fingerprint`, case by case."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.lifecycle import descriptive_fields
from shared.domain.models import BookingStatus, Customer
from shared.domain.sync_decisions import (
    Decision,
    SyncOutcome,
    Write,
    _write,
    apply,
    booking_from_appointment,
    decide,
    decide_missing,
    fingerprint,
    last_changed,
)
from tests.unit.builders import STAMPED, make_appointment, make_booking

EVIDENCE = STAMPED + timedelta(hours=1)  # read after the stored booking last changed
BEFORE = STAMPED - timedelta(hours=1)  # read before it last changed (a slow, overlapping run)
AT = STAMPED + timedelta(hours=2)

APPOINTMENT = make_appointment()
CHANGED = make_appointment(price=12.0)

CREATE = Decision(SyncOutcome.CREATED, Write.CREATE)
REFRESH = Decision(SyncOutcome.UPDATED, Write.REFRESH)
REVIVE = Decision(SyncOutcome.REVIVED, Write.REVIVE)
CANCEL = Decision(SyncOutcome.CANCELLED, Write.CANCEL)
UNCHANGED = Decision(SyncOutcome.UNCHANGED)
LOCKED = Decision(SyncOutcome.LOCKED)
STALE = Decision(SyncOutcome.STALE)


def test_nothing_stored_is_created_whatever_the_evidence_age() -> None:
    assert decide(APPOINTMENT, None, EVIDENCE, check_age=False) == CREATE
    assert decide(APPOINTMENT, None, BEFORE, check_age=True) == CREATE


# Each table names every state (checked by `test_every_table_covers_every_state`), so a new state
# cannot slip past the sync without a decision written down for it.
FRESH_EVIDENCE: dict[BookingStatus, tuple[Decision, Decision]] = {  # (same data, changed data)
    BookingStatus.UNBILLED: (UNCHANGED, REFRESH),
    BookingStatus.FAILED: (UNCHANGED, REFRESH),
    BookingStatus.EXCLUDED: (UNCHANGED, REFRESH),  # a person's decision; Bookings' data still follows
    BookingStatus.CANCELLED: (REVIVE, REVIVE),  # seen again: it exists, whatever its data
    BookingStatus.QUEUED: (LOCKED, LOCKED),
    BookingStatus.INVOICING: (LOCKED, LOCKED),
    BookingStatus.INVOICED: (LOCKED, LOCKED),
}
STALE_EVIDENCE: dict[BookingStatus, tuple[Decision, Decision]] = {  # (age unchecked, age checked)
    BookingStatus.UNBILLED: (REFRESH, STALE),
    BookingStatus.FAILED: (REFRESH, STALE),
    BookingStatus.EXCLUDED: (REFRESH, STALE),
    BookingStatus.CANCELLED: (REVIVE, STALE),
    BookingStatus.QUEUED: (LOCKED, LOCKED),  # locked is decided before age
    BookingStatus.INVOICING: (LOCKED, LOCKED),
    BookingStatus.INVOICED: (LOCKED, LOCKED),
}
MISSING: dict[BookingStatus, Decision] = {  # absent from a fully-read window
    BookingStatus.UNBILLED: CANCEL,
    BookingStatus.CANCELLED: UNCHANGED,
    BookingStatus.QUEUED: LOCKED,
    BookingStatus.INVOICING: LOCKED,
    BookingStatus.INVOICED: LOCKED,
    BookingStatus.FAILED: LOCKED,
    BookingStatus.EXCLUDED: LOCKED,  # a person excluded it: its absence does not cancel it
}


@pytest.mark.parametrize(
    "table", [FRESH_EVIDENCE, STALE_EVIDENCE, MISSING], ids=["fresh", "stale", "missing"]
)
def test_every_table_covers_every_state(table: dict[BookingStatus, object]) -> None:
    assert set(table) == set(BookingStatus)


@pytest.mark.parametrize(("status", "same", "changed"), [(s, *row) for s, row in FRESH_EVIDENCE.items()])
def test_each_state_with_fresh_evidence(status: BookingStatus, same: Decision, changed: Decision) -> None:
    stored = make_booking(status=status)
    for check_age in (False, True):
        assert decide(APPOINTMENT, stored, EVIDENCE, check_age=check_age) == same
        assert decide(CHANGED, stored, EVIDENCE, check_age=check_age) == changed


@pytest.mark.parametrize(("status", "unchecked", "checked"), [(s, *row) for s, row in STALE_EVIDENCE.items()])
def test_stale_evidence_counts_only_when_the_age_is_checked(
    status: BookingStatus, unchecked: Decision, checked: Decision
) -> None:
    stored = make_booking(status=status)
    assert decide(CHANGED, stored, BEFORE, check_age=False) == unchecked
    assert decide(CHANGED, stored, BEFORE, check_age=True) == checked


def test_the_later_of_updated_and_status_changed_dates_the_stored_booking() -> None:
    moved = make_booking(
        updated_at=BEFORE - timedelta(days=1), status_changed_at=EVIDENCE + timedelta(minutes=1)
    )
    assert last_changed(moved) == EVIDENCE + timedelta(minutes=1)
    assert decide(CHANGED, moved, EVIDENCE, check_age=True) == STALE
    undated = make_booking(updated_at=None, status_changed_at=None)
    assert last_changed(undated) is None
    assert decide(CHANGED, undated, BEFORE, check_age=True) == REFRESH  # no date: nothing says it is newer


def test_evidence_equal_to_the_last_change_is_not_stale() -> None:
    assert decide(CHANGED, make_booking(), STAMPED, check_age=True) == REFRESH


@pytest.mark.parametrize(("status", "expected"), list(MISSING.items()))
def test_missing_from_a_fully_read_window(status: BookingStatus, expected: Decision) -> None:
    assert decide_missing(make_booking(status=status), EVIDENCE) == expected


def test_missing_but_changed_after_the_read_began_is_stale() -> None:
    assert decide_missing(make_booking(), BEFORE) == STALE
    assert decide_missing(make_booking(status=BookingStatus.QUEUED), BEFORE) == LOCKED


def test_apply_create_builds_an_unbilled_booking_stamped_at() -> None:
    created = apply(CREATE, APPOINTMENT, None, AT)
    assert created.key == APPOINTMENT.key
    assert (created.status, created.updated_at, created.status_changed_at) == (BookingStatus.UNBILLED, AT, AT)
    assert (created.customer_email, created.has_customer) == ("customer1@example.com", True)
    nobody = apply(CREATE, make_appointment(customer=None), None, AT)
    assert (nobody.has_customer, nobody.customer_name, nobody.customer_email) == (False, None, None)


def test_apply_refresh_keeps_the_state_and_invoice_fields() -> None:
    stored = make_booking(status=BookingStatus.FAILED, error_code="NO_CUSTOMER", error="x", etag="e1")
    refreshed = apply(REFRESH, CHANGED, stored, AT)
    assert (refreshed.status, refreshed.error_code, refreshed.price) == (
        BookingStatus.FAILED,
        "NO_CUSTOMER",
        12.0,
    )
    assert refreshed.status_changed_at == stored.status_changed_at
    assert refreshed.etag == "e1"  # written conditionally on what was read


def test_apply_revive_and_cancel_move_the_state() -> None:
    revived = apply(REVIVE, CHANGED, make_booking(status=BookingStatus.CANCELLED), AT)
    assert (revived.status, revived.status_changed_at, revived.price) == (BookingStatus.UNBILLED, AT, 12.0)
    cancelled = apply(CANCEL, None, make_booking(), AT)
    assert (cancelled.status, cancelled.status_changed_at) == (BookingStatus.CANCELLED, AT)


def test_fingerprint_equal_for_the_same_descriptive_data() -> None:
    stored = make_booking(status=BookingStatus.FAILED, error="x", invoice_number="S-1", request_id="r")
    assert fingerprint(stored) == fingerprint(booking_from_appointment(APPOINTMENT))
    # Storage may hand back naive UTC and integral prices: the same data, the same digest.
    naive = replace(stored, start=stored.start.replace(tzinfo=None), price=10)
    assert fingerprint(naive) == fingerprint(stored)
    assert fingerprint(replace(stored, customer_phone="")) == fingerprint(stored)


@pytest.mark.parametrize(
    "changes",
    [
        {"price": 10.01},
        {"service_name": "Other"},
        {"customer_email": "other@example.com"},
        {"staff_member_ids": ("staff-1", "staff-2")},
        {"start": datetime(2026, 1, 20, 10, 1, tzinfo=UTC)},
        {"has_customer": False},
        {"customer": Customer(name="Customer 1", email="customer1@example.com", phone="+31 6")},
    ],
)
def test_fingerprint_changes_with_any_descriptive_field(changes: dict[str, object]) -> None:
    before = booking_from_appointment(APPOINTMENT)
    if "customer" in changes:
        after = booking_from_appointment(make_appointment(customer=changes["customer"]))
    else:
        after = replace(before, **changes)  # type: ignore[arg-type]
    assert fingerprint(after) != fingerprint(before)
    # A stored booking that differs from the appointment in that field is refreshed.
    assert decide(
        APPOINTMENT, replace(make_booking(), **descriptive_fields(after)), EVIDENCE, check_age=False
    ) == (REFRESH)


def test_every_write_has_its_outcome_and_every_outcome_a_decision_here() -> None:
    writes = {decision.write: decision.outcome for decision in (CREATE, REFRESH, REVIVE, CANCEL)}
    assert set(writes) == set(Write)
    assert set(writes.values()) | {d.outcome for d in (UNCHANGED, LOCKED, STALE)} == set(SyncOutcome) - {
        SyncOutcome.CONFLICT
    }  # conflict is the store's, not a decision
    for kind, outcome in writes.items():
        assert _write(kind) == Decision(outcome, kind)
