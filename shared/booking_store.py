"""The `Bookings` table: PartitionKey = Bookings business id, RowKey = booking key.

Every change of a booking's state is a conditional write on the entity's ETag, so two workers, two
clicks or a redelivered message can never both win. Filters are always parameterised.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.models import Actor, Booking, BookingStatus, PriceType, is_booking_key
from shared.storage import create_table_if_missing

BOOKINGS_TABLE = "Bookings"
MAX_BATCH = 100  # operations per table transaction (one partition)


def utc_now() -> datetime:
    return datetime.now(UTC)


class ConcurrentChangeError(Exception):
    """The booking changed since it was read (ETag mismatch) or vanished: re-read and decide again."""


def booking_to_entity(booking: Booking) -> dict[str, Any]:
    """Table entity of a booking. Empty optional fields are left out (a replace then clears them)."""
    entity: dict[str, Any] = {
        "PartitionKey": booking.business_id,
        "RowKey": booking.key,
        "AppointmentId": booking.appointment_id,
        "ServiceId": booking.service_id,
        "ServiceName": booking.service_name,
        "HasCustomer": booking.has_customer,
        "StaffMemberIds": json.dumps(list(booking.staff_member_ids)),
        "Start": booking.start,
        "End": booking.end,
        "Price": float(booking.price),
        "PriceType": str(booking.price_type),
        "Status": str(booking.status),
        "InvoiceAttempts": int(booking.invoice_attempts),
    }
    optional = {
        "CustomerName": booking.customer_name,
        "CustomerEmail": booking.customer_email,
        "CustomerEmailLower": booking.customer_email.lower() if booking.customer_email else None,
        "CustomerPhone": booking.customer_phone,
        "InvoiceId": booking.invoice_id,
        "InvoiceNumber": booking.invoice_number,
        "ErrorCode": booking.error_code,
        "Error": booking.error,
        "RequestId": booking.request_id,
        "ClaimedBy": booking.claimed_by,
        "UpdatedAt": booking.updated_at,
        "StatusChangedAt": booking.status_changed_at,
        "UpdatedById": booking.updated_by.id if booking.updated_by else None,
        "UpdatedByName": booking.updated_by.name if booking.updated_by else None,
    }
    entity.update({name: value for name, value in optional.items() if value is not None})
    return entity


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def entity_to_booking(entity: Any) -> Booking:
    """The booking an entity holds (with its ETag, for the next conditional write)."""
    metadata = getattr(entity, "metadata", {}) or {}
    return Booking(
        key=entity["RowKey"],
        business_id=entity["PartitionKey"],
        appointment_id=entity.get("AppointmentId", ""),
        service_id=entity.get("ServiceId", ""),
        service_name=entity.get("ServiceName", ""),
        customer_name=entity.get("CustomerName"),
        customer_email=entity.get("CustomerEmail"),
        customer_phone=entity.get("CustomerPhone"),
        staff_member_ids=tuple(json.loads(entity.get("StaffMemberIds") or "[]")),
        start=_aware(entity.get("Start")) or datetime.min.replace(tzinfo=UTC),
        end=_aware(entity.get("End")) or datetime.min.replace(tzinfo=UTC),
        price=float(entity.get("Price") or 0.0),
        price_type=PriceType.parse(entity.get("PriceType")),
        status=BookingStatus(entity.get("Status", BookingStatus.UNBILLED)),
        has_customer=bool(entity.get("HasCustomer", True)),
        invoice_id=entity.get("InvoiceId"),
        invoice_number=entity.get("InvoiceNumber"),
        error_code=entity.get("ErrorCode"),
        error=entity.get("Error"),
        request_id=entity.get("RequestId"),
        invoice_attempts=int(entity.get("InvoiceAttempts") or 0),
        claimed_by=entity.get("ClaimedBy"),
        updated_at=_aware(entity.get("UpdatedAt")),
        status_changed_at=_aware(entity.get("StatusChangedAt")),
        updated_by=_actor(entity.get("UpdatedById"), entity.get("UpdatedByName")),
        etag=metadata.get("etag"),
    )


def _actor(actor_id: Any, name: Any) -> Actor | None:
    if not actor_id:
        return None
    return Actor(id=str(actor_id), name=str(name or actor_id))


def _require_state(booking: Booking, allowed_from: Collection[BookingStatus]) -> None:
    if booking.status not in allowed_from:
        raise ValueError(f"booking {booking.key} is {booking.status}, not one of {sorted(allowed_from)}")


class BookingStore:
    """Reads and conditional writes of bookings."""

    def __init__(self, table: TableClient, clock: Callable[[], datetime] = utc_now) -> None:
        self.table = table
        self.clock = clock

    def ensure_table(self) -> None:
        create_table_if_missing(self.table)

    # -- reads -------------------------------------------------------------------------------

    def get(self, business_id: str, key: str) -> Booking | None:
        if not is_booking_key(key):
            return None
        try:
            return entity_to_booking(self.table.get_entity(partition_key=business_id, row_key=key))
        except ResourceNotFoundError:
            return None

    def find(self, key: str) -> Booking | None:
        """A booking by key alone (the API's view): one query on RowKey across businesses."""
        if not is_booking_key(key):
            return None
        for entity in self.table.query_entities(
            "RowKey eq @key", parameters={"key": key}, results_per_page=2
        ):
            return entity_to_booking(entity)
        return None

    def query(self, filter_text: str, parameters: dict[str, Any], page_size: int = 1000) -> Iterator[Booking]:
        """Bookings matching a parameterised filter (never a filter built from input text)."""
        for entity in self.table.query_entities(
            filter_text, parameters=parameters, results_per_page=page_size
        ):
            yield entity_to_booking(entity)

    # -- writes ------------------------------------------------------------------------------

    def create(self, booking: Booking) -> Booking:
        """Insert a new booking; `ConcurrentChangeError` if it already exists."""
        stamped = replace(
            booking, updated_at=self.clock(), status_changed_at=booking.status_changed_at or self.clock()
        )
        try:
            metadata = self.table.create_entity(booking_to_entity(stamped))
        except ResourceExistsError:
            raise ConcurrentChangeError(f"booking {booking.key} already exists") from None
        return replace(stamped, etag=metadata.get("etag"))

    def save(self, booking: Booking) -> Booking:
        """Replace the stored booking if it is unchanged since read (its ETag); else raise."""
        if booking.etag is None:
            raise ValueError("save() needs a booking read from the store (it carries the ETag)")
        stamped = replace(booking, updated_at=self.clock())
        try:
            metadata = self.table.update_entity(
                booking_to_entity(stamped),
                mode=UpdateMode.REPLACE,
                etag=booking.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            raise ConcurrentChangeError(f"booking {booking.key} changed meanwhile") from None
        return replace(stamped, etag=metadata.get("etag"))

    def transition(
        self,
        booking: Booking,
        to: BookingStatus,
        *,
        allowed_from: Collection[BookingStatus],
        **changes: Any,
    ) -> Booking:
        """Move a booking to `to` with a conditional write.

        Raises `ValueError` if its current state does not allow it, `ConcurrentChangeError` if
        someone else changed it since it was read (the caller re-reads and decides again).
        """
        _require_state(booking, allowed_from)
        changed = replace(booking, status=to, status_changed_at=self.clock(), **changes)
        return self.save(changed)

    # -- batch transitions (HTTP API selection) ----------------------------------------------

    def transition_batch(
        self,
        bookings: Sequence[Booking],
        to: BookingStatus,
        *,
        allowed_from: Collection[BookingStatus],
        **changes: Any,
    ) -> list[Booking]:
        """Move up to 100 bookings of one business to `to` in one table transaction.

        Each write is conditional on that booking's ETag and the transaction is atomic: if any
        booking changed since it was read, nothing is written and `ConcurrentChangeError` is
        raised (the caller falls back to `transition` one by one). One round trip instead of 100
        is what lets a selection of 10,000 bookings be claimed in seconds.
        """
        if not bookings:
            return []
        if len(bookings) > MAX_BATCH:
            raise ValueError(f"a transaction holds at most {MAX_BATCH} bookings")
        if len({b.business_id for b in bookings}) != 1 or len({b.key for b in bookings}) != len(bookings):
            raise ValueError("a transaction holds distinct bookings of one business")
        for booking in bookings:
            if booking.etag is None:
                raise ValueError("transition_batch() needs bookings read from the store (with ETags)")
            _require_state(booking, allowed_from)
        now = self.clock()
        changed = [replace(b, status=to, status_changed_at=now, updated_at=now, **changes) for b in bookings]
        operations: list[Any] = [
            (
                "update",
                booking_to_entity(new),
                {
                    "mode": UpdateMode.REPLACE,
                    "etag": old.etag,
                    "match_condition": MatchConditions.IfNotModified,
                },
            )
            for old, new in zip(bookings, changed, strict=True)
        ]
        try:
            results = self.table.submit_transaction(operations)
        except TableTransactionError as exc:
            if exc.status_code in (404, 412):
                raise ConcurrentChangeError(
                    f"a booking of the batch changed meanwhile ({exc.error_code})"
                ) from None
            raise
        return [replace(new, etag=result.get("etag")) for new, result in zip(changed, results, strict=True)]
