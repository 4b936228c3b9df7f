"""The HTTP API (route prefix /api): list, look up, select, follow a request.

Callers are authenticated by the platform (App Service Authentication; devhost locally), so the
functions are anonymous at the host level; each one checks the caller and its app role itself
(`_caller`): `Bookings.Read` for GETs, `Bookings.Invoice` for POSTs, 401/403/503 otherwise.
`get_me` needs a caller but no role; `health` and `openapi` need no caller.

Each function parses its input, calls one use case from `shared` and shapes the answer. Errors are
RFC 9457 problem documents: 400 for input a person can fix (with `detail` and `errors`), 404 for
unknown ids, 503 with `Retry-After` when settings, the queue or storage make the app unusable for
now (storage faults are retried first: `shared/adapters/storage_retry.py`), and 500 with an `incidentId`
(also logged with the stack trace) for anything unexpected - never a stack trace in the body.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from typing import Any

import azure.functions as func

from functions.api_blueprint import ApiBlueprint
from functions.responses import json_response, problem
from shared import bootstrap
from shared.api.auth import ROLE_INVOICE, ROLE_READ, Caller, Refusal, authorize, identify, me_document
from shared.api.input import InvalidInput, parse_json_object
from shared.api.list_query import parse_list_query, read_page
from shared.api.openapi import build_document
from shared.api.selection_input import parse_selection
from shared.api.update_input import parse_update
from shared.api.views import booking_view, field_error_view, request_status_view, selection_view, update_view
from shared.bootstrap import Container
from shared.domain.errors import SelectionTooLargeError, StorageUnavailableError
from shared.services.health import check_health
from shared.services.selection import QueueUnavailableError
from shared.settings import SettingsError
from shared.telemetry import TraceParent, current_traceparent, get_logger, log_fields

bp = ApiBlueprint()  # routes under /api (host.json routePrefix is "", for the portal at /)
log = get_logger("bookings.http_api")

_HOST = re.compile(r"^[A-Za-z0-9.\-]{1,253}(:\d{1,5})?$")


def _caller(req: func.HttpRequest, function: str, role: str | None) -> Caller | func.HttpResponse:
    """The request's caller if it holds `role` (any caller for None); else the problem to answer with."""
    environ = os.environ
    decision = identify(req.headers, environ) if role is None else authorize(req.headers, role, environ)
    if isinstance(decision, Refusal):
        log.info(
            "Refused a %s request (%d): %s",
            function,
            decision.status,
            decision.title,
            extra={"outcome": "unauthorized" if decision.status == 401 else "forbidden"},
        )
        response = problem(decision.status, decision.title, decision.detail)
        if decision.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="bookings-invoicing"'
        return response
    return decision


def _answer(
    function: str, handler: Callable[[Container], func.HttpResponse], caller: Caller | None = None
) -> func.HttpResponse:
    """Run a handler with the app's container and turn every failure into a problem document.

    Every log line of the handler carries the caller's object id (`callerId`).
    """
    try:
        with log_fields(callerId=caller.id if caller else None):
            try:
                return handler(bootstrap.container())
            except SelectionTooLargeError as exc:
                raise InvalidInput.field(
                    "filter",
                    f"matches more than {exc.limit:,} Unbilled bookings, the most one request "
                    "may select (setting MAX_SELECTION). Narrow it with businessId, customerEmail or "
                    "from/to, and send several requests.",
                ) from None
    except InvalidInput as exc:
        return _rejected(function, exc)
    except SettingsError as exc:
        return problem(
            503,
            "Service misconfigured",
            f"The app cannot serve requests until an administrator fixes a setting: {exc}",
        )
    except QueueUnavailableError as exc:
        return _queue_unavailable(exc)
    except StorageUnavailableError as exc:
        return _storage_unavailable(function, exc)
    except Exception as exc:
        return _incident(function, exc)


