"""The body of `POST /api/invoice-requests`, checked before anything is claimed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from shared.api.input import FieldError, InvalidInput, reject_unknown
from shared.api.list_query import parse_filter_fields
from shared.domain.filters import BookingFilter
from shared.domain.lifecycle import FILTER_SELECTABLE
from shared.domain.models import KEY_LENGTH, is_booking_key
from shared.services.selection import Selection

BODY_FIELDS = ("bookingKeys", "all", "filter")
FILTER_FIELDS = ("businessId", "customerEmail", "from", "to")
MAX_REPORTED_KEY_ERRORS = 20


def parse_selection(
    document: Mapping[str, Any], *, max_selection: int, business_ids: Sequence[str], zone: ZoneInfo
) -> Selection:
    """Check a `POST /api/invoice-requests` body. Raises `InvalidInput` with an actionable detail."""
    reject_unknown(document, BODY_FIELDS)
    has_keys = "bookingKeys" in document
    has_all = "all" in document
    if has_keys and has_all:
        raise InvalidInput(
            'Send either "bookingKeys" or "all", not both: bookingKeys names bookings, '
            "all selects every Unbilled booking matching filter."
        )
    if has_keys:
        if "filter" in document:
            raise InvalidInput.field("filter", 'applies only to {"all": true}; with bookingKeys leave it out')
        return Selection(keys=_parse_keys(document["bookingKeys"], max_selection))
    if has_all:
        if document["all"] is not True:
            raise InvalidInput.field(
                "all", 'must be true (to select by key, leave "all" out and send "bookingKeys")'
            )
        raw_filter = document.get("filter")
        if raw_filter is None:
            raw_filter = {}
        if not isinstance(raw_filter, dict):
            raise InvalidInput.field("filter", "must be an object with businessId, customerEmail, from, to")
        reject_unknown(raw_filter, FILTER_FIELDS, where="filter")
        fields = parse_filter_fields(raw_filter, business_ids, zone, where="filter")
        return Selection(filter=BookingFilter(status=FILTER_SELECTABLE, **fields))
    raise InvalidInput(
        'The body must name "bookingKeys" (an array of booking keys) or be {"all": true, "filter": {...}}.'
    )


def _parse_keys(value: object, max_selection: int) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise InvalidInput.field("bookingKeys", "must be an array of booking keys")
    if not value:
        raise InvalidInput.field("bookingKeys", "is empty; name at least one booking key")
    errors: list[FieldError] = []
    for index, key in enumerate(value):
        if not is_booking_key(key):
            shown = repr(key)[:60] if isinstance(key, str) else f"a {type(key).__name__} value"
            errors.append(
                FieldError(
                    f"bookingKeys[{index}]",
                    f"{shown} is not a booking key ({KEY_LENGTH} characters A-Z and 2-7)",
                )
            )
    if errors:
        more = len(errors) - MAX_REPORTED_KEY_ERRORS
        first = errors[0]
        detail = (
            f"{len(errors)} of the {len(value)} booking keys are malformed and nothing was queued; "
            f"first {first.field}: {first.problem}."
        )
        if more > 0:
            detail += f" The first {MAX_REPORTED_KEY_ERRORS} are listed."
        raise InvalidInput(detail, errors[:MAX_REPORTED_KEY_ERRORS])
    keys = tuple(dict.fromkeys(value))
    if len(keys) > max_selection:
        raise InvalidInput.field(
            "bookingKeys",
            f"names {len(keys):,} bookings; one request may name at most {max_selection:,} "
            "(setting MAX_SELECTION). Split the selection into several requests.",
        )
    return keys
