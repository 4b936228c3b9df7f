"""Sync logic: the window, keys and fingerprints (pure), conditional batch upserts (Azurite), and the
use case with a scripted Graph (so interleavings are exact, not timing-dependent)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableClient, TableServiceClient

from shared.adapters.booking_entities import entity_to_booking
from shared.adapters.booking_store import BookingStore
from shared.adapters.booking_upserts import BookingUpserter
from shared.adapters.graph_bookings import GraphError
from shared.adapters.sync_state import SyncStateStore
from shared.domain.models import (
    Appointment,
    AppointmentPage,
    Booking,
    BookingStatus,
    Customer,
    PriceType,
    booking_key,
    is_booking_key,
)
from shared.domain.sync_decisions import SyncOutcome as Outcome
from shared.domain.sync_decisions import booking_from_appointment, fingerprint
from shared.domain.sync_window import plan_window
from shared.services.booking_sync import BookingSync, prefetch
from tests.helpers import force_state

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
A = "lunch@contoso.com"
B = "fitness@contoso.com"


def appointment(business: str, n: int, *, end: datetime | None = None, **changes: Any) -> Appointment:
    ends = end or NOW - timedelta(days=1, hours=n % 500)
    base = Appointment(
        business_id=business,
        id=f"AAMk{n}/x+y=",
        service_id="svc-1",
        service_name="Catered bento",
        customer=Customer(name=f"Customer {n}", email=f"c{n}@contoso.com"),
        staff_member_ids=("staff-1",),
        start=ends - timedelta(minutes=30),
        end=ends,
        price=10.0,
        price_type=PriceType.FIXED_PRICE,
    )
    return replace(base, **changes)


# -- pure -------------------------------------------------------------------------------------------


def test_first_run_reads_the_lookback() -> None:
    window = plan_window(NOW, None, 30)
    assert (window.start, window.end, window.first_run) == (NOW - timedelta(days=30), NOW, True)


def test_normal_run_rereads_the_whole_lookback_for_late_edits() -> None:
    window = plan_window(NOW, NOW - timedelta(minutes=15), 30)
    assert (window.start, window.end, window.catching_up) == (NOW - timedelta(days=30), NOW, False)


def test_after_an_outage_longer_than_the_lookback_the_window_starts_at_the_watermark() -> None:
    watermark = NOW - timedelta(days=45)
    window = plan_window(NOW, watermark, 30, overlap=timedelta(hours=1))
    assert (window.start, window.end, window.catching_up) == (watermark - timedelta(hours=1), NOW, True)


def test_plan_window_needs_an_aware_now() -> None:
    with pytest.raises(ValueError):
        plan_window(NOW.replace(tzinfo=None), None, 30)


def test_booking_keys_are_stable_url_safe_and_per_business() -> None:
    key = booking_key(A, "AAMk/x+y=")
    assert is_booking_key(key) and key == booking_key(A, "AAMk/x+y=")
    assert key != booking_key(B, "AAMk/x+y=")
    assert appointment(A, 1).key == booking_key(A, "AAMk1/x+y=")


def test_an_appointment_without_customer_becomes_a_booking_marked_for_no_customer() -> None:
    booking = booking_from_appointment(appointment(A, 1, customer=None))
    assert booking.has_customer is False and booking.customer_email is None
    assert booking.status == BookingStatus.UNBILLED


def test_fingerprint_changes_with_any_descriptive_field() -> None:
    base = fingerprint(booking_from_appointment(appointment(A, 1)))
    assert base == fingerprint(booking_from_appointment(appointment(A, 1)))
    for changes in (
        {"price": 11.0},
        {"price_type": PriceType.HOURLY},
        {"service_name": "Other"},
        {"customer": None},
        {"customer": Customer(name="Customer 1", email="other@contoso.com")},
        {"staff_member_ids": ("staff-2",)},
        {"start": NOW - timedelta(days=2)},
    ):
        assert fingerprint(booking_from_appointment(appointment(A, 1, **changes))) != base, changes


def test_prefetch_reads_ahead_at_most_depth_and_propagates_errors() -> None:
    produced: list[int] = []

    def items() -> Iterator[int]:
        for n in range(10):
            produced.append(n)
            yield n
        raise RuntimeError("page 11 failed")

    seen = []
    with pytest.raises(RuntimeError, match="page 11"):
        for item in prefetch(items(), 2):
            seen.append(item)
            assert len(produced) <= item + 1 + 3  # the consumed one, 2 queued, 1 in hand
    assert seen == list(range(10))


def test_prefetch_stops_the_producer_when_the_consumer_stops() -> None:
    stopped = threading.Event()

    def items() -> Iterator[int]:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            stopped.set()

    iterator = prefetch(items(), 1)
    assert next(iterator) == 0
    iterator.close()
    assert stopped.wait(10)


# -- the upserter on Azurite ---------------------------------------------------------------------------


@pytest.fixture
def table(storage_connection_string: str, unique_name: str) -> Iterator[TableClient]:
    service = TableServiceClient.from_connection_string(storage_connection_string)
    client = service.create_table(unique_name)
    try:
        yield client
    finally:
        service.delete_table(unique_name)


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


def evidence(items: Iterable[Appointment], at: datetime = NOW) -> list[tuple[Appointment, datetime]]:
    return [(item, at) for item in items]


def test_transactions_are_filled_by_operations_new_bookings_fifty_moved_ones_thirty_three(
    table: TableClient,
) -> None:
    # A transaction holds 100 operations: a new booking is 2 (itself and its list index row), so
    # 50 fit; one whose index row moves is 3 (itself, the new index row, the old one's delete): 33.
    upserter = BookingUpserter(table, clock=Clock())
    items = [appointment(A, n) for n in range(250)]

    outcomes = upserter.upsert(A, evidence(items), {})

    assert outcomes == Counter({Outcome.CREATED: 250})
    assert upserter.transactions == 5 and upserter.entity_writes == 250
    stored = {b.key: b for b in BookingStore(table).of_business(A)}
    assert set(stored) == {a.key for a in items}
    assert all(b.status == BookingStatus.UNBILLED and b.status_changed_at == NOW for b in stored.values())

    moved = [replace(a, start=a.start - timedelta(hours=1), end=a.end - timedelta(hours=1)) for a in items]
    outcomes = upserter.upsert(A, evidence(moved), snapshot_of(upserter))

    assert outcomes == Counter({Outcome.UPDATED: 250})
    assert upserter.transactions == 5 + 8  # ceil(250 / 33)
    index_rows = list(table.query_entities("PartitionKey eq @b and RowKey ge '~'", parameters={"b": A}))
    assert len(index_rows) == 250  # every old index row deleted in its booking's transaction
    assert {row["Start"] for row in index_rows} == {a.start for a in moved}


def test_a_stored_booking_fingerprints_like_its_appointment(table: TableClient) -> None:
    """Round trip through the table: an unchanged appointment is recognised as unchanged."""
    item = appointment(A, 1, customer=None, price=12.345)
    BookingUpserter(table, clock=Clock()).upsert(A, evidence([item]), {})
    [entity] = table.query_entities("PartitionKey eq @b and RowKey lt '~'", parameters={"b": A})
    assert fingerprint(entity_to_booking(entity)) == fingerprint(booking_from_appointment(item))


def snapshot_of(upserter: BookingUpserter, business: str = A) -> dict[str, Booking]:
    return upserter.stored_in_window(business, NOW - timedelta(days=60), NOW)


def test_unchanged_are_skipped_changed_are_replaced_with_their_etag(table: TableClient) -> None:
    clock = Clock()
    upserter = BookingUpserter(table, clock=clock)
    items = [appointment(A, n) for n in range(5)]
    upserter.upsert(A, evidence(items), {})
    before = {b.key: b for b in BookingStore(table).of_business(A)}
    clock.now = NOW + timedelta(minutes=15)
    items[2] = replace(items[2], price=99.0, customer=None)

    outcomes = upserter.upsert(A, evidence(items, clock.now), snapshot_of(upserter))

    assert outcomes == Counter({Outcome.UNCHANGED: 4, Outcome.UPDATED: 1})
    after = {b.key: b for b in BookingStore(table).of_business(A)}
    changed = after[items[2].key]
    assert (changed.price, changed.has_customer, changed.customer_email) == (99.0, False, None)
    assert changed.status_changed_at == NOW and changed.updated_at == clock.now
    assert all(after[k].etag == before[k].etag for k in before if k != items[2].key)


def test_bookings_in_invoicing_are_never_rewritten_failed_ones_only_get_fresh_data(
    table: TableClient,
) -> None:
    upserter = BookingUpserter(table, clock=Clock())
    items = [appointment(A, n) for n in range(5)]
    upserter.upsert(A, evidence(items), {})
    store = BookingStore(table, clock=Clock())
    locked = {}
    for item, status in zip(
        items, (BookingStatus.QUEUED, BookingStatus.INVOICING, BookingStatus.INVOICED), strict=False
    ):
        booking = store.get(A, item.key)
        assert booking is not None
        locked[item.key] = force_state(store, booking, status, invoice_number="S-1")
    failed = store.get(A, items[3].key)
    assert failed is not None
    failed = force_state(
        store,
        failed,
        BookingStatus.FAILED,
        error_code="NO_CUSTOMER",
        error="none",
    )

    edited = [replace(item, price=50.0) for item in items]
    outcomes = upserter.upsert(A, evidence(edited), snapshot_of(upserter))

    assert outcomes == Counter({Outcome.LOCKED: 3, Outcome.UPDATED: 2})
    for key, booking in locked.items():
        assert store.get(A, key) == booking
    refreshed = store.get(A, failed.key)
    assert refreshed is not None and refreshed.price == 50.0
    assert refreshed == replace(failed, price=50.0, updated_at=refreshed.updated_at)  # state and error kept


def test_a_claim_between_snapshot_and_write_is_never_overwritten(table: TableClient) -> None:
    """The API claims a booking after the sync read its snapshot: the batch's ETag check catches it."""
    upserter = BookingUpserter(table, clock=Clock())
    items = [appointment(A, n) for n in range(30)]
    upserter.upsert(A, evidence(items), {})
    snapshot = snapshot_of(upserter)
    store = BookingStore(table, clock=Clock())
    claimed = store.get(A, items[7].key)
    assert claimed is not None
    claimed = force_state(
        store,
        claimed,
        BookingStatus.QUEUED,
    )

    edited = [replace(item, price=20.0) for item in items]
    outcomes = upserter.upsert(A, evidence(edited), snapshot)

    assert outcomes == Counter({Outcome.UPDATED: 29, Outcome.LOCKED: 1})
    assert store.get(A, items[7].key) == claimed  # still Queued, old price
    assert all(store.get(A, item.key).price == 20.0 for item in items if item is not items[7])  # type: ignore[union-attr]


