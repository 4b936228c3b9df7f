"""The API's JSON: every field a route answers with, built from the domain's and services' values.

One function per document. Rules and use cases return plain values (`Booking`, `SelectionResult`,
`RequestStatus`, ...); which JSON field carries what is decided here alone, so a new or renamed
API field is a change to this module (and `openapi.py`, which describes it), never to a rule.
Wire formats that are not API answers stay with their parsers: the queue message
(`InvoiceMessage.to_json`), the continuation token's cursor (`Cursor.to_json`) and a filter's
identity (`BookingFilter.to_json`, also what a request stores as its selection).
"""

from __future__ import annotations

from typing import Any

from shared.api.input import FieldError
from shared.domain.bc_web_client import InvoiceLinks
from shared.domain.invoice_lines import booking_amount
from shared.domain.models import Actor, Booking, BookingStatus
from shared.domain.moments import iso_utc
from shared.domain.setup_checks import Check, ordered
from shared.services.booking_queries import BookingTotals
from shared.services.booking_updates import UpdateResult
from shared.services.request_status import RequestStatus
from shared.services.selection import SelectionResult, SkippedBooking
from shared.services.setup_check import SetupReport

MISSING = "Missing"
"""A request's booking that was deleted from the table by hand: said so rather than guessed."""


def actor_view(actor: Actor | None) -> dict[str, str] | None:
    return {"id": actor.id, "name": actor.name} if actor else None


def booking_view(booking: Booking, links: InvoiceLinks | None = None) -> dict[str, Any]:
    """The contract's Booking JSON, plus `amount` (what the line comes to by Bookings' prices) and
    `invoiceUrl` (the invoice in Business Central's web client, when `links` are given and known)."""
    return {
        "key": booking.key,
        "businessId": booking.business_id,
        "appointmentId": booking.appointment_id,
        "serviceId": booking.service_id,
        "serviceName": booking.service_name,
        "customerName": booking.customer_name,
        "customerEmail": booking.customer_email,
        "staffMemberIds": list(booking.staff_member_ids),
        "start": iso_utc(booking.start),
        "end": iso_utc(booking.end),
        "price": booking.price,
        "priceType": str(booking.price_type),
        "status": str(booking.status),
        "invoiceId": booking.invoice_id,
        "invoiceNumber": booking.invoice_number,
        "errorCode": booking.error_code,
        "error": booking.error,
        "updatedAt": iso_utc(booking.updated_at),
        "invoiceStatus": booking.invoice_status,
        "invoiceSource": str(booking.source) if booking.source else None,
        "note": booking.note,
        "updatedBy": actor_view(booking.updated_by),
        "groupAppointment": booking.group_appointment,
        "amount": float(booking_amount(booking)),
        "invoiceUrl": links.for_booking(booking) if links else None,
    }


def totals_view(totals: BookingTotals, currency_code: str | None) -> dict[str, Any]:
    """`GET /api/booking-totals`: every match of the filter, all pages."""
    return {"count": totals.count, "amount": float(totals.amount), "currencyCode": currency_code}


def skipped_view(skipped: SkippedBooking) -> dict[str, Any]:
    document: dict[str, Any] = {"key": skipped.key, "status": str(skipped.status)}
    if skipped.reason:
        document["reason"] = skipped.reason
    return document


def selection_view(result: SelectionResult) -> dict[str, Any]:
    """`POST /api/invoice-requests`' 202 answer."""
    return {
        "requestId": result.request_id,
        "accepted": result.accepted,
        "skipped": [skipped_view(item) for item in result.skipped],
        "notFound": list(result.not_found),
    }


def update_view(result: UpdateResult) -> dict[str, Any]:
    """`POST /api/booking-updates`' answer."""
    return {
        "updated": list(result.updated),
        "skipped": [skipped_view(item) for item in result.skipped],
        "notFound": list(result.not_found),
    }


def field_error_view(error: FieldError) -> dict[str, str]:
    """One member of a problem document's `errors`."""
    return {"field": error.field, "detail": error.problem}


def _request_row(key: str, booking: Booking | None) -> dict[str, Any]:
    if booking is None:
        return {"key": key, "status": MISSING, "invoiceNumber": None, "errorCode": None, "error": None}
    return {
        "key": key,
        "status": str(booking.status),
        "invoiceNumber": booking.invoice_number,
        "errorCode": booking.error_code,
        "error": booking.error,
        # Whose booking it is, so a failure says so without a lookup per row.
        "businessId": booking.business_id,
        "customerName": booking.customer_name,
        "customerEmail": booking.customer_email,
        "serviceName": booking.service_name,
        "start": iso_utc(booking.start),
    }


def request_status_view(status: RequestStatus) -> dict[str, Any]:
    """`GET /api/invoice-requests/{requestId}`: the request and its bookings' current states."""
    header = status.header
    rows = [_request_row(key, booking) for key, booking in status.rows]
    counts = {str(state): 0 for state in BookingStatus}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return {
        "requestId": header.request_id,
        "state": header.state,
        "createdAt": iso_utc(header.created_at),
        "requestedAt": iso_utc(header.created_at),
        "requestedBy": actor_view(header.requested_by),
        "selection": header.selection,
        "total": len(rows),
        "counts": counts,
        "items": rows,
    }


def check_view(check: Check) -> dict[str, str]:
    return {"name": check.name, "status": check.status, "detail": check.detail, "fix": check.fix}


def setup_report_view(report: SetupReport) -> dict[str, Any]:
    """`GET /api/setup-check`: failed checks first."""
    return {
        "checkedAt": report.checked_at.isoformat().replace("+00:00", "Z"),
        "checks": [check_view(check) for check in ordered(report.checks)],
    }
