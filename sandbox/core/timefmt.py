"""Date, time and duration formats of the two APIs.

Graph returns `dateTimeTimeZone` values in UTC with seven fractional digits and `Z`
(`2026-01-15T13:00:00.0000000Z`) and durations as ISO 8601 (`PT1H30M`); Business Central writes
dates as `2026-01-15` and timestamps with milliseconds. Inputs are parsed strictly: a value the real
API would reject must be rejected here too.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_ISO = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:T(?P<h>\d{2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?:\.(?P<f>\d{1,7}))?)?"
    r"(?P<tz>Z|z|[+-]\d{2}:?\d{2})?)?$"
)
_DURATION = re.compile(
    r"^P(?:(?P<days>\d+)D)?(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)

# Graph accepts Windows time zone names as well as IANA names in dateTimeTimeZone.
_WINDOWS_ZONES = {
    "utc": "UTC",
    "coordinated universal time": "UTC",
    "w. europe standard time": "Europe/Amsterdam",
    "romance standard time": "Europe/Paris",
    "gmt standard time": "Europe/London",
    "central europe standard time": "Europe/Budapest",
    "eastern standard time": "America/New_York",
    "central standard time": "America/Chicago",
    "mountain standard time": "America/Denver",
    "pacific standard time": "America/Los_Angeles",
}


def parse_iso_datetime(value: str, default_zone: timezone | ZoneInfo = UTC) -> datetime:
    """Parse ISO 8601 (`Z`, an offset, or none -> `default_zone`); raises `ValueError`."""
    match = _ISO.match(value.strip())
    if not match:
        raise ValueError(f"not an ISO 8601 date/time: {value!r}")
    day = date.fromisoformat(match.group("date"))
    hour = int(match.group("h") or 0)
    minute = int(match.group("m") or 0)
    second = int(match.group("s") or 0)
    fraction = match.group("f") or ""
    micro = int(fraction.ljust(6, "0")[:6]) if fraction else 0
    zone_text = match.group("tz")
    zone: timezone | ZoneInfo
    if zone_text is None:
        zone = default_zone
    elif zone_text in ("Z", "z"):
        zone = UTC
    else:
        sign = 1 if zone_text[0] == "+" else -1
        digits = zone_text[1:].replace(":", "")
        zone = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    result = datetime(day.year, day.month, day.day, hour, minute, second, micro, tzinfo=zone)
    return result.astimezone(UTC)


def zone_named(name: str | None) -> ZoneInfo:
    """An IANA or Windows zone name as Graph accepts it; raises `ValueError` if unknown."""
    if not name:
        return ZoneInfo("UTC")
    mapped = _WINDOWS_ZONES.get(name.strip().lower(), name.strip())
    try:
        return ZoneInfo(mapped)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def graph_datetime(instant: datetime) -> str:
    """`2026-01-15T13:00:00.0000000Z`: UTC, seven fractional digits."""
    utc = instant.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond:06d}0Z"


def bc_datetime(instant: datetime) -> str:
    """Business Central timestamps: `2026-01-15T13:00:00.123Z`."""
    utc = instant.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def iso_duration(delta: timedelta) -> str:
    """`PT1H30M`, `P1DT2H`, `PT0S` as Graph writes durations."""
    total = int(delta.total_seconds())
    if total <= 0:
        return "PT0S"
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    text = "P" + (f"{days}D" if days else "")
    time_part = (
        (f"{hours}H" if hours else "")
        + (f"{minutes}M" if minutes else "")
        + (f"{seconds}S" if seconds else "")
    )
    return text + ("T" + time_part if time_part else "")


def parse_iso_duration(value: str) -> timedelta:
    match = _DURATION.match(value.strip())
    if not match or value.strip() in ("P", "PT"):
        raise ValueError(f"not an ISO 8601 duration: {value!r}")
    return timedelta(
        days=int(match.group("days") or 0),
        hours=int(match.group("hours") or 0),
        minutes=int(match.group("minutes") or 0),
        seconds=float(match.group("seconds") or 0),
    )
