"""`sync_bookings`: the timer that pulls completed Bookings appointments into the `Bookings` table.

The same run makes the recovery pass and logs the backlog (`shared/services/timer_run.py`).
"""

from __future__ import annotations

import azure.functions as func

from shared import bootstrap
from shared.telemetry import get_logger

bp = func.Blueprint()
log = get_logger("bookings.functions.sync")


@bp.function_name("sync_bookings")
@bp.timer_trigger(schedule="%SYNC_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def sync_bookings(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.info("sync_bookings is running late (past due)", extra={"outcome": "past_due"})
    bootstrap.container().sync_timer_run()
