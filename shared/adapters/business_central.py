"""Business Central API v2.0 client: the few calls invoicing needs, safe under throttling and failures.

Why it looks the way it does:

- Business Central runs at most 5 requests per app registration at a time, for all its callers
  together, and queues the rest. Every request passes the budget in `_send_once`, the one send
  path: in the app the storage-backed budget all instances share (`adapters/bc_budget.py`: at most
  `BC_MAX_CONCURRENCY` in flight, `BC_MAX_REQUESTS_PER_5_MIN` per sliding 5 minutes); a client
  built without one keeps a process-wide semaphore of 5. A 429/503 with `Retry-After` pauses it.
- Timeouts: with the budget at most 5 of our requests are in Business Central at once, so it runs
  them at once and queues none; the read timeouts only have to cover a request's run time (they do
  by far). Without the budget 480 invocations would queue there for minutes, past these timeouts,
  and a POST cut off by our own timeout is ambiguous (docs/invoicing.md, "Limits").
- Errors are classified once, here. 429, 5xx, timeouts, connection errors and auth failures are
  transient (the queue retries them); `BadRequest_*` / `Application_*` and other 4xx answers are
  permanent: Business Central will refuse the same request again.
- A POST is not idempotent: when its connection drops or it times out, it may have been committed
  ("commit then drop"), so it is never blindly repeated. The error says `may_have_committed` and
  the caller looks the record up before sending it again. Only 429 (refused before it ran) is
  retried in place.
- Every OData string literal goes through `odata_string`, which doubles quotes: a customer called
  `O'Brien` must work and `' or 1 eq 1` must match nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

import requests

from shared.adapters.bc_budget import LocalBudget
from shared.adapters.http_retry import (
    RetriesExhaustedError,
    RetryPolicy,
    retry_after_seconds,
    send_with_retries,
)
from shared.adapters.http_sessions import pooled_session
from shared.adapters.token_provider import TokenError
from shared.domain.bc_records import BcCustomer, BcInvoice, BcItem
from shared.domain.errors import BusinessCentralError
from shared.telemetry import get_logger

log = get_logger("bookings.business_central")

MAX_IN_FLIGHT = 5
"""Business Central's per-user concurrency limit; more requests would only queue on its side."""

EXTERNAL_DOCUMENT_NUMBER_LENGTH = 35
CREATE_TIMEOUT = (10.0, 60.0)
"""Connect/read timeouts for creating a customer or item: short, so a creation's worst case (with
retries) stays well inside the time after which another worker may take its creation over."""

THROTTLED_BASE_DELAY = 0.1
"""First backoff (half to full of it) after a 429 without `Retry-After`: the budget keeps the app
within Business Central's limits, so such a 429 is rare bad luck, not a reason to idle 0.5 s."""

_process_limiter = threading.BoundedSemaphore(MAX_IN_FLIGHT)

_PAUSING_STATUSES = frozenset({429, 503})


class Budget(Protocol):
    """What every request passes: a slot for the request, and a pause Business Central asked for."""

    def slot(self) -> AbstractContextManager[None]: ...

    def pause(self, seconds: float) -> None: ...


_PERMANENT_PREFIXES = ("BadRequest", "Application_")
_AUTH_STATUSES = frozenset({401, 403})
_AMBIGUOUS_STATUSES = frozenset({408, 500, 502, 503, 504})


def odata_string(value: str) -> str:
    """An OData string literal: quoted, with every `'` doubled. The one place literals are built."""
    return "'" + value.replace("'", "''") + "'"


def _customer(data: dict[str, Any]) -> BcCustomer:
    return BcCustomer(
        id=str(data["id"]),
        number=str(data.get("number", "")),
        display_name=str(data.get("displayName", "")),
        email=str(data.get("email", "")),
        blocked=str(data.get("blocked") or ""),
    )


def _item(data: dict[str, Any]) -> BcItem:
    return BcItem(
        id=str(data["id"]),
        number=str(data.get("number", "")),
        display_name=str(data.get("displayName", "")),
        type=str(data.get("type", "")),
        blocked=data.get("blocked") is True,
    )


def _invoice(data: dict[str, Any]) -> BcInvoice:
    return BcInvoice(
        id=str(data["id"]),
        number=str(data.get("number", "")),
        external_document_number=str(data.get("externalDocumentNumber", "")),
        status=str(data.get("status", "")),
    )


