"""The sync use case: completed Bookings appointments into the `Bookings` table, per business.

The window of one run ends now and starts `SYNC_LOOKBACK_DAYS` back, or earlier at the last
fully-read point (minus an overlap) if the previous successful run is older than that (after an
outage nothing is skipped). Re-reading the whole lookback every run is what catches late edits
(a price corrected after the appointment) and cancellations within one schedule interval; it costs
Graph reads, not table writes, because unchanged bookings are not written. A long window (a
catch-up after an outage) is read in sub-windows of at most `MAX_SUB_WINDOW`, up to 4 side by side.

An appointment is completed when its end lies before now; only completed ones become bookings. A
stored booking whose appointment was moved so that it has not ended yet gets the new dates (from
the window, or from the by-id read when it moved past now): it is then not billable until it has
ended (`lifecycle.has_ended`; the list, selection and invoicing check it). A group appointment is
one booking per attendee (`shared/domain/group_appointments.py`). Pages are processed as they
arrive (memory stays flat in the number of appointments, plus the set of appointment ids read);
Unbilled bookings that Graph no longer has in a fully-read window are cancelled: an attendee missing
from an appointment the window returned has left it (nothing to confirm: the appointment was just
read); a booking whose appointment the window did not return is confirmed gone with one point read
first. The watermark in `SyncState` advances only after the whole window was read and stored. A
failure in one business is logged and the others go on.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Generic, TypeVar

from shared.domain import lifecycle
from shared.domain.group_appointments import bookings_of, unkeyed_attendees, without_legacy_attendee
from shared.domain.models import Appointment, AppointmentPage, Booking, booking_key
from shared.domain.moments import iso_utc, utc_now
from shared.domain.sync_decisions import SyncOutcome
from shared.domain.sync_window import DEFAULT_OVERLAP, MAX_SUB_WINDOW, SyncWindow, plan_window, sub_windows
from shared.services.ports import GraphBookings, SyncStateRepository, SyncWriter
from shared.telemetry import get_logger

log = get_logger("bookings.sync")

MAX_PARALLEL_BUSINESSES = 4
PREFETCH_PAGES = 2
# Sub-windows of one business read side by side: Bookings allows 4 concurrent requests per app per
# mailbox (Learn, `graph/throttling-limits`); the Graph client's per-mailbox slots enforce it too.
MAX_PARALLEL_READS = 4
# How long one run may take before Graph waits are cut short: host.json's functionTimeout (30
# minutes) less time to store what was read and record the watermark. A `Retry-After` longer than
# 60 s is waited out in full only inside it (Learn, `graph/throttling`: "wait the number of seconds
# specified"); one that would outlast the invocation ends the business's run with Graph's error.
INVOCATION_BUDGET = timedelta(minutes=25)

T = TypeVar("T")


@dataclass
class BusinessSyncResult:
    """The outcome of one business in one run (logged as one line)."""

    business_id: str
    window: SyncWindow | None = None
    read: int = 0
    completed: int = 0
    not_completed: int = 0
    invalid: int = 0
    outcomes: Counter[SyncOutcome] = field(default_factory=Counter)
    duration_ms: int = 0
    outcome: str = "succeeded"
    error: str | None = None
    deadline: datetime | None = None  # when the run must be done (Graph's Retry-After waits)

    @property
    def succeeded(self) -> bool:
        return self.outcome == "succeeded"

    def counts(self) -> dict[str, int]:
        return {
            "read": self.read,
            "new": self.outcomes[SyncOutcome.CREATED],
            "updated": self.outcomes[SyncOutcome.UPDATED] + self.outcomes[SyncOutcome.REVIVED],
            "cancelled": self.outcomes[SyncOutcome.CANCELLED],
            "unchanged": self.outcomes[SyncOutcome.UNCHANGED],
            "locked": self.outcomes[SyncOutcome.LOCKED],
            "revived": self.outcomes[SyncOutcome.REVIVED],
            "stale": self.outcomes[SyncOutcome.STALE],
            "conflicts": self.outcomes[SyncOutcome.CONFLICT],
            "notCompleted": self.not_completed,
            "invalid": self.invalid,
        }


@dataclass
class SyncReport:
    results: list[BusinessSyncResult]

    @property
    def ok(self) -> bool:
        return all(result.succeeded for result in self.results)

    @property
    def failed(self) -> list[BusinessSyncResult]:
        return [result for result in self.results if not result.succeeded]


class SyncFailedError(RuntimeError):
    """At least one business could not be synced (the others were); raised so the run shows as failed."""


class BookingSync:
    """Runs the sync for every configured business."""

    def __init__(
        self,
        graph: GraphBookings,
        upserter: SyncWriter,
        state: SyncStateRepository,
        business_ids: Sequence[str],
        lookback_days: int,
        *,
        retention_days: int | None = None,
        clock: Callable[[], datetime] = utc_now,
        overlap: timedelta = DEFAULT_OVERLAP,
        max_parallel_businesses: int = MAX_PARALLEL_BUSINESSES,
        prefetch_pages: int = PREFETCH_PAGES,
        sub_window: timedelta = MAX_SUB_WINDOW,
        max_parallel_reads: int = MAX_PARALLEL_READS,
        time_budget: timedelta = INVOCATION_BUDGET,
    ) -> None:
        self.graph = graph
        self.upserter = upserter
        self.state = state
        self.business_ids = tuple(business_ids)
        self.lookback_days = lookback_days
        self.retention_days = retention_days
        self.clock = clock
        self.overlap = overlap
        self.max_parallel_businesses = max(1, max_parallel_businesses)
        self.prefetch_pages = max(0, prefetch_pages)
        self.sub_window = sub_window
        self.max_parallel_reads = max(1, max_parallel_reads)
        self.time_budget = time_budget

    def run(self) -> SyncReport:
        """Sync every business; businesses run side by side (Graph's limits are per mailbox)."""
        deadline = self.clock() + self.time_budget
        if len(self.business_ids) <= 1 or self.max_parallel_businesses == 1:
            return SyncReport(
                [self.sync_business(business_id, deadline) for business_id in self.business_ids]
            )
        workers = min(self.max_parallel_businesses, len(self.business_ids))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sync") as pool:
            return SyncReport(list(pool.map(lambda b: self.sync_business(b, deadline), self.business_ids)))

    def sync_business(self, business_id: str, deadline: datetime | None = None) -> BusinessSyncResult:
        """One business, isolated: any failure is logged and returned, never raised. `deadline`
        (default: the time budget from now) bounds Graph's `Retry-After` waits."""
        started = time.monotonic()
        result = BusinessSyncResult(business_id, deadline=deadline or self.clock() + self.time_budget)
        try:
            self._sync(business_id, result)
        except Exception as exc:
            result.outcome = "failed"
            result.error = _describe(exc)
            result.duration_ms = int((time.monotonic() - started) * 1000)
            _log_failure(result, type(exc).__name__)
            try:
                self.state.record_failure(business_id, result.error)
            except Exception as state_exc:
                log.warning(
                    "Could not record the failed sync of %s: %s",
                    business_id,
                    _describe(state_exc),
                    extra={"businessId": business_id, "outcome": "failed"},
                )
            return result
        result.duration_ms = int((time.monotonic() - started) * 1000)
        _log_success(result)
        return result

    # -- one business ----------------------------------------------------------------------------

    def _sync(self, business_id: str, result: BusinessSyncResult) -> None:
        now = self.clock()
        watermark = self.state.get(business_id).fully_read_to
        window = plan_window(now, watermark, self.lookback_days, self.overlap, self.retention_days)
        result.window = window
        if window.not_read_before is not None:
            _log_retention_cut(business_id, window)
        snapshot = self.upserter.stored_in_window(business_id, window.start, window.end)
        read_started = self.clock()
        seen: set[str] = set()  # ids of every appointment the window returned, readable or not

        def completed() -> Iterator[tuple[Appointment, datetime]]:
            for page in self._pages(business_id, window, result.deadline):
                page = _first_sight(page, seen)  # sub-windows share bounds: one copy each
                seen.update(page.appointment_ids)
                result.read += len(page.appointments) + len(page.invalid)
                _skip_invalid(business_id, page, snapshot, result)
                for appointment in page.appointments:
                    _report_unkeyed(appointment)
                    if appointment.end < now:
                        result.completed += 1
                        legacy = snapshot.get(booking_key(business_id, appointment.id))
                        units = without_legacy_attendee(bookings_of(appointment), legacy)
                        yield from ((unit, page.fetched_at) for unit in units)
                    else:  # still running, or moved into the future: stored once it has ended
                        result.not_completed += 1
                        # A booking stored earlier gets the new dates, so it is not billable until
                        # the appointment has ended (`lifecycle.has_ended`); none is created.
                        stored = [unit for unit in bookings_of(appointment) if unit.key in snapshot]
                        yield from ((unit, page.fetched_at) for unit in stored)

        result.outcomes.update(self.upserter.upsert(business_id, completed(), snapshot))
        # The window was read to its last page and stored: what is missing is gone or has moved.
        missing = [stored for stored in snapshot.values() if lifecycle.sync_may_cancel(stored.status)]
        if missing:
            settled = self._settle_missing(business_id, missing, read_started, seen, result.deadline)
            result.outcomes.update(settled)
        self.state.record_success(business_id, window.end, result.counts())

    def _pages(
        self, business_id: str, window: SyncWindow, deadline: datetime | None
    ) -> Iterator[AppointmentPage]:
        """The window's pages: its bounded sub-windows read side by side, pages as they arrive."""
        pieces = sub_windows(window.start, window.end, self.sub_window)
        readers = [
            partial(self.graph.calendar_view_pages, business_id, start, end, deadline=deadline)
            for start, end in pieces
        ]
        return side_by_side(readers, self.max_parallel_reads, self.prefetch_pages)

    def _settle_missing(
        self,
        business_id: str,
        missing: Iterable[Booking],
        read_started: datetime,
        seen: set[str],
        deadline: datetime | None = None,
    ) -> Counter[SyncOutcome]:
        """Cancel what Bookings no longer has; refresh what merely moved out of the window.

        A booking whose appointment the window returned is an attendee who left it: gone, without a
        point read (the appointment exists, so reading it would "confirm" nothing). Otherwise the
        appointment is read by id: absent, or present without this booking's attendee, it is gone.
        """
        gone: list[Booking] = []
        moved: list[tuple[Appointment, datetime]] = []
        for stored in missing:
            appointment_id = stored.appointment_id
            if not appointment_id or appointment_id in seen:
                gone.append(stored)
                continue
            fetched_at = self.clock()
            appointment = self.graph.get_appointment(business_id, appointment_id, deadline=deadline)
            units = bookings_of(appointment) if appointment is not None else ()
            unit = next((u for u in units if u.key == stored.key), None)
            if unit is None:
                gone.append(stored)
            else:
                moved.append((unit, fetched_at))
        outcomes: Counter[SyncOutcome] = Counter()
        if moved:
            snapshot = {stored.key: stored for stored in missing}
            outcomes.update(self.upserter.upsert(business_id, moved, snapshot))
        if gone:
            outcomes.update(self.upserter.cancel_missing(business_id, gone, read_started))
        return outcomes


def _first_sight(page: AppointmentPage, seen: set[str]) -> AppointmentPage:
    """The page without appointments an earlier page (of a neighbouring sub-window) returned."""
    if not seen.intersection(page.appointment_ids):
        return page
    return AppointmentPage(
        tuple(a for a in page.appointments if a.id not in seen),
        tuple((i, reason) for i, reason in page.invalid if i is None or i not in seen),
        page.fetched_at,
    )


def _skip_invalid(
    business_id: str, page: AppointmentPage, snapshot: dict[str, Booking], result: BusinessSyncResult
) -> None:
    """Appointments Graph returned that we cannot read: they exist, so none of their bookings
    (every attendee's, for a group appointment) is a cancellation. Each is logged."""
    if not page.invalid:
        return
    unreadable = {appointment_id for appointment_id, _ in page.invalid if appointment_id}
    for key in [key for key, stored in snapshot.items() if stored.appointment_id in unreadable]:
        del snapshot[key]
    for appointment_id, reason in page.invalid:
        result.invalid += 1
        log.warning(
            "Appointment %s of %s skipped: %s",
            appointment_id or "(no id)",
            business_id,
            reason,
            extra={"businessId": business_id, "outcome": "invalid_appointment"},
        )


def _report_unkeyed(appointment: Appointment) -> None:
    """Group attendees with neither a Bookings customer id nor an email cannot get a booking."""
    count = unkeyed_attendees(appointment)
    if count:
        log.warning(
            "Appointment %s of %s: %d attendee(s) without customer id or email left out",
            appointment.id,
            appointment.business_id,
            count,
            extra={"businessId": appointment.business_id, "outcome": "attendee_without_identity"},
        )


def _log_failure(result: BusinessSyncResult, error_code: str) -> None:
    counts = result.counts()
    log.error(
        "Sync of %s failed after %d ms, read %d (watermark unchanged): %s",
        result.business_id,
        result.duration_ms,
        result.read,
        result.error,
        extra={
            "businessId": result.business_id,
            "read": counts["read"],
            "new": counts["new"],
            "updated": counts["updated"],
            "cancelled": counts["cancelled"],
            "durationMs": result.duration_ms,
            "outcome": "failed",
            "errorCode": error_code,
            # Marks the one summary line per business and run (this or `_log_success`'s): the
            # alert on a business whose every run fails reads it (infra/modules/alerts.bicep).
            "syncResult": "failed",
        },
    )


def _log_success(result: BusinessSyncResult) -> None:
    counts = result.counts()
    log.info(
        "Sync of %s: read %d, new %d, updated %d, cancelled %d, unchanged %d, "
        "left alone %d (invoicing), in %d ms",
        result.business_id,
        counts["read"],
        counts["new"],
        counts["updated"],
        counts["cancelled"],
        counts["unchanged"],
        counts["locked"],
        result.duration_ms,
        extra={
            "businessId": result.business_id,
            **counts,
            "durationMs": result.duration_ms,
            "outcome": "succeeded",
            "syncResult": "succeeded",
            "windowStart": iso_utc(result.window.start) if result.window else None,
            "windowEnd": iso_utc(result.window.end) if result.window else None,
        },
    )


def _log_retention_cut(business_id: str, window: SyncWindow) -> None:
    """An outage outlasted RETENTION_DAYS: say which stretch is not read, once per run."""
    assert window.not_read_before is not None
    log.warning(
        "Sync of %s resumes at the retention horizon %s, not at its watermark %s: appointments in "
        "between are older than RETENTION_DAYS and are not read (retention may have deleted their "
        "bookings; reading them again would bill them twice)",
        business_id,
        iso_utc(window.start),
        iso_utc(window.not_read_before),
        extra={
            "businessId": business_id,
            "windowStart": iso_utc(window.start),
            "watermark": iso_utc(window.not_read_before),
            "outcome": "retention_cut",
        },
    )


def _describe(exc: BaseException) -> str:
    """One line about a failure. Our clients' errors never carry tokens or secrets."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:500]}" if text else type(exc).__name__


_DONE = object()


def prefetch(items: Iterator[T], depth: int) -> Iterator[T]:
    """Iterate `items` on a helper thread, at most `depth` ahead: Graph is read while we write.

    Exceptions of the producer are re-raised here; closing the consumer stops the producer.
    """
    if depth <= 0:
        yield from items
        return
    buffer: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(value: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as exc:
            put(_Failure(exc))
            return
        put(_DONE)

    thread = threading.Thread(target=produce, name="sync-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            value = buffer.get()
            if value is _DONE:
                return
            if isinstance(value, _Failure):
                raise value.exc
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        thread.join(timeout=30)


@dataclass(frozen=True)
class _Failure:
    exc: BaseException


class _Readers(Generic[T]):
    """Helper threads that each take the next source and put its items into one bounded buffer."""

    def __init__(self, sources: Sequence[Callable[[], Iterator[T]]], depth: int) -> None:
        self.buffer: queue.Queue[object] = queue.Queue(maxsize=max(1, depth))
        self.stop = threading.Event()
        self._pending = list(reversed(sources))
        self._lock = threading.Lock()

    def put(self, value: object) -> bool:
        while not self.stop.is_set():
            try:
                self.buffer.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _next_source(self) -> Callable[[], Iterator[T]] | None:
        with self._lock:
            return self._pending.pop() if self._pending else None

    def work(self) -> None:
        while not self.stop.is_set():
            source = self._next_source()
            if source is None:
                break
            try:
                for item in source():
                    if not self.put(item):
                        return
            except BaseException as exc:
                self.put(_Failure(exc))
                return
        self.put(_DONE)


def side_by_side(sources: Sequence[Callable[[], Iterator[T]]], workers: int, depth: int) -> Iterator[T]:
    """The items of every source, read by up to `workers` helper threads, at most `depth` (at least
    one) waiting; each source is read by one thread, in order. One source is `prefetch`.

    The first exception of any source is re-raised here; closing the consumer stops every reader.
    """
    if len(sources) == 1:
        yield from prefetch(sources[0](), depth)
        return
    readers = _Readers(sources, depth)
    threads = [
        threading.Thread(target=readers.work, name="sync-read", daemon=True)
        for _ in range(min(workers, len(sources)))
    ]
    for thread in threads:
        thread.start()
    try:
        finished = 0
        while finished < len(threads):
            value = readers.buffer.get()
            if value is _DONE:
                finished += 1
            elif isinstance(value, _Failure):
                raise value.exc
            else:
                yield value  # type: ignore[misc]
    finally:
        readers.stop.set()
        for thread in threads:
            thread.join(timeout=30)
