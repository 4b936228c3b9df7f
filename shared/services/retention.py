"""Retention (in the reconcile_invoices timer): forget bookings nobody needs to see again.

A booking is deleted, with its request record, when its appointment ended more than
`RETENTION_DAYS` ago and it is Cancelled, Excluded, or Invoiced with a final invoice status
(Paid, Canceled, Corrective) or billed by hand. Settings refuse a retention shorter than the sync's
lookback plus a week, so the sync never reads a deleted booking's appointment again and it can
never come back as Unbilled. Each delete is conditional on the ETag it was read with.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from shared.domain import lifecycle
from shared.domain.errors import ConcurrentChangeError
from shared.services.ports import RequestRecords, RetentionTarget

PURGE_STATUSES = lifecycle.TRANSITIONS["purge"].sources


class Retention:
    def __init__(
        self,
        store: RetentionTarget,
        requests: RequestRecords,
        *,
        business_ids: Sequence[str],
        retention_days: int,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.requests = requests
        self.business_ids = tuple(business_ids)
        self.retention = timedelta(days=retention_days)
        self.clock = clock

    def run(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        cutoff = self.clock() - self.retention
        for business_id in self.business_ids:
            for booking in self.store.ended_before(business_id, PURGE_STATUSES, cutoff):
                if not lifecycle.may_purge(booking):
                    counts["kept"] += 1
                    continue
                try:
                    self.store.delete(booking)
                except ConcurrentChangeError:
                    counts["changed_meanwhile"] += 1
                    continue
                counts[f"deleted_{booking.status.value.lower()}"] += 1
                if booking.request_id:
                    self.requests.forget_booking(booking.request_id, booking.key)
        counts["deleted"] = sum(n for name, n in counts.items() if name.startswith("deleted_"))
        return counts
