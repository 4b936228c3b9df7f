"""The HTTP API's Swagger 2.0 document: the one source for `GET /api/openapi.json` and the connector.

Power Platform custom connectors import Swagger 2.0 (not OpenAPI 3), so that is what this is. The
custom connector's definition in `infra/connector/apiDefinition.swagger.json` is this document with
the default host; regenerate it after changing the API with

    python -m shared.api.openapi > infra/connector/apiDefinition.swagger.json

(a test fails while the file and this module disagree). `--host` writes one for a given app.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from shared.api.list_query import DEFAULT_TOP, INVOICE_STATUSES, MAX_TOP
from shared.api.openapi_portal import portal_definitions, portal_paths
from shared.domain import lifecycle
from shared.domain.models import BookingStatus, ErrorCode, InvoiceSource, PriceType

# What a selection may claim, as the lifecycle says (the connector's copy is checked against this).
BY_KEY = " or ".join(str(status) for status in BookingStatus if lifecycle.selectable_by_key(status))
BY_FILTER = str(lifecycle.FILTER_SELECTABLE)

API_VERSION = "1.0.0"
DEFAULT_HOST = "your-function-app.azurewebsites.net"
DEFAULT_MAX_SELECTION = 10000
KEY_PATTERN = "^[A-Z2-7]{26}$"
STATES = [str(status) for status in BookingStatus]


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "x-nullable": True}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/definitions/{name}"}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "schema": _ref("Problem")}


_UNAUTHORIZED = _problem(
    "No caller: sign in with Microsoft Entra ID (an access token for the API in "
    "Authorization: Bearer, or a session from /.auth/login/aad). An invalid or expired token is "
    "refused the same way."
)
_FORBIDDEN = _problem(
    "The caller lacks the app role the operation needs (Bookings.Read to read, Bookings.Invoice "
    "to invoice); an administrator assigns it in Microsoft Entra ID."
)
SECURITY_SCHEME = "oauth2-auth"
_ACTOR = {
    "type": "object",
    "required": ["id", "name"],
    "description": "Who made the change: the caller's object id in Microsoft Entra ID and its name.",
    "properties": {"id": {"type": "string"}, "name": {"type": "string"}},
}
_BAD_REQUEST = _problem("The request is malformed; `detail` says what to change and nothing was done.")
_UNAVAILABLE = _problem("The app is misconfigured or storage is unavailable; `detail` names the cause.")
_INTERNAL = _problem("Unexpected failure; `incidentId` is also in the app's log.")


_TEXT = {"type": "string"}
_ERRORS = {
    "400": _BAD_REQUEST,
    "401": _UNAUTHORIZED,
    "403": _FORBIDDEN,
    "500": _INTERNAL,
    "503": _UNAVAILABLE,
}


def _booking_appointment_fields() -> dict[str, Any]:
    """A booking's fields that come from Bookings."""
    return {
        "key": {
            "type": "string",
            "pattern": KEY_PATTERN,
            "description": "Booking key (26 characters A-Z, 2-7); BKG-<key> is the invoice's "
            "external document number.",
            "x-ms-summary": "Booking key",
        },
        "businessId": {**_TEXT, "description": "Bookings business (mailbox SMTP address)."},
        "appointmentId": {**_TEXT, "description": "Graph appointment id."},
        "serviceId": _TEXT,
        "serviceName": {**_TEXT, "x-ms-summary": "Service"},
        "customerName": _nullable({**_TEXT, "x-ms-summary": "Customer"}),
        "customerEmail": _nullable({**_TEXT, "x-ms-summary": "Customer email"}),
        "staffMemberIds": {"type": "array", "items": _TEXT},
        "start": {"type": "string", "format": "date-time", "x-ms-summary": "Start (UTC)"},
        "end": {"type": "string", "format": "date-time", "x-ms-summary": "End (UTC)"},
        "price": {"type": "number"},
        "priceType": {"type": "string", "enum": [str(p) for p in PriceType]},
    }


