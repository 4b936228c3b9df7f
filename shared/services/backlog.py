"""The backlog report: how many bookings wait in each state, and how deep the poison queue is.

The `sync_bookings` timer logs it once per run, so operations can chart the backlog and alert on a
poison queue that is not drained, from the logs alone (no storage access needed in a dashboard).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared.domain.models import BookingStatus
from shared.services.ports import BookingRepository, InvoiceQueuePort
from shared.telemetry import get_logger

log = get_logger("bookings.backlog")


@dataclass(frozen=True)
class Backlog:
    unbilled: int
    queued: int
    invoicing: int
    failed: int
    poison_depth: int


def measure_backlog(store: BookingRepository, queue: InvoiceQueuePort) -> Backlog:
    """Counts of the states that still need someone (Invoiced and Cancelled are at rest)."""
    return Backlog(
        unbilled=store.count_by_status(BookingStatus.UNBILLED),
        queued=store.count_by_status(BookingStatus.QUEUED),
        invoicing=store.count_by_status(BookingStatus.INVOICING),
        failed=store.count_by_status(BookingStatus.FAILED),
        poison_depth=queue.poison_depth(),
    )


def report_backlog(store: BookingRepository, queue: InvoiceQueuePort) -> Backlog:
    """Measure and log the backlog in one line with structured fields."""
    backlog = measure_backlog(store, queue)
    log.log(
        logging.WARNING if backlog.poison_depth else logging.INFO,
        "Backlog: %d unbilled, %d queued, %d invoicing, %d failed; %d message(s) in the poison queue",
        backlog.unbilled,
        backlog.queued,
        backlog.invoicing,
        backlog.failed,
        backlog.poison_depth,
        extra={
            "unbilled": backlog.unbilled,
            "queued": backlog.queued,
            "invoicing": backlog.invoicing,
            "failed": backlog.failed,
            "poisonDepth": backlog.poison_depth,
            "outcome": "backlog",
        },
    )
    return backlog
