"""Microsoft Graph Bookings v1.0 stand-in: businesses, services, customers, staff, appointments.

Shapes follow the v1.0 schema (`dateTimeTimeZone` in UTC with seven fractional digits, `customers`
of `#microsoft.graph.bookingCustomerInformation`, ISO 8601 durations, Exchange-style ids containing
`/`, `+` and `=`), and so do the failures a client must survive: `calendarView` without `start`/
`end` or with query options Bookings does not support is a 400, unknown businesses and
appointments are 404 `itemNotFound`, tokens for another resource are 401
`InvalidAuthenticationToken`. Lists page with absolute `@odata.nextLink` URLs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from sandbox.core.clock import Clock
from sandbox.core.faults import Throttled
from sandbox.core.httpcore import (
    HttpError,
    Request,
    Response,
    RouteMatch,
    Router,
    decode_skiptoken,
    encode_skiptoken,
    offset_from_skiptoken,
)
from sandbox.core.timefmt import (
    parse_iso_datetime,
)
from sandbox.directory import GRAPH_RESOURCE, Directory, Principal, TokenError
from sandbox.graph.appointments import (
    AppointmentError,
    Business,
)
from sandbox.graph.store import BookingsStore

# Application permissions that let an app read bookingBusinesses (Graph docs,
# bookingbusiness-get-permissions.md): Bookings.ReadWrite.All / Manage.All alone do not.
BOOKINGS_ROLES = frozenset({"Bookings.Read.All", "BookingsAppointment.ReadWrite.All"})
GRAPH_CONTENT_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
)

_SUPPORTED_QUERY_OPTIONS = {"$count", "$expand", "$select", "$skiptoken"}


class GraphService:
    """HTTP face of the Bookings store, mounted at `{base}/graph/v1.0`."""

    name = "graph"

    def __init__(
        self,
        store: BookingsStore,
        directory: Directory,
        base_url: str,
        clock: Clock,
        page_size: Callable[[], int],
        max_range_days: Callable[[], int] = lambda: 0,
    ) -> None:
        self.store = store
        self.directory = directory
        self.base_url = base_url.rstrip("/")
        self._clock = clock
        self._page_size = page_size
        self._max_range_days = max_range_days
        prefix = "/solutions/bookingBusinesses"
        self.router = Router(ignore_case=True)
        add = self.router.add
        add("GET", prefix, self._list_businesses)
        add("GET", prefix + "/{businessId}", self._get_business)
        add("GET", prefix + "/{businessId}/calendarView", self._calendar_view)
        add("GET", prefix + "/{businessId}/appointments", self._list_appointments)
        add("POST", prefix + "/{businessId}/appointments", self._create_appointment)
        add("GET", prefix + "/{businessId}/appointments/{appointmentId}", self._get_appointment)
        add("PATCH", prefix + "/{businessId}/appointments/{appointmentId}", self._update_appointment)
        add("DELETE", prefix + "/{businessId}/appointments/{appointmentId}", self._delete_appointment)
        add("POST", prefix + "/{businessId}/appointments/{appointmentId}/cancel", self._cancel_appointment)
        for segment, attribute in (
            ("services", "services"),
            ("customers", "customers"),
            ("staffMembers", "staff"),
        ):
            add("GET", f"{prefix}/{{businessId}}/{segment}", self._lister(segment, attribute))
            add("GET", f"{prefix}/{{businessId}}/{segment}/{{itemId}}", self._getter(segment, attribute))

    # -- pipeline hooks -------------------------------------------------------------------------

    def authenticate(self, request: Request, match: RouteMatch | None) -> Principal:
        try:
            principal = self.directory.validate(request.header("authorization"), GRAPH_RESOURCE)
        except TokenError as exc:
            code = "InvalidAuthenticationToken"
            message = "Access token is empty." if exc.reason == "missing" else exc.message
            if exc.reason in ("invalid_audience", "invalid_signature", "malformed", "wrong_tenant"):
                message = f"Access token validation failure. {exc.message}"
            raise HttpError(
                self.error(
                    request,
                    401,
                    code,
                    message,
                    {
                        "WWW-Authenticate": 'Bearer realm="", authorization_uri="https://login.microsoftonline.com/'
                        'common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"'
                    },
                )
            ) from None
        self._authorize(request, principal, match)
        return principal

    def _authorize(self, request: Request, principal: Principal, match: RouteMatch | None) -> None:
        """403 without a Bookings application permission, or for a business the app may not read
        (an Exchange application access policy); see FIDELITY.md, "Setup check"."""
        app = self.directory.app(principal.client_id)
        business_id = (match.params.get("businessId") or "").lower() if match else ""
        denied = app is not None and business_id in {b.lower() for b in app.denied_businesses}
        if denied or not set(principal.roles) & BOOKINGS_ROLES:
            raise HttpError(
                self.error(
                    request, 403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
                )
            )

    def mailbox(self, match: RouteMatch) -> str | None:
        return match.params.get("businessId")

    def error(
        self, request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> Response:
        client_request_id = request.header("client-request-id") or request.request_id
        body = {
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": self._clock.now().strftime("%Y-%m-%dT%H:%M:%S"),
                    "request-id": request.request_id,
                    "client-request-id": client_request_id,
                },
            }
        }
        return Response.json(status, body, headers, content_type=GRAPH_CONTENT_TYPE)

    def decorate(self, request: Request, response: Response) -> None:
        response.headers.setdefault("request-id", request.request_id)
        response.headers.setdefault(
            "client-request-id", request.header("client-request-id") or request.request_id
        )
        response.headers.setdefault(
            "x-ms-ags-diagnostic", '{"ServerInfo":{"DataCenter":"Sandbox","Slice":"E","Ring":"0"}}'
        )

    def not_found(self, request: Request) -> Response:
        segment = request.path.rstrip("/").rsplit("/", 1)[-1] or "/"
        return self.error(request, 400, "BadRequest", f"Resource not found for the segment '{segment}'.")

    def method_not_allowed(self, request: Request, allowed: list[str]) -> Response:
        return self.error(
            request,
            405,
            "Request_BadRequest",
            f"The HTTP method '{request.method}' is not allowed for this resource.",
        )

    def fault(self, request: Request, status: int, retry_after: int | None) -> Response:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        code, message = {
            429: ("TooManyRequests", "Too many requests, please retry later."),
            500: ("generalException", "An unspecified error has occurred."),
            502: ("UnknownError", "Bad gateway."),
            503: ("serviceNotAvailable", "The service is temporarily unavailable. Please retry later."),
            504: ("UnknownError", "The gateway timed out waiting for the backend."),
        }[status]
        return self.error(request, status, code, message, headers)

    def throttled(self, request: Request, exc: Throttled) -> Response:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else {}
        return self.error(request, exc.status, "TooManyRequests", exc.message, headers)

    def internal_error(self, request: Request) -> Response:
        return self.error(request, 500, "generalException", "An unspecified error has occurred.")

    # -- helpers --------------------------------------------------------------------------------

    def _business(self, request: Request, business_id: str) -> Business:
        business = self.store.business(business_id)
        if business is None:
            raise HttpError(
                self.error(request, 404, "itemNotFound", "The specified object was not found in the store.")
            )
        return business

    def _context(self, business: Business, tail: str) -> str:
        return (
            f"{self.base_url}/$metadata#solutions/bookingBusinesses('{quote(business.id, safe='')}')/{tail}"
        )

    def _check_query(self, request: Request) -> dict[str, str]:
        query = request.query_dict()
        for key in query:
            if key.startswith("$") and key.lower() not in _SUPPORTED_QUERY_OPTIONS:
                raise HttpError(
                    self.error(
                        request,
                        400,
                        "invalidRequest",
                        f"The query parameter '{key}' is not supported on this request.",
                    )
                )
        return {key.lower() if key.startswith("$") else key: value for key, value in query.items()}

    def _select(
        self, request: Request, items: list[dict[str, Any]], query: dict[str, str]
    ) -> list[dict[str, Any]]:
        selected = query.get("$select")
        if not selected:
            return items
        names = {name.strip() for name in selected.split(",") if name.strip()}
        return [{k: v for k, v in item.items() if k == "id" or k in names} for item in items]

    def _next_link(self, request: Request, token: str) -> str:
        pairs = [(k, v) for k, v in request.query if k.lower() != "$skiptoken"]
        pairs.append(("$skiptoken", token))
        return f"{request.base_url}{request.path}?{urlencode(pairs, quote_via=quote, safe=':$')}"

    def _page_size_value(self) -> int:
        value = self._page_size()
        return max(1, int(value))

    # -- routes ---------------------------------------------------------------------------------

    def _list_businesses(self, request: Request, params: dict[str, str]) -> Response:
        return self.error(
            request,
            403,
            "accessDenied",
            "Listing booking businesses is not supported with application permissions; "
            "address a business by its id.",
        )

    def _get_business(self, request: Request, params: dict[str, str]) -> Response:
        business = self._business(request, params["businessId"])
        body = {"@odata.context": f"{self.base_url}/$metadata#solutions/bookingBusinesses/$entity"}
        body.update(copy.deepcopy(business.fields))
        return Response.json(200, body, content_type=GRAPH_CONTENT_TYPE)

    def _calendar_view(self, request: Request, params: dict[str, str]) -> Response:
        query = self._check_query(request)
        business = self._business(request, params["businessId"])
        raw_start, raw_end = query.get("start"), query.get("end")
        if not raw_start or not raw_end:
            missing = "start" if not raw_start else "end"
            return self.error(
                request,
                400,
                "invalidRequest",
                f"The parameter '{missing}' is required: calendarView needs both 'start' and 'end'.",
            )
        try:
            start = parse_iso_datetime(raw_start)
            end = parse_iso_datetime(raw_end)
        except ValueError:
            bad = raw_start
            try:
                parse_iso_datetime(raw_start)
                bad = raw_end
            except ValueError:
                pass
            return self.error(request, 400, "invalidRequest", f"Invalid date and time value: '{bad}'.")
        limit = self._max_range_days()
        if limit and end - start > timedelta(days=limit):
            # Off by default: the Bookings calendarView page states no maximum; Outlook's
            # calendarView refuses ranges over 1,825 days, so a client must not rely on none.
            return self.error(
                request,
                400,
                "invalidRequest",
                f"The date range between 'start' and 'end' may not exceed {limit} days.",
            )
        return self._appointment_page(request, business, query, start, end, "calendarView")

    def _list_appointments(self, request: Request, params: dict[str, str]) -> Response:
        query = self._check_query(request)
        business = self._business(request, params["businessId"])
        return self._appointment_page(request, business, query, None, None, "appointments")

    def _appointment_page(
        self,
        request: Request,
        business: Business,
        query: dict[str, str],
        start: datetime | None,
        end: datetime | None,
        tail: str,
    ) -> Response:
        after = None
        if "$skiptoken" in query:
            after = _decode_skiptoken(query["$skiptoken"])
            if after is None:
                return self.error(request, 400, "invalidRequest", "The $skiptoken value is not valid.")
        want_count = query.get("$count", "").lower() == "true"
        items, last, total = self.store.window(
            business, start, end, after, self._page_size_value(), count=want_count
        )
        body: dict[str, Any] = {"@odata.context": self._context(business, tail)}
        if want_count:
            body["@odata.count"] = total
        body["value"] = self._select(request, items, query)
        if last is not None:
            body["@odata.nextLink"] = self._next_link(request, _encode_skiptoken(last))
        return Response.json(200, body, content_type=GRAPH_CONTENT_TYPE)

    def _get_appointment(self, request: Request, params: dict[str, str]) -> Response:
        query = self._check_query(request)
        business = self._business(request, params["businessId"])
        found = self.store.appointment(business, params["appointmentId"])
        if found is None:
            return self.error(
                request, 404, "itemNotFound", "The specified object was not found in the store."
            )
        body = {"@odata.context": self._context(business, "appointments/$entity")}
        body.update(self._select(request, [found], query)[0])
        return Response.json(200, body, content_type=GRAPH_CONTENT_TYPE)

    def _create_appointment(self, request: Request, params: dict[str, str]) -> Response:
        business = self._business(request, params["businessId"])
        try:
            data = request.json()
            created = self.store.create(business, data, strict=True)
        except AppointmentError as exc:
            return self.error(request, exc.status, exc.code, str(exc))
        except (ValueError, UnicodeDecodeError):
            return self.error(request, 400, "BadRequest", "Unable to read JSON request payload.")
        body = {"@odata.context": self._context(business, "appointments/$entity")}
        body.update(created)
        return Response.json(201, body, content_type=GRAPH_CONTENT_TYPE)

    def _update_appointment(self, request: Request, params: dict[str, str]) -> Response:
        business = self._business(request, params["businessId"])
        try:
            self.store.update(business, params["appointmentId"], request.json(), strict=True)
        except AppointmentError as exc:
            return self.error(request, exc.status, exc.code, str(exc))
        except (ValueError, UnicodeDecodeError):
            return self.error(request, 400, "BadRequest", "Unable to read JSON request payload.")
        return Response.empty(204)

    def _delete_appointment(self, request: Request, params: dict[str, str]) -> Response:
        business = self._business(request, params["businessId"])
        if not self.store.cancel(business, params["appointmentId"]):
            return self.error(
                request, 404, "itemNotFound", "The specified object was not found in the store."
            )
        return Response.empty(204)

    def _cancel_appointment(self, request: Request, params: dict[str, str]) -> Response:
        business = self._business(request, params["businessId"])
        if request.body:
            try:
                data = request.json()
            except (ValueError, UnicodeDecodeError):
                return self.error(request, 400, "BadRequest", "Unable to read JSON request payload.")
            if not isinstance(data, dict) or set(data) - {"cancellationMessage"}:
                return self.error(
                    request, 400, "BadRequest", "The body may only carry 'cancellationMessage'."
                )
        if not self.store.cancel(business, params["appointmentId"]):
            return self.error(
                request, 404, "itemNotFound", "The specified object was not found in the store."
            )
        return Response.empty(204)

    def _lister(self, segment: str, attribute: str) -> Any:
        def handler(request: Request, params: dict[str, str]) -> Response:
            query = self._check_query(request)
            business = self._business(request, params["businessId"])
            with self.store.lock:
                items = copy.deepcopy(list(getattr(business, attribute).values()))
            offset = 0
            if "$skiptoken" in query:
                decoded = offset_from_skiptoken(query["$skiptoken"])
                if decoded is None:
                    return self.error(request, 400, "invalidRequest", "The $skiptoken value is not valid.")
                offset = decoded
            size = self._page_size_value()
            page = items[offset : offset + size]
            body: dict[str, Any] = {"@odata.context": self._context(business, segment)}
            if query.get("$count", "").lower() == "true":
                body["@odata.count"] = len(items)
            body["value"] = self._select(request, page, query)
            if offset + size < len(items):
                body["@odata.nextLink"] = self._next_link(request, encode_skiptoken({"o": offset + size}))
            return Response.json(200, body, content_type=GRAPH_CONTENT_TYPE)

        return handler

    def _getter(self, segment: str, attribute: str) -> Any:
        def handler(request: Request, params: dict[str, str]) -> Response:
            business = self._business(request, params["businessId"])
            with self.store.lock:
                item = copy.deepcopy(getattr(business, attribute).get(params["itemId"]))
            if item is None:
                return self.error(
                    request, 404, "itemNotFound", "The specified object was not found in the store."
                )
            body = {"@odata.context": self._context(business, f"{segment}/$entity")}
            body.update(item)
            return Response.json(200, body, content_type=GRAPH_CONTENT_TYPE)

        return handler


def _encode_skiptoken(key: tuple[datetime, str]) -> str:
    return encode_skiptoken({"s": key[0].astimezone(UTC).isoformat(), "i": key[1]})


def _decode_skiptoken(token: str) -> tuple[datetime, str] | None:
    data = decode_skiptoken(token)
    try:
        return (datetime.fromisoformat(data["s"]), str(data["i"])) if data else None
    except (ValueError, KeyError, TypeError):
        return None
