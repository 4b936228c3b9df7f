"""The `InvoiceRequests` table: what each accepted selection covered, so its status is cheap to read.

PartitionKey = request id. One header row (RowKey `!request`, sorting before every booking key)
holds the totals and the selection; one row per accepted booking (RowKey = booking key) holds its
business id. Reading a request's status is then one partition query plus one point read per
booking, never a scan of `Bookings`. All rows of a request share a partition, so they are written
in batch transactions of 100.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.booking_store import BookingStore
from shared.models import Actor, Booking, BookingStatus, iso_utc
from shared.storage import create_table_if_missing

INVOICE_REQUESTS_TABLE = "InvoiceRequests"
HEADER_ROW = "!request"
BATCH_SIZE = 100


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RequestItem:
    """One accepted booking of a request."""

    business_id: str
    key: str


@dataclass
class RequestHeader:
    """What a request asked for and what became of it when it was answered."""

    request_id: str
    created_at: datetime
    selection: dict[str, Any]
    state: str = "Accepting"  # Accepting while the POST runs, then Accepted
    accepted: int = 0
    skipped: int = 0
    not_found: int = 0
    not_queued: int = 0
    traceparent: str | None = None
    completed_at: datetime | None = None
    requested_by: Actor | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class InvoiceRequestStore:
    """Writes and reads request tracking rows."""

    def __init__(
        self,
        table: TableClient,
        *,
        executor: Executor | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.table = table
        self.executor = executor
        self.clock = clock

    def ensure_table(self) -> None:
        create_table_if_missing(self.table)

    def start(
        self,
        request_id: str,
        selection: dict[str, Any],
        traceparent: str | None,
        *,
        requested_by: Actor | None = None,
    ) -> RequestHeader:
        """Create the header before anything is claimed, so a crash mid-request leaves a trace."""
        header = RequestHeader(
            request_id, self.clock(), selection, traceparent=traceparent, requested_by=requested_by
        )
        self.table.create_entity(self._header_entity(header))
        return header

    def finish(self, header: RequestHeader) -> None:
        header.state = "Accepted"
        header.completed_at = self.clock()
        self.table.upsert_entity(self._header_entity(header), mode=UpdateMode.REPLACE)

    def add_items(self, request_id: str, items: Sequence[RequestItem]) -> None:
        """Record accepted bookings, 100 per transaction (one partition), batches in parallel."""
        operations = [
            ("upsert", {"PartitionKey": request_id, "RowKey": item.key, "BusinessId": item.business_id})
            for item in items
        ]
        self._submit_batches(operations)

    def remove_items(self, request_id: str, keys: Iterable[str]) -> None:
        """Forget bookings whose claim was undone (they were never queued)."""
        operations = [("delete", {"PartitionKey": request_id, "RowKey": key}) for key in keys]
        self._submit_batches(operations)

    def _submit_batches(self, operations: list[tuple[str, dict[str, Any]]]) -> None:
        batches = [operations[i : i + BATCH_SIZE] for i in range(0, len(operations), BATCH_SIZE)]
        if self.executor is None or len(batches) < 2:
            for batch in batches:
                self.table.submit_transaction(batch)  # type: ignore[arg-type]
            return
        list(self.executor.map(self.table.submit_transaction, batches))

    def header(self, request_id: str) -> RequestHeader | None:
        try:
            entity = self.table.get_entity(partition_key=request_id, row_key=HEADER_ROW)
        except ResourceNotFoundError:
            return None
        return RequestHeader(
            request_id=request_id,
            created_at=_aware(entity.get("CreatedAt")) or datetime.min.replace(tzinfo=UTC),
            selection=json.loads(entity.get("Selection") or "{}"),
            state=str(entity.get("State") or "Accepting"),
            accepted=int(entity.get("Accepted") or 0),
            skipped=int(entity.get("Skipped") or 0),
            not_found=int(entity.get("NotFound") or 0),
            not_queued=int(entity.get("NotQueued") or 0),
            traceparent=entity.get("Traceparent"),
            completed_at=_aware(entity.get("CompletedAt")),
            requested_by=(
                Actor(str(entity["RequestedById"]), str(entity.get("RequestedByName") or ""))
                if entity.get("RequestedById")
                else None
            ),
        )

    def items(self, request_id: str) -> list[RequestItem]:
        """The accepted bookings of a request, in key order (one partition query)."""
        entities = self.table.query_entities(
            "PartitionKey eq @rid and RowKey gt @header",
            parameters={"rid": request_id, "header": HEADER_ROW},
            select=["RowKey", "BusinessId"],
            results_per_page=1000,
        )
        return [RequestItem(str(e["BusinessId"]), str(e["RowKey"])) for e in entities]

    def _header_entity(self, header: RequestHeader) -> dict[str, Any]:
        entity: dict[str, Any] = {
            "PartitionKey": header.request_id,
            "RowKey": HEADER_ROW,
            "CreatedAt": header.created_at,
            "Selection": json.dumps(header.selection, separators=(",", ":")),
            "State": header.state,
            "Accepted": header.accepted,
            "Skipped": header.skipped,
            "NotFound": header.not_found,
            "NotQueued": header.not_queued,
        }
        if header.traceparent:
            entity["Traceparent"] = header.traceparent
        if header.completed_at:
            entity["CompletedAt"] = header.completed_at
        if header.requested_by:
            entity["RequestedById"] = header.requested_by.id
            entity["RequestedByName"] = header.requested_by.name
        return entity


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


_REQUEST_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def is_request_id(value: str) -> bool:
    """Request ids are lower-case UUIDs; anything else cannot be ours (a 404 without a storage call)."""
    return _REQUEST_ID.match(value) is not None


class RequestStatusReader:
    """A request's progress: its rows, then the bookings' current state.

    Small requests read each booking by point (bounded concurrency). From `scan_from` bookings of
    one business on, one partition query on `RequestId` is cheaper than thousands of point reads;
    bookings it misses (selected again by a later request) are still read by point.
    """

    def __init__(
        self,
        requests: InvoiceRequestStore,
        bookings: BookingStore,
        executor: Executor | None = None,
        *,
        scan_from: int = 500,
    ) -> None:
        self.requests = requests
        self.bookings = bookings
        self.executor = executor
        self.scan_from = scan_from

    def read(self, request_id: str) -> dict[str, Any] | None:
        """The contract's request status document, or None for an unknown request."""
        if not is_request_id(request_id):
            return None
        header = self.requests.header(request_id)
        if header is None:
            return None
        items = self.requests.items(request_id)
        current = self._current(request_id, items)
        rows = []
        for item in items:
            booking = current.get(item.key)
            if booking is None:  # deleted from the table by hand: say so rather than guess
                rows.append(
                    {
                        "key": item.key,
                        "status": "Missing",
                        "invoiceNumber": None,
                        "errorCode": None,
                        "error": None,
                    }
                )
                continue
            rows.append(
                {
                    "key": item.key,
                    "status": str(booking.status),
                    "invoiceNumber": booking.invoice_number,
                    "errorCode": booking.error_code,
                    "error": booking.error,
                }
            )
        counts = {str(status): 0 for status in BookingStatus}
        for row in rows:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        return {
            "requestId": request_id,
            "state": header.state,
            "createdAt": iso_utc(header.created_at),
            "requestedAt": iso_utc(header.created_at),
            "requestedBy": header.requested_by.to_json() if header.requested_by else None,
            "selection": header.selection,
            "total": len(rows),
            "counts": counts,
            "items": rows,
        }

    def _current(self, request_id: str, items: list[RequestItem]) -> dict[str, Booking]:
        wanted: dict[str, list[str]] = {}
        for item in items:
            wanted.setdefault(item.business_id, []).append(item.key)
        found: dict[str, Booking] = {}
        for business_id, keys in wanted.items():
            if len(keys) >= self.scan_from:
                keyset = set(keys)
                for booking in self.bookings.query(
                    "PartitionKey eq @pk and RequestId eq @rid", {"pk": business_id, "rid": request_id}
                ):
                    if booking.key in keyset:
                        found[booking.key] = booking
        missing = [item for item in items if item.key not in found]

        def point(item: RequestItem) -> Booking | None:
            return self.bookings.get(item.business_id, item.key)

        if self.executor is None or len(missing) < 2:
            read = [point(item) for item in missing]
        else:
            read = list(self.executor.map(point, missing))
        found.update({booking.key: booking for booking in read if booking is not None})
        return found
