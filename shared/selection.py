"""The selection use case: claim the chosen bookings and put one message per booking on the queue.

Order of work, and why:

1. Validate everything and resolve the candidates (read-only). A rejected request claims nothing.
2. Write the request's header row, then claim each candidate with a conditional write
   (Unbilled, or Failed when named by key -> Queued, stamped with the request id), 100 per atomic
   table transaction; a transaction that meets a concurrent change is redone booking by booking.
   Two identical requests at the same moment race on the ETags: exactly one wins each booking,
   the other sees it Queued and reports it as skipped.
3. Record the claimed bookings under the request (batched), then send one base64 message each.
4. A booking whose message could not be sent has its claim undone (conditional write back to its
   previous state) before the answer, and is reported as skipped with a reason. If the process
   dies between claim and send, the booking stays Queued; the recovery timer re-enqueues bookings
   left Queued past a threshold, and invoicing is idempotent, so a duplicate message is harmless.

Claims, sends and undos fan out over a bounded thread pool (see bench/bench_selection.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo

from shared.api_input import FieldError, InvalidInput, reject_unknown
from shared.booking_queries import BookingFilter, BookingQueries, parse_filter_fields
from shared.booking_store import MAX_BATCH, BookingStore, ConcurrentChangeError
from shared.invoice_queue import InvoiceQueue
from shared.invoice_requests import InvoiceRequestStore, RequestItem
from shared.models import (
    KEY_LENGTH,
    SELECTABLE_STATES,
    Actor,
    Booking,
    BookingStatus,
    InvoiceMessage,
    is_booking_key,
)
from shared.telemetry import get_logger

log = get_logger("bookings.selection")

BODY_FIELDS = ("bookingKeys", "all", "filter")
FILTER_FIELDS = ("businessId", "customerEmail", "from", "to")
MAX_REPORTED_KEY_ERRORS = 20
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


def parse_selection(
    document: Mapping[str, Any], *, max_selection: int, business_ids: Sequence[str], zone: ZoneInfo
) -> Selection:
    """Check a `POST /api/invoice-requests` body. Raises `InvalidInput` with an actionable detail."""
    reject_unknown(document, BODY_FIELDS)
    has_keys = "bookingKeys" in document
    has_all = "all" in document
    if has_keys and has_all:
        raise InvalidInput(
            'Send either "bookingKeys" or "all", not both: bookingKeys names bookings, '
            "all selects every Unbilled booking matching filter."
        )
    if has_keys:
        if "filter" in document:
            raise InvalidInput.field("filter", 'applies only to {"all": true}; with bookingKeys leave it out')
        return Selection(keys=_parse_keys(document["bookingKeys"], max_selection))
    if has_all:
        if document["all"] is not True:
            raise InvalidInput.field(
                "all", 'must be true (to select by key, leave "all" out and send "bookingKeys")'
            )
        raw_filter = document.get("filter")
        if raw_filter is None:
            raw_filter = {}
        if not isinstance(raw_filter, dict):
            raise InvalidInput.field("filter", "must be an object with businessId, customerEmail, from, to")
        reject_unknown(raw_filter, FILTER_FIELDS, where="filter")
        fields = parse_filter_fields(raw_filter, business_ids, zone, where="filter")
        return Selection(filter=BookingFilter(status=BookingStatus.UNBILLED, **fields))
    raise InvalidInput(
        'The body must name "bookingKeys" (an array of booking keys) or be {"all": true, "filter": {...}}.'
    )


def _parse_keys(value: object, max_selection: int) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise InvalidInput.field("bookingKeys", "must be an array of booking keys")
    if not value:
        raise InvalidInput.field("bookingKeys", "is empty; name at least one booking key")
    errors: list[FieldError] = []
    for index, key in enumerate(value):
        if not is_booking_key(key):
            shown = repr(key)[:60] if isinstance(key, str) else f"a {type(key).__name__} value"
            errors.append(
                FieldError(
                    f"bookingKeys[{index}]",
                    f"{shown} is not a booking key ({KEY_LENGTH} characters A-Z and 2-7)",
                )
            )
    if errors:
        more = len(errors) - MAX_REPORTED_KEY_ERRORS
        first = errors[0]
        detail = (
            f"{len(errors)} of the {len(value)} booking keys are malformed and nothing was queued; "
            f"first {first.field}: {first.problem}."
        )
        if more > 0:
            detail += f" The first {MAX_REPORTED_KEY_ERRORS} are listed."
        raise InvalidInput(detail, errors[:MAX_REPORTED_KEY_ERRORS])
    keys = tuple(dict.fromkeys(value))
    if len(keys) > max_selection:
        raise InvalidInput.field(
            "bookingKeys",
            f"names {len(keys):,} bookings; one request may name at most {max_selection:,} "
            "(setting MAX_SELECTION). Split the selection into several requests.",
        )
    return keys


@dataclass(frozen=True)
class SkippedBooking:
    key: str
    status: BookingStatus
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"key": self.key, "status": str(self.status)}
        if self.reason:
            document["reason"] = self.reason
        return document


@dataclass
class SelectionResult:
    request_id: str
    accepted: int
    skipped: list[SkippedBooking]
    not_found: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "requestId": self.request_id,
            "accepted": self.accepted,
            "skipped": [item.to_json() for item in self.skipped],
            "notFound": list(self.not_found),
        }


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


@dataclass(frozen=True)
class _Failed:
    key: str
    error: BaseException


def _claim_changes(request_id: str, requested_by: Actor | None) -> dict[str, Any]:
    """What a claim (Unbilled/Failed -> Queued) writes besides the state: the request and who made
    it, no old error."""
    return {"request_id": request_id, "error_code": None, "error": None, "updated_by": requested_by}


class SelectionService:
    """Claims and queues a selection; see the module docstring for the guarantees."""

    def __init__(
        self,
        store: BookingStore,
        queries: BookingQueries,
        queue: InvoiceQueue,
        requests: InvoiceRequestStore,
        *,
        max_selection: int,
        executor: Executor | None = None,
        new_request_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.store = store
        self.queries = queries
        self.queue = queue
        self.requests = requests
        self.max_selection = max_selection
        self.executor = executor
        self.new_request_id = new_request_id

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
        candidates, not_found, allowed = self._candidates(selection)
        request_id = self.new_request_id()
        header = self.requests.start(request_id, selection.summary(), traceparent, requested_by=requested_by)

        outcomes = self._claim_all(candidates, allowed, request_id, requested_by)
        claimed = [o for o in outcomes if isinstance(o, _Claimed)]
        failures = [o for o in outcomes if isinstance(o, _Failed)]
        if failures:
            # Storage failed while claiming: undo what we claimed so nothing is left half-done.
            self._undo_all(request_id, claimed)
            raise failures[0].error
        skipped = [
            SkippedBooking(o.key, o.status) for o in outcomes if isinstance(o, _NotClaimed) and o.status
        ]
        not_found += [o.key for o in outcomes if isinstance(o, _NotClaimed) and o.status is None]

        try:
            self.requests.add_items(
                request_id, [RequestItem(c.claimed.business_id, c.claimed.key) for c in claimed]
            )
        except Exception:
            self._undo_all(request_id, claimed)
            raise

        def send(claim: _Claimed) -> BaseException | None:
            message = InvoiceMessage(
                business_id=claim.claimed.business_id,
                booking_key=claim.claimed.key,
                request_id=request_id,
                traceparent=traceparent,
                tracestate=tracestate or None,
            )
            try:
                self.queue.send(message)
            except Exception as exc:  # any send failure is handled the same way: undo the claim
                return exc
            return None

        send_errors = self._each(send, claimed)
        unsent = [
            (claim, error) for claim, error in zip(claimed, send_errors, strict=True) if error is not None
        ]
        for claim, error in unsent:
            log.warning(
                "Could not queue booking %s; undoing its claim",
                claim.claimed.key,
                extra={
                    "requestId": request_id,
                    "bookingKey": claim.claimed.key,
                    "errorCode": type(error).__name__,
                },
            )
        restored = self._undo_all(request_id, [claim for claim, _ in unsent])
        undone = [(claim, error, status) for (claim, error), status in zip(unsent, restored, strict=True)]
        # A claim that could not be undone stays Queued under this request: the recovery pass
        # queues it later, so it counts as accepted and keeps its row.
        not_queued = [
            (claim, error, status) for claim, error, status in undone if status != BookingStatus.QUEUED
        ]
        if not_queued:
            self.requests.remove_items(request_id, [claim.claimed.key for claim, _, _ in not_queued])
        for claim, error, status in not_queued:
            skipped.append(
                SkippedBooking(
                    claim.claimed.key,
                    status,
                    f"could not be queued ({type(error).__name__}); its claim was undone, select it again",
                )
            )

        accepted = len(claimed) - len(not_queued)
        header.accepted, header.skipped, header.not_found = accepted, len(skipped), len(not_found)
        header.not_queued = len(not_queued)
        self.requests.finish(header)
        duration_ms = round((time.perf_counter() - started) * 1000)
        outcome = "accepted" if accepted or not not_queued else "queue_unavailable"
        log.info(
            "Invoice request %s by %s: %d accepted, %d skipped, %d not found, %d not queued",
            request_id,
            requested_by.id if requested_by else "(unknown caller)",
            accepted,
            len(skipped),
            len(not_found),
            len(not_queued),
            extra={
                "requestId": request_id,
                "requestedById": requested_by.id if requested_by else None,
                "requestedByName": requested_by.name if requested_by else None,
                "outcome": outcome,
                "durationMs": duration_ms,
                "accepted": accepted,
                "selectionMode": selection.mode,
            },
        )
        if not_queued and not accepted:
            raise QueueUnavailableError(request_id, type(not_queued[0][1]).__name__)
        return SelectionResult(request_id, accepted, skipped, not_found)

    # -- steps -------------------------------------------------------------------------------

    def _candidates(self, selection: Selection) -> tuple[list[Booking], list[str], Collection[BookingStatus]]:
        if selection.keys is not None:
            found = self.queries.get_many(selection.keys)
            not_found = [key for key in selection.keys if key not in found]
            return [found[key] for key in selection.keys if key in found], not_found, SELECTABLE_STATES
        assert selection.filter is not None
        candidates: list[Booking] = []
        for booking in self.queries.iterate(selection.filter):
            candidates.append(booking)
            if len(candidates) > self.max_selection:
                raise InvalidInput.field(
                    "filter",
                    f"matches more than {self.max_selection:,} Unbilled bookings, the most one request "
                    "may select (setting MAX_SELECTION). Narrow it with businessId, customerEmail or "
                    "from/to, and send several requests.",
                )
        return candidates, [], frozenset({BookingStatus.UNBILLED})

    def _claim_all(
        self,
        candidates: Sequence[Booking],
        allowed: Collection[BookingStatus],
        request_id: str,
        requested_by: Actor | None = None,
    ) -> list[object]:
        """Claim in transactions of 100 per business; a batch that meets a concurrent change is
        retried booking by booking (so exactly the changed ones are re-read and decided again)."""
        outcomes: dict[str, object] = {}
        chunks: list[list[Booking]] = []
        by_business: dict[str, list[Booking]] = {}
        for booking in candidates:
            if booking.status in allowed:
                by_business.setdefault(booking.business_id, []).append(booking)
            else:
                outcomes[booking.key] = _NotClaimed(booking.key, booking.status)
        for group in by_business.values():
            chunks += [group[i : i + MAX_BATCH] for i in range(0, len(group), MAX_BATCH)]

        def claim_chunk(chunk: list[Booking]) -> list[object]:
            try:
                claimed = self.store.transition_batch(
                    chunk,
                    BookingStatus.QUEUED,
                    allowed_from=allowed,
                    **_claim_changes(request_id, requested_by),
                )
            except ConcurrentChangeError:
                return [self._claim(booking, allowed, request_id, requested_by) for booking in chunk]
            except Exception as exc:  # storage trouble: the caller undoes every claim and fails
                return [_Failed(booking.key, exc) for booking in chunk]
            return [_Claimed(old, new) for old, new in zip(chunk, claimed, strict=True)]

        for chunk, results in zip(chunks, self._each(claim_chunk, chunks), strict=True):
            for booking, outcome in zip(chunk, results, strict=True):
                outcomes[booking.key] = outcome
        return [outcomes[booking.key] for booking in candidates]

    def _claim(
        self,
        booking: Booking,
        allowed: Collection[BookingStatus],
        request_id: str,
        requested_by: Actor | None = None,
    ) -> object:
        current: Booking | None = booking
        for _ in range(CLAIM_ATTEMPTS):
            assert current is not None
            if current.status not in allowed:
                return _NotClaimed(current.key, current.status)
            try:
                claimed = self.store.transition(
                    current,
                    BookingStatus.QUEUED,
                    allowed_from=allowed,
                    **_claim_changes(request_id, requested_by),
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
        return self._each(lambda claim: self._undo(request_id, claim), list(claims))

    def _undo(self, request_id: str, claim: _Claimed) -> BookingStatus:
        """Put a claimed booking back as it was (conditional); returns the state it is left in.

        If the write fails, the booking stays Queued and the recovery pass re-enqueues it later.
        """
        current: Booking | None = claim.claimed
        previous = claim.previous
        for _ in range(CLAIM_ATTEMPTS):
            if current is None or current.status != BookingStatus.QUEUED or current.request_id != request_id:
                return current.status if current is not None else previous.status
            try:
                self.store.save(
                    replace(
                        current,
                        status=previous.status,
                        request_id=previous.request_id,
                        error_code=previous.error_code,
                        error=previous.error,
                        status_changed_at=previous.status_changed_at,
                        updated_by=previous.updated_by,
                    )
                )
                return previous.status
            except ConcurrentChangeError:
                current = self.store.get(previous.business_id, previous.key)
            except Exception:
                log.exception(
                    "Could not undo the claim of booking %s; the recovery pass will re-enqueue it",
                    previous.key,
                    extra={"requestId": request_id, "bookingKey": previous.key, "outcome": "undo_failed"},
                )
                return BookingStatus.QUEUED
        return current.status if current is not None else previous.status

    def _each(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        if self.executor is None or len(items) < 2:
            return [fn(item) for item in items]
        return list(self.executor.map(fn, items))
