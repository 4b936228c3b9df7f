"""`sync_bookings` through the real stack: devhost admin run -> MSAL + Graph (sandbox) -> Azurite.

Each test runs the timer function the way an admin would (`POST /admin/functions/sync_bookings`),
waits for the host to report the run finished, and asserts what the tables hold against what the
sandbox's Graph holds. The product and the sandbox share one manual clock.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from shared.adapters.graph_bookings import parse_graph_datetime
from shared.adapters.sync_state import ROW, SYNC_STATE_TABLE
from shared.domain.models import Booking, BookingStatus, booking_key
from tests.e2e.stack import E2E_NOW, Stack
from tests.helpers import force_state

pytestmark = pytest.mark.e2e

LOOKBACK = timedelta(days=30)
CALENDAR_VIEW = "GET /solutions/bookingBusinesses/{businessId}/calendarView"


def contract_keys(business_id: str, appointment: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    """CONTRACT.md's booking keys of one Graph appointment, each with the customer it bills: one
    per attendee of a group appointment (`maximumAttendeesCount` > 1 or several `customers`), else
    the appointment's."""
    customers = appointment["customers"]
    if not is_group_document(appointment) or not customers:
        return {booking_key(business_id, appointment["id"]): customers[0] if customers else None}
    return {
        booking_key(business_id, appointment["id"], c["customerId"] or (c["emailAddress"] or "").lower()): c
        for c in customers
    }


def is_group_document(appointment: dict[str, Any]) -> bool:
    return (appointment.get("maximumAttendeesCount") or 1) > 1 or len(appointment["customers"]) > 1


def completed_in_window(
    stack: Stack, business_id: str, now: datetime, start: datetime
) -> dict[str, tuple[dict[str, Any], dict[str, Any] | None]]:
    """Graph's appointments that overlap [start, now) and have ended, by booking key, with the
    customer each booking bills."""
    result = {}
    for appointment in stack.graph_appointments(business_id):
        begins = parse_graph_datetime(appointment["startDateTime"], "start")
        ends = parse_graph_datetime(appointment["endDateTime"], "end")
        if ends > start and begins < now and ends < now:
            for key, customer in contract_keys(business_id, appointment).items():
                result[key] = (appointment, customer)
    return result


def by_key(bookings: list[Booking]) -> dict[str, Booking]:
    return {booking.key: booking for booking in bookings}


def sync_state(stack: Stack, business_id: str) -> dict[str, Any] | None:
    table = stack.tables.get_table_client(SYNC_STATE_TABLE)
    entities = list(table.query_entities("PartitionKey eq @b", parameters={"b": business_id}))
    return dict(entities[0]) if entities else None


def claim(stack: Stack, booking: Booking, to: BookingStatus) -> Booking:
    """Move a booking along the invoicing states as the API and the invoicer would."""
    store = stack.store
    booking = force_state(
        store,
        booking,
        BookingStatus.QUEUED,
    )
    if to == BookingStatus.QUEUED:
        return booking
    booking = force_state(
        store,
        booking,
        BookingStatus.INVOICING,
    )
    return force_state(
        store,
        booking,
        BookingStatus.INVOICED,
        invoice_id="0b7e5f7a-0000-4000-8000-000000000001",
        invoice_number="S-INV-100001",
    )


