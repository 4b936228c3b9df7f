"""The sync service with its real adapters: Graph through MSAL and HTTPS (sandbox), tables on Azurite."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.queue import QueueServiceClient

from sandbox import SandboxHandle
from shared.adapters.booking_store import BookingStore
from shared.adapters.booking_upserts import BookingUpserter
from shared.adapters.graph_bookings import GraphBookingsClient, parse_appointment, parse_graph_datetime
from shared.adapters.invoice_queue import InvoiceQueue
from shared.adapters.invoice_requests import InvoiceRequestStore
from shared.adapters.sync_state import SyncStateStore
from shared.adapters.token_provider import TokenProvider
from shared.domain.filters import BookingFilter
from shared.domain.group_appointments import bookings_of
from shared.domain.models import BookingStatus
from shared.services.booking_queries import BookingQueries
from shared.services.booking_sync import BookingSync
from shared.services.selection import Selection, SelectionService
from shared.settings import load_settings
from tests.conftest import SANDBOX_NOW, product_settings
from tests.helpers import RecordingSession
from tests.infra.templates import load

NOW = SANDBOX_NOW
BUSINESS = "ContosoLunchDelivery@contoso.onmicrosoft.com"


@pytest.fixture
def tables(storage_connection_string: str, unique_name: str) -> Iterator[tuple[TableClient, TableClient]]:
    service = TableServiceClient.from_connection_string(storage_connection_string)
    bookings, state = service.create_table(unique_name), service.create_table(unique_name + "s")
    try:
        yield bookings, state
    finally:
        service.delete_table(unique_name)
        service.delete_table(unique_name + "s")


def graph_client(sandbox: SandboxHandle) -> tuple[GraphBookingsClient, RecordingSession]:
    settings = load_settings(product_settings("UseDevelopmentStorage=true", **sandbox.settings))
    session = RecordingSession()
    client = GraphBookingsClient(
        settings.graph_base_url, TokenProvider(settings).graph_token, session=session, clock=lambda: NOW
    )
    return client, session


def completed_keys(sandbox: SandboxHandle, start: datetime, end: datetime) -> set[str]:
    """Booking keys of the sandbox's appointments that overlap [start, end) and ended before `end`."""
    [business] = [b for b in sandbox.admin.state(["businesses"])["businesses"] if b["id"] == BUSINESS]
    keys: set[str] = set()
    for document in business["appointments"]:
        begins = parse_graph_datetime(document["startDateTime"], "start")
        ends = parse_graph_datetime(document["endDateTime"], "end")
        if ends > start and begins < end and ends < end:
            appointment = parse_appointment(BUSINESS, document)
            keys.update(unit.key for unit in bookings_of(appointment))
    return keys


def calendar_view_ranges(session: RecordingSession) -> list[timedelta]:
    ranges = []
    for url in session.urls:
        query = dict(parse_qsl(urlsplit(url).query))
        if urlsplit(url).path.endswith("/calendarView") and "$skiptoken" not in query:
            ranges.append(
                parse_graph_datetime(query["end"], "end") - parse_graph_datetime(query["start"], "start")
            )
    return ranges


def test_a_long_catch_up_window_is_read_in_bounded_sub_windows(
    fresh_sandbox: SandboxHandle, tables: tuple[TableClient, TableClient]
) -> None:
    # After an outage the window reaches back to the watermark, up to RETENTION_DAYS. calendarView
    # states no maximum range (Learn, bookingbusiness-list-calendarview); Outlook's refuses ranges
    # over 1,825 days. The sandbox refuses long ranges when told to: the sync must still read all.
    sandbox = fresh_sandbox
    sandbox.admin.generate_appointments(
        BUSINESS, 40, NOW - timedelta(days=200), NOW - timedelta(days=60), seed=7
    )
    sandbox.admin.set_config(graphCalendarViewMaxDays=31)
    bookings, state_table = tables
    state = SyncStateStore(state_table, clock=lambda: NOW)
    watermark = NOW - timedelta(days=250)
    state.record_success(BUSINESS, watermark, {})
    client, session = graph_client(sandbox)
    sync = BookingSync(
        client,
        BookingUpserter(bookings, clock=lambda: NOW),
        state,
        [BUSINESS],
        30,
        retention_days=400,
        clock=lambda: NOW,
    )

    [result] = sync.run().results

    assert result.succeeded, result.error
    assert state.get(BUSINESS).fully_read_to == NOW
    stored = {booking.key for booking in BookingStore(bookings).of_business(BUSINESS)}
    expected = completed_keys(sandbox, watermark - timedelta(hours=1), NOW)
    assert len(expected) > 40 and stored == expected
    ranges = calendar_view_ranges(session)
    assert len(ranges) > 1 and max(ranges) <= timedelta(days=31)
    assert sum(ranges, timedelta()) == NOW - (watermark - timedelta(hours=1))