def _booking_invoicing_fields() -> dict[str, Any]:
    """A booking's state and what invoicing, reconcile or a person made of it."""
    return {
        "status": {"type": "string", "enum": STATES, "x-ms-summary": "Status"},
        "invoiceId": _nullable(_TEXT),
        "invoiceNumber": _nullable({**_TEXT, "x-ms-summary": "Invoice number"}),
        "errorCode": _nullable(
            {**_TEXT, "description": "Why invoicing failed: " + ", ".join(str(e) for e in ErrorCode)}
        ),
        "error": _nullable({**_TEXT, "description": "The failure in words."}),
        "updatedAt": _nullable({"type": "string", "format": "date-time"}),
        "invoiceStatus": _nullable(
            {
                **_TEXT,
                "description": "Business Central's status of the app's invoice (Draft, Open, "
                "Paid, Canceled, Corrective, ...), followed by reconcile_invoices.",
                "x-ms-summary": "Invoice status",
            }
        ),
        "invoiceSource": _nullable(
            {
                **_TEXT,
                "enum": [str(s) for s in InvoiceSource],
                "description": "app: an invoice this app created; manual: marked invoiced by hand.",
            }
        ),
        "note": _nullable({**_TEXT, "description": "Why a person or reconcile changed it."}),
        "updatedBy": _nullable(
            {**_ACTOR, "description": "The caller whose request last changed the booking, or null."}
        ),
        "groupAppointment": {
            "type": "boolean",
            "description": "One attendee of a group appointment (a class): each attendee is "
            "billed separately.",
            "x-ms-summary": "Group appointment",
        },
        **_booking_money_fields(),
    }


def _booking_money_fields() -> dict[str, Any]:
    """What the booking comes to, and its invoice in Business Central's web client."""
    return {
        "amount": {
            "type": "number",
            "description": "What the invoice line comes to by Bookings' prices (quantity x price; 0 "
            "where Business Central prices it), in the company's currency (GET /api/settings).",
            "x-ms-summary": "Amount",
        },
        "invoiceUrl": _nullable(
            {
                **_TEXT,
                "format": "uri",
                "description": "The app's invoice in Business Central's web client (Sales Invoice page "
                "43 for a draft, Posted Sales Invoice page 132 once posted), or null.",
                "x-ms-summary": "Invoice link",
            }
        ),
    }


def _booking_schema() -> dict[str, Any]:
    properties = {**_booking_appointment_fields(), **_booking_invoicing_fields()}
    return {
        "type": "object",
        "description": "A completed Bookings appointment and its invoicing state.",
        "required": list(properties),
        "properties": properties,
    }


def _booking_update_schema(max_selection: int) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["action", "bookingKeys"],
        "description": "A manual outcome for bookings: exclude (Unbilled/Failed -> Excluded), include "
        "(Excluded -> Unbilled), markInvoiced (Unbilled/Failed -> Invoiced, billed some other way).",
        "properties": {
            "action": {
                "type": "string",
                "enum": list(lifecycle.MANUAL_ACTIONS),
                "x-ms-summary": "Action",
            },
            "bookingKeys": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_selection,
                "items": {"type": "string", "pattern": KEY_PATTERN},
                "description": f"Booking keys, at most {max_selection} (MAX_SELECTION).",
                "x-ms-summary": "Booking keys",
            },
            "reference": {
                "type": "string",
                "x-nullable": True,
                "maxLength": 35,
                "description": "markInvoiced only: where it was billed (becomes invoiceNumber).",
                "x-ms-summary": "Reference",
            },
            "note": {"type": "string", "x-nullable": True, "maxLength": 500, "x-ms-summary": "Note"},
        },
    }


def _booking_update_result_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["updated", "skipped", "notFound"],
        "properties": {
            "updated": {"type": "array", "items": _TEXT, "description": "Keys of the bookings changed."},
            "skipped": {
                "type": "array",
                "items": _ref("SkippedBooking"),
                "description": "Bookings not in a state the action applies to, with their state.",
            },
            "notFound": {"type": "array", "items": _TEXT, "description": "Keys with no booking."},
        },
    }


def _booking_list_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["value", "continuationToken"],
        "properties": {
            "value": {"type": "array", "items": _ref("Booking")},
            "continuationToken": _nullable(
                {
                    **_TEXT,
                    "description": "Pass as continuationToken (same filters) for the next page; "
                    "null on the last page. A page may hold fewer than top items.",
                }
            ),
        },
    }


def _selection_filter_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "description": "Narrows an all-selection; every member is optional.",
        "properties": {
            "businessId": {**_TEXT, "description": "One configured Bookings business."},
            "customerEmail": {
                "type": "string",
                "format": "email",
                "description": "Only this customer's bookings (case-insensitive).",
            },
            "from": {
                "type": "string",
                "format": "date-time",
                "description": "Appointments starting at or after this moment (a date means midnight "
                "in BOOKINGS_TIME_ZONE).",
            },
            "to": {
                "type": "string",
                "format": "date-time",
                "description": "Appointments starting before this moment (exclusive).",
            },
        },
    }


