"""Graph Bookings client: parsing (pure) and calendarView/paging/throttling against the sandbox."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from sandbox import SandboxHandle
from shared.adapters.graph_bookings import (
    AppointmentParseError,
    GraphBookingsClient,
    GraphError,
    parse_appointment,
    parse_graph_datetime,
)
from shared.adapters.http_retry import RetryPolicy
from shared.adapters.token_provider import TokenProvider
from shared.domain.group_appointments import bookings_of
from shared.domain.models import PriceType
from shared.settings import load_settings
from tests.conftest import product_settings
from tests.e2e.stack import E2E_NOW
from tests.helpers import RecordingSession

BUSINESS = "ContosoLunchDelivery@contoso.onmicrosoft.com"
APPOINTMENT_ID = "AAMkADKoAAA/x+Yz="

# -- parsing ----------------------------------------------------------------------------------------


def v1_appointment(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": APPOINTMENT_ID,
        "serviceId": "57da6774-a087-4d69-b0e6-6fb82c339976",
        "serviceName": "Catered bento",
        "customers": [
            {
                "@odata.type": "#microsoft.graph.bookingCustomerInformation",
                "customerId": "829e3cb5",
                "name": "Bob Kelly",
                "emailAddress": "bobk@tailspintoys.com",
                "phone": "213-555-0108",
            }
        ],
        "staffMemberIds": ["8ee1c803"],
        "startDateTime": {"dateTime": "2018-04-30T13:00:00.0000000Z", "timeZone": "UTC"},
        "endDateTime": {"dateTime": "2018-04-30T13:30:00.1234567Z", "timeZone": "UTC"},
        "price": 10.0,
        "priceType": "fixedPrice",
        "lastUpdatedDateTime": "2018-04-02T10:00:00Z",
    }
    document.update(changes)
    return document


def test_parses_the_v1_shape_with_seven_fractional_digits() -> None:
    appointment = parse_appointment(BUSINESS, v1_appointment())
    assert appointment.id == APPOINTMENT_ID
    assert appointment.start == datetime(2018, 4, 30, 13, 0, tzinfo=UTC)
    assert appointment.end == datetime(2018, 4, 30, 13, 30, 0, 123456, tzinfo=UTC)
    assert appointment.customer is not None
    assert (appointment.customer.name, appointment.customer.email) == ("Bob Kelly", "bobk@tailspintoys.com")
    assert appointment.customer.phone == "213-555-0108"
    assert appointment.price == 10.0 and appointment.price_type == PriceType.FIXED_PRICE
    assert appointment.staff_member_ids == ("8ee1c803",)
    assert appointment.last_updated == datetime(2018, 4, 2, 10, tzinfo=UTC)


def test_parses_the_start_end_shape_and_legacy_flat_customer_fields() -> None:
    document = v1_appointment(
        customers=[],
        customerName="Ann Lee",
        customerEmailAddress="ann@contoso.com",
        start="2026-03-01T22:30:00+01:00",
        end={"dateTime": "2026-03-02T00:30:00", "timeZone": "Europe/Amsterdam"},
    )
    del document["startDateTime"], document["endDateTime"]
    appointment = parse_appointment(BUSINESS, document)
    assert appointment.start == datetime(2026, 3, 1, 21, 30, tzinfo=UTC)
    assert appointment.end == datetime(2026, 3, 1, 23, 30, tzinfo=UTC)  # local midnight crossed, UTC not
    assert appointment.customer is not None and appointment.customer.email == "ann@contoso.com"


def test_empty_customers_mean_no_customer_and_nameless_entries_are_skipped() -> None:
    assert parse_appointment(BUSINESS, v1_appointment(customers=[])).customer is None
    nameless = v1_appointment(customers=[{"name": " ", "emailAddress": None}, {"name": "Second"}])
    second = parse_appointment(BUSINESS, nameless).customer
    assert second is not None and (second.name, second.email) == ("Second", None)


def test_missing_price_is_zero_and_unknown_price_types_are_tolerated() -> None:
    document = v1_appointment(priceType="somethingNew")
    del document["price"]
    appointment = parse_appointment(BUSINESS, document)
    assert appointment.price == 0.0
    assert appointment.price_type == PriceType.UNKNOWN_FUTURE_VALUE


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"id": None}, "id is missing"),
        ({"startDateTime": {"dateTime": "yesterday"}}, "not an ISO 8601"),
        ({"startDateTime": {"dateTime": "2026-01-01T10:00:00", "timeZone": "Mars/Olympus"}}, "time zone"),
        ({"endDateTime": {"dateTime": "2018-04-30T12:00:00Z", "timeZone": "UTC"}}, "before"),
        ({"price": "ten"}, "price"),
        ({"staffMemberIds": "x"}, "staffMemberIds"),
    ],
)
def test_unreadable_appointments_are_rejected_not_guessed(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(AppointmentParseError, match=problem):
        parse_appointment(BUSINESS, v1_appointment(**changes))


def test_naive_utc_datetime_and_windows_utc_name() -> None:
    value = {"dateTime": "2026-01-01T10:00:00.0000000", "timeZone": "UTC"}
    assert parse_graph_datetime(value, "x") == datetime(2026, 1, 1, 10, tzinfo=UTC)
    value = {"dateTime": "2026-01-01T10:00:00", "timeZone": "Coordinated Universal Time"}
    assert parse_graph_datetime(value, "x") == datetime(2026, 1, 1, 10, tzinfo=UTC)


def test_ids_are_percent_encoded_in_paths() -> None:
    client = GraphBookingsClient("https://graph.example/v1.0", lambda: "token")
    url = client.appointment_url(BUSINESS, APPOINTMENT_ID)
    assert url.endswith(
        "/bookingBusinesses/ContosoLunchDelivery@contoso.onmicrosoft.com/appointments/AAMkADKoAAA%2Fx%2BYz%3D"
    )


# -- against the sandbox ------------------------------------------------------------------------------


@pytest.fixture
def sandbox(fresh_sandbox: SandboxHandle) -> SandboxHandle:
    """The session's sandbox, reseeded, its CA trusted through the environment."""
    return fresh_sandbox


