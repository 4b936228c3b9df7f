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


def _definitions(max_selection: int) -> dict[str, Any]:
    text = {"type": "string"}
    return {
        "Booking": {
            "type": "object",
            "description": "A completed Bookings appointment and its invoicing state.",
            "required": [
                "key",
                "businessId",
                "appointmentId",
                "serviceId",
                "serviceName",
                "customerName",
                "customerEmail",
                "staffMemberIds",
                "start",
                "end",
                "price",
                "priceType",
                "status",
                "invoiceId",
                "invoiceNumber",
                "errorCode",
                "error",
                "updatedAt",
                "invoiceStatus",
                "invoiceSource",
                "note",
                "updatedBy",
                "groupAppointment",
            ],
            "properties": {
                "key": {
                    "type": "string",
                    "pattern": KEY_PATTERN,
                    "description": "Booking key (26 characters A-Z, 2-7); BKG-<key> is the invoice's "
                    "external document number.",
                    "x-ms-summary": "Booking key",
                },
                "businessId": {**text, "description": "Bookings business (mailbox SMTP address)."},
                "appointmentId": {**text, "description": "Graph appointment id."},
                "serviceId": text,
                "serviceName": {**text, "x-ms-summary": "Service"},
                "customerName": _nullable({**text, "x-ms-summary": "Customer"}),
                "customerEmail": _nullable({**text, "x-ms-summary": "Customer email"}),
                "staffMemberIds": {"type": "array", "items": text},
                "start": {"type": "string", "format": "date-time", "x-ms-summary": "Start (UTC)"},
                "end": {"type": "string", "format": "date-time", "x-ms-summary": "End (UTC)"},
                "price": {"type": "number"},
                "priceType": {"type": "string", "enum": [str(p) for p in PriceType]},
                "status": {"type": "string", "enum": STATES, "x-ms-summary": "Status"},
                "invoiceId": _nullable(text),
                "invoiceNumber": _nullable({**text, "x-ms-summary": "Invoice number"}),
                "errorCode": _nullable(
                    {**text, "description": "Why invoicing failed: " + ", ".join(str(e) for e in ErrorCode)}
                ),
                "error": _nullable({**text, "description": "The failure in words."}),
                "updatedAt": _nullable({"type": "string", "format": "date-time"}),
                "invoiceStatus": _nullable(
                    {
                        **text,
                        "description": "Business Central's status of the app's invoice (Draft, Open, "
                        "Paid, Canceled, Corrective, ...), followed by reconcile_invoices.",
                        "x-ms-summary": "Invoice status",
                    }
                ),
                "invoiceSource": _nullable(
                    {
                        **text,
                        "enum": [str(s) for s in InvoiceSource],
                        "description": "app: an invoice this app created; manual: marked invoiced by hand.",
                    }
                ),
                "note": _nullable({**text, "description": "Why a person or reconcile changed it."}),
                "updatedBy": _nullable(
                    {**_ACTOR, "description": "The caller whose request last changed the booking, or null."}
                ),
                "groupAppointment": {
                    "type": "boolean",
                    "description": "One attendee of a group appointment (a class): each attendee is "
                    "billed separately.",
                    "x-ms-summary": "Group appointment",
                },
            },
        },
        "BookingUpdate": {
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
        },
        "BookingUpdateResult": {
            "type": "object",
            "required": ["updated", "skipped", "notFound"],
            "properties": {
                "updated": {"type": "array", "items": text, "description": "Keys of the bookings changed."},
                "skipped": {
                    "type": "array",
                    "items": _ref("SkippedBooking"),
                    "description": "Bookings not in a state the action applies to, with their state.",
                },
                "notFound": {"type": "array", "items": text, "description": "Keys with no booking."},
            },
        },
        "BookingList": {
            "type": "object",
            "required": ["value", "continuationToken"],
            "properties": {
                "value": {"type": "array", "items": _ref("Booking")},
                "continuationToken": _nullable(
                    {
                        **text,
                        "description": "Pass as continuationToken (same filters) for the next page; "
                        "null on the last page. A page may hold fewer than top items.",
                    }
                ),
            },
        },
        "SelectionFilter": {
            "type": "object",
            "additionalProperties": False,
            "description": "Narrows an all-selection; every member is optional.",
            "properties": {
                "businessId": {**text, "description": "One configured Bookings business."},
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
        },
        "InvoiceRequest": {
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
        },
        "SkippedBooking": {
            "type": "object",
            "required": ["key", "status"],
            "properties": {
                "key": {"type": "string", "pattern": KEY_PATTERN},
                "status": {"type": "string", "enum": STATES, "description": "Its state now."},
                "reason": {**text, "description": "Present when it was selectable but could not be queued."},
            },
        },
        "InvoiceRequestAccepted": {
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
                "notFound": {"type": "array", "items": text, "description": "Keys with no booking."},
            },
        },
        "RequestItem": {
            "type": "object",
            "required": ["key", "status", "invoiceNumber", "errorCode", "error"],
            "properties": {
                "key": {"type": "string", "pattern": KEY_PATTERN},
                "status": {
                    "type": "string",
                    "enum": [*STATES, "Missing"],
                    "description": "The booking's state now (Missing: deleted from the table).",
                },
                "invoiceNumber": _nullable(text),
                "errorCode": _nullable(text),
                "error": _nullable(text),
            },
        },
        "InvoiceRequestStatus": {
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
        },
        "Health": {
            "type": "object",
            "required": ["status", "checks"],
            "properties": {
                "status": {"type": "string", "enum": ["ok", "unhealthy"]},
                "checks": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["ok", "detail"],
                        "properties": {"ok": {"type": "boolean"}, "detail": text},
                    },
                },
                "failing": {"type": "array", "items": text},
            },
        },
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details.",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": text,
                "title": text,
                "status": {"type": "integer"},
                "detail": text,
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["field", "detail"],
                        "properties": {"field": text, "detail": text},
                    },
                },
                "incidentId": text,
                "requestId": text,
            },
        },
    }


