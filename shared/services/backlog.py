"""The backlog report: how many bookings wait in each state, and how deep the poison queue is.

The `sync_bookings` timer logs it once per run, so operations can chart the backlog and alert on a
poison queue that is not drained, from the logs alone (no storage access needed in a dashboard).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from azure.data.tables import TableClient

from shared.adapters.invoice_queue import InvoiceQueue
from shared.domain.models import BookingStatus
from shared.telemetry import get_logger

log = get_logger("bookings.backlog")


@dataclass(frozen=True)
class Backlog:
    unbilled: int
    queued: int
    invoicing: int
    failed: int
    poison_depth: int


def _count(table: TableClient, status: BookingStatus) -> int:
    entities = table.query_entities(
        "Status eq @status", parameters={"status": str(status)}, select=["RowKey"], results_per_page=1000
    )
    return sum(1 for _ in entities)


def measure_backlog(table: TableClient, queue: InvoiceQueue) -> Backlog:
    """Counts of the states that still need someone (Invoiced and Cancelled are at rest)."""
    return Backlog(
        unbilled=_count(table, BookingStatus.UNBILLED),
        queued=_count(table, BookingStatus.QUEUED),
        invoicing=_count(table, BookingStatus.INVOICING),
        failed=_count(table, BookingStatus.FAILED),
        poison_depth=queue.poison_depth(),
    )


def report_backlog(table: TableClient, queue: InvoiceQueue) -> Backlog:
    """Measure and log the backlog in one line with structured fields."""
    backlog = measure_backlog(table, queue)
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
