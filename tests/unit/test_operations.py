"""Recovery, the backlog report, request status and the health check, over the fakes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from shared.api.views import request_status_view
from shared.domain.models import Booking, BookingStatus, InvoiceMessage
from shared.domain.requests import RequestItem
from shared.services.backlog import Backlog, measure_backlog, report_backlog
from shared.services.health import check_health
from shared.services.recovery import DEFAULT_THRESHOLD, recover_stuck_bookings
from shared.services.request_status import RequestStatusReader
from tests.unit.builders import DINNER, LUNCH, make_booking
from tests.unit.fakes import FakeBookingStore, FakeQueue, FakeRequestStore, ManualClock

REQUEST = "0a1b2c3d-0000-4000-8000-000000000001"

# -- recovery ---------------------------------------------------------------------------------------


def _aged(
    clock: ManualClock, number: int, status: BookingStatus, age: timedelta, **changes: object
) -> Booking:
    return make_booking(LUNCH, number, status=status, status_changed_at=clock() - age, **changes)  # type: ignore[arg-type]


def test_recovery_re_enqueues_only_in_flight_bookings_older_than_the_threshold() -> None:
    clock = ManualClock()
    store, queue = FakeBookingStore(clock), FakeQueue()
    old = timedelta(minutes=31)
    stuck_queued, stuck_invoicing, no_request = store.put_all(
        [
            _aged(clock, 1, BookingStatus.QUEUED, old, request_id="req-a"),
            _aged(clock, 2, BookingStatus.INVOICING, timedelta(hours=5), request_id="req-b"),
            _aged(clock, 3, BookingStatus.QUEUED, old),
        ]
    )
    store.put_all(
        [
            _aged(clock, 4, BookingStatus.QUEUED, timedelta(minutes=29)),  # within the threshold
            _aged(clock, 5, BookingStatus.INVOICING, DEFAULT_THRESHOLD),  # exactly at it: not older
            _aged(clock, 6, BookingStatus.UNBILLED, timedelta(days=3)),
            _aged(clock, 7, BookingStatus.FAILED, timedelta(days=3)),
            _aged(clock, 8, BookingStatus.INVOICED, timedelta(days=3)),
            _aged(clock, 9, BookingStatus.CANCELLED, timedelta(days=3)),
            make_booking(LUNCH, 10, status=BookingStatus.QUEUED, status_changed_at=None),
        ]
    )

    before = store.all()
    assert recover_stuck_bookings(store, queue, clock) == 3
    assert sorted(queue.sent, key=lambda m: m.booking_key) == sorted(
        [
            InvoiceMessage(LUNCH, stuck_queued.key, "req-a"),
            InvoiceMessage(LUNCH, stuck_invoicing.key, "req-b"),
            InvoiceMessage(LUNCH, no_request.key, f"recovery-{no_request.key}"),
        ],
        key=lambda m: m.booking_key,
    )
    assert store.all() == before  # recovery sends; it never writes a booking


def test_recovery_goes_on_past_a_failed_send_and_stops_at_its_limit() -> None:
    clock = ManualClock()
    store = FakeBookingStore(clock)
    bookings = store.put_all(_aged(clock, n, BookingStatus.QUEUED, timedelta(hours=1)) for n in range(1, 6))
    queue = FakeQueue(refuse_keys={bookings[0].key})
    assert recover_stuck_bookings(store, queue, clock) == 4
    assert bookings[0].key not in queue.sent_keys

    limited = FakeQueue()
    assert recover_stuck_bookings(store, limited, clock, limit=2) == 2
    assert len(limited.sent) == 2


def test_recovery_honours_a_custom_threshold() -> None:
    clock = ManualClock()
    store, queue = FakeBookingStore(clock), FakeQueue()
    store.put(_aged(clock, 1, BookingStatus.QUEUED, timedelta(minutes=6)))
    assert recover_stuck_bookings(store, queue, clock, threshold=timedelta(minutes=10)) == 0
    clock.advance(minutes=5)
    assert recover_stuck_bookings(store, queue, clock, threshold=timedelta(minutes=10)) == 1


# -- backlog ----------------------------------------------------------------------------------------


def test_backlog_counts_the_states_that_wait_and_the_poison_queue() -> None:
    store, queue = FakeBookingStore(), FakeQueue()
    statuses = [BookingStatus.UNBILLED] * 3 + [BookingStatus.QUEUED] * 2 + [BookingStatus.INVOICING]
    statuses += [BookingStatus.FAILED] * 4 + [BookingStatus.INVOICED] * 5 + [BookingStatus.CANCELLED]
    store.put_all(make_booking(LUNCH, n, status=status) for n, status in enumerate(statuses))
    queue.poison.extend([InvoiceMessage(LUNCH, "A" * 26, "r")] * 2)
    expected = Backlog(unbilled=3, queued=2, invoicing=1, failed=4, poison_depth=2)
    assert measure_backlog(store, queue) == expected
    assert report_backlog(store, queue) == expected


# -- request status ---------------------------------------------------------------------------------


def _request_world() -> tuple[FakeRequestStore, FakeBookingStore, list[Booking]]:
    clock = ManualClock()
    requests, store = FakeRequestStore(clock), FakeBookingStore(clock)
    bookings = store.put_all(
        [
            make_booking(
                LUNCH, 1, status=BookingStatus.INVOICED, request_id=REQUEST, invoice_number="S-INV-1"
            ),
            make_booking(
                LUNCH,
                2,
                status=BookingStatus.FAILED,
                request_id=REQUEST,
                error_code="NO_CUSTOMER",
                error="none",
            ),
            make_booking(LUNCH, 3, status=BookingStatus.QUEUED, request_id="a-later-request"),
            make_booking(DINNER, 4, status=BookingStatus.QUEUED, request_id=REQUEST),
            make_booking(LUNCH, 5, status=BookingStatus.INVOICING, request_id=REQUEST),
        ]
    )
    requests.start(REQUEST, {"mode": "keys", "keys": 6}, None)
    requests.add_items(REQUEST, [RequestItem(b.business_id, b.key) for b in bookings])
    missing = make_booking(LUNCH, 6)
    requests.add_items(REQUEST, [RequestItem(LUNCH, missing.key)])  # deleted from the table by hand
    return requests, store, [*bookings, missing]


def test_request_status_counts_and_lists_every_booking_with_a_missing_one_shown() -> None:
    requests, store, bookings = _request_world()
    status = RequestStatusReader(requests, store).read(REQUEST)
    assert status is not None
    document = request_status_view(status)
    assert document is not None
    assert document["requestId"] == REQUEST and document["state"] == "Accepting"
    assert document["total"] == 6
    assert document["counts"] == {
        "Unbilled": 0,
        "Queued": 2,
        "Invoicing": 1,
        "Invoiced": 1,
        "Failed": 1,
        "Cancelled": 0,
        "Excluded": 0,
        "Missing": 1,
    }
    rows = {row["key"]: row for row in document["items"]}
    assert rows[bookings[0].key]["invoiceNumber"] == "S-INV-1"
    assert (rows[bookings[1].key]["errorCode"], rows[bookings[1].key]["error"]) == ("NO_CUSTOMER", "none")
    assert rows[bookings[5].key] == {
        "key": bookings[5].key,
        "status": "Missing",
        "invoiceNumber": None,
        "errorCode": None,
        "error": None,
    }


def test_scan_and_point_reads_give_the_same_answer() -> None:
    requests, store, _ = _request_world()
    calls: list[str] = []
    original_of_request: Callable[..., object] = store.of_request

    def counting_of_request(business_id: str, request_id: str) -> object:
        calls.append(business_id)
        return original_of_request(business_id, request_id)

    store.of_request = counting_of_request  # type: ignore[method-assign]
    by_point = RequestStatusReader(requests, store, scan_from=1000).read(REQUEST)
    assert calls == []
    by_scan = RequestStatusReader(requests, store, scan_from=1).read(REQUEST)
    assert sorted(calls) == [DINNER, LUNCH]
    assert by_scan == by_point


def test_unknown_and_malformed_request_ids_read_as_none() -> None:
    requests, store, _ = _request_world()
    reader = RequestStatusReader(requests, store)
    assert reader.read("00000000-0000-4000-8000-000000000999") is None
    assert reader.read("not-a-request-id") is None
    assert reader.read(REQUEST.upper()) is None


# -- health -----------------------------------------------------------------------------------------


def test_health_is_ok_when_settings_load_and_storage_answers() -> None:
    probed: list[str] = []
    report = check_health(lambda: "settings", probed.append)
    assert report.ok and report.failing == []
    assert probed == ["settings"]
    assert [(c.name, c.ok, c.detail) for c in report.checks] == [
        ("settings", True, "valid"),
        ("storage", True, "reachable"),
    ]


def test_invalid_settings_fail_both_checks_without_probing_storage() -> None:
    probed: list[object] = []

    def broken() -> str:
        raise ValueError("BOOKINGS_BUSINESS_IDS is missing")

    report = check_health(broken, probed.append)
    assert not report.ok and report.failing == ["settings", "storage"]
    assert report.checks[0].detail == "BOOKINGS_BUSINESS_IDS is missing"
    assert probed == []


def test_unreachable_storage_names_the_error_type_only() -> None:
    def probe(_: str) -> None:
        raise ConnectionError("AccountKey=secret-looking-text")

    report = check_health(lambda: "settings", probe)
    assert report.failing == ["storage"]
    assert report.checks[1].detail == "unreachable: ConnectionError"


def test_a_settings_loader_that_crashes_otherwise_is_not_swallowed() -> None:
    def crashing() -> str:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        check_health(crashing, lambda _: None)
