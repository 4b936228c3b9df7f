"""The OpenAPI (Swagger 2.0) part of the routes the portal added: `get_me`, `get_settings`, `setup_check`,
`count_bookings`, `get_booking_totals`, `export_bookings`.

Merged into the API's document by `shared/api/openapi.py`. The portal page itself (`GET /`) is a
web page, not an API operation, and is not described.
"""

from __future__ import annotations

from typing import Any

_HEALTH_CHECKS = {"type": "object", "additionalProperties": {"type": "object"}}
_STRINGS = {"type": "array", "items": {"type": "string"}}
_LIFECYCLE = {
    "states": {**_STRINGS, "description": "Every booking state, in the order the portal lists them."},
    "inFlightStates": {**_STRINGS, "description": "States a queue message still owns (not done yet)."},
    "selectAll": {
        "type": "object",
        "description": 'What `{"all": true}` selects: the one state and the filter fields it takes.',
        "properties": {"status": {"type": "string"}, "filters": _STRINGS},
    },
}


def _settings_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "What the deployment is configured to do. Never a secret.",
        "properties": {
            "businesses": {"type": "array", "items": {"type": "string"}},
            "timeZone": {"type": "string"},
            "syncSchedule": {"type": "string"},
            "syncLookbackDays": {"type": "integer"},
            "reconcileSchedule": {"type": "string"},
            "retentionDays": {"type": "integer"},
            "syncCustomers": {"type": "boolean"},
            "syncServices": {"type": "boolean"},
            "customerTemplate": {"type": "string", "x-nullable": True},
            "itemTemplate": {"type": "string", "x-nullable": True},
            "invoiceDate": {"type": "string", "enum": ["appointment", "today"]},
            "maxSelection": {"type": "integer"},
            "priceSource": {"type": "string", "enum": ["bookings", "businessCentral"]},
            "businessNames": {
                "type": "object",
                "description": "Each Bookings business's display name by id (the ones Graph told).",
                "additionalProperties": {"type": "string"},
            },
            "businessCentral": {
                "type": "object",
                "properties": {
                    "environment": {"type": "string"},
                    "companyId": {"type": "string"},
                    "companyName": {"type": "string", "x-nullable": True},
                    "companyDisplayName": {"type": "string", "x-nullable": True},
                    "currencyCode": {"type": "string", "x-nullable": True},
                    "webClientUrl": {"type": "string", "format": "uri"},
                },
            },
            "health": {
                "type": "object",
                "properties": {"status": {"type": "string"}, "checks": _HEALTH_CHECKS},
            },
            "caller": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "name": {"type": "string"},
                    "roles": {"type": "array", "items": {"type": "string"}},
                },
            },
            **_LIFECYCLE,
        },
    }


def _me_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "The signed-in caller as the app sees it (from App Service Authentication).",
        "required": ["name", "id", "roles", "identityProvider"],
        "properties": {
            "name": {"type": "string", "description": "Display name (an application: its app id)."},
            "id": {"type": "string", "description": "Object id in Microsoft Entra ID."},
            "roles": {
                "type": "array",
                "items": {"type": "string"},
                "description": "App roles held: Bookings.Read, Bookings.Invoice (none is possible).",
            },
            "identityProvider": {"type": "string", "description": "`aad`."},
        },
    }


def _setup_check_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "Live checks of the tenant's setup, failed first; reused for 60 s. No secrets.",
        "required": ["checkedAt", "checks"],
        "properties": {
            "checkedAt": {"type": "string", "format": "date-time"},
            "checks": {"type": "array", "items": {"$ref": "#/definitions/SetupCheckItem"}},
        },
    }


def _setup_check_item_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["name", "status", "detail", "fix"],
        "properties": {
            "name": {
                "type": "string",
                "description": "settings, storage, graph-token, graph-business:<businessId>, bc-token, "
                "bc-company, bc-customer-template, bc-item-template, app-authentication, "
                "poison-queue, last-sync or last-reconcile.",
            },
            "status": {"type": "string", "enum": ["ok", "warning", "failed", "skipped"]},
            "detail": {"type": "string", "description": "What was found."},
            "fix": {
                "type": "string",
                "description": "What an administrator does about it (empty when ok).",
            },
        },
    }