def test_first_run_stores_every_completed_appointment_of_the_lookback(stack: Stack) -> None:
    assert stack.run_function("sync_bookings") == ["Succeeded"]

    zone = ZoneInfo(stack.settings["BOOKINGS_TIME_ZONE"])
    for business_id in stack.business_ids:
        expected = completed_in_window(stack, business_id, E2E_NOW, E2E_NOW - LOOKBACK)
        stored = by_key(stack.bookings(business_id))
        assert set(stored) == set(expected) and expected
        for key, (appointment, customer) in expected.items():
            booking = stored[key]
            assert booking.appointment_id == appointment["id"]
            assert booking.status == BookingStatus.UNBILLED
            assert booking.start == parse_graph_datetime(appointment["startDateTime"], "start")
            assert booking.end == parse_graph_datetime(appointment["endDateTime"], "end")
            assert booking.start.utcoffset() == timedelta(0)
            assert booking.price == appointment["price"]
            assert booking.price_type == appointment["priceType"]
            assert booking.service_name == appointment["serviceName"]
            assert booking.has_customer == (customer is not None)
            assert booking.customer_email == (customer["emailAddress"] if customer else None)
            assert booking.group_appointment == is_group_document(appointment)

        # The seed has one appointment without customers: stored, marked for NO_CUSTOMER.
        assert [b for b in stored.values() if not b.has_customer]
        # Appointments crossing local midnight keep their exact UTC instants.
        crossing = [
            b for b in stored.values() if b.start.astimezone(zone).date() != b.end.astimezone(zone).date()
        ]
        assert crossing
        # Just after local midnight is still the previous day in UTC: stored as the UTC instant.
        after_midnight = [b for b in stored.values() if b.start.astimezone(zone).hour == 0]
        assert after_midnight
        assert all(b.start.date() < b.start.astimezone(zone).date() for b in after_midnight)

        state = sync_state(stack, business_id)
        assert state is not None and state["RowKey"] == ROW
        assert state["FullyReadTo"] == E2E_NOW
        assert state["LastOutcome"] == "succeeded"
        [summary] = stack.logs.where("bookings.sync", businessId=business_id, outcome="succeeded")
        assert (summary.read, summary.new, summary.updated, summary.cancelled) == (
            len(expected),
            len(expected),
            0,
            0,
        )
        assert isinstance(summary.durationMs, int)


def test_next_run_refreshes_edits_cancels_and_never_touches_invoicing(stack: Stack) -> None:
    business_id = stack.business_ids[0]
    assert stack.run_function("sync_bookings") == ["Succeeded"]
    unbilled = sorted(stack.bookings(business_id), key=lambda b: b.start)
    edited, cancelled, invoiced, queued, failed = unbilled[:5]
    untouched = unbilled[5:]

    invoiced = claim(stack, invoiced, BookingStatus.INVOICED)
    queued = claim(stack, queued, BookingStatus.QUEUED)
    failed = force_state(
        stack.store,
        force_state(
            stack.store,
            failed,
            BookingStatus.QUEUED,
        ),
        BookingStatus.FAILED,
        error_code="BC_REJECTED",
        error="Business Central refused it",
    )
    admin = stack.admin
    admin.update_appointment(business_id, edited.appointment_id, {"price": edited.price + 12.5})
    admin.update_appointment(business_id, queued.appointment_id, {"price": queued.price + 7})
    admin.update_appointment(business_id, failed.appointment_id, {"serviceName": "Renamed"})
    admin.cancel_appointment(business_id, cancelled.appointment_id)
    admin.cancel_appointment(business_id, invoiced.appointment_id)
    # A new appointment that ends between the two runs.
    stack.clock.advance(timedelta(minutes=15))
    created = admin.add_appointment(
        business_id,
        {
            "startDateTime": {"dateTime": (E2E_NOW - timedelta(minutes=30)).isoformat(), "timeZone": "UTC"},
            "endDateTime": {"dateTime": (E2E_NOW + timedelta(minutes=10)).isoformat(), "timeZone": "UTC"},
            "serviceName": "Catered bento",
            "price": 10.0,
            "priceType": "fixedPrice",
            "customers": [{"name": "Late Lunch", "emailAddress": "late@contoso.com"}],
        },
    )
    assert stack.run_function("sync_bookings") == ["Succeeded"]

    after = by_key(stack.bookings(business_id))
    assert after[edited.key].price == edited.price + 12.5
    assert after[edited.key].status == BookingStatus.UNBILLED
    assert after[cancelled.key].status == BookingStatus.CANCELLED
    # Invoicing owns these: state, invoice fields and descriptive fields are left as they were.
    assert after[invoiced.key] == invoiced
    assert after[invoiced.key].etag == invoiced.etag
    assert after[queued.key] == queued
    # A Failed booking may be selected again: it gets Bookings' data, keeps its state and error.
    assert after[failed.key] == replace(
        failed, service_name="Renamed", updated_at=after[failed.key].updated_at
    )
    # Nothing else was rewritten.
    assert all(after[b.key].etag == b.etag for b in untouched)
    new = after[booking_key(business_id, created["id"])]
    assert new.status == BookingStatus.UNBILLED and new.customer_email == "late@contoso.com"
    summary = stack.logs.where("bookings.sync", businessId=business_id, outcome="succeeded")[-1]
    assert (summary.new, summary.updated, summary.cancelled, summary.locked) == (1, 2, 1, 1)
    assert sync_state(stack, business_id)["FullyReadTo"] == E2E_NOW + timedelta(minutes=15)


