"""The selection use case against Azurite: parsing, claims, undo on send failure, concurrency."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueServiceClient

from shared.adapters.booking_entities import BOOKINGS_TABLE
from shared.adapters.booking_store import BookingStore
from shared.adapters.invoice_queue import InvoiceQueue
from shared.adapters.invoice_requests import InvoiceRequestStore
from shared.api.input import InvalidInput
from shared.api.selection_input import parse_selection
from shared.api.views import request_status_view, skipped_view
from shared.domain import lifecycle
from shared.domain.errors import ConcurrentChangeError, SelectionTooLargeError, StorageUnavailableError
from shared.domain.models import BookingStatus, ErrorCode, InvoiceMessage
from shared.services.booking_queries import BookingQueries
from shared.services.request_status import RequestStatusReader
from shared.services.selection import QueueUnavailableError, Selection, SelectionService
from tests.api_support import drain, make_booking, new_business, seed

ZONE = ZoneInfo("UTC")
KEY = "A" * 26


def parse(document: dict[str, Any], max_selection: int = 5) -> Selection:
    return parse_selection(
        document, max_selection=max_selection, business_ids=["lunch@contoso.com"], zone=ZONE
    )


def test_parse_keys_dedupes_in_order() -> None:
    assert parse({"bookingKeys": [KEY, "B" * 26, KEY]}).keys == (KEY, "B" * 26)
    # Duplicates count once against MAX_SELECTION.
    assert len(parse({"bookingKeys": [KEY] * 50}, max_selection=1).keys or ()) == 1


def test_parse_all_with_filter() -> None:
    selection = parse(
        {"all": True, "filter": {"customerEmail": "Bob@X.com", "businessId": "LUNCH@contoso.com"}}
    )
    assert selection.filter is not None
    assert selection.filter.status is BookingStatus.UNBILLED
    assert selection.filter.customer_email == "bob@x.com"
    assert selection.filter.business_id == "lunch@contoso.com"
    assert parse({"all": True}).summary() == {"mode": "all", "filter": {}}


@pytest.mark.parametrize(
    ("document", "says"),
    [
        ({}, "bookingKeys"),
        ({"bookingKeys": KEY}, "must be an array"),
        ({"bookingKeys": []}, "is empty"),
        ({"bookingKeys": [KEY], "all": True}, "not both"),
        ({"bookingKeys": [KEY], "filter": {}}, "filter"),
        ({"bookingKeys": [KEY], "note": "x"}, "'note'"),
        ({"all": "true"}, "must be true"),
        ({"all": False}, "must be true"),
        ({"all": True, "filter": []}, "must be an object"),
        ({"all": True, "filter": {"status": "Failed"}}, "'filter.status'"),
        ({"all": True, "filter": {"customerEmail": 5}}, "must be a string"),
        ({"bookingKeys": [f"B{i:025d}" for i in range(6)]}, "malformed"),
        ({"bookingKeys": [chr(ord("A") + i) * 26 for i in range(6)]}, "at most 5"),
    ],
)
def test_parse_refuses_with_an_actionable_detail(document: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse(document)
    assert says in caught.value.detail


@pytest.mark.parametrize(
    "bad",
    ["x' or 1 eq 1", "../" + "A" * 23, "%2F" + "A" * 23, "a" * 26, "A" * 25, "A" * 27, "0" * 26, None, 7],
)
def test_malformed_keys_are_listed_by_position(bad: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse({"bookingKeys": [KEY, bad]})
    assert [e.field for e in caught.value.errors] == ["bookingKeys[1]"]


class FlakyQueue:
    """An invoice queue that refuses the messages of some keys (as a storage outage would)."""

    def __init__(self, refuse: set[str]) -> None:
        self.refuse = refuse
        self.sent: list[InvoiceMessage] = []
        self.lock = threading.Lock()

    def send(self, message: InvoiceMessage, *, delay_seconds: int | None = None) -> str:
        if message.booking_key in self.refuse:
            raise ConnectionError("queue unreachable")
        with self.lock:
            self.sent.append(message)
        return "id"


@pytest.fixture
def parts(storage_connection_string: str, unique_name: str) -> dict[str, Any]:
    tables = TableServiceClient.from_connection_string(storage_connection_string)
    store = BookingStore(tables.get_table_client(BOOKINGS_TABLE))
    requests = InvoiceRequestStore(tables.get_table_client(f"{unique_name}req"))
    requests.ensure_table()
    queue = InvoiceQueue(QueueServiceClient.from_connection_string(storage_connection_string), unique_name)
    queue.ensure_queues()
    return {"store": store, "requests": requests, "queue": queue, "connection": storage_connection_string}


def service(
    parts: dict[str, Any], businesses: list[str], queue: Any = None, **options: Any
) -> SelectionService:
    queries = BookingQueries(parts["store"], businesses)
    return SelectionService(
        parts["store"], queries, queue or parts["queue"], parts["requests"], max_selection=100, **options
    )


def test_keys_claim_unbilled_and_failed_and_send_base64_messages(parts: dict[str, Any]) -> None:
    business = new_business()
    unbilled, failed, invoiced = seed(
        parts["connection"],
        [
            make_booking(business, 1),
            make_booking(business, 2, status=BookingStatus.FAILED),
            make_booking(business, 3, status=BookingStatus.INVOICED),
        ],
    )
    store: BookingStore = parts["store"]
    failed_read = store.get(business, failed.key)
    assert failed_read is not None
    store.save(replace(failed_read, error_code="BC_UNAVAILABLE", error="x"))

    result = service(parts, [business]).submit(
        Selection(keys=(unbilled.key, failed.key, invoiced.key, KEY)),
        traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01",
    )
    assert result.accepted == 2
    assert [skipped_view(s) for s in result.skipped] == [{"key": invoiced.key, "status": "Invoiced"}]
    assert result.not_found == [KEY]
    for key in (unbilled.key, failed.key):
        booking = store.get(business, key)
        assert booking is not None and booking.status is BookingStatus.QUEUED
        assert booking.request_id == result.request_id and booking.error_code is None
    # The queue client decodes base64, as the Functions host does: plain text would not decode.
    messages = drain(parts["queue"].queue)
    assert sorted(m["bookingKey"] for m in messages) == sorted([unbilled.key, failed.key])
    assert {m["requestId"] for m in messages} == {result.request_id}
    assert all(m["traceparent"].startswith("00-" + "1" * 32) for m in messages)


def test_a_message_that_cannot_be_sent_has_its_claim_undone(parts: dict[str, Any]) -> None:
    business = new_business()
    bookings = seed(parts["connection"], [make_booking(business, i) for i in range(6)])
    failed = seed(parts["connection"], [make_booking(business, 99, status=BookingStatus.FAILED)])[0]
    store: BookingStore = parts["store"]
    failed_read = store.get(business, failed.key)
    assert failed_read is not None
    failed_read = store.save(replace(failed_read, error_code=str(ErrorCode.BC_REJECTED), error="no"))
    refused = {bookings[1].key, bookings[4].key, failed.key}
    queue = FlakyQueue(refused)
    with ThreadPoolExecutor(4) as pool:
        sut = service(parts, [business], queue=queue, executor=pool)
        result = sut.submit(Selection(keys=tuple(b.key for b in [*bookings, failed])))
        read = RequestStatusReader(parts["requests"], store, pool).read(result.request_id)
    assert read is not None
    status = request_status_view(read)

    assert result.accepted == 4
    assert {s.key for s in result.skipped} == refused
    assert all(s.reason and "undone" in s.reason for s in result.skipped)
    assert {m.booking_key for m in queue.sent} == {b.key for b in bookings} - refused
    for booking in bookings:
        stored = store.get(business, booking.key)
        assert stored is not None
        expected = BookingStatus.UNBILLED if booking.key in refused else BookingStatus.QUEUED
        assert stored.status is expected
    restored = store.get(business, failed.key)
    assert restored is not None
    assert restored.status is BookingStatus.FAILED and restored.error == "no"
    assert restored.status_changed_at == failed_read.status_changed_at
    # The request lists only what was really queued.
    assert status is not None and status["total"] == 4 and status["counts"]["Queued"] == 4


def test_nothing_queued_at_all_is_an_error_and_every_claim_is_undone(parts: dict[str, Any]) -> None:
    business = new_business()
    bookings = seed(parts["connection"], [make_booking(business, i) for i in range(3)])
    queue = FlakyQueue({b.key for b in bookings})
    with pytest.raises(QueueUnavailableError):
        service(parts, [business], queue=queue).submit(Selection(keys=tuple(b.key for b in bookings)))
    store: BookingStore = parts["store"]
    assert all(store.get(business, b.key).status is BookingStatus.UNBILLED for b in bookings)  # type: ignore[union-attr]


def test_concurrent_identical_selections_claim_each_booking_once(parts: dict[str, Any]) -> None:
    business = new_business()
    bookings = seed(parts["connection"], [make_booking(business, i) for i in range(60)])
    queue = FlakyQueue(set())
    barrier = threading.Barrier(4)
    keys = tuple(b.key for b in bookings)

    def submit(use_keys: bool) -> int:
        sut = service(parts, [business], queue=queue)
        selection = parse_selection(
            {"bookingKeys": list(keys)} if use_keys else {"all": True},
            max_selection=100,
            business_ids=[business],
            zone=ZONE,
        )
        barrier.wait(timeout=30)
        return sut.submit(selection).accepted

    with ThreadPoolExecutor(4) as pool:
        accepted = list(pool.map(submit, [True, True, False, False]))
    assert sum(accepted) == 60
    assert sorted(m.booking_key for m in queue.sent) == sorted(keys)


def test_all_beyond_max_selection_is_refused_before_anything_is_claimed(parts: dict[str, Any]) -> None:
    business = new_business()
    bookings = seed(parts["connection"], [make_booking(business, i) for i in range(4)])
    queries = BookingQueries(parts["store"], [business])
    sut = SelectionService(parts["store"], queries, FlakyQueue(set()), parts["requests"], max_selection=3)
    with pytest.raises(SelectionTooLargeError, match="more than 3"):
        sut.submit(parse_selection({"all": True}, max_selection=3, business_ids=[business], zone=ZONE))
    store: BookingStore = parts["store"]
    assert all(store.get(business, b.key).status is BookingStatus.UNBILLED for b in bookings)  # type: ignore[union-attr]


def test_save_batch_is_all_or_nothing(parts: dict[str, Any]) -> None:
    business = new_business()
    seed(parts["connection"], [make_booking(business, i) for i in range(3)])
    store: BookingStore = parts["store"]
    now = store.clock()
    read = list(store.of_business(business))
    store.save(replace(read[1], customer_name="changed by the sync"))
    with pytest.raises(ConcurrentChangeError):
        store.save_batch([lifecycle.claim(b, "r", now) for b in read])
    assert [store.get(business, b.key).status for b in read] == [BookingStatus.UNBILLED] * 3  # type: ignore[union-attr]
    fresh = list(store.of_business(business))
    moved = store.save_batch([lifecycle.claim(b, "r", now) for b in fresh])
    assert [store.get(business, b.key) for b in moved] == moved  # new ETags returned
    with pytest.raises(ConcurrentChangeError):
        store.save_batch(fresh)  # the ETags read before the claim are stale now


class RacingStore(BookingStore):
    """A store where another writer invoices one booking just before each batch claim lands."""

    def __init__(self, inner: BookingStore, victims: set[str]) -> None:
        super().__init__(inner._table)
        self.victims = victims

    def save_batch(self, bookings: Any) -> list[Any]:
        for booking in bookings:
            if booking.key in self.victims:
                current = self.get(booking.business_id, booking.key)
                assert current is not None
                self.save(replace(current, status=BookingStatus.INVOICED, invoice_number="S-RACE"))
        return super().save_batch(bookings)


def test_a_batch_that_meets_a_concurrent_change_is_claimed_one_by_one(parts: dict[str, Any]) -> None:
    business = new_business()
    bookings = seed(parts["connection"], [make_booking(business, i) for i in range(150)])
    victims = {bookings[3].key, bookings[120].key}
    store = RacingStore(parts["store"], victims)
    queries = BookingQueries(store, [business])
    queue = FlakyQueue(set())
    sut = SelectionService(store, queries, queue, parts["requests"], max_selection=1000)
    result = sut.submit(Selection(keys=tuple(b.key for b in bookings)))
    assert result.accepted == 148
    assert {(s.key, s.status) for s in result.skipped} == {(k, BookingStatus.INVOICED) for k in victims}
    assert {m.booking_key for m in queue.sent} == {b.key for b in bookings} - victims


def test_status_of_a_large_request_reads_one_partition_instead_of_every_booking(
    parts: dict[str, Any],
) -> None:
    business = new_business()
    bookings = seed(parts["connection"], [make_booking(business, i) for i in range(12)])
    result = service(parts, [business], queue=FlakyQueue(set())).submit(
        Selection(keys=tuple(b.key for b in bookings))
    )
    store: BookingStore = parts["store"]
    again = store.get(business, bookings[0].key)
    assert again is not None
    # Selected again later by another request: the scan misses it, a point read still finds it.
    store.save(replace(again, status=BookingStatus.INVOICED, request_id="another", invoice_number="S-1"))
    by_points = RequestStatusReader(parts["requests"], store).read(result.request_id)
    by_scan = RequestStatusReader(parts["requests"], store, scan_from=5).read(result.request_id)
    assert by_points == by_scan
    assert by_scan is not None
    counts = request_status_view(by_scan)["counts"]
    assert counts["Queued"] == 11 and counts["Invoiced"] == 1


def test_a_request_refused_before_anything_was_queued_leaves_no_rows(parts: dict[str, Any]) -> None:
    """Storage failed while recording the items (after the claims): the claims are undone and the
    request's header and any item rows already written are deleted, so nothing is left that
    retention (which forgets a request with its last booking) would never reach."""
    business = new_business()
    bookings = seed(parts["connection"], [make_booking(business, n) for n in range(1, 4)])
    requests: InvoiceRequestStore = parts["requests"]
    real_add_items = requests.add_items
    recorded: list[str] = []

    def half_then_down(request_id: str, items: Any) -> None:
        real_add_items(request_id, items[:1])  # one row lands, then the table is unreachable
        recorded.append(request_id)
        raise StorageUnavailableError("transaction on table InvoiceRequests", 6, "ServiceResponseError")

    requests.add_items = half_then_down  # type: ignore[method-assign]
    with pytest.raises(StorageUnavailableError):
        service(parts, [business]).submit(Selection(keys=tuple(b.key for b in bookings)))
    (request_id,) = recorded
    assert requests.header(request_id) is None and requests.items(request_id) == []
    store: BookingStore = parts["store"]
    assert {store.get(business, b.key).status for b in bookings} == {BookingStatus.UNBILLED}  # type: ignore[union-attr]
