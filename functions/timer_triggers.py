"""`sync_bookings`: the timer that pulls completed Bookings appointments into the `Bookings` table.

After the sync, the same run makes the recovery pass (bookings stuck in Queued/Invoicing are sent
to the queue again) and logs the backlog (bookings per state, poison queue depth), so one schedule
drives all three and ops watch one timer.
"""

from __future__ import annotations

import azure.functions as func

from shared import bootstrap
from shared.services.backlog import report_backlog
from shared.services.booking_sync import SyncFailedError
from shared.services.recovery import recover_stuck_bookings
from shared.telemetry import get_logger

bp = func.Blueprint()
log = get_logger("bookings.functions.timer_triggers")


@bp.function_name("sync_bookings")
@bp.timer_trigger(schedule="%SYNC_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def sync_bookings(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.info("sync_bookings is running late (past due)", extra={"outcome": "past_due"})
    container = bootstrap.container()
    report = container.booking_sync.run()

    # Recovery hook: re-enqueue bookings stuck in Queued/Invoicing, whatever the sync's outcome.
    try:
        # The store's clock stamps status changes, so ages are measured against the same clock.
        store = container.booking_store
        recover_stuck_bookings(store, container.invoice_queue, store.clock)
    except Exception as exc:  # logged; the next run tries again, and the sync's result still counts
        log.error("Recovery pass failed: %s", type(exc).__name__, extra={"outcome": "recovery_failed"})
    try:
        report_backlog(container.booking_store.table, container.invoice_queue)
    except Exception as exc:
        log.error("Backlog report failed: %s", type(exc).__name__, extra={"outcome": "backlog_failed"})

    if not report.ok:
        failed = ", ".join(result.business_id for result in report.failed)
        raise SyncFailedError(f"sync failed for {failed} (the other businesses were synced)")