def test_a_booking_created_by_an_overlapping_run_is_settled_not_duplicated(table: TableClient) -> None:
    first, second = BookingUpserter(table, clock=Clock()), BookingUpserter(table, clock=Clock())
    items = [appointment(A, n) for n in range(10)]
    snapshot = snapshot_of(second)  # empty: taken before the first run wrote anything
    first.upsert(A, evidence(items[:6]), {})

    outcomes = second.upsert(A, evidence(items), snapshot)

    assert outcomes == Counter({Outcome.CREATED: 4, Outcome.UNCHANGED: 6})
    assert len(list(BookingStore(table).of_business(A))) == 10


def test_older_evidence_never_overwrites_newer_data(table: TableClient) -> None:
    clock = Clock()
    upserter = BookingUpserter(table, clock=clock)
    item = appointment(A, 1)
    upserter.upsert(A, evidence([item]), {})
    stale_snapshot = snapshot_of(upserter)
    clock.now = NOW + timedelta(minutes=20)  # a newer run stores a newer price
    upserter.upsert(A, evidence([replace(item, price=30.0)], clock.now), snapshot_of(upserter))

    # A slow run whose page was read before that write comes back with the old price.
    outcomes = upserter.upsert(
        A, evidence([replace(item, price=15.0)], NOW + timedelta(minutes=5)), stale_snapshot
    )

    assert outcomes == Counter({Outcome.STALE: 1})
    assert BookingStore(table).get(A, item.key).price == 30.0  # type: ignore[union-attr]


