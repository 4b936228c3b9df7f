"""Reading bookings for the API: one page of a filter, every match of a filter, lookups by key.

Every query is scoped to one partition (one configured Bookings business) at a time and walks the
configured businesses in order, so listing never scans the whole table across partitions and a
bookings table of another deployment's businesses can never leak into this one's lists.

Lists come newest appointment first: the store keeps a list index per business in that order
(`shared/adapters/booking_index.py`), and a page over several businesses merges one slice of each
(`shared/domain/listing.py`). A slice is capped both by `top` and by a number of storage round
trips: when matches are sparse (a customer filter over a long list), a call returns fewer items
(possibly none) with a position to continue from instead of scanning for minutes. Clients follow
it until it is null.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from shared.domain import lifecycle
from shared.domain.filters import BookingFilter, PagePosition
from shared.domain.invoice_lines import booking_amount
from shared.domain.listing import Cursor, IndexSlice, merge_slices
from shared.domain.models import Booking, is_booking_key
from shared.domain.moments import utc_now
from shared.services.ports import BookingRepository

# Storage round trips one list call may make before it hands back a position to continue from.
DEFAULT_MAX_ROUND_TRIPS = 10
MAX_PAGE = 1000


@dataclass(frozen=True)
class BookingTotals:
    count: int
    amount: Decimal


@dataclass(frozen=True)
class BookingPage:
    items: list[Booking]
    next_position: PagePosition | None


class BookingQueries:
    """List, iterate and look up bookings of the configured businesses."""

    def __init__(
        self,
        store: BookingRepository,
        business_ids: Sequence[str],
        *,
        executor: Executor | None = None,
        max_round_trips: int = DEFAULT_MAX_ROUND_TRIPS,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.business_ids = tuple(business_ids)
        self.executor = executor
        self.max_round_trips = max_round_trips
        self.clock = clock

    def billable_only(self, flt: BookingFilter) -> BookingFilter:
        """The filter as the store runs it: the Unbilled list (and `{"all": true}`) holds only
        bookings whose appointment has ended (`lifecycle.lists_only_ended`): one moved into the
        future leaves it until it has ended again. A property filter on `End`: no extra reads."""
        if not lifecycle.lists_only_ended(flt.status):
            return flt
        return replace(flt, ended_before=self.clock())

    def scope(self, flt: BookingFilter) -> tuple[str, ...]:
        return (flt.business_id,) if flt.business_id else self.business_ids

    def page(self, flt: BookingFilter, top: int, position: PagePosition | None = None) -> BookingPage:
        """At most `top` bookings, newest appointment first, and where the next page starts (None
        at the end). Businesses are read side by side (one slice each) and merged."""
        if not 1 <= top <= MAX_PAGE:
            raise ValueError(f"top must be 1..{MAX_PAGE}")
        scope = self.scope(flt)
        if position is None:
            cursors: dict[str, Cursor | None] = dict.fromkeys(scope)
        else:
            if not set(position.business_ids) <= set(scope):
                raise ValueError("the position names a business outside the filter's scope")
            cursors = dict(position.cursors)
        businesses = list(cursors)

        query = self.billable_only(flt)

        def read(business_id: str) -> IndexSlice:
            return self.store.index_slice(query, business_id, cursors[business_id], top, self.max_round_trips)

        slices = dict(zip(businesses, fan_out(self.executor, read, businesses), strict=True))
        items, following = merge_slices(slices, cursors, top)
        return BookingPage(items, PagePosition(tuple(following.items())) if following else None)

    def in_list_order(self, flt: BookingFilter) -> Iterator[Booking]:
        """Every match, newest appointment first, as the list shows them page after page (export)."""
        position: PagePosition | None = None
        while True:
            page = self.page(flt, MAX_PAGE, position)
            yield from page.items
            if page.next_position is None:
                return
            position = page.next_position

    def iterate(self, flt: BookingFilter) -> Iterator[Booking]:
        """Every matching booking (for `all` selections), partition by partition."""
        return self.store.iterate(self.billable_only(flt), self.scope(flt))

    def count(self, flt: BookingFilter, limit: int) -> int:
        """How many bookings match, counting no further than `limit`."""
        count = 0
        for _ in self.iterate(flt):
            count += 1
            if count >= limit:
                break
        return count

    def totals(self, flt: BookingFilter) -> BookingTotals:
        """How many bookings match and what they come to (Bookings' prices), over every page: the
        list's own query projected to the price columns, businesses read side by side."""
        query = self.billable_only(flt)

        def total(business_id: str) -> BookingTotals:
            count, amount = 0, Decimal(0)
            for row in self.store.priced_rows(query, business_id):
                count, amount = count + 1, amount + booking_amount(row)
            return BookingTotals(count, amount)

        parts = fan_out(self.executor, total, list(self.scope(flt)))
        return BookingTotals(sum(p.count for p in parts), sum((p.amount for p in parts), Decimal(0)))

    def get(self, key: str) -> Booking | None:
        """A booking by key: point reads in the configured businesses (never a cross-partition scan)."""
        if not is_booking_key(key):
            return None
        for business_id in self.business_ids:
            booking = self.store.get(business_id, key)
            if booking is not None:
                return booking
        return None

    def get_many(self, keys: Iterable[str]) -> dict[str, Booking]:
        """Many bookings by key, read with bounded concurrency; unknown keys are left out."""
        found = fan_out(self.executor, self.get, list(keys))
        return {booking.key: booking for booking in found if booking is not None}


def fan_out(executor: Executor | None, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """`fn` over `items`, on the executor when there is one and more than one item."""
    if executor is None or len(items) < 2:
        return [fn(item) for item in items]
    return list(executor.map(fn, items))
