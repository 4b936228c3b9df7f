"""API routes the portal needs beside the list: the settings view, the setup check and the count of
an "all" selection.

All are GETs: `Bookings.Read`, like every GET. Served under `/api` (`ApiBlueprint`).
"""

from __future__ import annotations

import azure.functions as func

from functions.api_blueprint import ApiBlueprint
from functions.http_triggers import _answer, _caller
from functions.responses import json_response
from shared import bootstrap
from shared.api.auth import ROLE_READ, Caller
from shared.api.csv_export import ExportContext, csv_chunks, export_file_name
from shared.api.input import InvalidInput
from shared.api.list_query import ListQuery, parse_list_query
from shared.api.settings_view import settings_document
from shared.api.views import setup_report_view, totals_view
from shared.bootstrap import Container
from shared.domain.moments import utc_now
from shared.services.health import check_health
from shared.services.setup_check import settings_failure_report
from shared.settings import SettingsError

bp = ApiBlueprint()


@bp.function_name("get_settings")
@bp.route(route="settings", methods=["GET"])
def get_settings(req: func.HttpRequest) -> func.HttpResponse:
    caller = _caller(req, "get_settings", ROLE_READ)
    if not isinstance(caller, Caller):
        return caller

    def handle(c: Container) -> func.HttpResponse:
        report = check_health(lambda: c.settings, lambda _s: c.probe_storage())
        directory = c.directory
        names, company = directory.business_names(), directory.company()
        return json_response(settings_document(c.settings, report, caller, names, company))

    return _answer("get_settings", handle, caller)


@bp.function_name("count_bookings")
@bp.route(route="booking-count", methods=["GET"])
def count_bookings(req: func.HttpRequest) -> func.HttpResponse:
    """How many bookings a filter matches (the list's query), counted up to `MAX_SELECTION` + 1."""
    caller = _caller(req, "count_bookings", ROLE_READ)
    if not isinstance(caller, Caller):
        return caller

    def handle(c: Container) -> func.HttpResponse:
        query = parse_list_query(dict(req.params), c.settings.bookings_business_ids, c.settings.time_zone)
        if query.filter.customer_name is not None or query.continuation_token is not None:
            raise InvalidInput(
                "Counts take the filters of an all-bookings selection (status, businessId, "
                "customerEmail, from, to); customerName and continuationToken do not apply."
            )
        limit = c.settings.max_selection
        count = c.booking_queries.count(query.filter, limit + 1)
        return json_response({"count": min(count, limit), "exceedsLimit": count > limit, "limit": limit})

    return _answer("count_bookings", handle, caller)


def _totals_query(req: func.HttpRequest, c: Container, what: str) -> ListQuery:
    query = parse_list_query(dict(req.params), c.settings.bookings_business_ids, c.settings.time_zone)
    if query.continuation_token is not None or "top" in req.params:
        raise InvalidInput(f"{what} cover every page of the filter: top and continuationToken do not apply.")
    return query


@bp.function_name("get_booking_totals")
@bp.route(route="booking-totals", methods=["GET"])
def get_booking_totals(req: func.HttpRequest) -> func.HttpResponse:
    """Count and amount of every booking the list's filter matches (all pages), in the company's
    currency: its own request, so the list's first page never waits for it."""
    caller = _caller(req, "get_booking_totals", ROLE_READ)
    if not isinstance(caller, Caller):
        return caller

    def handle(c: Container) -> func.HttpResponse:
        query = _totals_query(req, c, "Totals")
        totals = c.booking_queries.totals(query.filter)
        return json_response(totals_view(totals, c.directory.company().currency_code))

    return _answer("get_booking_totals", handle, caller)


@bp.function_name("export_bookings")
@bp.route(route="booking-export", methods=["GET"])
def export_bookings(req: func.HttpRequest) -> func.HttpResponse:
    """Every booking the list's filter matches as CSV (UTF-8 with a BOM), newest first."""
    caller = _caller(req, "export_bookings", ROLE_READ)
    if not isinstance(caller, Caller):
        return caller

    def handle(c: Container) -> func.HttpResponse:
        query = _totals_query(req, c, "Exports")
        context = ExportContext(
            c.settings.time_zone,
            c.directory.business_names(),
            c.directory.company().currency_code,
            c.invoice_links(),
        )
        body = "".join(csv_chunks(c.booking_queries.in_list_order(query.filter), context))
        name = export_file_name(str(query.filter.status), c.now().date().isoformat())
        return func.HttpResponse(
            body.encode("utf-8"),
            status_code=200,
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": f'attachment; filename="{name}"',
                "Cache-Control": "no-store",
            },
        )

    return _answer("export_bookings", handle, caller)


@bp.function_name("setup_check")
@bp.route(route="setup-check", methods=["GET"])
def setup_check(req: func.HttpRequest) -> func.HttpResponse:
    """The live checks of the tenant's setup (`shared/services/setup_check.py`), reused for 60 s."""
    caller = _caller(req, "setup_check", ROLE_READ)
    if not isinstance(caller, Caller):
        return caller
    try:
        bootstrap.current_settings()
    except SettingsError as exc:  # the report says which setting, like the other checks
        return json_response(setup_report_view(settings_failure_report(str(exc), utc_now())))

    def handle(c: Container) -> func.HttpResponse:
        return json_response(setup_report_view(c.setup_check.report()))

    return _answer("setup_check", handle, caller)
