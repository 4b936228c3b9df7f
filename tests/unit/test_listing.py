"""Newest-first lists across businesses: index keys, cursors and the merge of per-business slices."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from shared.adapters.booking_index import (
    BOOKING_ROWS_BELOW,
    BOOKINGS_PER_TRANSACTION,
    booking_index_key,
    index_row_key,
    row_key_range,
)
from shared.domain.filters import BookingFilter
from shared.domain.listing import Cursor, IndexSlice, merge_slices
from shared.domain.models import BookingStatus
from shared.services.booking_queries import BookingQueries
from tests.unit.builders import BASE_START, DINNER, LUNCH, make_booking
from tests.unit.fakes import FakeBookingStore


def test_index_keys_sort_newest_first_by_status_and_never_as_bookings() -> None:
    older, newer = make_booking(LUNCH, 1), make_booking(LUNCH, 2)
    assert booking_index_key(newer) < booking_index_key(older)
    assert all(booking_index_key(b) > BOOKING_ROWS_BELOW > b.key for b in (older, newer))
    failed = index_row_key(BookingStatus.FAILED, older.start, older.key)
    low, high = row_key_range(BookingFilter(status=BookingStatus.UNBILLED))
    assert low <= booking_index_key(older) < high and not low <= failed < high
    assert BOOKINGS_PER_TRANSACTION * 3 <= 100


@pytest.mark.parametrize(
    ("start_hours", "from_hours", "to_hours", "inside"),
    [(5, 5, 6, True), (6, 5, 6, False), (4, 5, 6, False), (5, None, 6, True), (7, 5, None, True)],
)
def test_the_start_range_is_a_row_key_range(
    start_hours: int, from_hours: int | None, to_hours: int | None, inside: bool
) -> None:
    def at(hours: int | None) -> datetime | None:
        return None if hours is None else BASE_START + timedelta(hours=hours)

    booking = make_booking(LUNCH, 1, start=at(start_hours))
    low, high = row_key_range(BookingFilter(start_from=at(from_hours), start_before=at(to_hours)))
    assert (low <= booking_index_key(booking) < high) is inside


def seeded(counts: dict[str, int], **changes: object) -> FakeBookingStore:
    store = FakeBookingStore()
    for business, count in counts.items():
        offset = 0 if business == LUNCH else 1000
        # Interleaved starts: lunch at even half-hours, dinner at odd ones.
        for n in range(count):
            start = BASE_START + timedelta(minutes=60 * n + (30 if business == DINNER else 0))
            store.put(make_booking(business, offset + n, start=start, **changes))
    return store


@pytest.mark.parametrize("top", [1, 3, 7, 50])
def test_pages_merge_businesses_newest_first_and_cover_each_booking_once(top: int) -> None:
    store = seeded({LUNCH: 9, DINNER: 4})
    queries = BookingQueries(store, [LUNCH, DINNER])
    seen, position, pages = [], None, 0
    while True:
        page = queries.page(BookingFilter(), top, position)
        assert len(page.items) <= top
        seen += page.items
        pages += 1
        position = page.next_position
        if position is None:
            break
        assert pages < 100, "paging must end"
    assert len({b.key for b in seen}) == len(seen) == 13
    assert [b.start for b in seen] == sorted((b.start for b in seen), reverse=True)


def test_a_filter_and_a_business_narrow_the_merge() -> None:
    store = seeded({LUNCH: 5, DINNER: 5})
    queries = BookingQueries(store, [LUNCH, DINNER])
    page = queries.page(BookingFilter(business_id=DINNER), 100)
    assert {b.business_id for b in page.items} == {DINNER} and len(page.items) == 5
    page = queries.page(BookingFilter(customer_name="CUSTOMER 100"), 100)
    assert sorted(b.customer_name or "" for b in page.items) == [f"Customer {n}" for n in range(1000, 1005)]


def test_a_slice_that_stopped_early_holds_back_later_rows_of_other_businesses() -> None:
    lunch = [(f"k{n:02d}", make_booking(LUNCH, n)) for n in (1, 5, 9)]
    dinner = [(f"k{n:02d}", make_booking(DINNER, n)) for n in (2,)]
    scan = Cursor("k04", ("k00", (("RowKey", "opaque"),)))
    slices = {LUNCH: IndexSlice(lunch, None), DINNER: IndexSlice(dinner, scan)}
    items, following = merge_slices(slices, {LUNCH: None, DINNER: None}, 10)
    # Dinner was scanned only up to k04: lunch's k05 and k09 must wait for the next page.
    assert [b.key for b in items] == [lunch[0][1].key, dinner[0][1].key]
    assert following == {LUNCH: Cursor("k01"), DINNER: scan}


def test_a_scan_that_found_nothing_still_moves_on() -> None:
    lunch = [(f"k{n:02d}", make_booking(LUNCH, n)) for n in (5, 9)]
    scan = Cursor("", ("k00", (("RowKey", "opaque"),)))
    items, following = merge_slices({LUNCH: IndexSlice(lunch, None), DINNER: IndexSlice([], scan)}, {}, 10)
    assert items == [] and following == {LUNCH: None, DINNER: scan}
