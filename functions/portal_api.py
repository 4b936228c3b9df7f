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
from shared.api.input import InvalidInput
from shared.api.list_query import parse_list_query
from shared.api.settings_view import settings_document
from shared.api.views import setup_report_view
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
        return json_response(settings_document(c.settings, report, caller))

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
