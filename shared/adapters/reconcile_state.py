"""The `ReconcileState` table: reconcile_invoices' watermark, one row per Business Central company.

PartitionKey = company id, RowKey `salesInvoices`: `ModifiedThrough` (the newest
`lastModifiedDateTime` read, Business Central's clock, never ours), `FullReadAt`, a full read under
way (`FullReadStartedAt`, `FullReadThrough`: saved after each page, so a cut-off read resumes), and
the last run's counts (pages and rows read included) for operations. The timer is a singleton, so
a plain upsert is enough; the watermark still never moves backwards.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.adapters.storage import create_table_if_missing
from shared.adapters.storage_retry import ResilientTable, resilient_table
from shared.domain.moments import aware, utc_now
from shared.domain.reconcile_rules import Watermark
from shared.domain.setup_checks import RunRecord

RECONCILE_STATE_TABLE = "ReconcileState"
ROW = "salesInvoices"
RUN_ROW = "lastRun"
"""How the last run of reconcile_invoices ended (`RanAt`, `Outcome`, `Error`), for the setup check."""


class ReconcileStateStore:
    def __init__(self, table: TableClient | ResilientTable, clock: Callable[[], datetime] = utc_now) -> None:
        self._table = resilient_table(table)
        self.clock = clock

    def ensure_table(self) -> None:
        create_table_if_missing(self._table)

    def _entity(self, company_id: str) -> Any | None:
        try:
            return self._table.get_entity(partition_key=company_id, row_key=ROW)
        except ResourceNotFoundError:
            return None

    def get(self, company_id: str) -> Watermark | None:
        entity = self._entity(company_id)
        if entity is None:
            return None
        return Watermark(
            aware(entity.get("ModifiedThrough")),
            aware(entity.get("FullReadAt")),
            aware(entity.get("FullReadStartedAt")),
            aware(entity.get("FullReadThrough")),
        )

    def save(self, company_id: str, mark: Watermark, counts: dict[str, int]) -> None:
        before = self.get(company_id)
        through = mark.modified_through
        if before is not None and before.modified_through is not None:
            through = max(through, before.modified_through) if through else before.modified_through
        entity: dict[str, Any] = {
            "PartitionKey": company_id,
            "RowKey": ROW,
            "LastRunAt": self.clock(),
            "LastCounts": json.dumps(counts, sort_keys=True),
        }
        if through is not None:
            entity["ModifiedThrough"] = through
        for name, value in (
            ("FullReadAt", mark.full_read_at),
            ("FullReadStartedAt", mark.full_read_started_at),
            ("FullReadThrough", mark.full_read_through),
        ):
            if value is not None:
                entity[name] = value
        # Replace, not merge: a finished full read clears its progress by leaving it out.
        self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    def record_run(self, company_id: str, outcome: str, error: str = "") -> None:
        """Remember how a run ended (the error must already be free of secrets)."""
        self._table.upsert_entity(
            {
                "PartitionKey": company_id,
                "RowKey": RUN_ROW,
                "RanAt": self.clock(),
                "Outcome": outcome,
                "Error": error[:1000],
            },
            mode=UpdateMode.REPLACE,
        )

    def last_run(self, company_id: str) -> RunRecord | None:
        try:
            entity = self._table.get_entity(partition_key=company_id, row_key=RUN_ROW)
        except ResourceNotFoundError:
            return None
        return RunRecord(
            aware(entity.get("RanAt")), entity.get("Outcome"), str(entity.get("Error") or ""), company_id
        )
