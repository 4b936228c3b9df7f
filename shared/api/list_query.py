"""The query of `GET /api/bookings` and the filter of `{"all": true}` selections, checked field by field."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from shared.api.continuation import ContinuationTokens
from shared.api.input import InvalidInput, parse_business_id, parse_email, parse_moment, parse_status
from shared.domain.filters import BookingFilter
from shared.domain.lifecycle import FILTER_SELECTABLE
from shared.domain.models import Booking
from shared.services.booking_queries import BookingQueries

DEFAULT_TOP = 100
MAX_TOP = 1000
LIST_PARAMETERS = (
    "status",
    "businessId",
    "customerEmail",
    "customerName",
    "from",
    "to",
    "invoiceStatus",
    "top",
    "continuationToken",
)
MAX_NAME = 100
INVOICE_STATUSES = ("Draft", "In Review", "Open", "Paid", "Canceled", "Corrective")
"""Business Central's salesInvoice status values (enum "Invoice Entity Aggregate Status")."""
# `code` carries the function key when it is not sent as the x-functions-key header.
_HOST_PARAMETERS = ("code",)


def parse_filter_fields(
    values: Mapping[str, object], business_ids: Sequence[str], zone: ZoneInfo, *, where: str = ""
) -> dict[str, Any]:
    """`businessId`, `customerEmail`, `from`, `to` (shared by the list query and `all` selections)."""
    prefix = f"{where}." if where else ""
    fields: dict[str, Any] = {}
    if values.get("businessId") is not None:
        fields["business_id"] = parse_business_id(values["businessId"], business_ids, f"{prefix}businessId")
    if values.get("customerEmail") is not None:
        fields["customer_email"] = parse_email(values["customerEmail"], f"{prefix}customerEmail")
    if values.get("from") is not None:
        fields["start_from"] = parse_moment(values["from"], zone, f"{prefix}from")
    if values.get("to") is not None:
        fields["start_before"] = parse_moment(values["to"], zone, f"{prefix}to")
    start_from, start_before = fields.get("start_from"), fields.get("start_before")
    if start_from is not None and start_before is not None and start_from >= start_before:
        raise InvalidInput.field(f"{prefix}to", f"must be later than {prefix}from (to is exclusive)")
    return fields


@dataclass(frozen=True)
class ListQuery:
    filter: BookingFilter
    top: int
    continuation_token: str | None


def parse_list_query(params: Mapping[str, str], business_ids: Sequence[str], zone: ZoneInfo) -> ListQuery:
    """The query string of `GET /api/bookings`; unknown names are refused (a typo must not widen a list)."""
    unknown = [name for name in params if name not in LIST_PARAMETERS and name not in _HOST_PARAMETERS]
    if unknown:
        raise InvalidInput(
            f"Unknown query parameter(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(LIST_PARAMETERS)} (names are case-sensitive)."
        )
    values = {name: value for name, value in params.items() if value != ""}
    status = parse_status(values["status"]) if "status" in values else FILTER_SELECTABLE
    fields = parse_filter_fields(values, business_ids, zone)
    if "customerName" in values:
        name = values["customerName"].strip()
        if not 1 <= len(name) <= MAX_NAME or not name.isprintable():
            raise InvalidInput.field("customerName", f"must be 1 to {MAX_NAME} printable characters")
        fields["customer_name"] = name
    top = DEFAULT_TOP
    if "top" in values:
        text = values["top"].strip()
        if not re.fullmatch(r"\d{1,7}", text) or not 1 <= int(text) <= MAX_TOP:
            raise InvalidInput.field("top", f"must be a whole number from 1 to {MAX_TOP}, got {text[:20]!r}")
        top = int(text)
    if "invoiceStatus" in values:
        fields["invoice_status"] = _invoice_status(values["invoiceStatus"])
    token = values.get("continuationToken")
    return ListQuery(BookingFilter(status=status, **fields), top, token)


def _invoice_status(value: str) -> str:
    for known in INVOICE_STATUSES:
        if known.lower() == value.strip().lower():
            return known
    raise InvalidInput.field(
        "invoiceStatus", f"{value[:40]!r} is not an invoice status; use one of {', '.join(INVOICE_STATUSES)}"
    )


def read_page(
    queries: BookingQueries, tokens: ContinuationTokens, query: ListQuery
) -> tuple[list[Booking], str | None]:
    """One page of `GET /api/bookings`: the token decoded, the page read, the next token signed."""
    fingerprint = query.filter.fingerprint()
    position = None
    if query.continuation_token:
        position = tokens.decode(query.continuation_token, fingerprint)
        if not set(position.business_ids) <= set(queries.scope(query.filter)):
            raise InvalidInput.field(
                "continuationToken", "names a business that is no longer configured; start again without it"
            )
    page = queries.page(query.filter, query.top, position)
    token = tokens.encode(fingerprint, page.next_position) if page.next_position else None
    return page.items, token
