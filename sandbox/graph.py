"""Microsoft Graph Bookings v1.0 stand-in: businesses, services, customers, staff, appointments.

Shapes follow the v1.0 schema (`dateTimeTimeZone` in UTC with seven fractional digits, `customers`
of `#microsoft.graph.bookingCustomerInformation`, ISO 8601 durations, Exchange-style ids containing
`/`, `+` and `=`), and so do the failures a client must survive: `calendarView` without `start`/
`end` or with query options Bookings does not support is a 400, unknown businesses and
appointments are 404 `itemNotFound`, tokens for another resource are 401
`InvalidAuthenticationToken`. Lists page with absolute `@odata.nextLink` URLs.
"""

from __future__ import annotations

import base64
import bisect
import copy
import random
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from sandbox.clock import Clock
from sandbox.entra import GRAPH_RESOURCE, Directory, Principal, TokenError
from sandbox.faults import Throttled
from sandbox.httpcore import (
    HttpError,
    Request,
    Response,
    RouteMatch,
    Router,
    decode_skiptoken,
    encode_skiptoken,
    offset_from_skiptoken,
)
from sandbox.timefmt import graph_datetime, iso_duration, parse_iso_datetime, parse_iso_duration, zone_named

# Application permissions that let an app read bookingBusinesses (Graph docs,
# bookingbusiness-get-permissions.md): Bookings.ReadWrite.All / Manage.All alone do not.
BOOKINGS_ROLES = frozenset({"Bookings.Read.All", "BookingsAppointment.ReadWrite.All"})
GRAPH_CONTENT_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
)
PRICE_TYPES = (
    "undefined",
    "fixedPrice",
    "startingAt",
    "hourly",
    "free",
    "priceVaries",
    "callUs",
    "notSet",
    "unknownFutureValue",
)
_SUPPORTED_QUERY_OPTIONS = {"$count", "$expand", "$select", "$skiptoken"}
# Writable bookingAppointment properties of v1.0 (POST/PATCH through the Graph route).
_APPOINTMENT_WRITABLE = {
    "additionalInformation",
    "anonymousJoinWebUrl",
    "appointmentLabel",
    "customerEmailAddress",
    "customerName",
    "customerNotes",
    "customerPhone",
    "customerTimeZone",
    "customers",
    "endDateTime",
    "isCustomerAllowedToManageBooking",
    "isLocationOnline",
    "joinWebUrl",
    "maximumAttendeesCount",
    "optOutOfCustomerEmail",
    "postBuffer",
    "preBuffer",
    "price",
    "priceType",
    "reminders",
    "serviceId",
    "serviceLocation",
    "serviceName",
    "serviceNotes",
    "smsNotificationsEnabled",
    "staffMemberIds",
    "startDateTime",
}


def exchange_id(rng: random.Random | None = None) -> str:
    """An Exchange-style base64 item id that contains `+`, `/` and `=` (as real ids often do)."""
    prefix = b"\x00\x03\x24\x00"
    while True:
        body = rng.randbytes(46) if rng is not None else secrets.token_bytes(46)
        encoded = base64.b64encode(prefix + body).decode("ascii")
        if "+" in encoded and "/" in encoded and encoded.endswith("="):
            return encoded


@dataclass
class Appointment:
    id: str
    start: datetime
    end: datetime
    fields: dict[str, Any]
    """Every other v1.0 property (and, for admin-made appointments, any extra ones)."""
    time_zone: str | None = None
    """Render `startDateTime`/`endDateTime` in this zone (IANA or Windows name) as a local time
    without offset, as `dateTimeTimeZone` allows; None renders UTC."""

    @property
    def sort_key(self) -> tuple[datetime, str]:
        return (self.start, self.id)


@dataclass
class Business:
    id: str
    fields: dict[str, Any]
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    staff: dict[str, dict[str, Any]] = field(default_factory=dict)
    appointments: dict[str, Appointment] = field(default_factory=dict)
    _order: list[tuple[datetime, str]] = field(default_factory=list)
    _dirty: bool = False
    _max_duration: timedelta = timedelta(0)

    def add(self, appointment: Appointment) -> None:
        self.appointments[appointment.id] = appointment
        self._dirty = True
        self._max_duration = max(self._max_duration, appointment.end - appointment.start)

    def remove(self, appointment_id: str) -> Appointment | None:
        removed = self.appointments.pop(appointment_id, None)
        if removed is not None:
            self._dirty = True
        return removed

    def ordered_keys(self) -> list[tuple[datetime, str]]:
        if self._dirty:
            self._order = sorted(a.sort_key for a in self.appointments.values())
            self._dirty = False
        return self._order

    @property
    def max_duration(self) -> timedelta:
        return self._max_duration