def _paths() -> dict[str, Any]:
    errors = {
        "400": _BAD_REQUEST,
        "401": _UNAUTHORIZED,
        "403": _FORBIDDEN,
        "500": _INTERNAL,
        "503": _UNAVAILABLE,
    }
    return {
        "/bookings": {
            "get": {
                "operationId": "list_bookings",
                "summary": "List bookings",
                "description": "Bookings of the configured businesses, filtered, one page at a time.",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "allowEmptyValue": True,
                        "type": "string",
                        "enum": STATES,
                        "default": BY_FILTER,
                        "x-ms-summary": "Status",
                    },
                    {
                        "name": "businessId",
                        "in": "query",
                        "allowEmptyValue": True,
                        "type": "string",
                        "description": "One configured Bookings business.",
                        "x-ms-summary": "Business",
                    },
                    {
                        "name": "customerEmail",
                        "in": "query",
                        "allowEmptyValue": True,
                        "type": "string",
                        "format": "email",
                        "description": "Only this customer's bookings (case-insensitive).",
                        "x-ms-summary": "Customer email",
                    },
                    {
                        "name": "customerName",
                        "in": "query",
                        "allowEmptyValue": True,
                        "type": "string",
                        "maxLength": 100,
                        "description": "Only customers whose name starts with this (case-insensitive).",
                        "x-ms-summary": "Customer name starts with",
                    },
                    {
                        "name": "from",
                        "in": "query",
                        "allowEmptyValue": True,
                        "type": "string",
                        "format": "date-time",
                        "description": "Start at or after (a date means midnight in BOOKINGS_TIME_ZONE).",
                        "x-ms-summary": "From",
                    },
                    {
                        "name": "to",
                        "in": "query",
                        "allowEmptyValue": True,
                        "type": "string",
                        "format": "date-time",
                        "description": "Start before (exclusive).",
                        "x-ms-summary": "To",
                    },
                    {
                        "name": "invoiceStatus",
                        "in": "query",
                        "allowEmptyValue": True,
                        "type": "string",
                        "enum": list(INVOICE_STATUSES),
                        "description": "Business Central status of the booking's invoice.",
                        "x-ms-summary": "Invoice status",
                    },
                    {
                        "name": "top",
                        "in": "query",
                        "allowEmptyValue": True,
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_TOP,
                        "default": DEFAULT_TOP,
                        "x-ms-summary": "Page size",
                    },
                    {
                        "name": "continuationToken",
                        "in": "query",
                        "allowEmptyValue": True,
                        "type": "string",
                        "description": "From the previous page, with the same filters.",
                        "x-ms-visibility": "advanced",
                    },
                ],
                "responses": {
                    "200": {"description": "A page of bookings.", "schema": _ref("BookingList")},
                    **errors,
                },
            }
        },
        "/bookings/{key}": {
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
                    **errors,
                },
            }
        },
        "/booking-updates": {
            "post": {
                "operationId": "update_bookings",
                "summary": "Exclude, include or mark bookings invoiced",
                "description": "Each booking changes alone, by a conditional write: one claimed meanwhile "
                "is reported in skipped with its state. Who and when are recorded on the booking.",
                "consumes": ["application/json"],
                "parameters": [
                    {"name": "body", "in": "body", "required": True, "schema": _ref("BookingUpdate")}
                ],
                "responses": {
                    "200": {"description": "What changed.", "schema": _ref("BookingUpdateResult")},
                    **errors,
                },
            }
        },
        "/invoice-requests": {
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
                        "headers": {
                            "Location": {"type": "string", "description": "The request's status URL."}
                        },
                    },
                    **errors,
                },
            }
        },
        "/invoice-requests/{requestId}": {
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
                    **errors,
                },
            }
        },
        "/health": {
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
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This API description (Swagger 2.0)",
                "x-ms-visibility": "internal",
                "security": [],
                "responses": {
                    "200": {"description": "The document.", "schema": {"type": "object"}},
                },
            }
        },
    }


def _with_portal_paths(paths: dict[str, Any]) -> dict[str, Any]:
    """The routes the portal added; the count takes the list's filters (not its paging)."""
    listing = paths["/bookings"]["get"]
    errors = {code: listing["responses"][code] for code in ("400", "401", "403", "500", "503")}
    filters = [
        p for p in listing["parameters"] if p["name"] not in ("top", "continuationToken", "customerName")
    ]
    return {**paths, **portal_paths(errors, filters)}


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