def test_each_entity_once_per_transaction_the_last_copy_wins(table: TableClient) -> None:
    upserter = BookingUpserter(table, clock=Clock())
    item = appointment(A, 1)

    outcomes = upserter.upsert(A, evidence([item, replace(item, price=12.0), appointment(A, 2)]), {})

    assert outcomes == Counter({Outcome.CREATED: 2})
    assert upserter.transactions == 1
    assert BookingStore(table).get(A, item.key).price == 12.0  # type: ignore[union-attr]


def test_missing_unbilled_bookings_are_cancelled_and_come_back_when_seen_again(table: TableClient) -> None:
    clock = Clock()
    upserter = BookingUpserter(table, clock=clock)
    items = [appointment(A, n) for n in range(3)]
    upserter.upsert(A, evidence(items), {})
    store = BookingStore(table)
    invoiced = store.get(A, items[2].key)
    assert invoiced is not None
    invoiced = force_state(
        store,
        invoiced,
        BookingStatus.INVOICED,
    )
    clock.now = NOW + timedelta(minutes=15)
    snapshot = snapshot_of(upserter)
    upserter.upsert(A, evidence(items[:1], clock.now), snapshot)  # items 1 and 2 are gone from Graph

    outcomes = upserter.cancel_missing(A, snapshot.values(), clock.now)

    assert outcomes == Counter({Outcome.CANCELLED: 1, Outcome.LOCKED: 1})
    cancelled = store.get(A, items[1].key)
    assert cancelled is not None and cancelled.status == BookingStatus.CANCELLED
    assert cancelled.status_changed_at == clock.now and cancelled.price == items[1].price
    assert store.get(A, items[2].key) == invoiced

    clock.now = NOW + timedelta(minutes=30)
    assert upserter.upsert(A, evidence(items, clock.now), snapshot_of(upserter))[Outcome.REVIVED] == 1
    assert store.get(A, items[1].key).status == BookingStatus.UNBILLED  # type: ignore[union-attr]


