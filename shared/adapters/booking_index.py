"""The list index of the `Bookings` table: bookings in appointment order, newest first, pageable.

Table Storage returns rows sorted by PartitionKey, then RowKey, and nothing else; a booking's
RowKey is a hash, so reading booking rows gives hash order. Each booking therefore has one *index
row* in its own partition (the business) whose RowKey sorts the way a person reads the list:

    ~ix1|<Status>|<13 digits: 9999999999999 - start in epoch milliseconds>|<booking key>

- `~` sorts after every booking key (`[A-Z2-7]{26}`), so index rows can never be taken for
  bookings, and every query of booking rows says `RowKey lt '~'`.
- Status first: one status is one contiguous RowKey range. The inverted start makes ascending
  RowKey order "newest first"; the booking key breaks ties. A `from`/`to` filter on the start is a
  narrower RowKey range, so the first page of any status and date range is one range read.
- The index row holds a copy of the booking's properties (plus `BookingKey`, the lower-cased
  `CustomerNameLower` for the name filter), so a page is one query, no point reads.

The booking row remembers its index row in `IndexKey`. Every write of a booking goes into the same
entity group transaction as its index row (upsert the new one, delete the old one when status or
start changed), so the two can never drift: 2 operations to create a booking, at most 3 to change
one, hence at most 33 bookings in one transaction (the limit is 100 operations).

**Where a booking rests.** The index keeps every state a booking rests in exact (Unbilled, Failed,
Invoiced, Excluded, Cancelled, and Queued). Invoicing is a step in between, seconds long: its index
row stays in the Queued range, where the selection put it, and the claim (Queued -> Invoicing) is
a plain conditional write of the booking row alone, not a 2-operation transaction (the costliest
storage call an invoice makes, `docs/invoicing.md`). The record (Invoicing -> Invoiced or Failed)
moves the index row as any other write. So an index row in the Queued range may mirror a booking
that is Invoicing by now: a list of Queued or Invoicing bookings (`IN_PROGRESS`, rare, and short
once invoicing runs) reads the booking rows of the page it found to show their current state.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from azure.data.tables import UpdateMode

from shared.adapters.booking_entities import entity_to_booking
from shared.adapters.storage import TRANSACTION_LIMIT
from shared.domain.filters import BookingFilter
from shared.domain.models import Booking, BookingStatus

INDEX_PREFIX = "~ix1|"
BOOKING_ROWS_BELOW = "~"  # every booking key sorts below this; every index row at or above it
INDEX_KEY = "IndexKey"  # on a booking row: the RowKey of its index row
BOOKING_KEY = "BookingKey"  # on an index row: the booking it mirrors
NAME_LOWER = "CustomerNameLower"  # on an index row: for the customer name (prefix) filter
OPERATIONS_PER_BOOKING = 3  # the booking, its new index row, its old index row
BOOKINGS_PER_TRANSACTION = TRANSACTION_LIMIT // OPERATIONS_PER_BOOKING
IN_PROGRESS = frozenset({BookingStatus.QUEUED, BookingStatus.INVOICING})
"""States that share the Queued range of the index (see the module docstring)."""
_RESTS_AS = {BookingStatus.INVOICING: BookingStatus.QUEUED}
_MAX_MS = 10**13 - 1
_DIGITS = 13


def _inverted(start: datetime) -> str:
    milliseconds = int(start.astimezone(UTC).timestamp() * 1000)
    return f"{_MAX_MS - min(max(milliseconds, 0), _MAX_MS):0{_DIGITS}d}"


def resting_status(status: BookingStatus | str) -> BookingStatus | str:
    """The status whose range of the index holds a booking in `status`."""
    return _RESTS_AS.get(status, status)  # type: ignore[call-overload]


def status_prefix(status: BookingStatus | str) -> str:
    return f"{INDEX_PREFIX}{resting_status(status)}|"


def index_row_key(status: BookingStatus | str, start: datetime, key: str) -> str:
    return f"{status_prefix(status)}{_inverted(start)}|{key}"


def booking_index_key(booking: Booking) -> str:
    return index_row_key(booking.status, booking.start, booking.key)


def row_key_range(flt: BookingFilter) -> tuple[str, str]:
    """[low, high) of the index RowKeys the filter's status and start range cover."""
    prefix = status_prefix(flt.status)
    low, high = prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)
    if flt.start_before is not None:  # start < to  <=>  inverted(start) > inverted(to)
        low = f"{prefix}{_inverted(flt.start_before)}|~"
    if flt.start_from is not None:  # start >= from  <=>  inverted(start) <= inverted(from)
        high = f"{prefix}{_inverted(flt.start_from)}|~"
    return low, high


def name_range(name: str) -> tuple[str, str]:
    """[low, high) of lower-cased names that start with `name`."""
    low = name.lower()
    return low, low[:-1] + chr(ord(low[-1]) + 1)


def index_entity(booking_entity: dict[str, Any]) -> dict[str, Any]:
    """The index row mirroring a (full) booking entity."""
    entity = {name: value for name, value in booking_entity.items() if name != INDEX_KEY}
    entity["RowKey"] = booking_entity[INDEX_KEY]
    entity[BOOKING_KEY] = booking_entity["RowKey"]
    name = booking_entity.get("CustomerName")
    if name:
        entity[NAME_LOWER] = str(name).lower()
    return entity


def index_operations(full_entity: dict[str, Any], previous_key: str | None) -> list[tuple[Any, ...]]:
    """The transaction operations that keep the index row of `full_entity` (which already carries
    its new `IndexKey`) in step: upsert the new index row, delete the previous one if it moved."""
    new_key = full_entity[INDEX_KEY]
    if new_key == previous_key and full_entity.get("Status") == BookingStatus.INVOICING:
        return []  # a claim: the index row stays where the booking rests (module docstring)
    operations: list[tuple[Any, ...]] = [("upsert", index_entity(full_entity), {"mode": UpdateMode.REPLACE})]
    if previous_key and previous_key != new_key:
        operations.append(("delete", {"PartitionKey": full_entity["PartitionKey"], "RowKey": previous_key}))
    return operations


def with_index_key(entity: dict[str, Any], booking: Booking) -> tuple[dict[str, Any], str | None]:
    """The entity with its new `IndexKey`, and the index row key the stored booking had (if any)."""
    previous = booking.extra.get(INDEX_KEY)
    entity[INDEX_KEY] = booking_index_key(booking)
    return entity, str(previous) if previous else None


def booking_from_index_row(entity: Any) -> Booking:
    """The booking an index row mirrors; without an ETag (write through the booking row only)."""
    row = {name: value for name, value in entity.items() if name not in (BOOKING_KEY, NAME_LOWER)}
    row["RowKey"] = entity[BOOKING_KEY]
    row[INDEX_KEY] = entity["RowKey"]
    booking = entity_to_booking(row)
    booking.etag = None
    return booking
