"""Backfill of the newest-first list index for bookings stored before it existed.

The list index (`shared/adapters/booking_index.py`) is written with every booking write, so a
booking stored by an earlier version has no index row and would not be listed until something
writes it again (an Invoiced booking older than the sync's lookback never would be). The sync timer
runs this pass after the sync: per business, every booking without an index row is saved once
(a conditional write that adds the row in the same transaction), at most `limit` per run, and the
business is marked done when a full pass finds none left. A marked business costs one point read
per run; an unmarked one a partition scan until it is done.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Protocol

from shared.domain.errors import ConcurrentChangeError
from shared.domain.models import Booking
from shared.telemetry import get_logger

log = get_logger("bookings.list_index")

DEFAULT_LIMIT = 2000
"""Bookings indexed per business and run: bounded, so the timer's run stays short; the next run
continues."""


class IndexedStore(Protocol):
    def without_list_index(self, business_id: str) -> Iterable[Booking]: ...

    def save(self, booking: Booking) -> Booking: ...


class IndexMarkers(Protocol):
    def list_index_done(self, business_id: str) -> bool: ...

    def record_list_index_done(self, business_id: str) -> None: ...


def backfill_list_index(
    store: IndexedStore, markers: IndexMarkers, business_ids: Sequence[str], limit: int = DEFAULT_LIMIT
) -> int:
    """Index what is missing; returns how many bookings were indexed in this run."""
    indexed = 0
    for business_id in business_ids:
        if markers.list_index_done(business_id):
            continue
        done, count = _backfill_business(store, business_id, limit)
        indexed += count
        if done:
            markers.record_list_index_done(business_id)
        log.info(
            "List index of %s: %d booking(s) indexed%s",
            business_id,
            count,
            "; complete" if done else "; the next run continues",
            extra={"businessId": business_id, "indexed": count, "outcome": "list_index"},
        )
    return indexed


def _backfill_business(store: IndexedStore, business_id: str, limit: int) -> tuple[bool, int]:
    count = 0
    for booking in store.without_list_index(business_id):
        if count >= limit:
            return False, count
        with contextlib.suppress(ConcurrentChangeError):  # written meanwhile: that write indexed it
            store.save(booking)
        count += 1
    return True, count
