"""The `Bookings` table's entity shape: the one mapping between a `Booking` and its table row.

PartitionKey = Bookings business id, RowKey = booking key. Empty optional fields are left out, so
a replace clears them. Properties this version does not know are read into `Booking.extra` and
written back unchanged, so an older instance never erases what a newer one added.
"""

from __future__ import annotations

import json
from typing import Any

from shared.adapters.storage import TRANSACTION_LIMIT
from shared.adapters.storage_retry import WRITE_ID
from shared.domain.models import Actor, Booking, BookingStatus, InvoiceSource, PriceType
from shared.domain.moments import aware

BOOKINGS_TABLE = "Bookings"
MAX_BATCH = TRANSACTION_LIMIT

_EPOCH = aware("0001-01-01T00:00:00+00:00")

_OPTIONAL = {
    "CustomerName": "customer_name",
    "CustomerEmail": "customer_email",
    "CustomerPhone": "customer_phone",
    "InvoiceId": "invoice_id",
    "InvoiceNumber": "invoice_number",
    "ErrorCode": "error_code",
    "Error": "error",
    "RequestId": "request_id",
    "ClaimedBy": "claimed_by",
    "UpdatedAt": "updated_at",
    "StatusChangedAt": "status_changed_at",
    "InvoiceStatus": "invoice_status",
    "Note": "note",
}
_KNOWN = frozenset(
    {
        "PartitionKey",
        "RowKey",
        "Timestamp",
        "AppointmentId",
        "ServiceId",
        "ServiceName",
        "HasCustomer",
        "GroupAppointment",
        "InvoicePosted",
        "StaffMemberIds",
        "Start",
        "End",
        "Price",
        "PriceType",
        "Status",
        "InvoiceAttempts",
        "CustomerEmailLower",
        "InvoiceSource",
        "UpdatedById",
        "UpdatedByName",
        WRITE_ID,  # the retry layer's mark of the last conditional write: never carried over
        *_OPTIONAL,
    }
)


def booking_to_entity(booking: Booking) -> dict[str, Any]:
    """The table entity of a booking."""
    entity: dict[str, Any] = dict(booking.extra)
    entity.update(
        {
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
    )
    if booking.group_appointment:  # left out for one-to-one bookings: their rows stay as they were
        entity["GroupAppointment"] = True
    if booking.invoice_posted:
        entity["InvoicePosted"] = True
    if booking.customer_email:
        entity["CustomerEmailLower"] = booking.customer_email.lower()
    for name, attribute in _OPTIONAL.items():
        value = getattr(booking, attribute)
        if value is not None:
            entity[name] = value
    if booking.invoice_source is not None:
        entity["InvoiceSource"] = str(booking.invoice_source)
    if booking.updated_by is not None:
        entity["UpdatedById"] = booking.updated_by.id
        entity["UpdatedByName"] = booking.updated_by.name
    return entity


def _source(value: object) -> InvoiceSource | None:
    try:
        return InvoiceSource(str(value)) if value else None
    except ValueError:
        return None


def entity_to_booking(entity: Any) -> Booking:
    """The booking an entity holds, with its ETag for the next conditional write."""
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
        start=aware(entity.get("Start")) or _EPOCH,
        end=aware(entity.get("End")) or _EPOCH,
        price=float(entity.get("Price") or 0.0),
        price_type=PriceType.parse(entity.get("PriceType")),
        status=BookingStatus(entity.get("Status", BookingStatus.UNBILLED)),
        has_customer=bool(entity.get("HasCustomer", True)),
        group_appointment=bool(entity.get("GroupAppointment", False)),
        invoice_posted=bool(entity.get("InvoicePosted", False)),
        invoice_id=entity.get("InvoiceId"),
        invoice_number=entity.get("InvoiceNumber"),
        error_code=entity.get("ErrorCode"),
        error=entity.get("Error"),
        request_id=entity.get("RequestId"),
        invoice_attempts=int(entity.get("InvoiceAttempts") or 0),
        claimed_by=entity.get("ClaimedBy"),
        updated_at=aware(entity.get("UpdatedAt")),
        status_changed_at=aware(entity.get("StatusChangedAt")),
        invoice_status=entity.get("InvoiceStatus"),
        invoice_source=_source(entity.get("InvoiceSource")),
        note=entity.get("Note"),
        updated_by=_actor(entity.get("UpdatedById"), entity.get("UpdatedByName")),
        etag=metadata.get("etag"),
        extra={name: value for name, value in entity.items() if name not in _KNOWN},
    )


def _actor(actor_id: Any, name: Any) -> Actor | None:
    if not actor_id:
        return None
    return Actor(id=str(actor_id), name=str(name or actor_id))
