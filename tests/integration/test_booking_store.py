"""BookingStore against Azurite: mapping, lookups and conditional state changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from azure.data.tables import TableServiceClient

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
