"""The timers. `sync_bookings` pulls completed Bookings appointments into the `Bookings` table;
`reconcile_invoices` follows the app's invoices in Business Central and applies retention.

`sync_bookings` also makes the recovery pass and logs the backlog (`shared/services/timer_run.py`).
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


@bp.function_name("reconcile_invoices")
@bp.timer_trigger(schedule="%RECONCILE_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def reconcile_invoices(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.info("reconcile_invoices is running late (past due)", extra={"outcome": "past_due"})
    bootstrap.container().reconcile_timer_run()