def test_a_429_storm_from_graph_is_ridden_out(stack: Stack) -> None:
    stack.admin.set_faults({"failures": {"graph": [{"status": 429, "count": 3, "retryAfter": 1}]}})

    assert stack.run_function("sync_bookings") == ["Succeeded"]

    counters = stack.admin.counters()
    assert counters["services"]["graph"]["statuses"]["429"] == 3
    assert counters["concurrency"]["graph"]["maxRunning"] <= 4
    assert "graph.throttled.mailboxConcurrency" not in counters["events"]
    for business_id in stack.business_ids:
        expected = completed_in_window(stack, business_id, E2E_NOW, E2E_NOW - LOOKBACK)
        assert {b.key for b in stack.bookings(business_id)} == set(expected)
    retries = stack.logs.where("bookings.graph_bookings", outcome="retry")
    assert len(retries) == 3 and all("HTTP 429" in r.getMessage() for r in retries)


def test_a_wrong_secret_fails_clearly_without_a_watermark_or_the_secret(make_stack: Any) -> None:
    stack = make_stack(ENTRA_CLIENT_SECRET="not-the-real-secret-8Q~value")

    assert stack.run_function("sync_bookings") == ["Failed"]

    assert stack.bookings() == []
    for business_id in stack.business_ids:
        state = sync_state(stack, business_id)
        assert state is not None and "FullyReadTo" not in state
        assert state["LastOutcome"] == "failed" and "invalid_client" in state["LastError"]
        [line] = stack.logs.where("bookings.sync", businessId=business_id, outcome="failed")
        assert "invalid_client" in line.getMessage()
    assert "not-the-real-secret-8Q~value" not in stack.logs.text()


def test_a_token_endpoint_outage_leaves_the_watermark_and_the_next_run_catches_up(stack: Stack) -> None:
    stack.admin.set_faults(
        {"failures": {"entra": [{"status": 503, "count": 1000, "route": "POST /{tenant}/oauth2/v2.0/token"}]}}
    )
    assert stack.run_function("sync_bookings") == ["Failed"]
    assert stack.bookings() == []
    business_id = stack.business_ids[0]
    assert "FullyReadTo" not in sync_state(stack, business_id)
    assert "service_unavailable" in sync_state(stack, business_id)["LastError"]

    stack.admin.reset(faults=True, counters=False)
    stack.clock.advance(timedelta(minutes=15))
    stack.restart_product()  # a new run in a fresh worker: MSAL's short throttle cache is per process
    assert stack.run_function("sync_bookings") == ["Succeeded"]
    now = E2E_NOW + timedelta(minutes=15)
    expected = completed_in_window(stack, business_id, now, now - LOOKBACK)
    assert {b.key for b in stack.bookings(business_id)} == set(expected)
    assert sync_state(stack, business_id)["FullyReadTo"] == now