def _invoice_request_schema(max_selection: int) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "description": f'Either {{"bookingKeys": [...]}} ({BY_KEY} bookings by key) or '
        f'{{"all": true, "filter": {{...}}}} (every {BY_FILTER} booking matching). Not both.',
        "properties": {
            "bookingKeys": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_selection,
                "items": {"type": "string", "pattern": KEY_PATTERN},
                "description": f"Booking keys, at most {max_selection} (MAX_SELECTION); "
                "duplicates count once.",
                "x-ms-summary": "Booking keys",
            },
            "all": {
                "type": "boolean",
                "enum": [True],
                "description": f"Select every {BY_FILTER} booking matching filter.",
                "x-ms-summary": "All unbilled",
            },
            "filter": _ref("SelectionFilter"),
        },
    }


def _skipped_booking_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["key", "status"],
        "properties": {
            "key": {"type": "string", "pattern": KEY_PATTERN},
            "status": {"type": "string", "enum": STATES, "description": "Its state now."},
            "reason": {**_TEXT, "description": "Present when it was selectable but could not be queued."},
        },
    }


def _invoice_request_accepted_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["requestId", "accepted", "skipped", "notFound"],
        "properties": {
            "requestId": {"type": "string", "format": "uuid"},
            "accepted": {
                "type": "integer",
                "minimum": 0,
                "description": "Bookings queued for invoicing.",
            },
            "skipped": {
                "type": "array",
                "items": _ref("SkippedBooking"),
                "description": "Selected bookings not queued (already Queued, Invoiced, ...).",
            },
            "notFound": {"type": "array", "items": _TEXT, "description": "Keys with no booking."},
        },
    }


def _request_item_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["key", "status", "invoiceNumber", "errorCode", "error"],
        "properties": {
            "key": {"type": "string", "pattern": KEY_PATTERN},
            "status": {
                "type": "string",
                "enum": [*STATES, "Missing"],
                "description": "The booking's state now (Missing: deleted from the table).",
            },
            "invoiceNumber": _nullable(_TEXT),
            "errorCode": _nullable(_TEXT),
            "error": _nullable(_TEXT),
            "businessId": {"type": "string"},
            "customerName": _nullable(_TEXT),
            "customerEmail": _nullable(_TEXT),
            "serviceName": _nullable(_TEXT),
            "start": {"type": "string", "format": "date-time", "description": "Appointment start (UTC)."},
        },
    }


def _invoice_request_status_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["requestId", "state", "total", "counts", "items"],
        "properties": {
            "requestId": {"type": "string", "format": "uuid"},
            "state": {
                "type": "string",
                "enum": ["Accepting", "Accepted"],
                "description": "Accepted once the submission was answered.",
            },
            "createdAt": _nullable({"type": "string", "format": "date-time"}),
            "requestedAt": _nullable({"type": "string", "format": "date-time"}),
            "requestedBy": _nullable({**_ACTOR, "description": "The caller who made the request."}),
            "selection": {"type": "object", "description": "What was selected (mode, filter)."},
            "total": {"type": "integer", "minimum": 0},
            "counts": {
                "type": "object",
                "additionalProperties": {"type": "integer", "minimum": 0},
                "description": "Accepted bookings per state.",
            },
            "items": {"type": "array", "items": _ref("RequestItem")},
        },
    }


def _health_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["status", "checks"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "unhealthy"]},
            "checks": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["ok", "detail"],
                    "properties": {"ok": {"type": "boolean"}, "detail": _TEXT},
                },
            },
            "failing": {"type": "array", "items": _TEXT},
        },
    }


def _problem_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "RFC 9457 problem details.",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": _TEXT,
            "title": _TEXT,
            "status": {"type": "integer"},
            "detail": _TEXT,
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field", "detail"],
                    "properties": {"field": _TEXT, "detail": _TEXT},
                },
            },
            "incidentId": _TEXT,
            "requestId": _TEXT,
        },
    }


def _definitions(max_selection: int) -> dict[str, Any]:
    return {
        "Booking": _booking_schema(),
        "BookingUpdate": _booking_update_schema(max_selection),
        "BookingUpdateResult": _booking_update_result_schema(),
        "BookingList": _booking_list_schema(),
        "SelectionFilter": _selection_filter_schema(),
        "InvoiceRequest": _invoice_request_schema(max_selection),
        "SkippedBooking": _skipped_booking_schema(),
        "InvoiceRequestAccepted": _invoice_request_accepted_schema(),
        "RequestItem": _request_item_schema(),
        "InvoiceRequestStatus": _invoice_request_status_schema(),
        "Health": _health_schema(),
        "Problem": _problem_schema(),
    }


