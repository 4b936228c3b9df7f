"""The `InvoiceRequests` table: what each accepted selection covered, so its status is cheap to read.

PartitionKey = request id. One header row (RowKey `!request`, sorting before every booking key)
holds the totals and the selection; one row per accepted booking (RowKey = booking key) holds its
business id. Reading a request's status is then one partition query plus one point read per
booking, never a scan of `Bookings`. All rows of a request share a partition, so they are written
in batch transactions of 100.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.adapters.storage import TRANSACTION_LIMIT, create_table_if_missing
from shared.adapters.storage_retry import ResilientTable, resilient_table
from shared.domain.models import Actor
from shared.domain.moments import aware, utc_now
from shared.domain.requests import RequestHeader, RequestItem

INVOICE_REQUESTS_TABLE = "InvoiceRequests"
HEADER_ROW = "!request"


class InvoiceRequestStore:
    """Writes and reads request tracking rows."""

    def __init__(
        self,
        table: TableClient | ResilientTable,
        *,
        executor: Executor | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._table = resilient_table(table)
        self.executor = executor
        self.clock = clock

    def ensure_table(self) -> None:
        create_table_if_missing(self._table)

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
        self._table.create_entity(self._header_entity(header))
        return header

    def finish(self, header: RequestHeader) -> None:
        header.state = "Accepted"
        header.completed_at = self.clock()
        self._table.upsert_entity(self._header_entity(header), mode=UpdateMode.REPLACE)

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

    def discard(self, request_id: str) -> None:
        """Delete a request that never happened (refused before anything was queued): its header
        and any item rows, so no orphan is left that retention would never reach."""
        rows = self._table.query_entities(
            "PartitionKey eq @rid", parameters={"rid": request_id}, select=["RowKey"]
        )
        keys = [str(row["RowKey"]) for row in rows]
        items = [key for key in keys if key != HEADER_ROW]
        self.remove_items(request_id, items)
        if HEADER_ROW in keys:
            self._table.delete_entity(partition_key=request_id, row_key=HEADER_ROW)

    def forget_booking(self, request_id: str, key: str) -> None:
        """Retention: drop a booking's row, and the request's header once no booking is left."""
        self._table.delete_entity(partition_key=request_id, row_key=key)
        rest = self._table.query_entities(
            "PartitionKey eq @rid and RowKey gt @header",
            parameters={"rid": request_id, "header": HEADER_ROW},
            select=["RowKey"],
            results_per_page=1,
        )
        if next(iter(rest), None) is None:
            self._table.delete_entity(partition_key=request_id, row_key=HEADER_ROW)

    def _submit_batches(self, operations: list[tuple[str, dict[str, Any]]]) -> None:
        batches = [
            operations[i : i + TRANSACTION_LIMIT] for i in range(0, len(operations), TRANSACTION_LIMIT)
        ]
        if self.executor is None or len(batches) < 2:
            for batch in batches:
                self._table.submit_transaction(batch)  # type: ignore[arg-type]
            return
        list(self.executor.map(self._table.submit_transaction, batches))

    def header(self, request_id: str) -> RequestHeader | None:
        try:
            entity = self._table.get_entity(partition_key=request_id, row_key=HEADER_ROW)
        except ResourceNotFoundError:
            return None
        return RequestHeader(
            request_id=request_id,
            created_at=aware(entity.get("CreatedAt")) or datetime.min.replace(tzinfo=UTC),
            selection=json.loads(entity.get("Selection") or "{}"),
            state=str(entity.get("State") or "Accepting"),
            accepted=int(entity.get("Accepted") or 0),
            skipped=int(entity.get("Skipped") or 0),
            not_found=int(entity.get("NotFound") or 0),
            not_queued=int(entity.get("NotQueued") or 0),
            traceparent=entity.get("Traceparent"),
            completed_at=aware(entity.get("CompletedAt")),
            requested_by=(
                Actor(str(entity["RequestedById"]), str(entity.get("RequestedByName") or ""))
                if entity.get("RequestedById")
                else None
            ),
        )

    def items(self, request_id: str) -> list[RequestItem]:
        """The accepted bookings of a request, in key order (one partition query)."""
        entities = self._table.query_entities(
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
