"""The body of `POST /api/booking-updates`, checked all-or-nothing before any booking changes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.api.input import InvalidInput, reject_unknown
from shared.api.selection_input import _parse_keys
from shared.domain.lifecycle import MANUAL_ACTIONS
from shared.services.booking_updates import BookingUpdate

BODY_FIELDS = ("action", "bookingKeys", "reference", "note")
MAX_REFERENCE_LENGTH = 35
"""A reference names an invoice elsewhere; 35 is Business Central's external document number size."""
MAX_NOTE_LENGTH = 500


def parse_update(document: Mapping[str, Any], *, max_selection: int) -> BookingUpdate:
    """Check a `POST /api/booking-updates` body. Raises `InvalidInput` with an actionable detail."""
    reject_unknown(document, BODY_FIELDS)
    action = document.get("action")
    if action is None:
        raise InvalidInput.field("action", f"is required: one of {', '.join(MANUAL_ACTIONS)}")
    if not isinstance(action, str) or action not in MANUAL_ACTIONS:
        shown = repr(action)[:40] if isinstance(action, str) else f"a {type(action).__name__} value"
        raise InvalidInput.field(
            "action", f"{shown} is not an action; use one of {', '.join(MANUAL_ACTIONS)}"
        )
    if "bookingKeys" not in document:
        raise InvalidInput.field("bookingKeys", "is required: an array of booking keys")
    keys = _parse_keys(document["bookingKeys"], max_selection)
    reference = _text(document, "reference", MAX_REFERENCE_LENGTH)
    if reference is not None and action != "markInvoiced":
        raise InvalidInput.field("reference", 'applies only to "markInvoiced"; leave it out')
    return BookingUpdate(
        action=str(action), keys=keys, reference=reference, note=_text(document, "note", MAX_NOTE_LENGTH)
    )


def _text(document: Mapping[str, Any], name: str, limit: int) -> str | None:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput.field(name, f"must be a string, not a {type(value).__name__} value")
    text = value.strip()
    if len(text) > limit:
        raise InvalidInput.field(name, f"is {len(text)} characters long; at most {limit} are allowed")
    if any(ord(ch) < 32 and ch not in "\t" for ch in text):
        raise InvalidInput.field(name, "must not contain control characters (line breaks included)")
    return text or None
