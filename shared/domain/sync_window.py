"""Which stretch of time one sync run reads from Graph's `calendarView`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# How far before the last fully-read point a catch-up window starts (clock skew between us and
# Graph, appointments saved late). Only matters after the last success is older than the lookback.
DEFAULT_OVERLAP = timedelta(hours=1)


@dataclass(frozen=True)
class SyncWindow:
    """The [start, end) range read from `calendarView` in one run."""

    start: datetime
    end: datetime
    first_run: bool = False
    catching_up: bool = False


def plan_window(
    now: datetime,
    fully_read_to: datetime | None,
    lookback_days: int,
    overlap: timedelta = DEFAULT_OVERLAP,
) -> SyncWindow:
    """The window of a run: the lookback, stretched back to the watermark if that is older.

    - first run (no watermark): [now - lookback, now)
    - normal run: [now - lookback, now): the lookback is re-read for late edits and cancellations
    - after an outage longer than the lookback: [watermark - overlap, now), so nothing is skipped
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    lookback_start = now - timedelta(days=lookback_days)
    if fully_read_to is None:
        return SyncWindow(lookback_start, now, first_run=True)
    resume_from = fully_read_to - overlap
    if resume_from < lookback_start:
        return SyncWindow(resume_from, now, catching_up=True)
    return SyncWindow(lookback_start, now)