def test_cancellations_move_index_rows_thirty_three_bookings_a_transaction(table: TableClient) -> None:
    upserter = BookingUpserter(table, clock=Clock())
    items = [appointment(A, n) for n in range(100)]
    upserter.upsert(A, evidence(items), {})
    before = upserter.transactions

    outcomes = upserter.cancel_missing(A, snapshot_of(upserter).values(), NOW)

    assert outcomes == Counter({Outcome.CANCELLED: 100})
    assert upserter.transactions - before == 4  # 3 operations each: ceil(100 / 33)
    index_rows = list(table.query_entities("PartitionKey eq @b and RowKey ge '~'", parameters={"b": A}))
    assert len(index_rows) == 100 and {row["Status"] for row in index_rows} == {"Cancelled"}


def test_a_claim_before_the_cancellation_wins(table: TableClient) -> None:
    upserter = BookingUpserter(table, clock=Clock())
    item = appointment(A, 1)
    upserter.upsert(A, evidence([item]), {})
    snapshot = snapshot_of(upserter)
    store = BookingStore(table)
    claimed = force_state(
        store,
        store.get(A, item.key),
        BookingStatus.QUEUED,
    )  # type: ignore[arg-type]

    outcomes = upserter.cancel_missing(A, snapshot.values(), NOW)

    assert outcomes == Counter({Outcome.LOCKED: 1})
    assert store.get(A, item.key) == claimed


# -- the use case with a scripted Graph -------------------------------------------------------------------


@dataclass
class ScriptedGraph:
    """Graph as a script: appointments per business, a page size, and an optional failure."""

    appointments: dict[str, list[Appointment]]
    page_size: int = 10
    fail_after_pages: dict[str, int] = field(default_factory=dict)
    pages_served: Counter[str] = field(default_factory=Counter)
    windows: list[tuple[str, datetime, datetime]] = field(default_factory=list)

    def calendar_view_pages(
        self, business_id: str, start: datetime, end: datetime, *, deadline: datetime | None = None
    ) -> Iterator[AppointmentPage]:
        self.windows.append((business_id, start, end))
        if business_id not in self.appointments:
            raise GraphError(404, "itemNotFound", "The specified object was not found in the store.")
        inside = [a for a in self.appointments[business_id] if a.end > start and a.start < end]
        for index in range(0, len(inside), self.page_size):
            if self.pages_served[business_id] == self.fail_after_pages.get(business_id, -1):
                raise GraphError(503, "serviceNotAvailable", "try later")
            self.pages_served[business_id] += 1
            yield AppointmentPage(tuple(inside[index : index + self.page_size]), (), NOW)

    def get_appointment(
        self, business_id: str, appointment_id: str, *, deadline: datetime | None = None
    ) -> Appointment | None:
        return next((a for a in self.appointments.get(business_id, []) if a.id == appointment_id), None)


def make_sync(
    table: TableClient, state_table: TableClient, graph: ScriptedGraph, clock: Clock, *businesses: str
) -> BookingSync:
    return BookingSync(
        graph,  # type: ignore[arg-type]
        BookingUpserter(table, clock=clock),
        SyncStateStore(state_table, clock=clock),
        businesses,
        30,
        clock=clock,
    )


@pytest.fixture
def state_table(storage_connection_string: str, unique_name: str) -> Iterator[TableClient]:
    service = TableServiceClient.from_connection_string(storage_connection_string)
    client = service.create_table(unique_name + "s")
    try:
        yield client
    finally:
        service.delete_table(unique_name + "s")


