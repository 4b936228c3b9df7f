"""Sync support for the `Bookings` table: batched, conditional upserts of appointments.

Companion of `shared/booking_store.py` (same table, same entity shape). The sync writes thousands
of bookings per run, so it works in table transactions (up to 100 operations, one partition, each
entity once), yet never overwrites what the HTTP API or the invoicer did:

- a new booking is a `create` (fails if someone created it meanwhile);
- an `Unbilled` booking whose descriptive fields changed is replaced *with its ETag*;
- a `Queued`, `Invoicing` or `Invoiced` booking is never written by the sync;
- a `Failed` booking gets its descriptive fields refreshed the same way, keeping its state,
  `errorCode` and `error` (see `HANDS_OFF_STATES`);
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
import hashlib
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.adapters.booking_store import booking_to_entity, utc_now
from shared.domain.models import LOCKED_STATES, Appointment, Booking, BookingStatus, iso_utc
from shared.telemetry import get_logger

# In flight or done: the sync never writes these. A Failed booking is at rest and may be selected
# again, so its descriptive fields are refreshed (state and error untouched): a retry after the
# cause was fixed in Bookings (a customer added, a price corrected) then invoices what Bookings says.
HANDS_OFF_STATES = frozenset({BookingStatus.QUEUED, BookingStatus.INVOICING, BookingStatus.INVOICED})

log = get_logger("bookings.booking_upserts")

MAX_BATCH = 100  # Table transactions: at most 100 operations, all in one partition
MAX_ATTEMPTS = 6  # per-entity re-read-and-decide rounds before giving up on one booking
# Transactions in flight per business: the SDK spends most of a transaction building and parsing
# its multipart body, so a few in flight keep the storage account busy while we prepare the next.
PARALLEL_TRANSACTIONS = 3

# Properties that come from Bookings. Everything else (state, invoice fields, stamps, and
# anything another part of the app adds) belongs to invoicing and is carried over untouched.
DESCRIPTIVE_PROPERTIES = (
    "AppointmentId",
    "ServiceId",
    "ServiceName",
    "HasCustomer",
    "StaffMemberIds",
    "Start",
    "End",
    "Price",
    "PriceType",
    "CustomerName",
    "CustomerEmail",
    "CustomerEmailLower",
    "CustomerPhone",
)
_SYSTEM_PROPERTIES = frozenset({"PartitionKey", "RowKey", "Timestamp", "etag", "odata.etag"})


class Outcome(StrEnum):
    """What happened to one booking in one sync."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    LOCKED = "locked"  # Queued/Invoicing/Invoiced: left alone
    REVIVED = "revived"  # Cancelled -> Unbilled, it exists again
    CANCELLED = "cancelled"
    STALE = "stale"  # someone wrote newer data after our evidence was read: theirs wins
    CONFLICT = "conflict"  # still contended after MAX_ATTEMPTS rounds: left for the next run


def booking_from_appointment(appointment: Appointment) -> Booking:
    """A new, Unbilled booking for an appointment. No customer -> `has_customer=False`."""
    customer = appointment.customer
    return Booking(
        key=appointment.key,
        business_id=appointment.business_id,
        appointment_id=appointment.id,
        service_id=appointment.service_id,
        service_name=appointment.service_name,
        customer_name=customer.name if customer else None,
        customer_email=customer.email if customer else None,
        customer_phone=customer.phone if customer else None,
        staff_member_ids=appointment.staff_member_ids,
        start=appointment.start,
        end=appointment.end,
        price=appointment.price,
        price_type=appointment.price_type,
        status=BookingStatus.UNBILLED,
        has_customer=customer is not None,
    )


def descriptive_properties(appointment: Appointment) -> dict[str, Any]:
    """The table properties an appointment determines (empty ones left out, as the store does)."""
    entity = booking_to_entity(booking_from_appointment(appointment))
    return {name: entity[name] for name in DESCRIPTIVE_PROPERTIES if name in entity}


