"""Reading the list index of the `Bookings` table (see `booking_index.py`): one business's matches
in appointment order, newest first, from a cursor on.

Part of the `Bookings` table adapter (`BookingStore.index_slice`). Status and the start range are a
RowKey range; customer email and name are property filters the service applies inside that range.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from shared.adapters import booking_index as index
from shared.adapters.booking_entities import entity_to_booking
from shared.domain.filters import BookingFilter
from shared.domain.invoice_lines import PricedRow
from shared.domain.listing import Cursor, IndexSlice
from shared.domain.models import Booking, PriceType
from shared.domain.moments import aware

PAGE_SIZE = 1000


def _query(flt: BookingFilter, business_id: str, low: str) -> tuple[str, dict[str, Any]]:
    """Constant filter text; every value a parameter (each `@name` standing alone between spaces).

    `RowKey gt @low` also starts a whole range: no index row equals a range bound."""
    _, high = index.row_key_range(flt)
    clauses = ["PartitionKey eq @pk", "RowKey gt @low", "RowKey lt @high"]
    parameters: dict[str, Any] = {"pk": business_id, "low": low, "high": high}
    if flt.customer_email is not None:
        clauses.append("CustomerEmailLower eq @email")
        parameters["email"] = flt.customer_email
    if flt.invoice_status is not None:
        clauses.append("InvoiceStatus eq @istatus")
        parameters["istatus"] = flt.invoice_status
    if flt.ended_before is not None:
        clauses.append("End lt @ended")
        parameters["ended"] = flt.ended_before
    if flt.customer_name:
        clauses.append(f"{index.NAME_LOWER} ge @nameFrom and {index.NAME_LOWER} lt @nameTo")
        parameters["nameFrom"], parameters["nameTo"] = index.name_range(flt.customer_name)
    return " and ".join(clauses), parameters


def _current(
    table: TableClient, found: list[tuple[str, Booking]], flt: BookingFilter
) -> list[tuple[str, Booking]]:
    """Queued and Invoicing share one range of the index, whose rows may lag behind a claim
    (`booking_index.py`): the booking rows say which of the two each one is now."""
    current = []
    for row_key, mirrored in found:
        try:
            booking = entity_to_booking(table.get_entity(mirrored.business_id, mirrored.key))
        except ResourceNotFoundError:
            continue
        if booking.status is flt.status:
            booking.etag = None
            current.append((row_key, booking))
    return current


def read_index_slice(
    table: TableClient,
    flt: BookingFilter,
    business_id: str,
    after: Cursor | None,
    top: int,
    max_round_trips: int,
) -> IndexSlice:
    """Up to `top` matches after `after`, in at most `max_round_trips` storage round trips."""
    range_low, _ = index.row_key_range(flt)
    known = after.key if after is not None else ""
    low, marker = max(range_low, known), None
    if after is not None and after.scan is not None:
        low, marker = after.scan[0], dict(after.scan[1])
    text, parameters = _query(flt, business_id, low)
    pages = table.query_entities(text, parameters=parameters, results_per_page=min(top, PAGE_SIZE)).by_page(
        continuation_token=marker
    )
    items: list[tuple[str, Booking]] = []
    for _ in range(max_round_trips):
        found = [(str(e["RowKey"]), index.booking_from_index_row(e)) for e in next(pages, [])]
        items.extend(_current(table, found, flt) if flt.status in index.IN_PROGRESS else found)
        following = pages.continuation_token
        if len(items) >= top:
            more = len(items) > top or following is not None
            return IndexSlice(items[:top], Cursor(items[top - 1][0]) if more else None)
        if following is None:
            return IndexSlice(items, None)
    # Sparse matches: continue this scan next time, from where the storage stopped it.
    scanned = items[-1][0] if items else known
    return IndexSlice(items, Cursor(scanned, (low, tuple(sorted(following.items())))))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PRICED_COLUMNS = ["Price", "PriceType", "Start", "End"]


def read_priced_rows(table: TableClient, flt: BookingFilter, business_id: str) -> Iterator[PricedRow]:
    """Every match of one business, projected to the four columns an amount needs (`$select`): the
    list's own range query over the index rows, so a total costs one round trip per 1,000 matches
    and transfers four properties of each, never whole bookings."""
    low, _ = index.row_key_range(flt)
    text, parameters = _query(flt, business_id, low)
    for entity in table.query_entities(
        text, parameters=parameters, select=PRICED_COLUMNS, results_per_page=PAGE_SIZE
    ):
        yield PricedRow(
            price=float(entity.get("Price") or 0.0),
            price_type=PriceType.parse(entity.get("PriceType")),
            start=aware(entity.get("Start")) or _EPOCH,
            end=aware(entity.get("End")) or _EPOCH,
        )