def test_two_overlapping_runs_lose_nothing_and_duplicate_nothing(stack: Stack) -> None:
    business_id = stack.business_ids[0]
    assert stack.run_function("sync_bookings") == ["Succeeded"]
    bookings = sorted(stack.bookings(business_id), key=lambda b: b.start)
    claimed = [claim(stack, booking, BookingStatus.QUEUED) for booking in bookings[:3]]
    edited = bookings[3:6]
    for booking in (*claimed, *edited):
        stack.admin.update_appointment(business_id, booking.appointment_id, {"price": booking.price + 1})
    gone = bookings[6]
    stack.admin.cancel_appointment(business_id, gone.appointment_id)
    stack.admin.set_faults({"latency": {"graph": 0.3}})  # long enough for the runs to overlap

    assert stack.run_function("sync_bookings", runs=2) == ["Succeeded", "Succeeded"]

    mailboxes = stack.admin.counters()["concurrency"]["graph"]["mailboxes"]
    assert max(m["maxRunning"] for m in mailboxes.values()) >= 2  # they did overlap
    after = by_key(stack.bookings(business_id))
    expected = completed_in_window(stack, business_id, E2E_NOW, E2E_NOW - LOOKBACK)
    assert set(after) == set(expected) | {gone.key}
    assert all(after[b.key] == b for b in claimed)  # the claims survived both runs
    assert all(after[b.key].price == b.price + 1 for b in edited)
    assert after[gone.key].status == BookingStatus.CANCELLED
    runs = stack.logs.where("bookings.sync", businessId=business_id, outcome="succeeded")[-2:]
    assert sum(r.updated for r in runs) == len(edited)  # each edit written once, by one of the runs
    assert sum(r.cancelled for r in runs) == 1


def test_more_than_a_thousand_appointments_come_across_all_pages(make_stack: Any) -> None:
    business_id = "FabrikamFitness@contoso.onmicrosoft.com"
    stack = make_stack(BOOKINGS_BUSINESS_IDS=business_id)
    stack.admin.generate_appointments(
        business_id, 1200, start=E2E_NOW - timedelta(days=10), end=E2E_NOW - timedelta(hours=2)
    )
    expected = completed_in_window(stack, business_id, E2E_NOW, E2E_NOW - LOOKBACK)
    assert len(expected) > 1200

    assert stack.run_function("sync_bookings") == ["Succeeded"]

    assert {b.key for b in stack.bookings(business_id)} == set(expected)
    page_size = stack.admin.config()["graphPageSize"]
    calendar_views = stack.admin.counters()["services"]["graph"]["routes"][CALENDAR_VIEW]
    assert calendar_views >= math.ceil(len(expected) / page_size)
    [summary] = stack.logs.where("bookings.sync", businessId=business_id, outcome="succeeded")
    assert summary.new == len(expected)


def test_one_failing_business_does_not_stop_the_others(make_stack: Any) -> None:
    real = "ContosoLunchDelivery@contoso.onmicrosoft.com"
    stack = make_stack(BOOKINGS_BUSINESS_IDS=f"Nobody@contoso.onmicrosoft.com,{real}")

    assert stack.run_function("sync_bookings") == ["Failed"]

    expected = completed_in_window(stack, real, E2E_NOW, E2E_NOW - LOOKBACK)
    assert {b.key for b in stack.bookings(real)} == set(expected)
    assert sync_state(stack, real)["FullyReadTo"] == E2E_NOW
    failed = sync_state(stack, "Nobody@contoso.onmicrosoft.com")
    assert failed["LastOutcome"] == "failed" and "itemNotFound" in failed["LastError"]
    assert "FullyReadTo" not in failed


def test_recovery_pass_and_backlog_report_run_after_the_sync(make_stack: Any) -> None:
    """The timer also re-enqueues bookings stuck in Queued (the recovery hook) and logs the backlog.
    `create_invoice` is disabled, so the message it re-enqueues stays on the queue to be seen."""
    stack = make_stack(**{"AzureWebJobs.create_invoice.Disabled": "true"})
    assert stack.run_function("sync_bookings") == ["Succeeded"]
    stored = stack.bookings()
    stuck = claim(stack, stored[0], BookingStatus.QUEUED)
    stack.clock.advance(timedelta(minutes=45))

    assert stack.run_function("sync_bookings") == ["Succeeded"]

    messages = stack.container.invoice_queue.queue.peek_messages(max_messages=32)
    assert [m.content for m in messages if stuck.key in m.content]
    first, second = stack.logs.where("bookings.backlog", outcome="backlog")
    assert (first.unbilled, first.queued, first.failed, first.poisonDepth) == (len(stored), 0, 0, 0)
    assert (second.queued, second.invoicing) == (1, 0)
    assert second.unbilled == len(stack.bookings()) - 1
