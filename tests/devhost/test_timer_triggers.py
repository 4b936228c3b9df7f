"""Timer triggers: six-field NCRONTAB in UTC, past-due runs after downtime."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from devhost.timers import ScheduleStatusStore
from tests.helpers import wait_for


def test_schedule_fires_repeatedly(start_host, world) -> None:
    start_host(TICK_SCHEDULE="* * * * * *")  # every second
    runs = wait_for(lambda: len(world.records("tick")) >= 2 and world.records("tick"), what="two timer runs")
    assert all(run["past_due"] is False for run in runs)


def test_missed_run_is_past_due_at_start(start_host, world, tmp_path) -> None:
    long_ago = datetime(2000, 1, 1, tzinfo=UTC)
    ScheduleStatusStore(tmp_path / "state").save("tick", long_ago, long_ago + timedelta(days=1), long_ago)
    start_host()  # schedule: once a year, so only the past-due run happens now
    runs = wait_for(lambda: world.records("tick"), what="the past-due run")
    assert runs[0]["past_due"] is True
    status = json.loads((tmp_path / "state" / "timers" / "tick.json").read_text())
    assert datetime.fromisoformat(status["Next"]) > datetime.fromisoformat(status["Last"])


def test_schedule_status_is_recorded_for_the_next_start(start_host, world, tmp_path) -> None:
    start_host()
    path = tmp_path / "state" / "timers" / "tick.json"
    wait_for(path.exists, what="the schedule status file")
    status = json.loads(path.read_text())
    next_run = datetime.fromisoformat(status["Next"])
    assert (next_run.month, next_run.day, next_run.hour, next_run.minute, next_run.second) == (1, 1, 0, 0, 0)
    assert world.records("tick") == []
