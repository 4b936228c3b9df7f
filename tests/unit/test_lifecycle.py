"""The booking lifecycle: every (state, transition) pair, what each transition changes, the questions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain import lifecycle
from shared.domain.lifecycle import IllegalTransition
from shared.domain.models import Actor, Booking, BookingStatus, InvoiceSource
from tests.unit.builders import make_booking

UNBILLED = BookingStatus.UNBILLED
QUEUED = BookingStatus.QUEUED
INVOICING = BookingStatus.INVOICING
INVOICED = BookingStatus.INVOICED
FAILED = BookingStatus.FAILED
CANCELLED = BookingStatus.CANCELLED
EXCLUDED = BookingStatus.EXCLUDED
X = IllegalTransition

AT = datetime(2026, 2, 1, 10, 0, tzinfo=UTC)

# Written out by hand (not derived from lifecycle.TRANSITIONS), so a change to the table shows here.
# release_claim is computed against a booking claimed from Unbilled, so it leads back to Unbilled.
UN, QU, IG, IN, FA, CA, EX = UNBILLED, QUEUED, INVOICING, INVOICED, FAILED, CANCELLED, EXCLUDED
EXPECTED: dict[str, dict[BookingStatus, BookingStatus | type[IllegalTransition]]] = {
    "claim": {UN: QU, QU: X, IG: X, IN: X, FA: QU, CA: X, EX: X},
    "start_invoicing": {
        UN: X,
        QU: IG,
        IG: IG,
        IN: X,
        FA: X,
        CA: X,
        EX: X,
    },
    "record_invoice": {
        UN: X, QU: X, IG: IN, IN: X, FA: X, CA: X, EX: X
    },
    "fail": {UN: X, QU: FA, IG: FA, IN: X, FA: X, CA: X, EX: X},
    "hand_over_claim": {UN: X, QU: X, IG: IG, IN: X, FA: X, CA: X, EX: X},
    "release_claim": {
        UN: X, QU: UN, IG: X, IN: X, FA: X, CA: X, EX: X
    },
    # postpone is computed against a booking whose appointment ends after AT.
    "postpone": {UN: X, QU: UN, IG: X, IN: X, FA: X, CA: X, EX: X},
    "refresh": {
        UN: UN, QU: X, IG: X, IN: X, FA: FA, CA: X, EX: EX
    },
    "cancel": {UN: CA, QU: X, IG: X, IN: X, FA: X, CA: X, EX: X},
    "revive": {UN: X, QU: X, IG: X, IN: X, FA: X, CA: UN, EX: X},
    "exclude": {
        UN: EX, QU: X, IG: X, IN: X, FA: EX, CA: X, EX: X
    },
    "include": {UN: X, QU: X, IG: X, IN: X, FA: X, CA: X, EX: UN},
    "mark_invoiced": {
        UN: IN, QU: X, IG: X, IN: X, FA: IN, CA: X, EX: X
    },
    "adopt_invoice": {
        UN: X, QU: X, IG: X, IN: X, FA: IN, CA: X, EX: X
    },
    "reopen": {UN: X, QU: X, IG: X, IN: UN, FA: X, CA: X, EX: X},
    "follow_invoice": {
        UN: X, QU: X, IG: X, IN: IN, FA: X, CA: X, EX: X
    },
    # purge is computed against a booking whose invoice (if any) is Paid: final, so it may go.
    "purge": {
        UN: X, QU: X, IG: X, IN: IN, FA: X, CA: CA, EX: EX
    },
}  # fmt: skip

WHO = Actor("00000000-0000-0000-0000-0000000000aa", "Bea Bookkeeper")
FRESH = make_booking(service_name="Renamed service", price=12.5)


def _invoke(name: str, booking: Booking) -> Booking:
    calls: dict[str, Callable[[Booking], Booking]] = {
        "claim": lambda b: lifecycle.claim(b, "req-1", AT),
        "start_invoicing": lambda b: lifecycle.start_invoicing(b, "delivery-1", AT),
        "record_invoice": lambda b: lifecycle.record_invoice(b, "inv-id", "S-INV-1", AT),
        "fail": lambda b: lifecycle.fail(b, "BC_REJECTED", "refused", AT),
        "hand_over_claim": lambda b: lifecycle.hand_over_claim(b, "copy-1"),
        "release_claim": lambda b: lifecycle.release_claim(b, replace(b, status=UNBILLED)),
        "postpone": lambda b: lifecycle.postpone(replace(b, start=AT, end=AT + timedelta(hours=1)), AT),
        "refresh": lambda b: lifecycle.refresh(b, FRESH),
        "cancel": lambda b: lifecycle.cancel(b, AT),
        "revive": lambda b: lifecycle.revive(b, FRESH, AT),
        "exclude": lambda b: lifecycle.exclude(b, WHO, "no-show", AT),
        "include": lambda b: lifecycle.include(b, WHO, None, AT),
        "mark_invoiced": lambda b: lifecycle.mark_invoiced(b, "POS-17", WHO, None, AT),
        "adopt_invoice": lambda b: lifecycle.adopt_invoice(b, "inv-id", "S-INV-1", "Draft", WHO, AT),
        "reopen": lambda b: lifecycle.reopen(_app_invoiced(b), "draft gone", AT),
        "follow_invoice": lambda b: lifecycle.follow_invoice(_app_invoiced(b), "inv-id", "PS-INV-3", "Open"),
        "purge": lambda b: lifecycle.purge(replace(_app_invoiced(b), invoice_status="Paid")),
    }
    return calls[name](booking)


def _app_invoiced(booking: Booking) -> Booking:
    return replace(booking, invoice_id="inv-id", invoice_number="S-INV-1", invoice_source=InvoiceSource.APP)


def test_the_table_covers_every_state_and_every_transition() -> None:
    assert set(EXPECTED) == set(lifecycle.TRANSITIONS)
    for row in EXPECTED.values():
        assert set(row) == set(BookingStatus)


@pytest.mark.parametrize(
    ("transition", "status", "expected"),
    [(name, status, result) for name, row in EXPECTED.items() for status, result in row.items()],
    ids=lambda value: str(value) if not isinstance(value, type) else "illegal",
)
def test_every_state_and_transition_pair(
    transition: str, status: BookingStatus, expected: BookingStatus | type[IllegalTransition]
) -> None:
    booking = make_booking(status=status)
    if expected is IllegalTransition:
        with pytest.raises(IllegalTransition) as caught:
            _invoke(transition, booking)
        assert caught.value.transition == transition
        assert caught.value.status == status
        assert booking.key in str(caught.value)
        assert not lifecycle.allows(transition, status)
        with pytest.raises(IllegalTransition):
            lifecycle.next_status(transition, status)
    else:
        assert isinstance(expected, BookingStatus)
        assert _invoke(transition, booking).status == expected
        assert lifecycle.allows(transition, status)
    assert booking.status == status  # transitions are pure: the input is never changed


def test_a_booking_whose_appointment_has_not_ended_is_not_billable() -> None:
    # CONTRACT.md "Booking states": an Unbilled booking whose appointment is moved so that it has
    # not ended yet is not billable: no selection claims it, invoicing puts a claimed one back.
    moved = make_booking(status=UNBILLED, start=AT - timedelta(minutes=30), end=AT + timedelta(minutes=30))
    assert not lifecycle.has_ended(moved, AT) and lifecycle.has_ended(moved, AT + timedelta(hours=1))
    with pytest.raises(lifecycle.NotEndedError, match="has not ended"):
        lifecycle.claim(moved, "req-1", AT)
    assert lifecycle.claim(moved, "req-1", AT + timedelta(hours=1)).status == QUEUED
    queued = replace(moved, status=QUEUED, request_id="req-1")
    postponed = lifecycle.postpone(queued, AT)
    assert (postponed.status, postponed.request_id) == (UNBILLED, None)
    assert postponed.note and "not ended" in postponed.note
    with pytest.raises(IllegalTransition):
        lifecycle.postpone(queued, AT + timedelta(hours=1))  # ended meanwhile: invoice it
    assert lifecycle.lists_only_ended(UNBILLED) and not lifecycle.lists_only_ended(FAILED)


def test_next_status_keeps_the_state_for_transitions_without_a_target() -> None:
    assert lifecycle.next_status("refresh", FAILED) == FAILED
    assert lifecycle.next_status("refresh", UNBILLED) == UNBILLED
    assert lifecycle.next_status("release_claim", QUEUED) == QUEUED


def test_claim_sets_the_request_and_clears_an_earlier_failure() -> None:
    failed = make_booking(
        status=FAILED, error_code="BC_REJECTED", error="nope", request_id="old", invoice_attempts=2
    )
    claimed = lifecycle.claim(failed, "req-2", AT)
    assert (claimed.status, claimed.request_id, claimed.error_code, claimed.error) == (
        QUEUED,
        "req-2",
        None,
        None,
    )
    assert claimed.status_changed_at == AT
    assert claimed.invoice_attempts == 2  # never reset: an invoice may exist from the earlier try


def test_start_invoicing_counts_attempts_and_records_the_delivery() -> None:
    queued = make_booking(status=QUEUED, error_code="X", error="stale")
    first = lifecycle.start_invoicing(queued, "delivery-1", AT)
    assert (first.status, first.invoice_attempts, first.claimed_by) == (INVOICING, 1, "delivery-1")
    assert (first.error_code, first.error, first.status_changed_at) == (None, None, AT)
    later = AT + timedelta(minutes=11)
    second = lifecycle.start_invoicing(first, "delivery-2", later)
    assert (second.invoice_attempts, second.claimed_by, second.status_changed_at) == (2, "delivery-2", later)


def test_a_claim_handed_over_is_taken_over_at_once_by_the_copy_only() -> None:
    lease = timedelta(minutes=10)
    held = lifecycle.start_invoicing(make_booking(status=QUEUED), "orig", AT)
    handed = lifecycle.hand_over_claim(held, "copy-1")
    assert (handed.status, handed.claimed_by, handed.status_changed_at) == (INVOICING, "copy-1", AT)
    assert lifecycle.holds_claim(handed, "copy-1") and not lifecycle.holds_claim(handed, "orig")
    assert lifecycle.may_take_over(handed, "copy-1", AT, lease)
    assert not lifecycle.may_take_over(handed, "orig", AT + lease - timedelta(seconds=1), lease)
    assert lifecycle.may_take_over(handed, "orig", AT + lease, lease)  # a lease past its end
    assert not lifecycle.holds_claim(replace(handed, claimed_by=None), None)


def test_record_invoice_sets_the_invoice_and_clears_errors() -> None:
    invoicing = make_booking(status=INVOICING, error_code="X", error="y", request_id="req-1")
    invoiced = lifecycle.record_invoice(invoicing, "inv-id", "S-INV-7", AT)
    assert (invoiced.invoice_id, invoiced.invoice_number) == ("inv-id", "S-INV-7")
    assert (invoiced.error_code, invoiced.error, invoiced.status_changed_at) == (None, None, AT)
    assert invoiced.request_id == "req-1"


def test_fail_records_code_and_message_and_keeps_the_request() -> None:
    failed = lifecycle.fail(make_booking(status=INVOICING, request_id="req-1"), "NO_CUSTOMER", "none", AT)
    assert (failed.status, failed.error_code, failed.error, failed.request_id) == (
        FAILED,
        "NO_CUSTOMER",
        "none",
        "req-1",
    )
    assert failed.status_changed_at == AT


def test_release_claim_restores_the_previous_state_request_and_error() -> None:
    earlier = datetime(2026, 1, 30, tzinfo=UTC)
    previous = make_booking(
        status=FAILED,
        request_id="req-old",
        error_code="BC_REJECTED",
        error="refused",
        status_changed_at=earlier,
    )
    previous = replace(previous, etag="etag-before")
    claimed = replace(lifecycle.claim(previous, "req-new", AT), etag="etag-claimed")
    released = lifecycle.release_claim(claimed, previous)
    assert (released.status, released.request_id, released.error_code, released.error) == (
        FAILED,
        "req-old",
        "BC_REJECTED",
        "refused",
    )
    assert released.status_changed_at == earlier
    assert released.etag == "etag-claimed"  # saved conditionally on the claim it undoes


def test_release_claim_refuses_a_previous_state_that_could_never_have_been_claimed() -> None:
    claimed = make_booking(status=QUEUED)
    with pytest.raises(IllegalTransition) as caught:
        lifecycle.release_claim(claimed, make_booking(status=INVOICED))
    assert caught.value.transition == "claim"


def test_refresh_takes_bookings_data_and_keeps_state_invoice_and_error() -> None:
    stored = make_booking(
        status=FAILED,
        error_code="SERVICE_NOT_MAPPED",
        error="no item",
        request_id="req-1",
        invoice_attempts=1,
        invoice_id="inv",
        invoice_number="S-1",
    )
    refreshed = lifecycle.refresh(stored, FRESH)
    assert (refreshed.service_name, refreshed.price) == ("Renamed service", 12.5)
    for name in (
        "status",
        "error_code",
        "error",
        "request_id",
        "invoice_attempts",
        "invoice_id",
        "invoice_number",
        "status_changed_at",
        "key",
    ):
        assert getattr(refreshed, name) == getattr(stored, name), name


def test_cancel_and_revive_stamp_the_state_change() -> None:
    cancelled = lifecycle.cancel(make_booking(), AT)
    assert (cancelled.status, cancelled.status_changed_at) == (CANCELLED, AT)
    later = AT + timedelta(hours=1)
    revived = lifecycle.revive(cancelled, FRESH, later)
    assert (revived.status, revived.status_changed_at) == (UNBILLED, later)
    assert (revived.service_name, revived.price) == ("Renamed service", 12.5)


def test_descriptive_fields_are_the_ones_bookings_owns() -> None:
    fields = lifecycle.descriptive_fields(FRESH)
    assert fields["service_name"] == "Renamed service"
    assert not {"status", "invoice_id", "error", "request_id", "etag"} & set(fields)


T, F = True, False
QUESTIONS = (
    "selectable_by_key",
    "selectable_by_filter",
    "sync_may_refresh",
    "sync_may_cancel",
    "sync_may_revive",
    "may_start_invoicing",
)
ANSWERS: dict[BookingStatus, tuple[bool, ...]] = {
    UNBILLED: (T, T, T, T, F, F),
    QUEUED: (F, F, F, F, F, T),
    INVOICING: (F, F, F, F, F, T),
    INVOICED: (F, F, F, F, F, F),
    FAILED: (T, F, T, F, F, F),
    CANCELLED: (F, F, F, F, T, F),
    EXCLUDED: (F, F, T, F, F, F),
}


@pytest.mark.parametrize("status", list(BookingStatus))
def test_the_questions_each_state_answers(status: BookingStatus) -> None:
    got = tuple(getattr(lifecycle, question)(status) for question in QUESTIONS)
    assert dict(zip(QUESTIONS, got, strict=True)) == dict(zip(QUESTIONS, ANSWERS[status], strict=True))


def test_in_flight_is_what_recovery_scans_and_filters_select_unbilled_only() -> None:
    assert frozenset({QUEUED, INVOICING}) == lifecycle.IN_FLIGHT
    assert lifecycle.FILTER_SELECTABLE == UNBILLED


def test_a_claim_records_who_asked_and_undoing_it_restores_the_previous_author() -> None:
    before = make_booking(status=UNBILLED, updated_by=Actor("sync-id", "an earlier change"))
    by = Actor("oid-1", "Ada Bookkeeper")
    claimed = lifecycle.claim(before, "req-9", AT, by)
    assert claimed.updated_by == by
    assert lifecycle.release_claim(claimed, before).updated_by == Actor("sync-id", "an earlier change")
