"""BookingStore against Azurite: mapping, lookups and conditional state changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from azure.data.tables import TableServiceClient

from shared.adapters.booking_store import BookingStore, ConcurrentChangeError
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


def test_transition_is_conditional(store: BookingStore) -> None:
    booking = store.create(make_booking())
    queued = store.transition(
        booking, BookingStatus.QUEUED, allowed_from={BookingStatus.UNBILLED}, request_id="r1"
    )
    assert queued.status is BookingStatus.QUEUED and queued.request_id == "r1"
    # A second writer holding the old ETag loses.
    with pytest.raises(ConcurrentChangeError):
        store.transition(
            booking, BookingStatus.QUEUED, allowed_from={BookingStatus.UNBILLED}, request_id="r2"
        )
    with pytest.raises(ValueError, match="is Queued"):
        store.transition(queued, BookingStatus.QUEUED, allowed_from={BookingStatus.UNBILLED})
    failed = store.transition(
        queued,
        BookingStatus.FAILED,
        allowed_from={BookingStatus.QUEUED},
        error_code="BC_REJECTED",
        error="no",
    )
    requeued = store.transition(
        failed, BookingStatus.QUEUED, allowed_from={BookingStatus.FAILED}, error_code=None, error=None
    )
    stored = store.get(requeued.business_id, requeued.key)
    assert stored.status is BookingStatus.QUEUED and stored.error_code is None and stored.error is None
