"""The `sync_bookings` timer's one use case: sync, the recovery pass, the list index backfill (until
done), then the backlog line.

One schedule drives all three, so operations watch one timer. Recovery and the backlog run
whatever the sync's outcome (each failure logged on its own); a failed business fails the run.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from shared.services.backlog import report_backlog
from shared.services.booking_sync import BookingSync, SyncFailedError, SyncReport
from shared.services.list_index_backfill import IndexMarkers, backfill_list_index
from shared.services.ports import BookingRepository, InvoiceQueuePort
from shared.services.recovery import recover_stuck_bookings
from shared.telemetry import get_logger

log = get_logger("bookings.timer_run")


class SyncTimerRun:
    def __init__(
        self,
        sync: BookingSync,
        store: BookingRepository,
        queue: InvoiceQueuePort,
        clock: Callable[[], datetime],
        index_markers: IndexMarkers | None = None,
    ) -> None:
        self.sync = sync
        self.store = store
        self.queue = queue
        self.clock = clock
        self.index_markers = index_markers

    def __call__(self) -> SyncReport:
        """Run it all; raises `SyncFailedError` naming the businesses that failed."""
        report = self.sync.run()
        try:
            # Status changes are stamped with the same clock, so ages are measured consistently.
            recover_stuck_bookings(self.store, self.queue, self.clock)
        except Exception as exc:  # logged; the next run tries again, and the sync's result still counts
            log.error("Recovery pass failed: %s", type(exc).__name__, extra={"outcome": "recovery_failed"})
        if self.index_markers is not None:
            try:
                backfill_list_index(self.store, self.index_markers, self.sync.business_ids)
            except Exception as exc:  # logged; the next run continues where this one stopped
                log.error(
                    "List index backfill failed: %s",
                    type(exc).__name__,
                    extra={"outcome": "list_index_failed"},
                )
        try:
            report_backlog(self.store, self.queue)
        except Exception as exc:
            log.error("Backlog report failed: %s", type(exc).__name__, extra={"outcome": "backlog_failed"})
        if not report.ok:
            failed = ", ".join(result.business_id for result in report.failed)
            raise SyncFailedError(f"sync failed for {failed} (the other businesses were synced)")
        return report
