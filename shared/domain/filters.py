"""Which bookings a list or an `{"all": true}` selection means, and where a page of them resumes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.domain.lifecycle import FILTER_SELECTABLE
from shared.domain.listing import Cursor
from shared.domain.models import BookingStatus
from shared.domain.moments import iso_utc


@dataclass(frozen=True)
class BookingFilter:
    """Values are already validated (the API parses them); the store turns this into a query."""

    status: BookingStatus = FILTER_SELECTABLE
    business_id: str | None = None
    customer_email: str | None = None  # lower-cased
    customer_name: str | None = None  # a prefix of the customer's name, any case (lists only)
    start_from: datetime | None = None  # inclusive, on the appointment's start
    start_before: datetime | None = None  # exclusive
    invoice_status: str | None = None  # Business Central's status of the booking's invoice
    ended_before: datetime | None = None
    """Only bookings whose appointment ended before this (exclusive). Set by the query service from
    its clock, never by a caller: not part of the query's identity (`to_json`, `fingerprint`)."""

    def to_json(self) -> dict[str, Any]:
        document = {
            "status": str(self.status),
            "businessId": self.business_id,
            "customerEmail": self.customer_email,
            "from": iso_utc(self.start_from),
            "to": iso_utc(self.start_before),
            **({"invoiceStatus": self.invoice_status} if self.invoice_status is not None else {}),
        }
        if self.customer_name is not None:
            document["customerName"] = self.customer_name
        return document

    def fingerprint(self) -> str:
        """Identifies the query, so a continuation token of another query is refused, not misused."""
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class PagePosition:
    """Where the next page starts: each business not finished yet with the cursor of its list
    index (`shared/domain/listing.py`; None: from its first row)."""

    cursors: tuple[tuple[str, Cursor | None], ...]

    @property
    def business_ids(self) -> tuple[str, ...]:
        return tuple(business for business, _ in self.cursors)