def _rejected(function: str, exc: InvalidInput) -> func.HttpResponse:
    fields = [error.field for error in exc.errors]
    # Field names only: the detail may quote what the caller sent (emails, keys).
    log.info(
        "Rejected a %s request (400): %s",
        function,
        ", ".join(fields) or "body",
        extra={"outcome": "rejected"},
    )
    extensions: dict[str, Any] = {}
    if exc.errors:
        extensions["errors"] = [field_error_view(error) for error in exc.errors]
    return problem(400, "Bad request", exc.detail, **extensions)


def _queue_unavailable(exc: QueueUnavailableError) -> func.HttpResponse:
    log.error(
        "Invoice request %s: the queue refused every message (%s); all claims were undone",
        exc.request_id,
        exc.cause,
        extra={"requestId": exc.request_id, "outcome": "queue_unavailable", "errorCode": exc.cause},
    )
    return problem(
        503,
        "Queue unavailable",
        "No booking could be put on the invoicing queue, so nothing was queued and every "
        "selected booking keeps its previous state. Send the same request again in a minute.",
        retry_after=60,
        requestId=exc.request_id,
    )


STORAGE_RETRY_AFTER = 30
"""Seconds a caller is asked to wait after storage stayed unavailable through every retry."""


def _storage_unavailable(function: str, exc: StorageUnavailableError) -> func.HttpResponse:
    """Storage kept failing after the retries: 503, never 500. A selection has undone its claims."""
    log.error(
        "%s: storage unavailable (%s failed %d time(s), last with %s)",
        function,
        exc.what,
        exc.attempts,
        exc.cause,
        extra={"outcome": "storage_unavailable", "errorCode": "StorageUnavailable"},
    )
    return problem(
        503,
        "Storage unavailable",
        "The app's storage did not answer, even after retrying. Bookings this request had claimed "
        "were put back (any that could not be are queued by the next recovery pass). Send the same "
        "request again shortly.",
        retry_after=STORAGE_RETRY_AFTER,
    )


def _incident(function: str, exc: Exception) -> func.HttpResponse:
    incident = str(uuid.uuid4())
    log.exception(
        "Unexpected failure in %s (incident %s)",
        function,
        incident,
        extra={"incidentId": incident, "outcome": "error", "errorCode": type(exc).__name__},
    )
    return problem(
        500,
        "Internal error",
        f"The request failed unexpectedly. Report incident {incident} to the administrator; "
        "its details are in the app's log.",
        incidentId=incident,
    )


@bp.function_name("list_bookings")
@bp.route(route="bookings", methods=["GET"])
def list_bookings(req: func.HttpRequest) -> func.HttpResponse:
    caller = _caller(req, "list_bookings", ROLE_READ)
    if not isinstance(caller, Caller):
        return caller

    def handle(c: Container) -> func.HttpResponse:
        query = parse_list_query(dict(req.params), c.settings.bookings_business_ids, c.settings.time_zone)
        items, token = read_page(c.booking_queries, c.continuation_tokens, query)
        links = c.invoice_links()
        return json_response({"value": [booking_view(b, links) for b in items], "continuationToken": token})

    return _answer("list_bookings", handle, caller)


@bp.function_name("get_booking")
@bp.route(route="bookings/{key}", methods=["GET"])
def get_booking(req: func.HttpRequest) -> func.HttpResponse:
    caller = _caller(req, "get_booking", ROLE_READ)
    if not isinstance(caller, Caller):
        return caller
    key = req.route_params.get("key", "")

    def handle(c: Container) -> func.HttpResponse:
        booking = c.booking_queries.get(key)
        if booking is None:
            return problem(404, "Not found", f"There is no booking with key {key[:40]!r}.")
        return json_response(booking_view(booking, c.invoice_links()))

    return _answer("get_booking", handle, caller)