def make_client(sandbox: SandboxHandle, **options: Any) -> tuple[GraphBookingsClient, RecordingSession]:
    settings = load_settings(product_settings("UseDevelopmentStorage=true", **sandbox.settings))
    session = RecordingSession()
    tokens = TokenProvider(settings)
    client = GraphBookingsClient(settings.graph_base_url, tokens.graph_token, session=session, **options)
    return client, session


def window_ids(sandbox: SandboxHandle, start: datetime, end: datetime) -> set[str]:
    [business] = [b for b in sandbox.admin.state(["businesses"])["businesses"] if b["id"] == BUSINESS]
    return {
        a["id"]
        for a in business["appointments"]
        if parse_graph_datetime(a["endDateTime"], "e") > start
        and parse_graph_datetime(a["startDateTime"], "s") < end
    }


def test_calendar_view_follows_next_links_verbatim_and_sends_only_start_and_end(
    sandbox: SandboxHandle,
) -> None:
    sandbox.admin.set_config(graphPageSize=7)
    client, session = make_client(sandbox)
    start, end = E2E_NOW - timedelta(days=30), E2E_NOW

    pages = list(client.calendar_view_pages(BUSINESS, start, end))

    got = [a.id for page in pages for a in page.appointments]
    assert len(got) == len(set(got))
    assert set(got) == window_ids(sandbox, start, end)
    assert len(pages) == len(session.urls) > 3
    assert all(len(page.appointments) <= 7 for page in pages)
    first_query = dict(parse_qsl(urlsplit(session.urls[0]).query))
    assert first_query == {"start": "2026-01-31T09:30:00Z", "end": "2026-03-02T09:30:00Z"}
    assert all("$top" not in url and "$filter" not in url for url in session.urls)
    assert all("$skiptoken" in url for url in session.urls[1:])


def test_get_appointment_encodes_ids_with_slash_plus_and_equals(sandbox: SandboxHandle) -> None:
    client, session = make_client(sandbox)
    start = E2E_NOW - timedelta(days=3)
    some_id = sorted(window_ids(sandbox, start, E2E_NOW))[0]
    assert set("+/=") & set(some_id)

    appointment = client.get_appointment(BUSINESS, some_id)

    assert appointment is not None and appointment.id == some_id
    assert "%2F" in session.urls[-1] or "%2B" in session.urls[-1]
    assert client.get_appointment(BUSINESS, "AAMk/not+there=") is None


def test_429_and_503_are_retried_honouring_retry_after(sandbox: SandboxHandle) -> None:
    sandbox.admin.set_faults(
        {"failures": {"graph": [{"status": 429, "count": 2, "retryAfter": 7}, {"status": 503, "count": 1}]}}
    )
    waits: list[float] = []
    policy = RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=60)
    client, _ = make_client(sandbox, sleep=waits.append, rng=lambda: 1.0, retry_policy=policy)

    pages = list(client.calendar_view_pages(BUSINESS, E2E_NOW - timedelta(days=2), E2E_NOW))

    assert pages and waits == [7.0, 7.0, 2.0]  # Retry-After twice, then backoff (attempt 3) for the 503
    assert sandbox.admin.counters()["services"]["graph"]["statuses"] == {
        "429": 2,
        "503": 1,
        "200": len(pages),
    }


