"""Timer trigger scheduler: fires on a six-field NCRONTAB schedule in UTC, like the host.

The host keeps each timer's schedule status (last and next occurrence) in storage; when it starts
and finds the recorded next occurrence already behind it, it runs the function at once with
`past_due` set. Here the status lives in a small JSON file per function under the state directory.
Runs of one timer never overlap: the next occurrence is computed after the previous run ends.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.functions.timer import TimerRequest

from devhost.functions import FunctionSpec
from devhost.invoker import Invoker
from shared.ncrontab import NcrontabSchedule

log = logging.getLogger("devhost.timers")

# A run that starts later than this after its scheduled time counts as past due.
PAST_DUE_TOLERANCE = timedelta(seconds=5)


def utc_now() -> datetime:
    return datetime.now(UTC)


class ScheduleStatusStore:
    """Last/next occurrence per timer, kept across host restarts."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def _path(self, function_name: str) -> Path:
        return self._directory / "timers" / f"{function_name}.json"

    def load(self, function_name: str) -> dict[str, datetime] | None:
        try:
            raw = json.loads(self._path(function_name).read_text(encoding="utf-8"))
            return {key: datetime.fromisoformat(raw[key]) for key in ("Last", "Next", "LastUpdated")}
        except (FileNotFoundError, KeyError, ValueError, TypeError):
            return None

    def save(self, function_name: str, last: datetime, next_: datetime, now: datetime) -> None:
        path = self._path(function_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {"Last": last.isoformat(), "Next": next_.isoformat(), "LastUpdated": now.isoformat()}
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(document), encoding="utf-8")
        temporary.replace(path)


class TimerScheduler:
    """Runs one timer-triggered function on its schedule until stopped."""

    def __init__(
        self,
        spec: FunctionSpec,
        invoker: Invoker,
        store: ScheduleStatusStore,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.spec = spec
        self.schedule = NcrontabSchedule(str(spec.trigger["schedule"]))
        self._run_on_startup = bool(spec.trigger.get("runOnStartup", False))
        self._invoker = invoker
        self._store = store
        self._clock = clock
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._loop, name=f"devhost-timer-{self.spec.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        now = self._clock()
        status = self._store.load(self.spec.name)
        last = status["Last"] if status else now
        if status is not None and status["Next"] < now:
            log.info(
                "Timer '%s' is past due (scheduled for %s); running it now",
                self.spec.name,
                status["Next"].isoformat(),
            )
            self._fire(past_due=True, scheduled=status["Next"], last=last, reason="Timer past due")
            last = self._clock()
        elif self._run_on_startup:
            self._fire(past_due=False, scheduled=now, last=last, reason="RunOnStartup")
            last = self._clock()
        while not self._stopping.is_set():
            next_run = self.schedule.next_after(self._clock())
            self._store.save(self.spec.name, last, next_run, self._clock())
            if not self._sleep_until(next_run):
                return
            started = self._clock()
            self._fire(
                past_due=started - next_run > PAST_DUE_TOLERANCE,
                scheduled=next_run,
                last=last,
                reason="Timer fired",
            )
            last = next_run

    def _sleep_until(self, moment: datetime) -> bool:
        """Wait for `moment` in short steps (robust to clock changes); False when stopped."""
        while not self._stopping.is_set():
            remaining = (moment - self._clock()).total_seconds()
            if remaining <= 0:
                return True
            self._stopping.wait(min(remaining, 1.0))
        return False

    def _fire(self, *, past_due: bool, scheduled: datetime, last: datetime, reason: str) -> None:
        request = TimerRequest(
            past_due=past_due,
            schedule_status={
                "Last": last.isoformat(),
                "Next": self.schedule.next_after(scheduled).isoformat(),
                "LastUpdated": self._clock().isoformat(),
            },
            schedule={"AdjustForDST": True},
        )
        try:
            future = self._invoker.submit(self.spec, request, reason=f"{reason} at {scheduled.isoformat()}")
        except RuntimeError:
            return
        # One run at a time: the host never overlaps runs of the same timer.
        try:
            future.result()
        except Exception as exc:  # the invoker already logged it; the schedule goes on
            log.debug("Timer '%s' run failed: %s", self.spec.name, exc)
        except BaseException:  # noqa: S110 - KeyboardInterrupt etc. inside a function must not stop the host
            pass


def timer_input(past_due: bool = False) -> Any:
    """The trigger input of a timer run started by hand (admin endpoint)."""
    return TimerRequest(past_due=past_due)
