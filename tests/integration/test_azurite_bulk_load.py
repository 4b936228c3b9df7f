"""The benchmarks' bulk loader (`bench/azurite_bulk.py`) leaves in Azurite what the SDK's writes leave.

The portal benchmark writes most of its 100,000 bookings straight into Azurite's database file. If
a newer Azurite (or table SDK) stored entities differently, the benchmark would measure something
the product never meets; this test fails first. The same bookings, varied in every field the
entity has, go into one business through the table API and into another through the bulk loader;
read back through the product's store (point reads, the list index, a conditional save), they
must be equal in every field but the keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import TableServiceClient

from bench import azurite_bulk, support
from devhost.azurite import start_azurite
from shared.adapters.booking_entities import BOOKINGS_TABLE
from shared.adapters.booking_store import BookingStore
from shared.domain.errors import ConcurrentChangeError
from shared.domain.filters import BookingFilter
from shared.domain.models import Actor, Booking, BookingStatus, InvoiceSource, PriceType
from tests.unit.builders import make_booking

THROUGH_API = "api@contoso.com"
BULK = "bulk@contoso.com"
WRITES = "writes@contoso.com"  # bulk-loaded too, for the test that writes (the others only read)
COUNT = 50
AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def varied(business: str, number: int) -> Booking:
    """Booking `number` of 50: every status, optional field and value type a booking row holds."""
    statuses = list(BookingStatus)
    booking = make_booking(
        business,
        number,
        status=statuses[number % len(statuses)],
        start=AT + timedelta(minutes=15 * number),
        end=AT + timedelta(minutes=15 * number + 45),
        customer_name=f"Zoë O'Brien {number}",
        customer_email=f"Zoe.OBrien{number}@Example.com",
        price=12.5 * number,
        price_type=PriceType.HOURLY if number % 2 else PriceType.FIXED_PRICE,
        staff_member_ids=tuple(f"staff-{i}" for i in range(number % 3)),
    )
    if number % 4 == 0:
        booking = replace(booking, customer_name=None, customer_email=None, has_customer=False)
    if number % 5 == 0:
        booking = replace(
            booking,
            invoice_id=f"inv-{number}",
            invoice_number=f"PS-{number:05d}",
            invoice_status="Open",
            invoice_source=InvoiceSource.APP,
            invoice_attempts=number,
            request_id=f"req-{number}",
            claimed_by=f"msg-{number}",
            note="paid at the desk\nwith a card",
            updated_by=Actor(f"oid-{number}", "Ada Lovelace"),
        )
    if number % 7 == 0:
        booking = replace(
            booking, error_code="CUSTOMER_NOT_FOUND", error="No customer 'x' ✗", group_appointment=True
        )
    if number % 6 == 0:
        booking = replace(booking, customer_phone="+31 20 123 4567", updated_at=None, status_changed_at=None)
    return booking


def without_keys(booking: Booking) -> Booking:
    """The booking with its keys (and the index row key, which ends with its key) blanked."""
    extra = {name: str(value).replace(booking.key, "") for name, value in booking.extra.items()}
    return replace(booking, key="", business_id="", extra=extra)


def listed(store: BookingStore, business: str, status: BookingStatus) -> list[tuple[str, Booking]]:
    """The list index's page of one status, newest first, index row keys without the booking key."""
    page = store.index_slice(BookingFilter(status=status), business, None, COUNT, 10)
    return [(row_key.replace(booking.key, ""), without_keys(booking)) for row_key, booking in page.items]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BookingStore]:
    """Azurite on a directory of its own holding the businesses: one written through the table
    API, the others bulk-loaded. It starts twice (before and after the load): once a module."""
    location = tmp_path_factory.mktemp("bulk") / "azurite"
    with start_azurite(location=location) as azurite:
        support.seed(azurite.connection_string, [varied(THROUGH_API, n) for n in range(COUNT)])
    assert azurite_bulk.check_format(location, [varied(THROUGH_API, n) for n in range(COUNT)]) == 2 * COUNT
    bulk = [varied(BULK, n) for n in range(COUNT)] + [varied(WRITES, n) for n in range(2)]
    loaded = azurite_bulk.bulk_load(location, bulk)
    assert loaded.count == 2 * COUNT + 2 * len(bulk)
    with start_azurite(location=location) as azurite:
        service = TableServiceClient.from_connection_string(azurite.connection_string)
        yield BookingStore(service.get_table_client(BOOKINGS_TABLE))


def test_bulk_loaded_bookings_read_back_as_the_ones_written_through_the_api(stores: BookingStore) -> None:
    for number in range(COUNT):
        expected = varied(BULK, number)
        through_api = stores.get(THROUGH_API, varied(THROUGH_API, number).key)
        bulk = stores.get(BULK, expected.key)
        assert through_api is not None and bulk is not None
        assert replace(bulk, extra={}) == expected
        assert without_keys(bulk) == without_keys(through_api)
        assert bulk.etag and bulk.etag != through_api.etag


def test_the_list_index_lists_bulk_loaded_bookings_as_written_ones(stores: BookingStore) -> None:
    for status in BookingStatus:
        bulk = listed(stores, BULK, status)
        assert bulk, status
        assert bulk == listed(stores, THROUGH_API, status)
        starts = [booking.start for _, booking in bulk]
        assert starts == sorted(starts, reverse=True)


def test_a_bulk_loaded_booking_takes_a_conditional_save(stores: BookingStore) -> None:
    booking = stores.get(WRITES, varied(WRITES, 0).key)
    assert booking is not None and booking.status is BookingStatus.UNBILLED
    saved = stores.save(replace(booking, status=BookingStatus.QUEUED, request_id="req-bulk"))
    with pytest.raises(ConcurrentChangeError):  # its ETag is checked like any other's
        stores.save(replace(booking, status=BookingStatus.EXCLUDED))
    again = stores.get(WRITES, booking.key)
    assert again is not None and again.status is BookingStatus.QUEUED and again.etag == saved.etag
    queued = stores.index_slice(BookingFilter(status=BookingStatus.QUEUED), WRITES, None, 100, 10)
    unbilled = stores.index_slice(BookingFilter(status=BookingStatus.UNBILLED), WRITES, None, 100, 10)
    assert booking.key in [b.key for _, b in queued.items]  # its index row moved with it
    assert booking.key not in [b.key for _, b in unbilled.items]
