"""Clocks: the sandbox's idea of "now".

Everything the sandbox decides from the current time (seed data, token lifetimes, "completed"
appointments, default invoice dates) reads one injected clock, so tests can pin the world to a
fixed instant and move it forward on purpose instead of depending on today's date.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Anything that tells the current time as an aware UTC datetime."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real UTC wall clock (the default outside tests)."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to: tests and `--now` use it. Thread-safe."""

    def __init__(self, start: datetime) -> None:
        self._lock = threading.Lock()
        self._now = _as_utc(start)

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, instant: datetime) -> None:
        with self._lock:
            self._now = _as_utc(instant)

    def advance(self, delta: timedelta | float) -> datetime:
        """Move forward by a timedelta or a number of seconds; returns the new now."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        with self._lock:
            self._now += step
            return self._now


def _as_utc(instant: datetime) -> datetime:
    if instant.tzinfo is None:
        return instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC)