def test_persistent_throttling_ends_in_a_clear_error(sandbox: SandboxHandle) -> None:
    sandbox.admin.set_faults({"failures": {"graph": [{"status": 429, "count": 50, "retryAfter": 1}]}})
    client, _ = make_client(sandbox, sleep=lambda _s: None, retry_policy=RetryPolicy(max_attempts=3))
    with pytest.raises(GraphError, match="HTTP 429 TooManyRequests") as caught:
        list(client.calendar_view_pages(BUSINESS, E2E_NOW - timedelta(days=2), E2E_NOW))
    assert caught.value.status == 429 and caught.value.request_id


def test_unknown_business_is_item_not_found(sandbox: SandboxHandle) -> None:
    client, _ = make_client(sandbox)
    with pytest.raises(GraphError) as caught:
        list(client.calendar_view_pages("nobody@contoso.com", E2E_NOW - timedelta(days=1), E2E_NOW))
    assert (caught.value.status, caught.value.code) == (404, "itemNotFound")


def test_never_more_than_four_requests_in_flight_per_mailbox(sandbox: SandboxHandle) -> None:
    sandbox.admin.set_faults({"latency": {"graph": 0.1}})
    client, _ = make_client(sandbox)
    errors: list[BaseException] = []

    def read() -> None:
        try:
            list(client.calendar_view_pages(BUSINESS, E2E_NOW - timedelta(days=1), E2E_NOW))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    stats = sandbox.admin.counters()
    assert stats["concurrency"]["graph"]["maxRunning"] <= 4
    assert "graph.throttled.mailboxConcurrency" not in stats["events"]


def test_a_second_customer_on_a_count_of_one_is_a_group_appointment(sandbox: SandboxHandle) -> None:
    # CONTRACT.md "Group appointments": `maximumAttendeesCount` > 1 *or* more than one entry in
    # `customers` (`Collection(bookingCustomerInformationBase)` in the v1.0 CSDL).
    start = E2E_NOW - timedelta(hours=3)
    people = [
        {
            "@odata.type": "#microsoft.graph.bookingCustomerInformation",
            "customerId": f"pair-{n}",
            "name": f"Pair {n}",
            "emailAddress": f"pair{n}@example.com",
        }
        for n in (1, 2)
    ]
    created = sandbox.admin.add_appointment(
        BUSINESS,
        {
            "startDateTime": {"dateTime": start.isoformat(), "timeZone": "UTC"},
            "endDateTime": {"dateTime": (start + timedelta(hours=1)).isoformat(), "timeZone": "UTC"},
            "maximumAttendeesCount": 1,
            "customers": people,
            "price": 40.0,
            "priceType": "fixedPrice",
        },
    )
    client, _ = make_client(sandbox)

    [appointment] = [
        a
        for page in client.calendar_view_pages(BUSINESS, start - timedelta(minutes=1), E2E_NOW)
        for a in page.appointments
        if a.id == created["id"]
    ]

    assert appointment.maximum_attendees == 1
    units = bookings_of(appointment)
    assert [unit.attendee_id for unit in units] == ["pair-1", "pair-2"]
    assert len({unit.key for unit in units}) == 2 and all(unit.group for unit in units)


def test_a_long_retry_after_is_honoured_within_the_deadline(sandbox: SandboxHandle) -> None:
    # Learn, "Microsoft Graph throttling guidance": wait the number of seconds Retry-After says,
    # here 120 (above the 60 s the backoff is capped at), if the run's deadline leaves time for it.
    sandbox.admin.set_faults({"failures": {"graph": [{"status": 429, "count": 1, "retryAfter": 120}]}})
    waits: list[float] = []
    client, _ = make_client(sandbox, sleep=waits.append, clock=lambda: E2E_NOW)
    window = (E2E_NOW - timedelta(days=2), E2E_NOW)

    pages = list(client.calendar_view_pages(BUSINESS, *window, deadline=E2E_NOW + timedelta(minutes=25)))
    assert pages and waits == [120.0]

    # A wait that would outlast the deadline is not made: Graph's 429 ends the read at once.
    sandbox.admin.set_faults({"failures": {"graph": [{"status": 429, "count": 1, "retryAfter": 120}]}})
    waits.clear()
    with pytest.raises(GraphError) as caught:
        list(client.calendar_view_pages(BUSINESS, *window, deadline=E2E_NOW + timedelta(seconds=90)))
    assert caught.value.status == 429 and waits == []