def test_an_appointment_moved_into_the_future_is_not_billable_until_it_has_ended(
    fresh_sandbox: SandboxHandle,
    tables: tuple[TableClient, TableClient],
    storage_connection_string: str,
    unique_name: str,
) -> None:
    # CONTRACT.md "Booking states": an Unbilled booking whose appointment is moved so that it has
    # not ended yet leaves the Unbilled list and no selection claims it until it has ended again.
    # calendarView returns "appointments ... in the specified date range" (Learn,
    # bookingbusiness-list-calendarview): one moved past now drops out of the window and is read
    # by id; one moved to end a little later stays in it.
    sandbox = fresh_sandbox
    bookings, state_table = tables
    clock = {"now": NOW}
    state = SyncStateStore(state_table, clock=lambda: clock["now"])
    client, _ = graph_client(sandbox)
    sync = BookingSync(
        client, BookingUpserter(bookings, clock=lambda: clock["now"]), state, [BUSINESS], 30,
        clock=lambda: clock["now"],
    )  # fmt: skip
    assert sync.run().ok
    store = BookingStore(bookings)
    one_to_one = [b for b in store.of_business(BUSINESS) if not b.group_appointment]
    far, near = one_to_one[0], one_to_one[1]
    later = NOW + timedelta(days=2)
    sandbox.admin.update_appointment(BUSINESS, far.appointment_id, _moved(later, later + timedelta(hours=1)))
    sandbox.admin.update_appointment(
        BUSINESS, near.appointment_id, _moved(NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    )
    clock["now"] = NOW + timedelta(minutes=15)
    assert sync.run().ok

    for moved in (far, near):
        stored = store.get(BUSINESS, moved.key)
        assert stored is not None and stored.status is BookingStatus.UNBILLED and stored.end > clock["now"]
    queries = BookingQueries(store, [BUSINESS], clock=lambda: clock["now"])
    listed = {b.key for b in queries.page(BookingFilter(), 1000).items}
    assert listed and not listed & {far.key, near.key}
    assert not {b.key for b in queries.iterate(BookingFilter())} & {far.key, near.key}

    queue, requests_ = (
        _queue(storage_connection_string, unique_name),
        _requests(storage_connection_string, unique_name),
    )
    selection = SelectionService(
        store, queries, queue, requests_, max_selection=100, clock=lambda: clock["now"]
    )
    result = selection.submit(Selection(keys=(far.key, near.key)))
    assert result.accepted == 0 and {s.key for s in result.skipped} == {far.key, near.key}
    assert all(s.status is BookingStatus.UNBILLED and s.reason for s in result.skipped)

    clock["now"] = later + timedelta(hours=2)  # both have ended: billable again
    listed = {b.key for b in queries.page(BookingFilter(), 1000).items}
    assert {far.key, near.key} <= listed
    assert selection.submit(Selection(keys=(far.key, near.key))).accepted == 2


def _moved(start: datetime, end: datetime) -> dict[str, Any]:
    return {
        "startDateTime": {"dateTime": start.isoformat(), "timeZone": "UTC"},
        "endDateTime": {"dateTime": end.isoformat(), "timeZone": "UTC"},
    }


def _queue(connection: str, name: str) -> InvoiceQueue:
    queue = InvoiceQueue(QueueServiceClient.from_connection_string(connection), name)
    queue.ensure_queues()
    return queue


def _requests(connection: str, name: str) -> InvoiceRequestStore:
    service = TableServiceClient.from_connection_string(connection)
    store = InvoiceRequestStore(service.get_table_client(f"{name}req"))
    store.ensure_table()
    return store


# The business-sync-failing alert of infra/modules/alerts.bicep, as applied below to log records.
# The test pins these parts to the query text, so the two cannot drift apart.
SYNC_RESULT_FILTER = "isnotempty(customDimensions.syncResult)"
SYNC_RESULT_COLUMNS = (
    "extend businessId = tostring(customDimensions.businessId), "
    "syncResult = tostring(customDimensions.syncResult)"
)
SYNC_RESULT_COUNTS = (
    'failedRuns = sumif(itemCount, syncResult == "failed"), '
    'succeededRuns = sumif(itemCount, syncResult == "succeeded")'
)
SYNC_RESULT_ALERTS = "| where failedRuns > 0 and succeededRuns == 0"


def businesses_failing_every_run(records: list[logging.LogRecord]) -> set[str]:
    """The alert's result over log records (each row stands for itemCount 1: nothing is sampled)."""
    runs: dict[str, Counter[str]] = {}
    for record in records:
        result = getattr(record, "syncResult", None)
        if result:
            runs.setdefault(str(getattr(record, "businessId", "")), Counter())[str(result)] += 1
    return {
        business for business, counts in runs.items() if counts["failed"] > 0 and counts["succeeded"] == 0
    }


def test_a_business_that_fails_every_run_is_named_by_its_alert(
    fresh_sandbox: SandboxHandle, tables: tuple[TableClient, TableClient], caplog: pytest.LogCaptureFixture
) -> None:
    # One mailbox answers with an error on every run while another succeeds: the heartbeat (any
    # success) stays quiet, so the alert must name the failing business from the lines the sync
    # writes. The sandbox answers 404 itemNotFound for a business it does not have (Graph errors).
    query = load("modules/alerts.bicep").variables["businessSyncFailingQuery"]
    for part in (SYNC_RESULT_FILTER, SYNC_RESULT_COLUMNS, SYNC_RESULT_COUNTS, SYNC_RESULT_ALERTS):
        assert part in query
    gone = "closed-shop@contoso.onmicrosoft.com"
    bookings, state_table = tables
    client, _ = graph_client(fresh_sandbox)
    clock = {"now": NOW}
    sync = BookingSync(
        client,
        BookingUpserter(bookings, clock=lambda: clock["now"]),
        SyncStateStore(state_table, clock=lambda: clock["now"]),
        [BUSINESS, gone],
        30,
        clock=lambda: clock["now"],
    )
    caplog.set_level(logging.INFO, logger="bookings.sync")

    for run in range(2):
        clock["now"] = NOW + timedelta(minutes=15 * run)
        report = sync.run()
        assert [r.succeeded for r in report.results] == [True, False]

    assert businesses_failing_every_run(caplog.records) == {gone}