def _query(name: str, kind: str, details: dict[str, Any]) -> dict[str, Any]:
    """An optional query parameter of the list (an empty value counts as absent)."""
    return {"name": name, "in": "query", "allowEmptyValue": True, "type": kind, **details}


def _who_parameters() -> list[dict[str, Any]]:
    """Which bookings: by state, business and customer."""
    return [
        _query("status", "string", {"enum": STATES, "default": BY_FILTER, "x-ms-summary": "Status"}),
        _query(
            "businessId",
            "string",
            {"description": "One configured Bookings business.", "x-ms-summary": "Business"},
        ),
        _query(
            "customerEmail",
            "string",
            {
                "format": "email",
                "description": "Only this customer's bookings (case-insensitive).",
                "x-ms-summary": "Customer email",
            },
        ),
        _query(
            "customerName",
            "string",
            {
                "maxLength": 100,
                "description": "Only customers whose name starts with this (case-insensitive).",
                "x-ms-summary": "Customer name starts with",
            },
        ),
    ]


def _when_parameters() -> list[dict[str, Any]]:
    """When, and the Business Central status of the invoice."""
    return [
        _query(
            "from",
            "string",
            {
                "format": "date-time",
                "description": "Start at or after (a date means midnight in BOOKINGS_TIME_ZONE).",
                "x-ms-summary": "From",
            },
        ),
        _query(
            "to",
            "string",
            {"format": "date-time", "description": "Start before (exclusive).", "x-ms-summary": "To"},
        ),
        _query(
            "invoiceStatus",
            "string",
            {
                "enum": list(INVOICE_STATUSES),
                "description": "Business Central status of the booking's invoice.",
                "x-ms-summary": "Invoice status",
            },
        ),
    ]


def _paging_parameters() -> list[dict[str, Any]]:
    """One page at a time."""
    return [
        _query(
            "top",
            "integer",
            {"minimum": 1, "maximum": MAX_TOP, "default": DEFAULT_TOP, "x-ms-summary": "Page size"},
        ),
        _query(
            "continuationToken",
            "string",
            {"description": "From the previous page, with the same filters.", "x-ms-visibility": "advanced"},
        ),
    ]


def _list_parameters() -> list[dict[str, Any]]:
    return [*_who_parameters(), *_when_parameters(), *_paging_parameters()]


def _bookings_path() -> dict[str, Any]:
    return {
        "get": {
            "operationId": "list_bookings",
            "summary": "List bookings",
            "description": "Bookings of the configured businesses, filtered, one page at a time.",
            "parameters": _list_parameters(),
            "responses": {
                "200": {"description": "A page of bookings.", "schema": _ref("BookingList")},
                **_ERRORS,
            },
        }
    }


def _bookings_key_path() -> dict[str, Any]:
    return {
        "get": {
            "operationId": "get_booking",
            "summary": "Get a booking",
            "parameters": [
                {
                    "name": "key",
                    "in": "path",
                    "required": True,
                    "type": "string",
                    "x-ms-summary": "Booking key",
                }
            ],
            "responses": {
                "200": {"description": "The booking.", "schema": _ref("Booking")},
                "404": _problem("No booking has this key (or it is not a well-formed key)."),
                **_ERRORS,
            },
        }
    }


def _booking_updates_path() -> dict[str, Any]:
    return {
        "post": {
            "operationId": "update_bookings",
            "summary": "Exclude, include or mark bookings invoiced",
            "description": "Each booking changes alone, by a conditional write: one claimed meanwhile "
            "is reported in skipped with its state. Who and when are recorded on the booking.",
            "consumes": ["application/json"],
            "parameters": [{"name": "body", "in": "body", "required": True, "schema": _ref("BookingUpdate")}],
            "responses": {
                "200": {"description": "What changed.", "schema": _ref("BookingUpdateResult")},
                **_ERRORS,
            },
        }
    }