def _booking_count_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["count", "exceedsLimit", "limit"],
        "properties": {
            "count": {"type": "integer", "description": "Matches, counted up to `limit`."},
            "exceedsLimit": {"type": "boolean", "description": "More match than one request may select."},
            "limit": {"type": "integer", "description": "MAX_SELECTION."},
        },
    }


def _booking_totals_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["count", "amount", "currencyCode"],
        "properties": {
            "count": {"type": "integer", "description": "Every booking the filter matches, all pages."},
            "amount": {"type": "number", "description": "What they come to by Bookings' prices."},
            "currencyCode": {
                "type": "string",
                "x-nullable": True,
                "description": "The company's currency (Business Central companyInformation), or null.",
            },
        },
    }


def portal_definitions() -> dict[str, Any]:
    return {
        "BookingTotals": _booking_totals_schema(),
        "Settings": _settings_schema(),
        "Me": _me_schema(),
        "SetupCheck": _setup_check_schema(),
        "SetupCheckItem": _setup_check_item_schema(),
        "BookingCount": _booking_count_schema(),
    }


def _export_path(errors: dict[str, Any], parameters: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "get": {
            "operationId": "export_bookings",
            "summary": "Export bookings as CSV",
            "description": "Every booking the list's filter matches (all pages), newest first, as "
            "CSV: UTF-8 with a byte order mark, amounts in the company's currency, invoice links. "
            "Cells that a spreadsheet would run as a formula are prefixed with an apostrophe.",
            "x-ms-visibility": "advanced",
            "produces": ["text/csv"],
            "parameters": parameters,
            "responses": {
                "200": {"description": "The CSV file.", "schema": {"type": "string", "format": "binary"}},
                **errors,
            },
        }
    }


def portal_paths(
    errors: dict[str, Any], filter_parameters: list[dict[str, Any]], list_filters: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "/booking-totals": _read_path(
            errors,
            "get_booking_totals",
            "Booking totals",
            "How many bookings the list's filter matches and what they come to, over every page, "
            "in the company's currency.",
            ("The totals.", "BookingTotals"),
            list_filters,
        ),
        "/booking-export": _export_path(errors, list_filters),
        "/me": _me_path(errors),
        "/settings": _read_path(
            errors,
            "get_settings",
            "Settings",
            "Businesses, schedules, templates, time zone, invoice date rule and health "
            "of this deployment (for the portal's settings view). No secrets.",
            ("The settings.", "Settings"),
        ),
        "/setup-check": _read_path(
            errors,
            "setup_check",
            "Setup check",
            "Checks the live connections like the original's setup page: settings, "
            "storage, Entra tokens for Graph and Business Central, each Bookings business, the "
            "Business Central company and templates, App Service Authentication, poison messages and "
            "the last sync and reconcile. Each check has a status, a detail and a fix. Results are "
            "reused for 60 s; read-only against Graph and Business Central.",
            ("The checks.", "SetupCheck"),
        ),
        "/booking-count": _read_path(
            errors,
            "count_bookings",
            "Count bookings",
            "How many bookings the filter matches (up to MAX_SELECTION): what an "
            '`{"all": true, "filter": ...}` selection would take.',
            ("The count.", "BookingCount"),
            filter_parameters,
        ),
    }


def _read_path(
    errors: dict[str, Any],
    operation_id: str,
    summary: str,
    description: str,
    answer: tuple[str, str],
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A GET for the portal (advanced in the connector), answering one definition or an error."""
    text, definition = answer
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "description": description,
        "x-ms-visibility": "advanced",
    }
    if parameters is not None:
        operation["parameters"] = parameters
    operation["responses"] = {
        "200": {"description": text, "schema": {"$ref": f"#/definitions/{definition}"}},
        **errors,
    }
    return {"get": operation}


def _me_path(errors: dict[str, Any]) -> dict[str, Any]:
    return {
        "get": {
            "operationId": "get_me",
            "summary": "Who am I",
            "description": "The signed-in caller and its app roles. Any signed-in caller, no role "
            "needed: the portal tells a user without Bookings.Read to ask for it.",
            "x-ms-visibility": "advanced",
            "responses": {
                "200": {"description": "The caller.", "schema": {"$ref": "#/definitions/Me"}},
                "401": errors["401"],
                "500": errors["500"],
                "503": {
                    "description": "Running in Azure without App Service Authentication: no "
                    "caller can be identified.",
                    "schema": {"$ref": "#/definitions/Problem"},
                },
            },
        }
    }
