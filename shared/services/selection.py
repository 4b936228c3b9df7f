"""The selection use case: claim the chosen bookings and put one message per booking on the queue.

Order of work, and why:

1. Resolve the candidates (read-only). A selection that is too large claims nothing.
2. Write the request's header row, then claim each candidate (`lifecycle.claim`) with a
   conditional write, 100 per atomic table transaction; a transaction that meets a concurrent
   change is redone booking by booking. Two identical requests at the same moment race on the
   ETags: exactly one wins each booking, the other sees it Queued and reports it as skipped.
3. Record the claimed bookings under the request (batched), then send one base64 message each.
4. A booking whose message could not be sent has its claim undone (`lifecycle.release_claim`,
   conditional) before the answer, and is reported as skipped with a reason. If the process dies
   between claim and send, the booking stays Queued; the recovery pass re-enqueues bookings left
   Queued past a threshold, and invoicing is idempotent, so a duplicate message is harmless.

Claims, sends and undos fan out over a bounded thread pool (see bench/bench_selection.py).

Storage faults: the adapters retry every call and settle writes whose answer was lost
(`shared/adapters/storage_retry.py`). When storage stays down they raise `StorageUnavailableError`:
before anything is queued, every claim made so far is undone (through the same retries), the
request's header and item rows are deleted (best effort: the request never happened), and the
error goes to the caller (the HTTP API answers 503 with `Retry-After`); once messages are out, the
bookkeeping that follows (forgetting rows of undone claims, the header's totals) is best effort,
because the answer must say what was queued. A claim that could not be undone stays Queued under
this request, and the recovery pass queues it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.domain import lifecycle
from shared.domain.errors import ConcurrentChangeError, SelectionTooLargeError, StorageUnavailableError
from shared.domain.filters import BookingFilter
from shared.domain.models import Actor, Booking, BookingStatus, InvoiceMessage
from shared.domain.moments import utc_now
from shared.domain.requests import RequestHeader, RequestItem
from shared.services.booking_queries import BookingQueries, fan_out
from shared.services.ports import BookingRepository, InvoiceQueuePort, RequestRepository
from shared.telemetry import get_logger

log = get_logger("bookings.selection")

CLAIM_ATTEMPTS = 4


@dataclass(frozen=True)
class Selection:
    """A validated selection: either distinct keys (in the order given) or `all` with a filter."""

    keys: tuple[str, ...] | None = None
    filter: BookingFilter | None = None

    @property
    def mode(self) -> str:
        return "keys" if self.keys is not None else "all"

    def summary(self) -> dict[str, Any]:
        """What is stored with the request (never the keys themselves: they are the item rows)."""
        if self.keys is not None:
            return {"mode": "keys", "keys": len(self.keys)}
        assert self.filter is not None
        document = {k: v for k, v in self.filter.to_json().items() if v is not None and k != "status"}
        return {"mode": "all", "filter": document}


@dataclass(frozen=True)
class SkippedBooking:
    key: str
    status: BookingStatus
    reason: str | None = None


@dataclass
class SelectionResult:
    request_id: str
    accepted: int
    skipped: list[SkippedBooking]
    not_found: list[str]


class QueueUnavailableError(Exception):
    """No booking could be queued; every claim was undone. Safe to retry the same request."""

    def __init__(self, request_id: str, cause: str) -> None:
        self.request_id = request_id
        self.cause = cause
        super().__init__(f"no message could be sent ({cause}); nothing was queued")


@dataclass(frozen=True)
class _Claimed:
    previous: Booking
    claimed: Booking


@dataclass(frozen=True)
class _NotClaimed:
    key: str
    status: BookingStatus | None  # None: the booking vanished
    reason: str | None = None


@dataclass(frozen=True)
class _Failed:
    key: str
    error: BaseException


@dataclass
class _Progress:
    """What one submission has done so far (what the answer and the header row report)."""

    request_id: str
    requested_by: Actor | None
    claimed: list[_Claimed] = field(default_factory=list)
    skipped: list[SkippedBooking] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    not_queued: int = 0
    send_error: str | None = None  # the first send failure's type, when some message was not sent
    phases: dict[str, int] = field(default_factory=dict)  # milliseconds per step, for the log line
    lap_started: float = field(default_factory=time.perf_counter)

    def lap(self, phase: str) -> None:
        """Record the milliseconds since the previous lap as `phase` (where a big selection's time
        goes: reading the candidates, claiming, recording the items, sending)."""
        now = time.perf_counter()
        self.phases[phase] = round((now - self.lap_started) * 1000)
        self.lap_started = now

    @property
    def accepted(self) -> int:
        return len(self.claimed) - self.not_queued


Selectable = Callable[[BookingStatus], bool]


class SelectionService:
    """Claims and queues a selection; see the module docstring for the guarantees."""

    def __init__(
        self,
        store: BookingRepository,
        queries: BookingQueries,
        queue: InvoiceQueuePort,
        requests: RequestRepository,
        *,
        max_selection: int,
        executor: Executor | None = None,
        new_request_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.queries = queries
        self.queue = queue
        self.requests = requests
        self.max_selection = max_selection
        self.executor = executor
        self.new_request_id = new_request_id
        self.clock = clock

    def submit(
        self,
        selection: Selection,
        *,
        requested_by: Actor | None = None,
        traceparent: str | None = None,
        tracestate: str | None = None,
    ) -> SelectionResult:
        """Claim and queue a selection; `requested_by` (the caller) is recorded on the request
        and on every booking it claims."""
        started = time.perf_counter()
        candidates, not_found, selectable = self._candidates(selection)
        progress = _Progress(self.new_request_id(), requested_by, not_found=not_found, lap_started=started)
        progress.lap("readMs")
        header = self.requests.start(
            progress.request_id, selection.summary(), traceparent, requested_by=requested_by
        )
        try:
            self._claim_candidates(progress, candidates, selectable)
            progress.lap("claimMs")
            self._record_items(progress)
            progress.lap("recordMs")
        except Exception:  # the claims were undone and nothing was queued: the request never was
            self._discard(progress.request_id)
            raise
        self._send_all(progress, traceparent, tracestate)
        progress.lap("sendMs")
        self._finish(header, progress, selection, started)
        if progress.not_queued and not progress.accepted:
            raise QueueUnavailableError(progress.request_id, progress.send_error or "unknown")
        return SelectionResult(progress.request_id, progress.accepted, progress.skipped, progress.not_found)

    # -- steps -------------------------------------------------------------------------------

    def _candidates(self, selection: Selection) -> tuple[list[Booking], list[str], Selectable]:
        if selection.keys is not None:
            found = self.queries.get_many(selection.keys)
            not_found = [key for key in selection.keys if key not in found]
            candidates = [found[key] for key in selection.keys if key in found]
            return candidates, not_found, lifecycle.selectable_by_key
        assert selection.filter is not None
        candidates = []
        for booking in self.queries.iterate(selection.filter):
            candidates.append(booking)
            if len(candidates) > self.max_selection:
                raise SelectionTooLargeError(self.max_selection)
        return candidates, [], lifecycle.selectable_by_filter

    def _claim_candidates(
        self, progress: _Progress, candidates: list[Booking], selectable: Selectable
    ) -> None:
        outcomes = self._claim_all(candidates, selectable, progress)
        progress.claimed = [o for o in outcomes if isinstance(o, _Claimed)]
        failures = [o for o in outcomes if isinstance(o, _Failed)]
        if failures:
            # Storage failed while claiming: undo what we claimed so nothing is left half-done.
            self._undo_all(progress.request_id, progress.claimed)
            raise failures[0].error
        for outcome in outcomes:
            if isinstance(outcome, _NotClaimed):
                if outcome.status is None:
                    progress.not_found.append(outcome.key)
                else:
                    progress.skipped.append(SkippedBooking(outcome.key, outcome.status, outcome.reason))

    def _record_items(self, progress: _Progress) -> None:
        items = [RequestItem(c.claimed.business_id, c.claimed.key) for c in progress.claimed]
        try:
            self.requests.add_items(progress.request_id, items)
        except Exception:
            self._undo_all(progress.request_id, progress.claimed)
            raise

    def _send_all(self, progress: _Progress, traceparent: str | None, tracestate: str | None) -> None:
        """One message per claim; a claim whose message could not be sent is undone and skipped."""

        def send(claim: _Claimed) -> BaseException | None:
            message = InvoiceMessage(
                business_id=claim.claimed.business_id,
                booking_key=claim.claimed.key,
                request_id=progress.request_id,
                traceparent=traceparent,
                tracestate=tracestate or None,
            )
            try:
                self.queue.send(message)
            except Exception as exc:  # any send failure is handled the same way: undo the claim
                return exc
            return None

        errors = fan_out(self.executor, send, progress.claimed)
        unsent = [(c, e) for c, e in zip(progress.claimed, errors, strict=True) if e is not None]
        for claim, error in unsent:
            log.warning(
                "Could not queue booking %s; undoing its claim",
                claim.claimed.key,
                extra={
                    "requestId": progress.request_id,
                    "bookingKey": claim.claimed.key,
                    "errorCode": type(error).__name__,
                },
            )
        restored = self._undo_all(progress.request_id, [claim for claim, _ in unsent])
        # A claim that could not be undone stays Queued under this request: the recovery pass
        # queues it later, so it counts as accepted and keeps its row.
        not_queued = [
            (claim, error, status)
            for (claim, error), status in zip(unsent, restored, strict=True)
            if not lifecycle.allows("release_claim", status)
        ]
        self._forget_unqueued(progress, not_queued)

    def _forget_unqueued(
        self, progress: _Progress, not_queued: list[tuple[_Claimed, BaseException, BookingStatus]]
    ) -> None:
        """Claims undone because their message could not be sent: not part of the request."""
        if not_queued:
            try:
                self.requests.remove_items(
                    progress.request_id, [claim.claimed.key for claim, _, _ in not_queued]
                )
            except StorageUnavailableError:  # the rows stay; request status shows those bookings' state
                log.warning(
                    "Could not forget %d unqueued booking(s) of request %s",
                    len(not_queued),
                    progress.request_id,
                    extra={"requestId": progress.request_id, "outcome": "storage_unavailable"},
                )
        for claim, error, status in not_queued:
            reason = f"could not be queued ({type(error).__name__}); its claim was undone, select it again"
            progress.skipped.append(SkippedBooking(claim.claimed.key, status, reason))
        progress.not_queued = len(not_queued)
        if not_queued:
            progress.send_error = type(not_queued[0][1]).__name__

    def _finish(
        self, header: RequestHeader, progress: _Progress, selection: Selection, started: float
    ) -> None:
        header.accepted, header.skipped = progress.accepted, len(progress.skipped)
        header.not_found, header.not_queued = len(progress.not_found), progress.not_queued
        try:
            self.requests.finish(header)
        except StorageUnavailableError:  # the messages are out: the answer must still say so
            log.warning(
                "Could not record the totals of request %s",
                progress.request_id,
                extra={"requestId": progress.request_id, "outcome": "storage_unavailable"},
            )
        accepted = progress.accepted
        by = progress.requested_by
        log.info(
            "Invoice request %s by %s: %d accepted, %d skipped, %d not found, %d not queued",
            progress.request_id,
            by.id if by else "(unknown caller)",
            accepted,
            len(progress.skipped),
            len(progress.not_found),
            progress.not_queued,
            extra={
                "requestId": progress.request_id,
                "requestedById": by.id if by else None,
                "requestedByName": by.name if by else None,
                "outcome": "accepted" if accepted or not progress.not_queued else "queue_unavailable",
                "durationMs": round((time.perf_counter() - started) * 1000),
                **progress.phases,
                "accepted": accepted,
                "selectionMode": selection.mode,
            },
        )

    def _discard(self, request_id: str) -> None:
        try:
            self.requests.discard(request_id)
        except Exception:  # storage still down: an orphan header, which says Accepting and 0 accepted
            log.warning(
                "Could not delete the header of refused request %s",
                request_id,
                extra={"requestId": request_id, "outcome": "storage_unavailable"},
            )

    # -- claims ------------------------------------------------------------------------------

    def _claim_all(
        self, candidates: Sequence[Booking], selectable: Selectable, progress: _Progress
    ) -> list[object]:
        """Claim in transactions of up to 100 per business; a batch that meets a concurrent change
        is retried booking by booking (so exactly the changed ones are re-read and decided again)."""
        outcomes: dict[str, object] = {}
        by_business: dict[str, list[Booking]] = {}
        now = self.clock()
        for booking in candidates:
            refusal = _refusal(booking, selectable, now)
            if refusal is None:
                by_business.setdefault(booking.business_id, []).append(booking)
            else:
                outcomes[booking.key] = refusal
        size = self.store.max_batch
        chunks = [group[i : i + size] for group in by_business.values() for i in range(0, len(group), size)]

        def claim_chunk(chunk: list[Booking]) -> list[object]:
            now, by = self.clock(), progress.requested_by
            try:
                claimed = self.store.save_batch(
                    [lifecycle.claim(b, progress.request_id, now, by) for b in chunk]
                )
            except ConcurrentChangeError:
                return [self._claim(booking, selectable, progress) for booking in chunk]
            except Exception as exc:  # storage trouble: the caller undoes every claim and fails
                return [_Failed(booking.key, exc) for booking in chunk]
            return [_Claimed(old, new) for old, new in zip(chunk, claimed, strict=True)]

        for chunk, results in zip(chunks, fan_out(self.executor, claim_chunk, chunks), strict=True):
            for booking, outcome in zip(chunk, results, strict=True):
                outcomes[booking.key] = outcome
        return [outcomes[booking.key] for booking in candidates]

    def _claim(self, booking: Booking, selectable: Selectable, progress: _Progress) -> object:
        current: Booking | None = booking
        for _ in range(CLAIM_ATTEMPTS):
            assert current is not None
            if current.status is BookingStatus.QUEUED and current.request_id == progress.request_id:
                # Our own batch claim, committed although its answer was lost: it is ours.
                return _Claimed(booking, current)
            refusal = _refusal(current, selectable, self.clock())
            if refusal is not None:
                return refusal
            try:
                claimed = self.store.save(
                    lifecycle.claim(current, progress.request_id, self.clock(), progress.requested_by)
                )
            except ConcurrentChangeError:
                current = self.store.get(booking.business_id, booking.key)
                if current is None:
                    return _NotClaimed(booking.key, None)
                continue
            except Exception as exc:  # storage trouble: the caller undoes every claim and fails
                return _Failed(booking.key, exc)
            return _Claimed(current, claimed)
        assert current is not None
        return _NotClaimed(current.key, current.status)

    def _undo_all(self, request_id: str, claims: Sequence[_Claimed]) -> list[BookingStatus]:
        return fan_out(self.executor, lambda claim: self._undo(request_id, claim), list(claims))

    def _undo(self, request_id: str, claim: _Claimed) -> BookingStatus:
        """Put a claimed booking back as it was (conditional); returns the state it is left in.

        If the write fails, the booking stays Queued and the recovery pass re-enqueues it later.
        """
        current: Booking | None = claim.claimed
        previous = claim.previous
        for _ in range(CLAIM_ATTEMPTS):
            if (
                current is None
                or not lifecycle.allows("release_claim", current.status)
                or current.request_id != request_id
            ):
                return current.status if current is not None else previous.status
            try:
                self.store.save(lifecycle.release_claim(current, previous))
                return previous.status
            except ConcurrentChangeError:
                current = self.store.get(previous.business_id, previous.key)
            except Exception:
                log.exception(
                    "Could not undo the claim of booking %s; the recovery pass will re-enqueue it",
                    previous.key,
                    extra={"requestId": request_id, "bookingKey": previous.key, "outcome": "undo_failed"},
                )
                return claim.claimed.status
        return current.status if current is not None else previous.status


def _refusal(booking: Booking, selectable: Selectable, now: datetime) -> _NotClaimed | None:
    """Why a selection does not claim this booking, or None: its state, or an appointment that
    has not ended yet (moved into the future after the sync stored it; `lifecycle.has_ended`)."""
    if not selectable(booking.status):
        return _NotClaimed(booking.key, booking.status)
    if not lifecycle.has_ended(booking, now):
        return _NotClaimed(booking.key, booking.status, lifecycle.NOT_ENDED_REASON)
    return None
