"""Sync support for the `Bookings` table: batched, conditional upserts of appointments.

Part of the `Bookings` table adapter (built by `BookingStore.sync_writer()`, entities mapped in
`booking_entities.py`); what to write is decided in `shared/domain/sync_decisions.py`. The sync
writes thousands of bookings per run, so it works in table transactions (up to 100 operations,
one partition, each entity once), yet never overwrites what the HTTP API or the invoicer did:

- a new booking is a `create` (fails if someone created it meanwhile);
- an `Unbilled` booking whose descriptive fields changed is replaced *with its ETag*;
- a `Queued`, `Invoicing` or `Invoiced` booking is never written by the sync;
- a `Failed` booking gets its descriptive fields refreshed the same way, keeping its state,
  `errorCode` and `error` (the lifecycle's `refresh`);
- an `Unbilled` booking gone from a fully-read window becomes `Cancelled` (merge with its ETag);
  a `Cancelled` booking that shows up again becomes `Unbilled` (the cancellation was inferred from
  its absence, and newer evidence says it exists).

When a transaction fails on a precondition, the failed entity is re-read and decided again with
per-entity conditional writes, and the rest of the transaction is resubmitted. Evidence is dated:
a write whose Graph page was read before the stored booking last changed is dropped, so a slow,
overlapping run cannot bring back stale data.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.adapters import booking_index as index
from shared.adapters.booking_entities import booking_to_entity, entity_to_booking
from shared.adapters.storage import TRANSACTION_LIMIT
from shared.adapters.storage_retry import ResilientTable, resilient_table
from shared.domain.models import Appointment, Booking
from shared.domain.moments import utc_now
from shared.domain.sync_decisions import Decision, SyncOutcome, Write, apply, decide, decide_missing
from shared.telemetry import get_logger

log = get_logger("bookings.booking_upserts")

MAX_ATTEMPTS = 6  # per-entity re-read-and-decide rounds before giving up on one booking
# Transactions in flight per business: the SDK spends most of a transaction building and parsing
# its multipart body, so a few in flight keep the storage account busy while we prepare the next.
PARALLEL_TRANSACTIONS = 3
MOST_BOOKINGS_PER_TRANSACTION = TRANSACTION_LIMIT // 2
"""A booking with the index row written beside it: 50 of them fill a transaction."""


@dataclass
class _Op:
    """One planned write: the table operation plus what to decide again if it fails."""

    key: str
    decision: Decision
    entity: dict[str, Any]
    etag: str | None
    appointment: Appointment | None  # None for cancellations
    evidence_at: datetime
    index_ops: list[tuple[Any, ...]]  # keep the booking's list index row in step, same transaction

    @property
    def outcome(self) -> SyncOutcome:
        return self.decision.outcome

    @property
    def mode(self) -> UpdateMode:
        # A cancellation touches only the state; a refresh replaces, so removed fields are cleared.
        return UpdateMode.MERGE if self.decision.write is Write.CANCEL else UpdateMode.REPLACE

    def operations(self) -> list[tuple[Any, ...]]:
        """The booking's own write first, then its index row's."""
        if self.decision.write is Write.CREATE:
            return [("create", self.entity), *self.index_ops]
        own = (
            "update",
            self.entity,
            {"mode": self.mode, "etag": self.etag, "match_condition": MatchConditions.IfNotModified},
        )
        return [own, *self.index_ops]


def _cancellation_entity(booking: Booking) -> dict[str, Any]:
    assert booking.status_changed_at is not None
    return {
        "PartitionKey": booking.business_id,
        "RowKey": booking.key,
        "Status": str(booking.status),
        "StatusChangedAt": booking.status_changed_at,
        "UpdatedAt": booking.status_changed_at,
    }


class BookingUpserter:
    """Batched conditional writes of synced appointments into the `Bookings` table.

    Built by `BookingStore.sync_writer()`. Thread-safe counters (`transactions`, `entity_writes`,
    `reads`) tell what a run cost.
    """

    def __init__(
        self,
        table: TableClient | ResilientTable,
        clock: Callable[[], datetime] = utc_now,
        batch_size: int = MOST_BOOKINGS_PER_TRANSACTION,
        parallel_transactions: int = PARALLEL_TRANSACTIONS,
    ) -> None:
        # A transaction carries up to 100 operations; a booking is 1 to 3 of them (itself, its new
        # and its old index row), so transactions are filled by operations, at most `batch_size`
        # bookings each: 50 new bookings (2 operations each) in one, not 33.
        if not 1 <= batch_size <= MOST_BOOKINGS_PER_TRANSACTION:
            raise ValueError(f"batch_size must be between 1 and {MOST_BOOKINGS_PER_TRANSACTION}")
        self._table = resilient_table(table)
        self.clock = clock
        self.batch_size = batch_size
        self.parallel_transactions = max(1, parallel_transactions)
        self._counter_lock = threading.Lock()
        self.transactions = 0  # write requests to the table: transactions and single writes
        self.entity_writes = 0  # entities actually written
        self.reads = 0  # single-entity re-reads after a conflict

    # -- reading ---------------------------------------------------------------------------------

    def stored_in_window(self, business_id: str, start: datetime, end: datetime) -> dict[str, Booking]:
        """Stored bookings of a business whose [Start, End) overlaps [start, end), by key.

        The same overlap rule as `calendarView`, so an Unbilled booking in here that Graph did not
        return for that window no longer exists in Bookings.
        """
        entities = self._table.query_entities(
            "PartitionKey eq @business and RowKey lt @indexRows and End gt @start and Start lt @end",
            parameters={
                "business": business_id,
                "indexRows": index.BOOKING_ROWS_BELOW,
                "start": start,
                "end": end,
            },
            results_per_page=1000,
        )
        return {str(entity["RowKey"]): entity_to_booking(entity) for entity in entities}

    def _read(self, business_id: str, key: str) -> Booking | None:
        try:
            return entity_to_booking(self._table.get_entity(partition_key=business_id, row_key=key))
        except ResourceNotFoundError:
            return None

    # -- planning --------------------------------------------------------------------------------

    def _plan(
        self, appointment: Appointment, stored: Booking | None, evidence_at: datetime, *, check_age: bool
    ) -> _Op | SyncOutcome:
        """The write an appointment needs given the stored booking, or why none is needed."""
        decision = decide(appointment, stored, evidence_at, check_age=check_age)
        if decision.write is None:
            return decision.outcome
        booking = apply(decision, appointment, stored, self.clock())
        if decision.write in (Write.REFRESH, Write.REVIVE):
            booking.updated_at = self.clock()
        entity, previous = index.with_index_key(booking_to_entity(booking), booking)
        index_ops = index.index_operations(entity, None if decision.write is Write.CREATE else previous)
        etag = stored.etag if stored is not None else None
        return _Op(appointment.key, decision, entity, etag, appointment, evidence_at, index_ops)

    def _plan_cancel(self, stored: Booking, evidence_at: datetime) -> _Op | SyncOutcome:
        decision = decide_missing(stored, evidence_at)
        if decision.write is None:
            return decision.outcome
        cancelled = apply(decision, None, stored, self.clock())
        full, previous = index.with_index_key(booking_to_entity(cancelled), cancelled)
        partial = {**_cancellation_entity(cancelled), index.INDEX_KEY: full[index.INDEX_KEY]}
        index_ops = index.index_operations(full, previous)
        return _Op(stored.key, decision, partial, stored.etag, None, evidence_at, index_ops)

    # -- writing ---------------------------------------------------------------------------------

    def upsert(
        self,
        business_id: str,
        appointments: Iterable[tuple[Appointment, datetime]],
        snapshot: dict[str, Booking],
    ) -> Counter[SyncOutcome]:
        """Write appointments (each with the time its page was read) of one business.

        Keys found in `snapshot` are removed from it, so after a full window it holds exactly the
        stored bookings Graph did not return.
        """
        outcomes: Counter[SyncOutcome] = Counter()
        with _Transactions(self, business_id) as transactions:
            batch = _PendingBatch(self.batch_size)
            try:
                for appointment, evidence_at in appointments:
                    if appointment.business_id != business_id:
                        raise ValueError(
                            "appointments of one business per call (one partition per transaction)"
                        )
                    stored = batch.stored_for(appointment.key, snapshot)
                    planned = self._plan(appointment, stored, evidence_at, check_age=False)
                    if isinstance(planned, SyncOutcome):
                        outcomes[planned] += 1
                        continue
                    transactions.submit(batch.add(planned, stored))
            except BaseException:
                # Reading failed midway: keep what was read (it is correct data), then report the failure.
                with contextlib.suppress(Exception):
                    transactions.submit(batch.take())
                    transactions.wait()
                raise
            transactions.submit(batch.take())
            outcomes.update(transactions.wait())
        return outcomes

    def cancel_missing(
        self, business_id: str, missing: Iterable[Booking], evidence_at: datetime
    ) -> Counter[SyncOutcome]:
        """Cancel the Unbilled bookings Graph no longer has (`evidence_at`: when the window read began)."""
        outcomes: Counter[SyncOutcome] = Counter()
        batch: list[_Op] = []
        for stored in missing:
            planned = self._plan_cancel(stored, evidence_at)
            if isinstance(planned, SyncOutcome):
                if planned != SyncOutcome.UNCHANGED:
                    outcomes[planned] += 1
                continue
            batch.append(planned)
            if len(batch) >= self.batch_size:
                outcomes.update(self._flush(business_id, batch))
                batch = []
        if batch:
            outcomes.update(self._flush(business_id, batch))
        return outcomes

    def _count(self, transactions: int, writes: int) -> None:
        with self._counter_lock:
            self.transactions += transactions
            self.entity_writes += writes

    def _flush(self, business_id: str, ops: list[_Op]) -> Counter[SyncOutcome]:
        """Submit ops as transactions; on a failed precondition, settle that one op alone and retry."""
        outcomes: Counter[SyncOutcome] = Counter()
        for chunk in transaction_chunks(ops, self.batch_size):
            remaining = list(chunk)
            failures = 0
            while remaining:
                if len(remaining) == 1 or failures >= 3:
                    # A contended batch (an overlapping run) is cheaper entity by entity.
                    for op in remaining:
                        outcomes.update(self._write_one(business_id, op))
                    break
                owners = [at for at, op in enumerate(remaining) for _ in op.operations()]
                try:
                    self._table.submit_transaction([o for op in remaining for o in op.operations()])
                except TableTransactionError as exc:
                    self._count(1, 0)
                    if exc.status_code not in (404, 409, 412):
                        raise
                    failures += 1
                    failed = owners[exc.index] if 0 <= exc.index < len(owners) else 0
                    outcomes.update(self._write_one(business_id, remaining.pop(failed)))
                    continue
                self._count(1, len(remaining))
                outcomes.update(op.outcome for op in remaining)
                break
        return outcomes

    def _write_one(self, business_id: str, op: _Op) -> Counter[SyncOutcome]:
        """One op as a single conditional write; on conflict, re-read and decide again."""
        for _ in range(MAX_ATTEMPTS):
            try:
                self._submit_single(op)
            except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
                self._count(1, 0)
                planned = self._replan(business_id, op)
                if planned is None:
                    return Counter()
                if isinstance(planned, SyncOutcome):
                    return Counter([planned])
                op = planned
                continue
            self._count(1, 1)
            return Counter([op.outcome])
        log.warning(
            "Booking %s kept changing while the sync wrote it; left for the next run",
            op.key,
            extra={"businessId": business_id, "bookingKey": op.key, "outcome": "conflict"},
        )
        return Counter([SyncOutcome.CONFLICT])

    def _replan(self, business_id: str, op: _Op) -> _Op | SyncOutcome | None:
        """Decide again from a fresh read (None: nothing to do and nothing worth counting)."""
        with self._counter_lock:
            self.reads += 1
        stored = self._read(business_id, op.key)
        if op.appointment is not None:
            return self._plan(op.appointment, stored, op.evidence_at, check_age=True)
        if stored is None:
            return None  # a booking to cancel that no longer exists
        planned = self._plan_cancel(stored, op.evidence_at)
        return None if planned == SyncOutcome.UNCHANGED else planned

    def _submit_single(self, op: _Op) -> None:
        """One booking and its index row in one transaction; a failed condition is a conflict."""
        try:
            self._table.submit_transaction(op.operations())
        except TableTransactionError as exc:
            if exc.status_code in (404, 409, 412):
                raise ResourceModifiedError(f"booking {op.key} changed ({exc.error_code})") from None
            raise


class _PendingBatch:
    """Ops waiting for their transaction; each entity once (a later copy replaces the earlier plan)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ops: dict[str, _Op] = {}
        self._planned_from: dict[str, Booking | None] = {}
        self._operations = 0

    def stored_for(self, key: str, snapshot: dict[str, Booking]) -> Booking | None:
        if key in self._planned_from:
            replaced = self._ops.pop(key, None)
            if replaced is not None:
                self._operations -= len(replaced.operations())
            return self._planned_from[key]
        return snapshot.pop(key, None)

    def add(self, op: _Op, stored: Booking | None) -> list[_Op]:
        """Queue an op; returns the batch to submit first when the op would not fit in it (by
        bookings or by operations), else an empty list."""
        operations = len(op.operations())
        full = len(self._ops) >= self.size or self._operations + operations > TRANSACTION_LIMIT
        ready = self.take() if full else []
        self._ops[op.key] = op
        self._planned_from[op.key] = stored
        self._operations += operations
        return ready

    def take(self) -> list[_Op]:
        ops = list(self._ops.values())
        self._ops.clear()
        self._planned_from.clear()
        self._operations = 0
        return ops