def _invoice_requests_path() -> dict[str, Any]:
    return {
        "post": {
            "operationId": "submit_invoice_requests",
            "summary": "Invoice bookings",
            "description": "Claims each selected booking and queues one draft invoice per booking.",
            "consumes": ["application/json"],
            "parameters": [
                {"name": "body", "in": "body", "required": True, "schema": _ref("InvoiceRequest")}
            ],
            "responses": {
                "202": {
                    "description": "Accepted; follow Location for progress.",
                    "schema": _ref("InvoiceRequestAccepted"),
                    "headers": {"Location": {"type": "string", "description": "The request's status URL."}},
                },
                **_ERRORS,
            },
        }
    }


def _invoice_requests_request_id_path() -> dict[str, Any]:
    return {
        "get": {
            "operationId": "get_invoice_request",
            "summary": "Get an invoice request's progress",
            "parameters": [
                {
                    "name": "requestId",
                    "in": "path",
                    "required": True,
                    "type": "string",
                    "x-ms-summary": "Request id",
                }
            ],
            "responses": {
                "200": {
                    "description": "Counts per state and each booking.",
                    "schema": _ref("InvoiceRequestStatus"),
                },
                "404": _problem("No request has this id."),
                **_ERRORS,
            },
        }
    }


def _health_path() -> dict[str, Any]:
    return {
        "get": {
            "operationId": "health",
            "summary": "Health",
            "description": "Settings valid and storage reachable (200), else 503 naming what failed.",
            "security": [],
            "responses": {
                "200": {"description": "Healthy.", "schema": _ref("Health")},
                "503": {"description": "A check failed.", "schema": _ref("Health")},
            },
        }
    }


def _openapi_json_path() -> dict[str, Any]:
    return {
        "get": {
            "operationId": "openapi",
            "summary": "This API description (Swagger 2.0)",
            "x-ms-visibility": "internal",
            "security": [],
            "responses": {
                "200": {"description": "The document.", "schema": {"type": "object"}},
            },
        }
    }


def _paths() -> dict[str, Any]:
    return {
        "/bookings": _bookings_path(),
        "/bookings/{key}": _bookings_key_path(),
        "/booking-updates": _booking_updates_path(),
        "/invoice-requests": _invoice_requests_path(),
        "/invoice-requests/{requestId}": _invoice_requests_request_id_path(),
        "/health": _health_path(),
        "/openapi.json": _openapi_json_path(),
    }


def _with_portal_paths(paths: dict[str, Any]) -> dict[str, Any]:
    """The routes the portal added; the count takes the list's filters (not its paging)."""
    listing = paths["/bookings"]["get"]
    errors = {code: listing["responses"][code] for code in ("400", "401", "403", "500", "503")}
    filters = [
        p for p in listing["parameters"] if p["name"] not in ("top", "continuationToken", "customerName")
    ]
    every_page = [p for p in listing["parameters"] if p["name"] not in ("top", "continuationToken")]
    return {**paths, **portal_paths(errors, filters, every_page)}


def build_document(
    *, host: str | None = None, scheme: str | None = None, max_selection: int | None = None
) -> dict[str, Any]:
    """The Swagger 2.0 document. Without arguments: the connector's version (placeholder host)."""
    return {
        "swagger": "2.0",
        "info": {
            "title": "Bookings bulk invoicing",
            "version": API_VERSION,
            "description": "Select completed Microsoft Bookings appointments and create one draft "
            "Business Central sales invoice per booking.",
        },
        "host": host or DEFAULT_HOST,
        "basePath": "/api",
        "schemes": [scheme or "https"],
        "consumes": ["application/json"],
        "produces": ["application/json", "application/problem+json"],
        # OAuth 2.0 with Microsoft Entra ID: what a Power Platform custom connector with the `aad`
        # identity provider expects (infra/connector/apiProperties.json holds the app registration).
        "securityDefinitions": {
            SECURITY_SCHEME: {
                "type": "oauth2",
                "flow": "accessCode",
                "authorizationUrl": "https://login.microsoftonline.com/common/oauth2/authorize",
                "tokenUrl": "https://login.microsoftonline.com/common/oauth2/authorize",
                "scopes": {},
                "description": "Microsoft Entra ID. Callers need the app role Bookings.Read (GET) or "
                "Bookings.Invoice (POST) of the app registration.",
            }
        },
        "security": [{SECURITY_SCHEME: []}],
        "paths": _with_portal_paths(_paths()),
        "definitions": {**_definitions(max_selection or DEFAULT_MAX_SELECTION), **portal_definitions()},
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the API's Swagger 2.0 document.")
    parser.add_argument("--host", help=f"the Function App's host name (default {DEFAULT_HOST})")
    args = parser.parse_args(argv)
    sys.stdout.write(render(build_document(host=args.host)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