class AppointmentError(ValueError):
    """An appointment body the API rejects; `status`/`code` say how."""

    def __init__(self, message: str, status: int = 400, code: str = "invalidRequest") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class BookingsStore:
    """All Bookings data of the tenant, guarded by one lock (requests run on many threads)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self._businesses: dict[str, Business] = {}

    def clear(self) -> None:
        with self.lock:
            self._businesses.clear()

    def add_business(self, business: Business) -> None:
        with self.lock:
            self._businesses[business.id.lower()] = business

    def business(self, business_id: str) -> Business | None:
        # Mailbox SMTP addresses are case-insensitive.
        with self.lock:
            return self._businesses.get(business_id.strip().lower())

    def businesses(self) -> list[Business]:
        with self.lock:
            return list(self._businesses.values())

    # -- reading --------------------------------------------------------------------------------

    def window(
        self,
        business: Business,
        start: datetime | None,
        end: datetime | None,
        after: tuple[datetime, str] | None,
        limit: int,
        *,
        count: bool = False,
    ) -> tuple[list[dict[str, Any]], tuple[datetime, str] | None, int | None]:
        """Appointments overlapping [start, end) ordered by (start, id), after a keyset position.

        Returns (rendered page, key of the last item if more follow, total matches if `count`).
        Keyset paging keeps pages stable while appointments are added or cancelled in between.
        """
        with self.lock:
            keys = business.ordered_keys()
            lower = 0 if start is None else bisect.bisect_left(keys, (start - business.max_duration, ""))
            total = self._count(business, keys, lower, start, end) if count else None
            if after is not None:
                lower = max(lower, bisect.bisect_right(keys, after))
            page: list[Appointment] = []
            more = False
            for index in range(lower, len(keys)):
                key = keys[index]
                if end is not None and key[0] >= end:
                    break
                appointment = business.appointments[key[1]]
                if start is not None and appointment.end <= start:
                    continue
                if len(page) == limit:
                    more = True
                    break
                page.append(appointment)
            return [self.render(a) for a in page], (page[-1].sort_key if more else None), total

    @staticmethod
    def _count(
        business: Business,
        keys: list[tuple[datetime, str]],
        lower: int,
        start: datetime | None,
        end: datetime | None,
    ) -> int:
        total = 0
        for index in range(lower, len(keys)):
            key = keys[index]
            if end is not None and key[0] >= end:
                break
            if start is None or business.appointments[key[1]].end > start:
                total += 1
        return total

    def appointment(self, business: Business, appointment_id: str) -> dict[str, Any] | None:
        with self.lock:
            found = business.appointments.get(appointment_id)
            return self.render(found) if found else None

    def render(self, appointment: Appointment) -> dict[str, Any]:
        """The v1.0 JSON of an appointment."""
        fields = appointment.fields
        customers = copy.deepcopy(fields.get("customers", []))
        result: dict[str, Any] = {
            "id": appointment.id,
            "selfServiceAppointmentId": fields.get("selfServiceAppointmentId"),
            "additionalInformation": fields.get("additionalInformation", ""),
            "isLocationOnline": fields.get("isLocationOnline", False),
            "joinWebUrl": fields.get("joinWebUrl"),
            "anonymousJoinWebUrl": fields.get("anonymousJoinWebUrl"),
            "appointmentLabel": fields.get("appointmentLabel", ""),
            "customerTimeZone": fields.get("customerTimeZone"),
            "serviceId": fields.get("serviceId"),
            "serviceName": fields.get("serviceName", ""),
            "serviceNotes": fields.get("serviceNotes"),
            "duration": iso_duration(appointment.end - appointment.start),
            "preBuffer": fields.get("preBuffer", "PT0S"),
            "postBuffer": fields.get("postBuffer", "PT0S"),
            "priceType": fields.get("priceType", "notSet"),
            "price": fields.get("price", 0.0),
            "optOutOfCustomerEmail": fields.get("optOutOfCustomerEmail", False),
            "smsNotificationsEnabled": fields.get("smsNotificationsEnabled", False),
            "isCustomerAllowedToManageBooking": fields.get("isCustomerAllowedToManageBooking", True),
            "maximumAttendeesCount": fields.get("maximumAttendeesCount", 1),
            "filledAttendeesCount": len(customers),
            "staffMemberIds": list(fields.get("staffMemberIds", [])),
            "createdDateTime": fields.get("createdDateTime"),
            "lastUpdatedDateTime": fields.get("lastUpdatedDateTime"),
            "startDateTime": _render_dtz(appointment.start, appointment.time_zone),
            "endDateTime": _render_dtz(appointment.end, appointment.time_zone),
            "serviceLocation": copy.deepcopy(fields.get("serviceLocation", _empty_location())),
            "reminders": copy.deepcopy(fields.get("reminders", [])),
            "customers": customers,
            # Flat customer fields of the v1.0 schema; set only on appointments that carry them.
            "customerName": fields.get("customerName"),
            "customerEmailAddress": fields.get("customerEmailAddress"),
            "customerPhone": fields.get("customerPhone"),
            "customerNotes": fields.get("customerNotes"),
        }
        for key, value in fields.items():
            if key not in result:
                result[key] = copy.deepcopy(value)
        return result

    # -- writing --------------------------------------------------------------------------------

    def create(
        self, business: Business, data: dict[str, Any], *, strict: bool, rng: random.Random | None = None
    ) -> dict[str, Any]:
        """Create an appointment; `strict` applies the real API's rules, admin calls relax them."""
        with self.lock:
            appointment = self.build(business, data, strict=strict, rng=rng)
            business.add(appointment)
            return self.render(appointment)

    def build(
        self, business: Business, data: dict[str, Any], *, strict: bool, rng: random.Random | None = None
    ) -> Appointment:
        if not isinstance(data, dict):
            raise AppointmentError("The request body must be a JSON object.", code="BadRequest")
        if strict:
            _reject_unknown(data)
        if "startDateTime" not in data or "endDateTime" not in data:
            raise AppointmentError("startDateTime and endDateTime are required.")
        start = _parse_dtz(data["startDateTime"], "startDateTime")
        end = _parse_dtz(data["endDateTime"], "endDateTime")
        if end < start:
            raise AppointmentError("The end time of the appointment must be after its start time.")
        service_id = data.get("serviceId")
        service = business.services.get(str(service_id)) if service_id else None
        if strict and service is None:
            raise AppointmentError(
                f"The service with id '{service_id}' was not found.", 400, "invalidRequest"
            )
        now = graph_datetime(self.clock.now())
        fields: dict[str, Any] = {
            "selfServiceAppointmentId": f"{(rng or random.Random()).getrandbits(48):012X}",
            "additionalInformation": "",
            "isLocationOnline": bool(service.get("isLocationOnline")) if service else False,
            "customerTimeZone": None,
            "serviceId": service_id,
            "serviceName": service.get("displayName", "") if service else "",
            "serviceNotes": None,
            "preBuffer": service.get("preBuffer", "PT0S") if service else "PT0S",
            "postBuffer": service.get("postBuffer", "PT0S") if service else "PT0S",
            "priceType": service.get("defaultPriceType", "notSet") if service else "notSet",
            "price": service.get("defaultPrice", 0.0) if service else 0.0,
            "staffMemberIds": [],
            "customers": [],
            "createdDateTime": now,
            "lastUpdatedDateTime": now,
        }
        self._apply(fields, data, strict=strict)
        appointment_id = str(data.get("id") or "") if not strict else ""
        return Appointment(
            id=appointment_id or exchange_id(rng),
            start=start,
            end=end,
            fields=fields,
            time_zone=None if strict else _given_zone(data["startDateTime"]),
        )

    def update(
        self, business: Business, appointment_id: str, data: dict[str, Any], *, strict: bool
    ) -> dict[str, Any]:
        with self.lock:
            appointment = business.appointments.get(appointment_id)
            if appointment is None:
                raise AppointmentError(
                    "The specified object was not found in the store.", 404, "itemNotFound"
                )
            if not isinstance(data, dict):
                raise AppointmentError("The request body must be a JSON object.", code="BadRequest")
            if strict:
                _reject_unknown(data)
            start = (
                _parse_dtz(data["startDateTime"], "startDateTime")
                if "startDateTime" in data
                else appointment.start
            )
            end = _parse_dtz(data["endDateTime"], "endDateTime") if "endDateTime" in data else appointment.end
            if end < start:
                raise AppointmentError("The end time of the appointment must be after its start time.")
            fields = dict(appointment.fields)
            self._apply(fields, data, strict=strict)
            fields["lastUpdatedDateTime"] = graph_datetime(self.clock.now())
            business.remove(appointment_id)
            time_zone = appointment.time_zone
            if not strict and "startDateTime" in data:
                time_zone = _given_zone(data["startDateTime"])
            updated = Appointment(id=appointment.id, start=start, end=end, fields=fields, time_zone=time_zone)
            business.add(updated)
            return self.render(updated)

    def cancel(self, business: Business, appointment_id: str) -> bool:
        with self.lock:
            return business.remove(appointment_id) is not None

    def _apply(self, fields: dict[str, Any], data: dict[str, Any], *, strict: bool) -> None:
        for key, value in data.items():
            if key in (
                "id",
                "startDateTime",
                "endDateTime",
                "duration",
                "filledAttendeesCount",
            ) or key.startswith("@odata"):
                continue
            if key == "priceType" and value not in PRICE_TYPES:
                raise AppointmentError(f"Invalid priceType value '{value}'.", code="BadRequest")
            if key == "price" and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise AppointmentError("price must be a number.", code="BadRequest")
            if key in ("preBuffer", "postBuffer"):
                try:
                    parse_iso_duration(str(value))
                except ValueError:
                    raise AppointmentError(f"{key} is not an ISO 8601 duration.", code="BadRequest") from None
            if key == "customers":
                value = _customers(value, strict=strict)
            fields[key] = copy.deepcopy(value)

    def dump(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {
                    "id": business.id,
                    "business": copy.deepcopy(business.fields),
                    "services": copy.deepcopy(list(business.services.values())),
                    "customers": copy.deepcopy(list(business.customers.values())),
                    "staffMembers": copy.deepcopy(list(business.staff.values())),
                    "appointments": [
                        self.render(business.appointments[key[1]]) for key in business.ordered_keys()
                    ],
                }
                for business in self._businesses.values()
            ]