def error_details(response: requests.Response) -> tuple[str | None, str]:
    """Business Central's `error.code` and `error.message`, or a short description of the body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        code = error.get("code")
        message = str(error.get("message") or "").strip()
        return (str(code) if code else None), message or f"HTTP {response.status_code}"
    text = (response.text or "").strip().splitlines()
    return None, f"HTTP {response.status_code}" + (f": {text[0][:200]}" if text else "")


def classify(response: requests.Response, *, post: bool = False) -> BusinessCentralError:
    """The error a non-2xx answer stands for (transient or permanent, possibly committed)."""
    status = response.status_code
    code, message = error_details(response)
    summary = f"Business Central answered {status}" + (f" {code}" if code else "") + f": {message}"
    if status == 429 or status >= 500 or status == 408:
        return BusinessCentralError(
            summary,
            status=status,
            code=code,
            transient=True,
            may_have_committed=post and status in _AMBIGUOUS_STATUSES,
        )
    if status in _AUTH_STATUSES:
        return BusinessCentralError(
            f"{summary} (is the app registered in Business Central under 'Microsoft Entra Applications' "
            "with permission to create customers, items and sales invoices?)",
            status=status,
            code=code,
            transient=True,
        )
    if status == 409:
        # Request_EntityChanged: someone changed the record meanwhile; reading it again helps.
        return BusinessCentralError(summary, status=status, code=code, transient=True)
    # BadRequest_*, Application_* and any other 4xx: the request itself is refused.
    return BusinessCentralError(message, status=status, code=code, transient=False)


class BusinessCentralClient:
    """One company's API v2.0. Thread-safe; share one per process."""

    def __init__(
        self,
        *,
        base_url: str,
        tenant_id: str,
        environment: str,
        company_id: str,
        token: Callable[[], str],
        session: requests.Session | None = None,
        retry: RetryPolicy | None = None,
        timeout: tuple[float, float] = (10.0, 240.0),
        limiter: threading.Semaphore | None = None,
        budget: Budget | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.environment_url = (
            f"{base_url.rstrip('/')}/{quote(tenant_id, safe='')}/{quote(environment, safe='')}/api/v2.0"
        )
        self.company_url = f"{self.environment_url}/companies({company_id})"
        self._token = token
        self._session = session or pooled_session(MAX_IN_FLIGHT * 4)
        self._retry = retry or RetryPolicy(
            max_attempts=6, base_delay=0.5, max_delay=30.0, throttled_base_delay=THROTTLED_BASE_DELAY
        )
        self._timeout = timeout
        self._budget: Budget = budget or LocalBudget(limiter or _process_limiter, sleep=sleep)
        self._sleep = sleep
        self._requests = 0
        self._count_lock = threading.Lock()

    @property
    def request_count(self) -> int:
        """Requests sent so far (retries included): what the benchmark reports per invoice."""
        with self._count_lock:
            return self._requests

    # -- transport ---------------------------------------------------------------------------

    def _url(self, path: str, query: dict[str, str] | None) -> str:
        url = f"{self.company_url}/{path}" if path else self.company_url
        if query:
            url += "?" + urlencode(query, quote_via=quote, safe="$(),")
        return url

    def _send_once(
        self,
        method: str,
        url: str,
        body: Any,
        timeout: tuple[float, float],
        extra: dict[str, str] | None = None,
    ) -> requests.Response:
        try:
            token = self._token()
        except TokenError as exc:
            log.error("No token for Business Central: %s", exc, extra={"outcome": "auth_failed"})
            raise BusinessCentralError(str(exc), transient=True) from None
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        headers.update(extra or {})
        with self._budget.slot():
            with self._count_lock:
                self._requests += 1
            response = self._session.request(method, url, json=body, headers=headers, timeout=timeout)
        if response.status_code in _PAUSING_STATUSES:
            told = retry_after_seconds(response)
            if told:
                self._budget.pause(told)
        return response

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        timeout: tuple[float, float] | None = None,
        url: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Send with retries; the JSON answer, or `BusinessCentralError`. `url`, when given, is sent
        exactly as it is (a server's `@odata.nextLink`); `path` then only names it in the log."""
        post = method == "POST"
        url = url or self._url(path, query)
        timeout = timeout or self._timeout

        def on_retry(attempt: int, reason: str, delay: float) -> None:
            log.info(
                "Business Central %s %s: %s, retry %d in %.1fs",
                method,
                path.split("?")[0],
                reason,
                attempt,
                delay,
                extra={"outcome": "retry", "attempt": attempt},
            )

        try:
            response = send_with_retries(
                lambda: self._send_once(method, url, body, timeout, headers),
                self._policy(post),
                retry_connection_errors=not post,
                sleep=self._sleep,
                on_retry=on_retry,
            )
        except RetriesExhaustedError as exc:
            cause = exc.__cause__
            kind = type(cause).__name__ if cause else "connection error"
            raise BusinessCentralError(
                f"Business Central {method} {path.split('?')[0]} failed: {kind} ({exc})",
                transient=True,
                may_have_committed=post,
            ) from None
        if 200 <= response.status_code < 300:
            return _json_of(response)
        raise classify(response, post=post)

    def _policy(self, post: bool) -> RetryPolicy:
        """A POST is retried in place only on 429 (known not to have run); anything else ambiguous
        goes back to the caller, which looks the record up before sending it again."""
        if not post:
            return self._retry
        return RetryPolicy(
            max_attempts=self._retry.max_attempts,
            base_delay=self._retry.base_delay,
            max_delay=self._retry.max_delay,
            retry_statuses=frozenset({429}),
            throttled_base_delay=self._retry.throttled_base_delay,
        )

    def _collection(self, path: str, query: dict[str, str]) -> list[dict[str, Any]]:
        data = self._request("GET", path, query=query)
        value = data.get("value")
        return [row for row in value if isinstance(row, dict)] if isinstance(value, list) else []

    # -- customers ---------------------------------------------------------------------------

    def find_customers_by_email(self, email: str) -> list[BcCustomer]:
        """Customers whose email equals `email`, ignoring case (BC's `eq` alone is case-sensitive)."""
        rows = self._collection(
            "customers",
            {
                "$filter": f"tolower(email) eq {odata_string(email.strip().lower())}",
                "$orderby": "number",
                "$top": "20",
            },
        )
        return [_customer(row) for row in rows]

    def get_customer(self, customer_id: str) -> BcCustomer | None:
        """One customer by id; None when Business Central has no such customer (404)."""
        data = self._by_id("customers", customer_id)
        return _customer(data) if data is not None else None

    def _by_id(self, collection: str, record_id: str) -> dict[str, Any] | None:
        """`GET {collection}({id})`: the record, or None on 404 (deleted, or never there)."""
        try:
            return self._request("GET", f"{collection}({quote(record_id, safe='-')})")
        except BusinessCentralError as exc:
            if exc.status == 404:
                return None
            raise

    def find_by_number(self, collection: str, number: str) -> dict[str, Any] | None:
        """One record of `customers` or `items` by its number (templates are read this way)."""
        rows = self._collection(collection, {"$filter": f"number eq {odata_string(number)}", "$top": "1"})
        return rows[0] if rows else None

    def create_customer(self, body: dict[str, Any]) -> BcCustomer:
        return _customer(self._request("POST", "customers", body=body, timeout=CREATE_TIMEOUT))

    # -- items -------------------------------------------------------------------------------

    def find_service_items_by_name(self, name: str) -> list[BcItem]:
        """Items of type Service whose display name equals `name`, ignoring case."""
        literal = odata_string(name.strip().lower())
        rows = self._collection(
            "items",
            {
                "$filter": f"tolower(displayName) eq {literal} and type eq 'Service'",
                "$orderby": "number",
                "$top": "20",
            },
        )
        return [_item(row) for row in rows]

    def get_item(self, item_id: str) -> BcItem | None:
        """One item by id; None when Business Central has no such item (404)."""
        data = self._by_id("items", item_id)
        return _item(data) if data is not None else None

    def create_item(self, body: dict[str, Any]) -> BcItem:
        return _item(self._request("POST", "items", body=body, timeout=CREATE_TIMEOUT))

    # -- sales invoices ----------------------------------------------------------------------

    def find_invoices_by_external_document_number(self, number: str) -> list[BcInvoice]:
        """Drafts and posted invoices alike (both live in `salesInvoices`)."""
        rows = self._collection(
            "salesInvoices",
            {"$filter": f"externalDocumentNumber eq {odata_string(number.upper())}", "$orderby": "number"},
        )
        return [_invoice(row) for row in rows]

    def create_invoice(self, body: dict[str, Any]) -> BcInvoice:
        """One deep-insert POST (header and lines, atomic on Business Central's side)."""
        return _invoice(self._request("POST", "salesInvoices", body=body))

    # -- reads for reconcile_invoices ---------------------------------------------------------

    def get_company(self) -> dict[str, Any]:
        """The company itself (the setup check: do the environment and the company answer?)."""
        return self._request("GET", "")

    def list_companies(self) -> dict[str, Any]:
        """`GET {environment}/api/v2.0/companies`: the companies of the environment (after a 404)."""
        return self._request("GET", "", url=f"{self.environment_url}/companies")

    def read(
        self, path: str, query: dict[str, str] | None = None, *, page_size: int | None = None
    ) -> dict[str, Any]:
        """A GET of a company resource (retried, counted); `page_size` asks for server-driven pages
        of at most that many rows (`Prefer: odata.maxpagesize`: OData 4.01 Part 1 Protocol, preference
        `maxpagesize`; BC honours it, reference/business-central-api.md)."""
        return self._request("GET", path, query=query, headers=_prefer(page_size))

    def read_link(self, link: str, *, page_size: int | None = None) -> dict[str, Any]:
        """A GET of an `@odata.nextLink` exactly as the server wrote it, never rebuilt here: the next
        link is opaque to the client (OData 4.01 Part 1 Protocol, "Server-Driven Paging"; Learn,
        "Server-driven Paging in ASP.NET Core OData 8"). Only a link on Business Central's own host is
        followed, so the token never goes anywhere else."""
        if _origin(link) != _origin(self.company_url):
            raise BusinessCentralError(
                f"Business Central answered with a nextLink to another host ({_origin(link)}); not followed",
                transient=False,
            )
        return self._request("GET", "(nextLink)", url=link, headers=_prefer(page_size))


def _prefer(page_size: int | None) -> dict[str, str] | None:
    return {"Prefer": f"odata.maxpagesize={page_size}"} if page_size else None


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _json_of(response: requests.Response) -> dict[str, Any]:
    if response.status_code == 204 or not response.content:
        return {}
    try:
        data = response.json()
    except ValueError:
        raise BusinessCentralError(
            f"Business Central answered {response.status_code} with a body that is not JSON",
            status=response.status_code,
            transient=True,
        ) from None
    return data if isinstance(data, dict) else {"value": data}
