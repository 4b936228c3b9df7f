"""Moments in time as the product handles them: aware UTC datetimes, ISO 8601 with a `Z`."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """The real clock. Code takes a clock as a parameter; this is only its default."""
    return datetime.now(UTC)


def aware(value: object) -> datetime | None:
    """A stored moment as an aware datetime (storage may hand back naive UTC or ISO text)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def iso_utc(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z`, the API's time format."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