def test_a_failure_midway_writes_what_was_read_but_cancels_nothing_and_keeps_the_watermark(
    table: TableClient, state_table: TableClient
) -> None:
    clock = Clock()
    graph = ScriptedGraph(
        {A: [appointment(A, n) for n in range(40)], B: [appointment(B, n) for n in range(5)]}
    )
    make_sync(table, state_table, graph, clock, A, B).run()
    state = SyncStateStore(state_table)
    assert state.get(A).fully_read_to == NOW

    clock.now = NOW + timedelta(minutes=15)
    del graph.appointments[A][35:]  # five cancelled ...
    graph.appointments[A][0] = replace(graph.appointments[A][0], price=77.0)  # ... one edited
    graph.fail_after_pages = {A: graph.pages_served[A] + 2}  # ... and Graph fails on the third page
    report = make_sync(table, state_table, graph, clock, A, B).run()

    assert [r.succeeded for r in report.results] == [False, True]
    assert "serviceNotAvailable" in (report.results[0].error or "")
    stored = {b.appointment_id: b for b in BookingStore(table).of_business(A)}
    assert stored["AAMk0/x+y="].price == 77.0  # written before the failure
    assert all(b.status == BookingStatus.UNBILLED for b in stored.values())  # nothing cancelled
    assert state.get(A).fully_read_to == NOW and state.get(A).last_outcome == "failed"
    assert state.get(B).fully_read_to == clock.now


def test_only_completed_appointments_are_stored_and_running_ones_are_not_cancelled(
    table: TableClient, state_table: TableClient
) -> None:
    clock = Clock()
    done = appointment(A, 1)
    running = appointment(A, 2, end=NOW + timedelta(minutes=20))
    graph = ScriptedGraph({A: [done, running]})
    make_sync(table, state_table, graph, clock, A).run()
    assert [b.appointment_id for b in BookingStore(table).of_business(A)] == [done.id]

    # The stored booking is extended into the future: it gets the new end (so it is not billable
    # until then) and is not cancelled; the running one still gets no booking.
    graph.appointments[A] = [replace(done, end=NOW + timedelta(hours=2)), running]
    clock.now = NOW + timedelta(minutes=5)
    [result] = make_sync(table, state_table, graph, clock, A).run().results
    assert result.not_completed == 2 and result.counts()["cancelled"] == 0
    assert result.counts()["updated"] == 1 and result.counts()["new"] == 0
    stored = BookingStore(table).get(A, done.key)
    assert stored is not None and stored.status == BookingStatus.UNBILLED
    assert stored.end == NOW + timedelta(hours=2)


def test_an_appointment_moved_out_of_the_window_is_refreshed_not_cancelled(
    table: TableClient, state_table: TableClient
) -> None:
    clock = Clock()
    item = appointment(A, 1)
    graph = ScriptedGraph({A: [item]})
    make_sync(table, state_table, graph, clock, A).run()
    moved = replace(item, start=NOW - timedelta(days=90), end=NOW - timedelta(days=90) + timedelta(hours=1))
    graph.appointments[A] = [moved]
    clock.now = NOW + timedelta(minutes=5)

    [result] = make_sync(table, state_table, graph, clock, A).run().results

    assert result.counts()["updated"] == 1 and result.counts()["cancelled"] == 0
    assert BookingStore(table).get(A, item.key).start == moved.start  # type: ignore[union-attr]


def test_pages_are_processed_as_they_arrive(table: TableClient, state_table: TableClient) -> None:
    """Memory stays flat: the sync never holds more than a few pages of appointments."""
    clock = Clock()
    graph = ScriptedGraph({A: [appointment(A, n) for n in range(300)]}, page_size=10)
    sync = make_sync(table, state_table, graph, clock, A)
    ahead: list[int] = []
    original = sync.upserter.upsert

    def watching(
        business_id: str, items: Iterable[tuple[Appointment, datetime]], snapshot: dict[str, Booking]
    ) -> Any:
        def observed() -> Iterator[tuple[Appointment, datetime]]:
            for count, item in enumerate(items):
                ahead.append(graph.pages_served[A] - count // 10)
                yield item

        return original(business_id, observed(), snapshot)

    sync.upserter.upsert = watching  # type: ignore[method-assign]
    [result] = sync.run().results

    assert result.counts()["new"] == 300
    assert max(ahead) <= 1 + sync.prefetch_pages + 1


def test_the_watermark_only_moves_forward(state_table: TableClient) -> None:
    state = SyncStateStore(state_table, clock=Clock())
    assert state.record_success(A, NOW, {"read": 1}) == NOW
    assert state.record_success(A, NOW - timedelta(hours=1), {"read": 2}) == NOW  # an older, slower run
    assert state.get(A).fully_read_to == NOW
    state.record_failure(A, "TokenError: token for graph failed")
    assert state.get(A).fully_read_to == NOW and state.get(A).last_outcome == "failed"
