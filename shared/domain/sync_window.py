"""Which stretch of time one sync run reads from Graph's `calendarView`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# How far before the last fully-read point a catch-up window starts (clock skew between us and
# Graph, appointments saved late). Only matters after the last success is older than the lookback.
DEFAULT_OVERLAP = timedelta(hours=1)

# A catch-up window never starts earlier than RETENTION_DAYS minus this before now. Retention
# deletes bookings whose appointment ended more than RETENTION_DAYS before its run; a window that
# reached that far back would read such an appointment again and bring its booking back as
# Unbilled (invoiced twice). The day absorbs clock skew between the instances running the timers.
RETENTION_GUARD = timedelta(days=1)

# The longest range one `calendarView` request asks for. The Bookings page
# (`graph/api/bookingbusiness-list-calendarview`) states no maximum, but Outlook's calendarView
# refuses ranges over 1,825 days, and a catch-up window can reach back RETENTION_DAYS. Bounded
# pieces are safe either way, and let a long window use the 4 concurrent requests Bookings allows
# per mailbox (`graph/throttling-limits`). Longer than the default lookback (30 days), so an
# ordinary run stays one request stream: the split costs requests only when the window is long.
MAX_SUB_WINDOW = timedelta(days=31)


@dataclass(frozen=True)
class SyncWindow:
    """The [start, end) range read from `calendarView` in one run."""

    start: datetime
    end: datetime
    first_run: bool = False
    catching_up: bool = False
    not_read_before: datetime | None = None
    """Set when a catch-up was cut at the retention horizon: the watermark it should have resumed
    from. Appointments between that and `start` are not read (older than retention allows)."""


def plan_window(
    now: datetime,
    fully_read_to: datetime | None,
    lookback_days: int,
    overlap: timedelta = DEFAULT_OVERLAP,
    retention_days: int | None = None,
) -> SyncWindow:
    """The window of a run: the lookback, stretched back to the watermark if that is older.

    - first run (no watermark): [now - lookback, now)
    - normal run: [now - lookback, now): the lookback is re-read for late edits and cancellations
    - after an outage longer than the lookback: [watermark - overlap, now), so nothing is skipped
    - ...but never before `now - retention_days + RETENTION_GUARD`: what retention may already have
      deleted is never read again (settings keep the lookback well inside that horizon)
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    lookback_start = now - timedelta(days=lookback_days)
    if fully_read_to is None:
        return SyncWindow(lookback_start, now, first_run=True)
    resume_from = fully_read_to - overlap
    if resume_from < lookback_start:
        if retention_days is not None:
            horizon = now - timedelta(days=retention_days) + RETENTION_GUARD
            if resume_from < horizon:
                return SyncWindow(horizon, now, catching_up=True, not_read_before=resume_from)
        return SyncWindow(resume_from, now, catching_up=True)
    return SyncWindow(lookback_start, now)


def sub_windows(
    start: datetime, end: datetime, size: timedelta = MAX_SUB_WINDOW
) -> list[tuple[datetime, datetime]]:
    """[start, end) cut into consecutive [a, b) pieces of at most `size`, oldest first.

    The pieces share their bounds, so an appointment that spans one is returned by both (overlap
    semantics): the reader keeps the first copy."""
    if size <= timedelta(0):
        raise ValueError("size must be positive")
    pieces: list[tuple[datetime, datetime]] = []
    cursor = start
    while cursor < end:
        following = min(cursor + size, end)
        pieces.append((cursor, following))
        cursor = following
    return pieces or [(start, end)]
