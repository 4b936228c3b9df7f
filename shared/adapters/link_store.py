"""The `BusinessCentralLinks` table: one row per customer email or service, "linked" or "creating".

PartitionKey = kind (`customer` | `item`), RowKey = base32 of SHA-256 of the natural key (emails
may hold `/`, `#`, `?`, none of which a RowKey allows). The link-or-create rule that uses these
rows is in `shared/services/links.py`; this module only reads and writes them, conditionally.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.adapters.storage import create_table_if_missing
from shared.adapters.storage_retry import ResilientTable, resilient_table
from shared.domain.bc_records import Link
from shared.domain.moments import aware, utc_now

LINKS_TABLE = "BusinessCentralLinks"
LINKED = "linked"
CREATING = "creating"


def link_row_key(natural_key: str) -> str:
    """A legal Table RowKey for any text."""
    return base64.b32encode(hashlib.sha256(natural_key.encode("utf-8")).digest()).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class LinkRow:
    """A stored link, or a creation marker (`link` None) with when and by whom it was claimed."""

    kind: str
    natural_key: str
    link: Link | None
    owner: str | None
    claimed_at: datetime | None
    etag: str


def _row(entity: Any) -> LinkRow:
    linked = entity.get("State") == LINKED and entity.get("BcId")
    return LinkRow(
        kind=str(entity["PartitionKey"]),
        natural_key=str(entity.get("NaturalKey", "")),
        link=Link(id=str(entity["BcId"]), number=str(entity.get("BcNumber", ""))) if linked else None,
        owner=entity.get("Owner"),
        claimed_at=aware(entity.get("ClaimedAt")) if isinstance(entity.get("ClaimedAt"), datetime) else None,
        etag=str((getattr(entity, "metadata", {}) or {}).get("etag")),
    )


class LinkStore:
    """Conditional reads and writes of link rows."""

    def __init__(self, table: TableClient | ResilientTable, clock: Callable[[], datetime] = utc_now) -> None:
        self._table = resilient_table(table)
        self.clock = clock

    def ensure_table(self) -> None:
        create_table_if_missing(self._table)

    def get(self, kind: str, natural_key: str) -> LinkRow | None:
        try:
            return _row(self._table.get_entity(partition_key=kind, row_key=link_row_key(natural_key)))
        except ResourceNotFoundError:
            return None

    def link_of(self, kind: str, natural_key: str) -> Link | None:
        row = self.get(kind, natural_key)
        return row.link if row is not None else None

    def claim(self, kind: str, natural_key: str, owner: str) -> str | None:
        """Insert a "creating" marker; its ETag if this worker won, None if a row exists."""
        try:
            metadata = self._table.create_entity(self._marker(kind, natural_key, owner))
        except ResourceExistsError:
            return None
        return str(metadata.get("etag"))

    def take_over(self, row: LinkRow, owner: str) -> str | None:
        """Replace a stale marker by ours if nobody changed it since read; our ETag, or None."""
        try:
            metadata = self._table.update_entity(
                self._marker(row.kind, row.natural_key, owner),
                mode=UpdateMode.REPLACE,
                etag=row.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return None
        return str(metadata.get("etag"))

    def record(self, kind: str, natural_key: str, link: Link) -> None:
        """Store the link (replacing a marker): it is a fact about Business Central, last writer wins."""
        self._table.upsert_entity(
            {
                "PartitionKey": kind,
                "RowKey": link_row_key(natural_key),
                "NaturalKey": natural_key,
                "State": LINKED,
                "BcId": link.id,
                "BcNumber": link.number,
                "LinkedAt": self.clock(),
            },
            mode=UpdateMode.REPLACE,
        )

    def release(self, kind: str, natural_key: str, etag: str) -> None:
        """Remove our marker (only if it is still ours), so the next try may claim at once."""
        with contextlib.suppress(ResourceModifiedError, ResourceNotFoundError):
            self._table.delete_entity(
                partition_key=kind,
                row_key=link_row_key(natural_key),
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )

    def forget(self, kind: str, natural_key: str) -> None:
        """Drop a link that turned out wrong (the record was deleted in Business Central)."""
        with contextlib.suppress(ResourceNotFoundError):
            self._table.delete_entity(partition_key=kind, row_key=link_row_key(natural_key))

    def _marker(self, kind: str, natural_key: str, owner: str) -> dict[str, Any]:
        return {
            "PartitionKey": kind,
            "RowKey": link_row_key(natural_key),
            "NaturalKey": natural_key,
            "State": CREATING,
            "Owner": owner,
            "ClaimedAt": self.clock(),
        }
