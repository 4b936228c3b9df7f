"""Time zone names as Graph writes them in a `dateTimeTimeZone`: IANA or Windows.

Graph's `dateTimeTimeZone.timeZone` may be a Windows zone name (`"W. Europe Standard Time"`) with
`dateTime` then a local time without offset (Graph docs `resources/datetimetimezone.md`;
`reference/graph-bookings.md`). Windows names are mapped to IANA with the CLDR table
(`windowsZones.xml`, territory `001`) as the maintained `tzlocal` package ships it
(`tzlocal.windows_tz.win_tz`, regenerated from CLDR by its maintainers; pinned in
requirements.txt), never with a table of our own. An unknown name is logged once per process (it
would otherwise repeat for every appointment on every run) and raised as `UnknownTimeZoneError`,
which the Graph parser turns into "appointment invalid, with that reason".
"""

from __future__ import annotations

import threading
from datetime import UTC, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tzlocal.windows_tz import win_tz

from shared.telemetry import get_logger

log = get_logger("bookings.time_zones")

# Names meaning UTC that are neither IANA keys nor in the CLDR table as written.
_UTC_NAMES = frozenset({"utc", "z", "gmt", "etc/utc", "coordinated universal time", "tzone://microsoft/utc"})
_WINDOWS = {name.lower(): iana for name, iana in win_tz.items()}

_reported: set[str] = set()
_reported_lock = threading.Lock()


class UnknownTimeZoneError(ValueError):
    """A zone name that is neither IANA nor a Windows name CLDR knows."""


def zone_named(name: str | None) -> tzinfo:
    """The zone a `dateTimeTimeZone.timeZone` names; UTC when blank."""
    text = (name or "").strip()
    if not text or text.lower() in _UTC_NAMES:
        return UTC
    iana = _WINDOWS.get(text.lower())
    try:
        return ZoneInfo(iana or text)
    except (ZoneInfoNotFoundError, ValueError):
        _report_once(text)
        raise UnknownTimeZoneError(f"unknown time zone {text!r}") from None


def _report_once(name: str) -> None:
    with _reported_lock:
        if name in _reported:
            return
        _reported.add(name)
    log.warning(
        "Time zone %r is neither an IANA name nor a Windows name in CLDR's mapping; "
        "appointments in it are reported invalid",
        name,
        extra={"outcome": "unknown_time_zone"},
    )