class _Transactions:
    """Batches of one business submitted with up to `parallel_transactions` in flight."""

    def __init__(self, upserter: BookingUpserter, business_id: str) -> None:
        self._upserter = upserter
        self._business_id = business_id
        self._limit = upserter.parallel_transactions
        self._pool = ThreadPoolExecutor(self._limit, "sync-tx") if self._limit > 1 else None
        self._running: deque[Future[Counter[SyncOutcome]]] = deque()
        self._outcomes: Counter[SyncOutcome] = Counter()

    def __enter__(self) -> _Transactions:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def submit(self, ops: list[_Op]) -> None:
        if not ops:
            return
        if self._pool is None:
            self._outcomes.update(self._upserter._flush(self._business_id, ops))
            return
        while len(self._running) >= self._limit:
            self._outcomes.update(self._running.popleft().result())
        self._running.append(self._pool.submit(self._upserter._flush, self._business_id, ops))

    def wait(self) -> Counter[SyncOutcome]:
        """Outcomes of everything submitted; the first failure is raised once all have ended."""
        error: BaseException | None = None
        while self._running:
            try:
                self._outcomes.update(self._running.popleft().result())
            except BaseException as exc:
                error = error or exc
        if error is not None:
            raise error
        return self._outcomes


def transaction_chunks(ops: list[_Op], most_bookings: int) -> Iterator[list[_Op]]:
    """Ops in order, cut into transactions of at most `most_bookings` bookings and 100 operations."""
    chunk: list[_Op] = []
    operations = 0
    for op in ops:
        count = len(op.operations())
        if chunk and (len(chunk) >= most_bookings or operations + count > TRANSACTION_LIMIT):
            yield chunk
            chunk, operations = [], 0
        chunk.append(op)
        operations += count
    if chunk:
        yield chunk