def _empty_location() -> dict[str, Any]:
    return {
        "displayName": "",
        "locationEmailAddress": None,
        "locationUri": "",
        "locationType": None,
        "uniqueId": None,
        "uniqueIdType": None,
        "address": {"street": "", "city": "", "state": "", "countryOrRegion": "", "postalCode": ""},
        "coordinates": {"altitude": "NaN", "latitude": "NaN", "longitude": "NaN", "accuracy": "NaN"},
    }


def _reject_unknown(data: dict[str, Any]) -> None:
    for key in data:
        if key.startswith("@odata") or key in _APPOINTMENT_WRITABLE or key in ("id", "duration"):
            continue
        raise AppointmentError(
            f"The property '{key}' does not exist on type 'microsoft.graph.bookingAppointment'. Make sure to "
            "only use property names that are defined by the type or mark the type as open type.",
            code="BadRequest",
        )


def _given_zone(value: Any) -> str | None:
    """The zone an admin-made appointment was given in, kept for rendering (None for UTC)."""
    if isinstance(value, dict) and isinstance(value.get("timeZone"), str):
        name = value["timeZone"].strip()
        if name and name.lower() not in ("utc", "coordinated universal time", "etc/utc"):
            return name
    return None


def _render_dtz(instant: datetime, zone_name: str | None) -> dict[str, str]:
    """UTC with `Z`, or a local time without offset and the zone's (Windows or IANA) name."""
    if zone_name is None:
        return {"dateTime": graph_datetime(instant), "timeZone": "UTC"}
    local = instant.astimezone(zone_named(zone_name))
    return {
        "dateTime": local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond:06d}0",
        "timeZone": zone_name,
    }


