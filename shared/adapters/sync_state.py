"""The `SyncState` table: per Bookings business, how far the sync has fully read, and its last run.

PartitionKey = business id, RowKey = `calendarView`. `FullyReadTo` only moves forward, and only
after a window was read to its last page and stored; a failed run records its error but leaves
the watermark where it was. Writes are conditional (ETag), so two overlapping runs can never move
the watermark backwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.adapters.storage import create_table_if_missing
from shared.adapters.storage_retry import ResilientTable, resilient_table
from shared.domain.moments import aware, utc_now

SYNC_STATE_TABLE = "SyncState"
ROW = "calendarView"
LIST_INDEX_ROW = "listIndex"
"""The row saying every booking of a business carries its list index row (written by the backfill)."""
_MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class SyncStatus:
    """What `SyncState` says about one business (for the sync's window and for operations)."""

    business_id: str
    fully_read_to: datetime | None
    last_run_at: datetime | None
    last_outcome: str | None
    last_error: str | None
    last_counts: dict[str, int]


class SyncStateStore:
    """Reads and advances the per-business watermark."""

    def __init__(self, table: TableClient | ResilientTable, clock: Callable[[], datetime] = utc_now) -> None:
        self._table = resilient_table(table)
        self.clock = clock

    def ensure_table(self) -> None:
        create_table_if_missing(self._table)

    def _entity(self, business_id: str) -> Any | None:
        try:
            return self._table.get_entity(partition_key=business_id, row_key=ROW)
        except ResourceNotFoundError:
            return None

    def get(self, business_id: str) -> SyncStatus:
        entity = self._entity(business_id) or {}
        return SyncStatus(
            business_id=business_id,
            fully_read_to=aware(entity.get("FullyReadTo")),
            last_run_at=aware(entity.get("LastRunAt")),
            last_outcome=entity.get("LastOutcome"),
            last_error=entity.get("LastError"),
            last_counts={
                name[len("Last") :].lower(): int(value)
                for name, value in entity.items()
                if name in ("LastRead", "LastNew", "LastUpdated", "LastCancelled")
            },
        )

    def record_success(self, business_id: str, fully_read_to: datetime, counts: dict[str, int]) -> datetime:
        """Advance the watermark to `fully_read_to` (never backwards); returns the stored watermark."""
        fields: dict[str, Any] = {
            "LastRunAt": self.clock(),
            "LastOutcome": "succeeded",
            "LastError": "",
            "LastRead": counts.get("read", 0),
            "LastNew": counts.get("new", 0),
            "LastUpdated": counts.get("updated", 0),
            "LastCancelled": counts.get("cancelled", 0),
        }
        return self._merge(business_id, fields, fully_read_to)

    def record_failure(self, business_id: str, error: str) -> None:
        """Remember a failed run (the error must already be free of secrets); the watermark stays."""
        self._merge(
            business_id,
            {"LastRunAt": self.clock(), "LastOutcome": "failed", "LastError": error[:1000]},
            None,
        )

    def list_index_done(self, business_id: str) -> bool:
        try:
            self._table.get_entity(partition_key=business_id, row_key=LIST_INDEX_ROW)
        except ResourceNotFoundError:
            return False
        return True

    def record_list_index_done(self, business_id: str) -> None:
        self._table.upsert_entity(
            {"PartitionKey": business_id, "RowKey": LIST_INDEX_ROW, "DoneAt": self.clock()}
        )

    def _merge(self, business_id: str, fields: dict[str, Any], fully_read_to: datetime | None) -> datetime:
        for _ in range(_MAX_ATTEMPTS):
            entity = self._entity(business_id)
            current = aware(entity.get("FullyReadTo")) if entity is not None else None
            watermark = current
            if fully_read_to is not None and (current is None or fully_read_to > current):
                watermark = fully_read_to
            document = {"PartitionKey": business_id, "RowKey": ROW, **fields}
            if watermark is not None:
                document["FullyReadTo"] = watermark
            try:
                if entity is None:
                    self._table.create_entity(document)
                else:
                    self._table.update_entity(
                        document,
                        mode=UpdateMode.MERGE,
                        etag=entity.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
            except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
                continue
            return watermark or datetime.min.replace(tzinfo=UTC)
        raise RuntimeError(f"SyncState of {business_id} kept changing; watermark not written")
