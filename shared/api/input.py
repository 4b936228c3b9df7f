"""Validating what callers send the HTTP API: one exception type that becomes a 400 problem.

Checks live here (not in the function modules) so the rules are testable without a host and the
same rules hold for every caller. Every message names the field and says what would be accepted,
so a person reading a 400 can fix the request without the docs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from shared.domain.models import BookingStatus

# A selection of 100,000 keys (MAX_SELECTION's ceiling) is ~3 MB of JSON; nothing legitimate is larger.
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_EMAIL_LENGTH = 320
MAX_BUSINESS_ID_LENGTH = 320
_SMTP_ADDRESS = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")
MIN_YEAR = 1900
MAX_YEAR = 2999
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class FieldError:
    """One problem with one field (the `errors` member of a problem document)."""

    field: str
    problem: str


class InvalidInput(ValueError):
    """The request cannot be served as sent: answered with 400 and `detail` (+ `errors`)."""

    def __init__(self, detail: str, errors: Iterable[FieldError] = ()) -> None:
        self.detail = detail
        self.errors = tuple(errors)
        super().__init__(detail)

    @classmethod
    def field(cls, name: str, problem: str) -> InvalidInput:
        return cls(f"{name}: {problem}", [FieldError(name, problem)])


def parse_json_object(
    body: bytes, content_type: str | None, *, max_bytes: int = MAX_BODY_BYTES
) -> dict[str, Any]:
    """The request body as a JSON object; `InvalidInput` for anything else.

    The content type must be JSON so a form post or a text body is refused before it is read as
    a selection; duplicate member names are refused because two parsers could disagree on them.
    """
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        shown = media_type or "none"
        raise InvalidInput(f"Content-Type must be application/json (got {shown}).")
    if len(body) > max_bytes:
        raise InvalidInput(
            f"The body is {len(body):,} bytes; the most this API accepts is {max_bytes:,} bytes. "
            "Send fewer booking keys per request."
        )
    if not body.strip():
        raise InvalidInput("The body is empty; send a JSON object.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("The body is not UTF-8 encoded JSON.") from None
    try:
        document = json.loads(text, object_pairs_hook=_no_duplicate_members, parse_constant=_no_constant)
    except _DuplicateMember as exc:
        raise InvalidInput(f"The body names the member {exc.name!r} twice.") from None
    except ValueError as exc:
        raise InvalidInput(f"The body is not valid JSON: {exc}.") from None
    except RecursionError:
        raise InvalidInput("The body is nested too deeply.") from None
    if not isinstance(document, dict):
        raise InvalidInput(f"The body must be a JSON object, not {_json_type(document)}.")
    return document


class _DuplicateMember(ValueError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(name)


def _no_duplicate_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for name, value in pairs:
        if name in document:
            raise _DuplicateMember(name)
        document[name] = value
    return document


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def reject_unknown(document: Mapping[str, Any], known: Iterable[str], where: str = "") -> None:
    """Unknown members are refused, so a misspelt filter never silently widens a selection."""
    known_names = list(known)
    unknown = [name for name in document if name not in known_names]
    if unknown:
        prefix = f"{where}." if where else ""
        errors = [FieldError(f"{prefix}{name}", "is not a known field") for name in unknown]
        names = ", ".join(repr(f"{prefix}{name}") for name in unknown)
        allowed = ", ".join(f"{prefix}{name}" for name in known_names)
        raise InvalidInput(f"Unknown field(s) {names}; allowed: {allowed}.", errors)


def parse_status(value: object, name: str = "status") -> BookingStatus:
    if not isinstance(value, str):
        raise InvalidInput.field(name, f"must be a string, not {_json_type(value)}")
    for status in BookingStatus:
        if status.value.lower() == value.strip().lower():
            return status
    allowed = ", ".join(status.value for status in BookingStatus)
    raise InvalidInput.field(name, f"{value!r} is not a booking state; use one of {allowed}")


def parse_business_id(value: object, configured: Iterable[str], name: str = "businessId") -> str:
    """A configured Bookings business id (matched case-insensitively, returned as configured)."""
    if not isinstance(value, str):
        raise InvalidInput.field(name, f"must be a string, not {_json_type(value)}")
    text = value.strip()
    if len(text) > MAX_BUSINESS_ID_LENGTH or not _SMTP_ADDRESS.match(text):
        raise InvalidInput.field(name, "must be a Bookings business id (its SMTP address)")
    configured_ids = list(configured)
    for business_id in configured_ids:
        if business_id.lower() == text.lower():
            return business_id
    raise InvalidInput.field(
        name, f"{text!r} is not one of the configured Bookings businesses (setting BOOKINGS_BUSINESS_IDS)"
    )


def parse_email(value: object, name: str = "customerEmail") -> str:
    """An email address, lower-cased: customers match case-insensitively, as Business Central does."""
    if not isinstance(value, str):
        raise InvalidInput.field(name, f"must be a string, not {_json_type(value)}")
    text = value.strip()
    if len(text) > MAX_EMAIL_LENGTH or not _SMTP_ADDRESS.match(text):
        raise InvalidInput.field(name, f"{text[:80]!r} is not an email address")
    return text.lower()


def parse_moment(value: object, zone: ZoneInfo, name: str) -> datetime:
    """An ISO 8601 date-time with `Z` or an offset, or a date (midnight in the business time zone).

    A date-time without an offset is refused: guessing its zone would shift bookings near midnight
    into the wrong day, the very bug of the original feature.
    """
    if not isinstance(value, str):
        raise InvalidInput.field(name, f"must be a string, not {_json_type(value)}")
    text = value.strip()
    if _DATE_ONLY.match(text):
        try:
            day = datetime.strptime(text, "%Y-%m-%d").date()
        except ValueError:
            raise InvalidInput.field(name, f"{text!r} is not a calendar date") from None
        return _in_range(datetime.combine(day, time.min, tzinfo=zone), name)
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput.field(
            name, f"{text[:40]!r} is not an ISO 8601 date (2026-01-31) or date-time (2026-01-31T09:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        raise InvalidInput.field(name, f"{text!r} has no time zone; add Z or an offset such as +01:00")
    return _in_range(moment, name)


def _in_range(moment: datetime, name: str) -> datetime:
    """Table storage holds dates from 1601 on; anything outside 1900-2999 is a typo, not a filter."""
    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        raise InvalidInput.field(name, f"must lie between the years {MIN_YEAR} and {MAX_YEAR}")
    return moment