def _parse_dtz(value: Any, name: str) -> datetime:
    """A `dateTimeTimeZone` ({dateTime, timeZone}); an ISO string is tolerated for admin calls."""
    if isinstance(value, str):
        text, zone_name = value, "UTC"
    elif isinstance(value, dict) and isinstance(value.get("dateTime"), str):
        text, zone_name = value["dateTime"], value.get("timeZone") or "UTC"
    else:
        raise AppointmentError(f"{name} must be a dateTimeTimeZone object.", code="BadRequest")
    try:
        return parse_iso_datetime(text, default_zone=zone_named(zone_name))
    except ValueError as exc:
        raise AppointmentError(
            f"Cannot convert the literal '{text}' of {name}: {exc}.", code="BadRequest"
        ) from None


def _customers(value: Any, *, strict: bool) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise AppointmentError("customers must be a collection.", code="BadRequest")
    result = []
    for entry in value:
        if not isinstance(entry, dict):
            raise AppointmentError(
                "customers must hold bookingCustomerInformation objects.", code="BadRequest"
            )
        customer = {
            "@odata.type": "#microsoft.graph.bookingCustomerInformation",
            "customerId": entry.get("customerId"),
            "name": entry.get("name"),
            "emailAddress": entry.get("emailAddress"),
            "phone": entry.get("phone"),
            "notes": entry.get("notes"),
            "location": entry.get("location"),
            "timeZone": entry.get("timeZone"),
            "customQuestionAnswers": entry.get("customQuestionAnswers", []),
        }
        if not strict:
            customer.update({k: v for k, v in entry.items() if k not in customer})
        result.append(customer)
    return result


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
