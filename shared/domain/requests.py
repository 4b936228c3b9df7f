"""Invoice requests: what one accepted selection covered, tracked so its status is cheap to read."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.domain.models import Actor


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


_REQUEST_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def is_request_id(value: str) -> bool:
    """Request ids are lower-case UUIDs; anything else cannot be ours (a 404 without a storage call)."""
    return _REQUEST_ID.match(value) is not None
