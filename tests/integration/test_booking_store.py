"""BookingStore against Azurite: mapping, lookups and conditional state changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from azure.data.tables import TableServiceClient

from shared.adapters.booking_index import BOOKING_ROWS_BELOW, booking_index_key
from shared.adapters.booking_store import BookingStore
from shared.domain import lifecycle
from shared.domain.errors import ConcurrentChangeError
from shared.domain.models import Booking, BookingStatus, PriceType, booking_key

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_booking(business: str = "lunch@contoso.com", appointment: str = "AAMk/x+Y=") -> Booking:
    return Booking(
        key=booking_key(business, appointment),
        business_id=business,
        appointment_id=appointment,
        service_id="svc-1",
        service_name="Catered bento",
        customer_name="Siobhán O'Brien",
        customer_email="O'Brien@Example.com",
        customer_phone=None,
        staff_member_ids=("staff-1",),
        start=datetime(2026, 2, 27, 23, 30, tzinfo=UTC),
        end=datetime(2026, 2, 28, 0, 30, tzinfo=UTC),
        price=42.5,
        price_type=PriceType.HOURLY,
    )


@pytest.fixture
def store(storage_connection_string: str, unique_name: str) -> BookingStore:
    service = TableServiceClient.from_connection_string(storage_connection_string)
    store = BookingStore(service.get_table_client(unique_name), clock=lambda: NOW)
    store.ensure_table()
    return store


def test_create_get_find_round_trip(store: BookingStore) -> None:
    created = store.create(make_booking())
    assert created.etag
    read = store.get(created.business_id, created.key)
    assert read == created
    assert read.updated_at == NOW and read.start.tzinfo is not None
    assert store.find(created.key) == created
    assert store.find("A" * 26) is None
    assert store.find("x' or 1 eq 1") is None
    with pytest.raises(ConcurrentChangeError):
        store.create(make_booking())


def test_lifecycle_transitions_saved_conditionally(store: BookingStore) -> None:
    booking = store.create(make_booking())
    queued = store.save(lifecycle.claim(booking, "r1", NOW))
    assert queued.status is BookingStatus.QUEUED and queued.request_id == "r1"
    # A second writer holding the old ETag loses.
    with pytest.raises(ConcurrentChangeError):
        store.save(lifecycle.claim(booking, "r2", NOW))
    with pytest.raises(lifecycle.IllegalTransition, match="is Queued"):
        lifecycle.claim(queued, "r3", NOW)
    failed = store.save(lifecycle.fail(queued, "BC_REJECTED", "no", NOW))
    requeued = store.save(lifecycle.claim(failed, "r4", NOW))
    stored = store.get(requeued.business_id, requeued.key)
    assert stored.status is BookingStatus.QUEUED and stored.error_code is None and stored.error is None


def index_rows(store: BookingStore, business: str) -> dict[str, dict[str, object]]:
    """The list index rows of a business, by the booking they mirror."""
    table = store._table
    rows = table.query_entities(
        "PartitionKey eq @pk and RowKey ge @ix", parameters={"pk": business, "ix": BOOKING_ROWS_BELOW}
    )
    return {str(row["BookingKey"]): dict(row) for row in rows}


def assert_index_in_step(store: BookingStore, business: str) -> None:
    bookings = {b.key: b for b in store.of_business(business)}
    rows = index_rows(store, business)
    assert set(rows) == set(bookings)
    for key, booking in bookings.items():
        assert rows[key]["RowKey"] == booking_index_key(booking)
        assert rows[key]["Status"] == str(booking.status) and rows[key]["Start"] == booking.start


def test_every_write_moves_the_index_row_in_the_same_transaction(store: BookingStore) -> None:
    booking = store.create(make_booking())
    assert_index_in_step(store, booking.business_id)
    queued = store.save(lifecycle.claim(booking, "r1", NOW))
    assert_index_in_step(store, booking.business_id)
    with pytest.raises(ConcurrentChangeError):
        store.save(lifecycle.claim(booking, "r2", NOW))  # stale ETag: neither row changes
    assert_index_in_step(store, booking.business_id)
    others = [store.create(make_booking(appointment=f"AAMk{n}")) for n in range(40)]
    claimed = store.save_batch([lifecycle.claim(b, "r3", NOW) for b in others[: store.max_batch]])
    assert len(claimed) == 33 and all(b.status is BookingStatus.QUEUED for b in claimed)
    assert_index_in_step(store, booking.business_id)
    assert queued.key not in {b.key for b in store.of_business("dinner@contoso.com")}
    assert len(list(store.of_business(booking.business_id))) == 41  # index rows are never bookings


def test_index_rows_list_newest_first_without_etags(store: BookingStore) -> None:
    from shared.domain.filters import BookingFilter

    for n in range(5):
        created = make_booking(appointment=f"AAMk{n}")
        created.start = created.start.replace(hour=n)
        store.create(created)
    piece = store.index_slice(BookingFilter(), "lunch@contoso.com", None, 3, 1)
    starts = [b.start.hour for _, b in piece.items]
    assert starts == [4, 3, 2] and piece.resume is not None
    assert all(b.etag is None for _, b in piece.items)
    rest = store.index_slice(BookingFilter(), "lunch@contoso.com", piece.resume, 3, 1)
    assert [b.start.hour for _, b in rest.items] == [1, 0] and rest.resume is None


def test_bookings_stored_before_the_list_index_are_backfilled_once(
    store: BookingStore, storage_connection_string: str, unique_name: str
) -> None:
    """A row written by an earlier version has no index row: unlisted until the backfill saves it;
    the business is then marked and later runs cost one point read."""
    from shared.adapters.booking_entities import booking_to_entity
    from shared.adapters.sync_state import SyncStateStore
    from shared.domain.filters import BookingFilter
    from shared.services.booking_queries import BookingQueries
    from shared.services.list_index_backfill import backfill_list_index

    business = "lunch@contoso.com"
    legacy = [make_booking(business, f"AAMk-legacy-{n}") for n in range(3)]
    for booking in legacy:  # as an earlier version wrote them: the booking row alone
        store._table.create_entity(booking_to_entity(booking))
    current = store.create(make_booking(business, "AAMk-current"))
    queries = BookingQueries(store, [business])
    listed = lambda: {b.key for b in queries.page(BookingFilter(), 100).items}  # noqa: E731
    assert listed() == {current.key}

    service = TableServiceClient.from_connection_string(storage_connection_string)
    markers = SyncStateStore(service.get_table_client(f"{unique_name}s"), clock=lambda: NOW)
    markers.ensure_table()
    assert backfill_list_index(store, markers, [business], limit=2) == 2  # bounded: continues later
    assert not markers.list_index_done(business)
    assert backfill_list_index(store, markers, [business], limit=2) == 1
    assert markers.list_index_done(business)
    assert listed() == {current.key, *(b.key for b in legacy)}
    assert_index_in_step(store, business)
    assert backfill_list_index(store, markers, [business]) == 0  # marked: no scan any more


def test_invoicing_rests_in_the_queued_range_and_its_claim_is_one_write(
    store: BookingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queued -> Invoicing writes the booking row alone (no transaction); the index row stays in
    the Queued range, yet a list of either state shows each booking in its current state; the
    record moves the index row to where the booking rests."""
    from shared.domain.filters import BookingFilter

    business = "lunch@contoso.com"
    waiting = store.save(lifecycle.claim(store.create(make_booking(appointment="AAMk-wait")), "r1", NOW))
    queued = store.save(lifecycle.claim(store.create(make_booking()), "r1", NOW))
    queued_key = booking_index_key(queued)

    def no_transaction(*_: object, **__: object) -> None:
        raise AssertionError("a claim for invoicing must not be a table transaction")

    with monkeypatch.context() as patch:
        patch.setattr(store._table, "submit_transaction", no_transaction)
        invoicing = store.save(lifecycle.start_invoicing(queued, "message-1", NOW))
    assert store.get(business, queued.key).status is BookingStatus.INVOICING
    row = index_rows(store, business)[queued.key]
    assert row["RowKey"] == queued_key and booking_index_key(invoicing) == queued_key

    def listed(status: BookingStatus) -> dict[str, BookingStatus]:
        piece = store.index_slice(BookingFilter(status=status), business, None, 10, 2)
        return {b.key: b.status for _, b in piece.items}

    assert listed(BookingStatus.INVOICING) == {queued.key: BookingStatus.INVOICING}
    assert listed(BookingStatus.QUEUED) == {waiting.key: BookingStatus.QUEUED}
    with pytest.raises(ConcurrentChangeError):
        store.save(lifecycle.start_invoicing(queued, "message-2", NOW))  # stale ETag loses
    taken_over = store.save(lifecycle.start_invoicing(invoicing, "message-2", NOW))
    invoiced = store.save(lifecycle.record_invoice(taken_over, "inv-1", "S-INV-1", NOW, "Draft"))
    assert invoiced.status is BookingStatus.INVOICED
    assert_index_in_step(store, business)
    assert listed(BookingStatus.INVOICING) == {}
    assert listed(BookingStatus.INVOICED) == {queued.key: BookingStatus.INVOICED}
