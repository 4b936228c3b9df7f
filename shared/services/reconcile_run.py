"""The `reconcile_invoices` timer's one use case: follow the app's invoices, then apply retention.

Both run whatever the other's outcome; either failing fails the run (so the failed-run alert fires)
after both were tried. Counts are logged once per run.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.services.reconcile import InvoiceReconciler
from shared.services.retention import Retention
from shared.telemetry import get_logger

log = get_logger("bookings.reconcile_run")


class ReconcileFailedError(RuntimeError):
    """A part of the run failed (its cause is logged); the next run tries again."""


@dataclass
class ReconcileReport:
    reconcile: Counter[str] = field(default_factory=Counter)
    retention: Counter[str] = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


class ReconcileTimerRun:
    def __init__(
        self,
        reconciler: InvoiceReconciler,
        retention: Retention,
        record_run: Callable[[str, str], None] | None = None,
    ) -> None:
        self.reconciler = reconciler
        self.retention = retention
        # Stores how the run ended (outcome, error) for the setup check's `last-reconcile`.
        self.record_run = record_run

    def __call__(self) -> ReconcileReport:
        report = ReconcileReport()
        started = time.monotonic()
        for name, part, into in (
            ("reconcile", self.reconciler.run, report.reconcile),
            ("retention", self.retention.run, report.retention),
        ):
            try:
                into.update(part())
            except Exception as exc:  # logged here; the run fails below, after both parts were tried
                report.failed.append(name)
                report.reasons.append(f"{name}: {type(exc).__name__}: {str(exc)[:300]}")
                log.error(
                    "reconcile_invoices: %s failed: %s: %s",
                    name,
                    type(exc).__name__,
                    str(exc)[:300],
                    extra={"outcome": f"{name}_failed", "errorCode": type(exc).__name__},
                )
        _log_counts(report, int((time.monotonic() - started) * 1000))
        self._record(report)
        if report.failed:
            raise ReconcileFailedError(f"reconcile_invoices failed: {', '.join(report.failed)} (see the log)")
        return report

    def _record(self, report: ReconcileReport) -> None:
        if self.record_run is None:
            return
        try:
            error = "; ".join(report.reasons)
            self.record_run("failed" if report.failed else "succeeded", error)
        except Exception as exc:  # the run's own outcome matters more than its record
            log.warning("reconcile_invoices: run state not stored: %s", type(exc).__name__)


def _log_counts(report: ReconcileReport, ms: int) -> None:
    r, k = report.reconcile, report.retention
    log.info(
        "reconcile_invoices: %d invoices read in %d pages (%d unposted in %d pages), %d followed, "
        "%d unposted checked by id, %d back to Unbilled; retention deleted %d (%d Invoiced, %d Cancelled, "
        "%d Excluded)",
        r["read"],
        r["pages"],
        r["unposted_read"],
        r["unposted_pages"],
        r["followed"],
        r["checked"],
        r["reopened"],
        k["deleted"],
        k["deleted_invoiced"],
        k["deleted_cancelled"],
        k["deleted_excluded"],
        extra={
            "outcome": "failed" if report.failed else "reconciled",
            "durationMs": ms,
            **{f"reconcile_{name}": n for name, n in r.items()},
            **{f"retention_{name}": n for name, n in k.items()},
        },
    )
