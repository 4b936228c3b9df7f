"""The sync service with its real adapters: Graph through MSAL and HTTPS (sandbox), tables on Azurite."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from azure.data.tables import TableClient, TableServiceClient

from sandbox import SandboxHandle
from shared.adapters.booking_store import BookingStore
from shared.adapters.booking_upserts import BookingUpserter
from shared.adapters.graph_bookings import GraphBookingsClient, parse_appointment, parse_graph_datetime
from shared.adapters.sync_state import SyncStateStore
from shared.adapters.token_provider import TokenProvider
from shared.domain.group_appointments import bookings_of
from shared.services.booking_sync import BookingSync
from shared.settings import load_settings
from tests.conftest import SANDBOX_NOW, product_settings

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


class RecordingSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._lock = threading.Lock()

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        response = super().request(method, url, *args, **kwargs)
        with self._lock:
            self.urls.append(response.request.url or "")
        return response


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
