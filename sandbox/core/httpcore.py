"""The small HTTP vocabulary the three services share: requests, responses, routes, errors.

The services are written against these plain objects instead of `http.server` so that each one
stays a set of pure functions over its own state, testable and independent of the socket layer.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote

JSON_CONTENT_TYPE = "application/json; charset=utf-8"


@dataclass
class Request:
    """One HTTP request as the services see it.

    `path` is the raw, still percent-encoded path: routes match on it, so an encoded `/` inside an
    id (`%2F`) never splits a segment, and only the captured values are decoded.
    """

    method: str
    path: str
    query_string: str
    headers: Mapping[str, str]
    body: bytes
    base_url: str
    """Scheme, host and port of the server (`https://127.0.0.1:8443`); `path` follows it."""
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def query(self) -> list[tuple[str, str]]:
        return parse_qsl(self.query_string, keep_blank_values=True)

    def query_dict(self) -> dict[str, str]:
        """Query parameters, first value wins (as ASP.NET-style servers read them)."""
        result: dict[str, str] = {}
        for key, value in self.query:
            result.setdefault(key, value)
        return result

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """The body as JSON; raises `ValueError` when it is not JSON."""
        if not self.body:
            raise ValueError("empty body")
        return json.loads(self.body.decode("utf-8"))

    def form(self) -> dict[str, str]:
        """An `application/x-www-form-urlencoded` body (OAuth token requests)."""
        pairs = parse_qsl(self.body.decode("utf-8", errors="replace"), keep_blank_values=True)
        result: dict[str, str] = {}
        for key, value in pairs:
            result.setdefault(key, value)
        return result


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(
        cls,
        status: int,
        payload: Any,
        headers: Mapping[str, str] | None = None,
        content_type: str = JSON_CONTENT_TYPE,
    ) -> Response:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        merged = {"Content-Type": content_type}
        merged.update(headers or {})
        return cls(status, body, merged)

    @classmethod
    def empty(cls, status: int = 204, headers: Mapping[str, str] | None = None) -> Response:
        return cls(status, b"", dict(headers or {}))

    def json_body(self) -> Any:
        return json.loads(self.body) if self.body else None


class HttpError(Exception):
    """Raised by a handler to answer with a ready-made (service-specific) error response."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"HTTP {response.status}")
        self.response = response


class DropConnection(Exception):
    """Raised after a side effect has been committed: close the socket without any response."""


Handler = Callable[[Request, dict[str, str]], Response]

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Handler

    @property
    def key(self) -> str:
        """`METHOD template`: the name counters and route-scoped faults use."""
        return f"{self.method} {self.template}"


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    params: dict[str, str]


class MethodNotAllowed(Exception):
    def __init__(self, template: str, allowed: list[str]) -> None:
        super().__init__(template)
        self.template = template
        self.allowed = allowed


class Router:
    """Matches `METHOD path` against templates such as `companies({companyId})/salesInvoices`.

    A placeholder matches one path segment part without `/`, `(` or `)`; captured values are
    percent-decoded (`unquote`, so a literal `+` stays a `+`).
    """

    def __init__(self, *, ignore_case: bool = False, prefix: str = "") -> None:
        self._routes: list[Route] = []
        self._flags = re.IGNORECASE if ignore_case else 0
        self._prefix = prefix
        """A template part every route shares but that route keys leave out (`/{tenant}/...`)."""

    def add(self, method: str, template: str, handler: Handler) -> None:
        pattern = self._compile(self._prefix + template)
        self._routes.append(Route(method.upper(), template, pattern, handler))

    def _compile(self, template: str) -> re.Pattern[str]:
        parts: list[str] = []
        position = 0
        for match in _PLACEHOLDER.finditer(template):
            parts.append(re.escape(template[position : match.start()]))
            parts.append(f"(?P<{match.group(1)}>[^/()]+)")
            position = match.end()
        parts.append(re.escape(template[position:]))
        return re.compile("".join(parts) + "/?", self._flags)

    def match(self, method: str, path: str) -> RouteMatch | None:
        """The route for `method path`; raises `MethodNotAllowed` if only other methods match."""
        allowed: list[str] = []
        template = ""
        for route in self._routes:
            found = route.pattern.fullmatch(path)
            if not found:
                continue
            if route.method == method.upper():
                return RouteMatch(route, {k: unquote(v) for k, v in found.groupdict().items()})
            allowed.append(route.method)
            template = route.template
        if allowed:
            raise MethodNotAllowed(template, allowed)
        return None

    @property
    def routes(self) -> list[Route]:
        return list(self._routes)


class Service(Protocol):
    """What the server pipeline needs from each emulated service."""

    name: str
    router: Router

    def authenticate(self, request: Request, match: RouteMatch | None) -> Any:
        """The caller's principal, None if the service does not take tokens; raises `HttpError`."""

    def mailbox(self, match: RouteMatch) -> str | None:
        """The mailbox a request addresses (Graph's per-mailbox limits), if any."""

    def fault(self, request: Request, status: int, retry_after: int | None) -> Response:
        """An injected 429/5xx in the service's own error format."""

    def throttled(self, request: Request, exc: Any) -> Response:
        """A refusal by one of the service's limits."""

    def not_found(self, request: Request) -> Response: ...

    def method_not_allowed(self, request: Request, allowed: list[str]) -> Response: ...

    def internal_error(self, request: Request) -> Response: ...

    def decorate(self, request: Request, response: Response) -> None:
        """Add the service's standard response headers (request ids, OData version)."""


def new_guid() -> str:
    return str(uuid.uuid4())


def encode_skiptoken(data: Mapping[str, Any]) -> str:
    """An opaque, URL-safe `$skiptoken` carrying the paging position."""
    raw = json.dumps(dict(data), separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_skiptoken(token: str) -> dict[str, Any] | None:
    """The position in a `$skiptoken`, or None if the token was not made by `encode_skiptoken`."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def offset_from_skiptoken(token: str) -> int | None:
    data = decode_skiptoken(token)
    offset = data.get("o") if data else None
    return offset if isinstance(offset, int) and not isinstance(offset, bool) and offset >= 0 else None