@bp.function_name("submit_invoice_requests")
@bp.route(route="invoice-requests", methods=["POST"])
def submit_invoice_requests(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    caller = _caller(req, "submit_invoice_requests", ROLE_INVOICE)
    if not isinstance(caller, Caller):
        return caller
    trace = getattr(context, "trace_context", None)
    span = TraceParent.parse(getattr(trace, "trace_parent", None))

    def handle(c: Container) -> func.HttpResponse:
        document = parse_json_object(req.get_body(), req.headers.get("content-type"))
        selection = parse_selection(
            document,
            max_selection=c.settings.max_selection,
            business_ids=c.settings.bookings_business_ids,
            zone=c.settings.time_zone,
        )
        # The invocation's span is the parent of every invoice's span (carried in each message).
        with log_fields(traceId=span.trace_id if span else None, spanId=span.span_id if span else None):
            result = c.selection.submit(
                selection,
                requested_by=caller.actor,
                traceparent=span.header if span else current_traceparent(),
                tracestate=getattr(trace, "trace_state", None) or None,
            )
        return json_response(
            selection_view(result),
            status=202,
            headers={"Location": f"/api/invoice-requests/{result.request_id}"},
        )

    return _answer("submit_invoice_requests", handle, caller)


@bp.function_name("get_invoice_request")
@bp.route(route="invoice-requests/{requestId}", methods=["GET"])
def get_invoice_request(req: func.HttpRequest) -> func.HttpResponse:
    caller = _caller(req, "get_invoice_request", ROLE_READ)
    if not isinstance(caller, Caller):
        return caller
    request_id = req.route_params.get("requestId", "")

    def handle(c: Container) -> func.HttpResponse:
        status = c.request_status.read(request_id)
        if status is None:
            return problem(404, "Not found", f"There is no invoice request {request_id[:40]!r}.")
        return json_response(request_status_view(status))

    return _answer("get_invoice_request", handle, caller)


@bp.function_name("update_bookings")
@bp.route(route="booking-updates", methods=["POST"])
def update_bookings(req: func.HttpRequest) -> func.HttpResponse:
    caller = _caller(req, "update_bookings", ROLE_INVOICE)
    if not isinstance(caller, Caller):
        return caller

    def handle(c: Container) -> func.HttpResponse:
        document = parse_json_object(req.get_body(), req.headers.get("content-type"))
        update = parse_update(document, max_selection=c.settings.max_selection)
        result = c.booking_updates.apply(update, caller.actor)
        return json_response(update_view(result))

    return _answer("update_bookings", handle, caller)


@bp.function_name("get_me")
@bp.route(route="me", methods=["GET"])
def get_me(req: func.HttpRequest) -> func.HttpResponse:
    """Who is signed in, as the app sees it: any caller, no role. The portal asks this because Azure
    serves `/.auth/me` only with the token store on ("Work with user identities in Azure App Service
    authentication": "If the token store is enabled ... calling /.auth/me"), which infra/ leaves off;
    a caller without `Bookings.Read` is told so instead of being sent to sign in again."""
    caller = _caller(req, "get_me", None)
    if not isinstance(caller, Caller):
        return caller
    return json_response(me_document(caller))


@bp.function_name("health")
@bp.route(route="health", methods=["GET"])
def health(req: func.HttpRequest) -> func.HttpResponse:
    report = check_health(bootstrap.current_settings, lambda _s: bootstrap.container().probe_storage())
    document: dict[str, Any] = {
        "status": "ok" if report.ok else "unhealthy",
        "checks": {check.name: {"ok": check.ok, "detail": check.detail} for check in report.checks},
    }
    if not report.ok:
        document["failing"] = report.failing
    return json_response(document, status=200 if report.ok else 503)


@bp.function_name("openapi")
@bp.route(route="openapi.json", methods=["GET"])
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    """The API's Swagger 2.0 document, pointing at the host it was fetched from."""
    host = req.headers.get("x-forwarded-host") or req.headers.get("host") or ""
    scheme = (req.headers.get("x-forwarded-proto") or req.url.split(":", 1)[0]).lower()
    try:
        max_selection = bootstrap.current_settings().max_selection
    except SettingsError:
        max_selection = None
    document = build_document(
        host=host if _HOST.match(host) else None,
        scheme=scheme if scheme in ("http", "https") else None,
        max_selection=max_selection,
    )
    return json_response(document)