def _normal(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return iso_utc(value if value.tzinfo else value.replace(tzinfo=UTC)) or ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(float(value))
    return str(getattr(value, "value", value))


def fingerprint(properties: Mapping[str, Any]) -> str:
    """A digest of the descriptive properties: equal digests mean nothing to refresh."""
    digest = hashlib.blake2b(digest_size=16)
    for name in DESCRIPTIVE_PROPERTIES:
        digest.update(name.encode())
        digest.update(b"\x1f")
        digest.update(_normal(properties.get(name)).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass
class Stored:
    """What the sync needs to know about a stored booking (compact: many are held per run)."""

    key: str
    etag: str
    status: BookingStatus
    fingerprint: str
    updated_at: datetime | None
    status_changed_at: datetime | None
    appointment_id: str | None = None
    carried: dict[str, Any] = field(default_factory=dict)
    """Non-descriptive properties to keep on a replace; only kept for Unbilled/Cancelled."""

    @classmethod
    def from_entity(cls, entity: Mapping[str, Any]) -> Stored:
        metadata = getattr(entity, "metadata", {}) or {}
        status = BookingStatus(entity.get("Status", BookingStatus.UNBILLED))
        carried: dict[str, Any] = {}
        if status not in HANDS_OFF_STATES:
            carried = {
                name: value
                for name, value in entity.items()
                if name not in _SYSTEM_PROPERTIES and name not in DESCRIPTIVE_PROPERTIES
            }
        return cls(
            key=str(entity["RowKey"]),
            etag=str(metadata.get("etag")),
            status=status,
            fingerprint=fingerprint(entity),
            updated_at=_aware(entity.get("UpdatedAt")),
            status_changed_at=_aware(entity.get("StatusChangedAt")),
            appointment_id=entity.get("AppointmentId") if status == BookingStatus.UNBILLED else None,
            carried=carried,
        )

    def last_changed(self) -> datetime | None:
        moments = [m for m in (self.updated_at, self.status_changed_at) if m is not None]
        return max(moments) if moments else None


@dataclass
class _Op:
    """One planned write: the table operation plus what to do if it fails."""

    key: str
    kind: str  # "create" | "update" | "merge"
    entity: dict[str, Any]
    etag: str | None
    outcome: Outcome
    appointment: Appointment | None  # None for cancellations
    evidence_at: datetime

    def as_transaction_operation(self) -> tuple[Any, ...]:
        if self.kind == "create":
            return ("create", self.entity)
        mode = UpdateMode.REPLACE if self.kind == "update" else UpdateMode.MERGE
        return (
            "update",
            self.entity,
            {"mode": mode, "etag": self.etag, "match_condition": MatchConditions.IfNotModified},
        )


class BookingUpserter:
    """Batched conditional writes of synced appointments into one `Bookings` table.

    Thread-safe counters (`transactions`, `entity_writes`, `reads`) tell what a run cost.
    """

    def __init__(
        self,
        table: TableClient,
        clock: Callable[[], datetime] = utc_now,
        batch_size: int = MAX_BATCH,
        parallel_transactions: int = PARALLEL_TRANSACTIONS,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}")
        self.table = table
        self.clock = clock
        self.batch_size = batch_size
        self.parallel_transactions = max(1, parallel_transactions)
        self._counter_lock = threading.Lock()
        self.transactions = 0  # write requests to the table: transactions and single writes
        self.entity_writes = 0  # entities actually written
        self.reads = 0  # single-entity re-reads after a conflict

    # -- reading ---------------------------------------------------------------------------------

    def stored_in_window(self, business_id: str, start: datetime, end: datetime) -> dict[str, Stored]:
        """Stored bookings of a business whose [Start, End) overlaps [start, end), by key.

        The same overlap rule as `calendarView`, so an Unbilled booking in here that Graph did not
        return for that window no longer exists in Bookings.
        """
        entities = self.table.query_entities(
            "PartitionKey eq @business and End gt @start and Start lt @end",
            parameters={"business": business_id, "start": start, "end": end},
            results_per_page=1000,
        )
        return {str(entity["RowKey"]): Stored.from_entity(entity) for entity in entities}

    def _read(self, business_id: str, key: str) -> Stored | None:
        try:
            return Stored.from_entity(self.table.get_entity(partition_key=business_id, row_key=key))
        except ResourceNotFoundError:
            return None

    # -- planning --------------------------------------------------------------------------------

    def _plan(
        self, appointment: Appointment, stored: Stored | None, evidence_at: datetime, *, check_age: bool
    ) -> _Op | Outcome:
        """The write an appointment needs given the stored booking, or why none is needed.

        `check_age` drops the write when the stored booking changed after the evidence was read
        (needed after a re-read; a booking from the run's own snapshot predates the evidence).
        """
        key = appointment.key
        now = self.clock()
        descriptive = descriptive_properties(appointment)
        if stored is None:
            entity = booking_to_entity(
                replace(booking_from_appointment(appointment), updated_at=now, status_changed_at=now)
            )
            return _Op(key, "create", entity, None, Outcome.CREATED, appointment, evidence_at)
        if stored.status in HANDS_OFF_STATES:
            return Outcome.LOCKED
        changed = stored.last_changed()
        if check_age and changed is not None and changed > evidence_at:
            return Outcome.STALE
        base = {"PartitionKey": appointment.business_id, "RowKey": key, **stored.carried, **descriptive}
        if stored.status == BookingStatus.CANCELLED:
            entity = {**base, "Status": str(BookingStatus.UNBILLED), "StatusChangedAt": now, "UpdatedAt": now}
            return _Op(key, "update", entity, stored.etag, Outcome.REVIVED, appointment, evidence_at)
        if stored.fingerprint == fingerprint(descriptive):
            return Outcome.UNCHANGED
        entity = {**base, "UpdatedAt": now}
        return _Op(key, "update", entity, stored.etag, Outcome.UPDATED, appointment, evidence_at)

    def _plan_cancel(self, business_id: str, stored: Stored, evidence_at: datetime) -> _Op | Outcome:
        if stored.status != BookingStatus.UNBILLED:
            return Outcome.LOCKED if stored.status in LOCKED_STATES else Outcome.UNCHANGED
        changed = stored.last_changed()
        if changed is not None and changed > evidence_at:
            return Outcome.STALE
        now = self.clock()
        entity = {
            "PartitionKey": business_id,
            "RowKey": stored.key,
            "Status": str(BookingStatus.CANCELLED),
            "StatusChangedAt": now,
            "UpdatedAt": now,
        }
        return _Op(stored.key, "merge", entity, stored.etag, Outcome.CANCELLED, None, evidence_at)

    # -- writing ---------------------------------------------------------------------------------

    def upsert(
        self,
        business_id: str,
        appointments: Iterable[tuple[Appointment, datetime]],
        snapshot: dict[str, Stored],
    ) -> Counter[Outcome]:
        """Write appointments (each with the time its page was read) of one business.

        Keys found in `snapshot` are removed from it, so after a full window it holds exactly the
        stored bookings Graph did not return.
        """
        outcomes: Counter[Outcome] = Counter()
        pending: dict[str, _Op] = {}
        planned_from: dict[str, Stored | None] = {}
        with _Transactions(self, business_id) as transactions:
            try:
                for appointment, evidence_at in appointments:
                    if appointment.business_id != business_id:
                        raise ValueError(
                            "appointments of one business per call (one partition per transaction)"
                        )
                    key = appointment.key
                    if key in planned_from:
                        # Each entity once per transaction: a later copy replaces the earlier one's plan.
                        stored = planned_from[key]
                        pending.pop(key, None)
                    else:
                        stored = snapshot.pop(key, None)
                    planned = self._plan(appointment, stored, evidence_at, check_age=False)
                    if isinstance(planned, Outcome):
                        outcomes[planned] += 1
                        continue
                    pending[key] = planned
                    planned_from[key] = stored
                    if len(pending) >= self.batch_size:
                        batch = list(pending.values())
                        pending.clear()
                        planned_from.clear()
                        transactions.submit(batch)
            except BaseException:
                # Reading failed midway: keep what was read (it is correct data), then report the failure.
                with contextlib.suppress(Exception):
                    if pending:
                        transactions.submit(list(pending.values()))
                    transactions.wait()
                raise
            if pending:
                transactions.submit(list(pending.values()))
            outcomes.update(transactions.wait())
        return outcomes

    def cancel_missing(
        self, business_id: str, missing: Iterable[Stored], evidence_at: datetime
    ) -> Counter[Outcome]:
        """Cancel the Unbilled bookings Graph no longer has (`evidence_at`: when the window read began)."""
        outcomes: Counter[Outcome] = Counter()
        batch: list[_Op] = []
        for stored in missing:
            planned = self._plan_cancel(business_id, stored, evidence_at)
            if isinstance(planned, Outcome):
                if planned != Outcome.UNCHANGED:
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

    def _flush(self, business_id: str, ops: list[_Op]) -> Counter[Outcome]:
        """Submit ops as transactions; on a failed precondition, settle that one op alone and retry."""
        outcomes: Counter[Outcome] = Counter()
        for chunk in _chunks(ops, self.batch_size):
            remaining = list(chunk)
            failures = 0
            while remaining:
                if len(remaining) == 1 or failures >= 3:
                    # A contended batch (an overlapping run) is cheaper entity by entity.
                    for op in remaining:
                        outcomes.update(self._write_one(business_id, op))
                    break
                try:
                    self.table.submit_transaction([op.as_transaction_operation() for op in remaining])
                except TableTransactionError as exc:
                    self._count(1, 0)
                    if exc.status_code not in (404, 409, 412):
                        raise
                    failures += 1
                    index = exc.index if 0 <= exc.index < len(remaining) else 0
                    outcomes.update(self._write_one(business_id, remaining.pop(index)))
                    continue
                self._count(1, len(remaining))
                outcomes.update(op.outcome for op in remaining)
                break
        return outcomes

    def _write_one(self, business_id: str, op: _Op) -> Counter[Outcome]:
        """One op as a single conditional write; on conflict, re-read and decide again."""
        for _ in range(MAX_ATTEMPTS):
            try:
                self._submit_single(op)
            except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
                self._count(1, 0)
                planned = self._replan(business_id, op)
                if planned is None:
                    return Counter()
                if isinstance(planned, Outcome):
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
        return Counter([Outcome.CONFLICT])

    def _replan(self, business_id: str, op: _Op) -> _Op | Outcome | None:
        """Decide again from a fresh read (None: nothing to do and nothing worth counting)."""
        with self._counter_lock:
            self.reads += 1
        stored = self._read(business_id, op.key)
        if op.appointment is not None:
            return self._plan(op.appointment, stored, op.evidence_at, check_age=True)
        if stored is None:
            return None  # a booking to cancel that no longer exists
        planned = self._plan_cancel(business_id, stored, op.evidence_at)
        return None if planned == Outcome.UNCHANGED else planned

    def _submit_single(self, op: _Op) -> None:
        if op.kind == "create":
            self.table.create_entity(op.entity)
            return
        self.table.update_entity(
            op.entity,
            mode=UpdateMode.REPLACE if op.kind == "update" else UpdateMode.MERGE,
            etag=op.etag,
            match_condition=MatchConditions.IfNotModified,
        )


class _Transactions:
    """Batches of one business submitted with up to `parallel_transactions` in flight."""

    def __init__(self, upserter: BookingUpserter, business_id: str) -> None:
        self._upserter = upserter
        self._business_id = business_id
        self._limit = upserter.parallel_transactions
        self._pool = ThreadPoolExecutor(self._limit, "sync-tx") if self._limit > 1 else None
        self._running: deque[Future[Counter[Outcome]]] = deque()
        self._outcomes: Counter[Outcome] = Counter()

    def __enter__(self) -> _Transactions:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def submit(self, ops: list[_Op]) -> None:
        if self._pool is None:
            self._outcomes.update(self._upserter._flush(self._business_id, ops))
            return
        while len(self._running) >= self._limit:
            self._outcomes.update(self._running.popleft().result())
        self._running.append(self._pool.submit(self._upserter._flush, self._business_id, ops))

    def wait(self) -> Counter[Outcome]:
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


def _chunks(items: list[_Op], size: int) -> Iterator[list[_Op]]:
    for index in range(0, len(items), size):
        yield items[index : index + size]
