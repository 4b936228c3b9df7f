"""Microsoft Graph Bookings: reading a business's appointments through `calendarView`.

Why it looks like this:

- `calendarView` documents only `start`/`end` (+ `$count`/`$expand`); `$top` was seen to suppress
  `@odata.nextLink`, so we send neither `$top` nor `$filter` and follow `@odata.nextLink` verbatim.
- Bookings allows 4 concurrent requests per app per mailbox; a semaphore per business id keeps
  every thread of this process under that, and 429/503 are retried honouring `Retry-After` (in
  full when the caller's deadline leaves time for it; Learn, `graph/throttling`).
- Appointment ids are Exchange base64 (`+`, `/`, `=`): they are percent-encoded in any path.
- Pages are yielded one at a time, so a caller can process any number of appointments in flat memory.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests

from shared.adapters.http_retry import RetriesExhaustedError, RetryPolicy, send_with_retries
from shared.adapters.http_sessions import pooled_session
from shared.adapters.time_zones import UnknownTimeZoneError, zone_named
from shared.domain.models import Appointment, AppointmentPage, Customer, PriceType
from shared.domain.moments import iso_utc
from shared.telemetry import get_logger

log = get_logger("bookings.graph_bookings")

MAX_CONCURRENT_PER_MAILBOX = 4
# (connect, read) seconds: a page of appointments is small; a stuck connection must not hang a run.
DEFAULT_TIMEOUT: tuple[float, float] = (10.0, 60.0)
GRAPH_RETRY_POLICY = RetryPolicy(max_attempts=6, base_delay=1.0, max_delay=60.0)


class GraphError(Exception):
    """Graph answered with an error (after retries for transient ones). Carries no token or secret."""

    def __init__(self, status: int | None, code: str, message: str, request_id: str | None = None) -> None:
        self.status = status
        self.code = code
        self.request_id = request_id
        where = f" (request-id {request_id})" if request_id else ""
        prefix = f"HTTP {status} " if status is not None else ""
        super().__init__(f"Graph {prefix}{code}: {message}{where}")


class AppointmentParseError(ValueError):
    """An appointment whose shape we cannot read (it is reported and skipped, never guessed)."""


# -- parsing -----------------------------------------------------------------------------------------


def _zone(name: str | None) -> Any:
    try:
        return zone_named(name)
    except UnknownTimeZoneError as exc:
        raise AppointmentParseError(str(exc)) from None


def parse_graph_datetime(value: Any, field_name: str) -> datetime:
    """A Graph `dateTimeTimeZone` (or a plain ISO string) as an aware UTC datetime.

    Graph sends seven fractional digits and usually `Z`/`timeZone: UTC`; a naive `dateTime` is
    local to its `timeZone`, an IANA or a Windows name (`time_zones.py`).
    """
    if isinstance(value, Mapping):
        text, zone_name = value.get("dateTime"), value.get("timeZone")
    else:
        text, zone_name = value, None
    if not isinstance(text, str) or not text.strip():
        raise AppointmentParseError(f"{field_name} is missing")
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    head, dot, tail = text.partition(".")
    if dot:  # Python reads at most six fractional digits; Graph sends seven
        digits = len(tail) - len(tail.lstrip("0123456789"))
        tail = tail[: min(digits, 6)] + tail[digits:]
        text = f"{head}.{tail}" if digits else head + tail
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise AppointmentParseError(f"{field_name} is not an ISO 8601 date-time: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_zone(zone_name if isinstance(zone_name, str) else None))
    return moment.astimezone(UTC)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _customers(data: Mapping[str, Any]) -> tuple[Customer, ...]:
    """Every entry of `customers` with a name or email (a group appointment has several);
    the flat v1.0 fields `customerName`/`customerEmailAddress`/`customerPhone` only when
    `customers` has none: `customers` always wins (`reference/graph-bookings.md`)."""
    found: list[Customer] = []
    customers = data.get("customers")
    for entry in customers if isinstance(customers, list) else ():
        if not isinstance(entry, Mapping):
            continue
        name, email = _text(entry.get("name")), _text(entry.get("emailAddress"))
        if name or email:
            found.append(
                Customer(
                    name=name or email or "",
                    email=email,
                    phone=_text(entry.get("phone")),
                    bookings_customer_id=_text(entry.get("customerId")),
                )
            )
    if found:
        return tuple(found)
    name, email = _text(data.get("customerName")), _text(data.get("customerEmailAddress"))
    if name or email:
        return (Customer(name=name or email or "", email=email, phone=_text(data.get("customerPhone"))),)
    return ()


def _attendee_limit(value: Any) -> int | None:
    """`maximumAttendeesCount` (Edm.Int32), or None when absent or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _price(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise AppointmentParseError(f"price is not a number: {value!r}")
    try:
        return float(value)
    except ValueError:
        raise AppointmentParseError(f"price is not a number: {value!r}") from None


def parse_appointment(business_id: str, data: Mapping[str, Any]) -> Appointment:
    """A Graph `bookingAppointment` (v1.0 shape, `start`/`end` variant, legacy flat customer)."""
    appointment_id = _text(data.get("id"))
    if appointment_id is None:
        raise AppointmentParseError("id is missing")
    start = parse_graph_datetime(data.get("startDateTime", data.get("start")), "startDateTime")
    end = parse_graph_datetime(data.get("endDateTime", data.get("end")), "endDateTime")
    if end < start:
        raise AppointmentParseError("endDateTime is before startDateTime")
    staff = data.get("staffMemberIds") or []
    if not isinstance(staff, list):
        raise AppointmentParseError("staffMemberIds is not a list")
    updated = data.get("lastUpdatedDateTime")
    attendees = _customers(data)
    return Appointment(
        business_id=business_id,
        id=appointment_id,
        service_id=_text(data.get("serviceId")) or "",
        service_name=_text(data.get("serviceName")) or "",
        customer=attendees[0] if attendees else None,
        staff_member_ids=tuple(str(s) for s in staff if s),
        start=start,
        end=end,
        price=_price(data.get("price")),
        price_type=PriceType.parse(data.get("priceType") or PriceType.NOT_SET),
        last_updated=parse_graph_datetime(updated, "lastUpdatedDateTime") if updated else None,
        attendees=attendees,
        maximum_attendees=_attendee_limit(data.get("maximumAttendeesCount")),
    )


# -- the client --------------------------------------------------------------------------------------


def graph_error_from(response: requests.Response) -> GraphError:
    """Graph's error envelope (`{"error": {"code", "message", "innerError"}}`) as a `GraphError`."""
    code, message = "UnknownError", response.reason or ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        error = body["error"]
        code = str(error.get("code") or code)
        message = str(error.get("message") or message)
    request_id = response.headers.get("request-id")
    return GraphError(response.status_code, code, message[:500], request_id)


class GraphBookingsClient:
    """Reads Bookings appointments. One instance per process: it owns the pooled session."""

    def __init__(
        self,
        base_url: str,
        token: Callable[[], str],
        *,
        session: requests.Session | None = None,
        retry_policy: RetryPolicy = GRAPH_RETRY_POLICY,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        max_concurrent_per_mailbox: int = MAX_CONCURRENT_PER_MAILBOX,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._session = session or pooled_session(16)
        self._retry_policy = retry_policy
        self._timeout = timeout
        self._max_concurrent = max_concurrent_per_mailbox
        self._sleep = sleep
        self._rng = rng
        self._clock = clock
        self._semaphores: dict[str, threading.BoundedSemaphore] = {}
        self._semaphores_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.requests_sent = 0  # HTTP requests put on the wire (retries included), for benchmarks

    def close(self) -> None:
        self._session.close()

    # -- URLs ------------------------------------------------------------------------------------

    def business_url(self, business_id: str) -> str:
        return f"{self.base_url}/solutions/bookingBusinesses/{quote(business_id, safe='@')}"

    def appointment_url(self, business_id: str, appointment_id: str) -> str:
        """The appointment's URL; its id is percent-encoded (`/`, `+`, `=` included)."""
        return f"{self.business_url(business_id)}/appointments/{quote(appointment_id, safe='')}"

    # -- reading ---------------------------------------------------------------------------------

    def calendar_view_pages(
        self, business_id: str, start: datetime, end: datetime, *, deadline: datetime | None = None
    ) -> Iterator[AppointmentPage]:
        """Appointments overlapping [start, end), one page at a time, following `@odata.nextLink`.

        `deadline`: when the caller's invocation must be done; a `Retry-After` longer than 60 s is
        waited out in full only if it ends before then (`http_retry.send_with_retries`)."""
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("calendar_view_pages needs aware datetimes")
        url: str | None = f"{self.business_url(business_id)}/calendarView"
        params: dict[str, str] | None = {"start": iso_utc(start) or "", "end": iso_utc(end) or ""}
        while url is not None:
            fetched_at = self._clock()
            body = self._get_json(business_id, url, params, deadline)
            values = body.get("value")
            if not isinstance(values, list):
                raise GraphError(200, "invalidResponse", "calendarView answered without a 'value' list")
            yield _parse_page(business_id, values, fetched_at)
            next_link = body.get("@odata.nextLink")
            if next_link is not None and not isinstance(next_link, str):
                raise GraphError(200, "invalidResponse", "@odata.nextLink is not a string")
            url, params = next_link, None  # the next link is followed verbatim: it carries every parameter

    def get_business(self, business_id: str) -> dict[str, Any]:
        """The `bookingBusiness` itself (the setup check's read: can the app see this business?)."""
        return self._get_json(business_id, self.business_url(business_id), None, None)

    def get_appointment(
        self, business_id: str, appointment_id: str, *, deadline: datetime | None = None
    ) -> Appointment | None:
        """One appointment, or None if Bookings no longer has it."""
        try:
            url = self.appointment_url(business_id, appointment_id)
            body = self._get_json(business_id, url, None, deadline)
        except GraphError as exc:
            if exc.status == 404:
                return None
            raise
        return parse_appointment(business_id, body)

    # -- transport -------------------------------------------------------------------------------

    def _mailbox_slot(self, business_id: str) -> threading.BoundedSemaphore:
        key = business_id.strip().lower()
        with self._semaphores_lock:
            semaphore = self._semaphores.get(key)
            if semaphore is None:
                semaphore = self._semaphores[key] = threading.BoundedSemaphore(self._max_concurrent)
            return semaphore

    def _time_left(self, deadline: datetime | None) -> Callable[[], float | None] | None:
        if deadline is None:
            return None
        return lambda: (deadline - self._clock()).total_seconds()

    def _get_json(
        self, business_id: str, url: str, params: dict[str, str] | None, deadline: datetime | None
    ) -> dict[str, Any]:
        slot = self._mailbox_slot(business_id)

        def send() -> requests.Response:
            headers = {
                "Authorization": f"Bearer {self._token()}",
                "Accept": "application/json",
            }
            # The slot is held only while a request is in flight, never while backing off.
            with slot:
                with self._count_lock:
                    self.requests_sent += 1
                return self._session.get(url, params=params, headers=headers, timeout=self._timeout)

        def on_retry(attempt: int, reason: str, delay: float) -> None:
            log.warning(
                "Graph request for %s retried (%s), attempt %d, waiting %.1fs",
                business_id,
                reason,
                attempt,
                delay,
                extra={"businessId": business_id, "outcome": "retry", "durationMs": int(delay * 1000)},
            )

        try:
            response = send_with_retries(
                send,
                self._retry_policy,
                retry_connection_errors=True,  # GET is idempotent
                sleep=self._sleep,
                rng=self._rng,
                on_retry=on_retry,
                time_left=self._time_left(deadline),
            )
        except RetriesExhaustedError as exc:
            raise GraphError(None, "unreachable", str(exc)) from None
        except requests.RequestException as exc:
            raise GraphError(None, "requestFailed", type(exc).__name__) from None
        if response.status_code != 200:
            raise graph_error_from(response)
        try:
            body = response.json()
        except ValueError:
            raise GraphError(200, "invalidResponse", "the body is not JSON") from None
        if not isinstance(body, dict):
            raise GraphError(200, "invalidResponse", "the body is not a JSON object")
        return body


def _parse_page(business_id: str, values: list[Any], fetched_at: datetime) -> AppointmentPage:
    appointments: list[Appointment] = []
    invalid: list[tuple[str | None, str]] = []
    for value in values:
        if not isinstance(value, Mapping):
            invalid.append((None, "not a JSON object"))
            continue
        try:
            appointments.append(parse_appointment(business_id, value))
        except AppointmentParseError as exc:
            invalid.append((_text(value.get("id")), str(exc)))
    return AppointmentPage(tuple(appointments), tuple(invalid), fetched_at)
