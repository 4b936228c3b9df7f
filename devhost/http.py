"""HTTP front of the local host: function routes under the route prefix, keys, admin endpoints.

Routing follows the host's ASP.NET route templates for the forms an app uses: literal segments,
`{name}`, `{name?}`, `{name:int|alpha|guid}` and `{*rest}`; literal routes win over parameters.
Paths are normalised (`.` and `..` segments resolved) and decoded per segment, except `%2F`,
which stays encoded inside a route value as it does in ASP.NET Core.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func

from devhost.auth import (
    PLATFORM_HEADER_PREFIXES,
    SESSION_COOKIE,
    AuthError,
    EasyAuth,
    identity_from_token,
    safe_redirect,
)
from devhost.functions import FunctionSpec
from devhost.invoker import Invoker, TraceContext

log = logging.getLogger("devhost.http")

MAX_BODY_BYTES = 100 * 1024 * 1024
MAX_URL_BYTES = 4096
_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "alpha": r"[A-Za-z]+",
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
    "bool": r"(?i:true|false)",
}
_PARAMETER = re.compile(r"^\{(\*)?([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z]+))?(\?)?\}$")


@dataclass(frozen=True)
class Route:
    """One HTTP-triggered function's route template, compiled."""

    spec: FunctionSpec
    template: str
    methods: frozenset[str] | None
    auth_level: str
    pattern: re.Pattern[str]
    literal_segments: int
    parameter_segments: int

    @classmethod
    def compile(cls, spec: FunctionSpec, route_prefix: str) -> Route:
        template = str(spec.trigger.get("route") or spec.name).strip("/")
        full = "/".join(part for part in (route_prefix, template) if part)
        regex, literals, parameters = "", 0, 0
        for segment in full.split("/"):
            match = _PARAMETER.match(segment)
            if not match:
                if "{" in segment:
                    raise ValueError(f"function {spec.name}: unsupported route segment {segment!r}")
                regex += "/" + re.escape(segment.lower())
                literals += 1
                continue
            catch_all, name, constraint, optional = match.groups()
            parameters += 1
            value = ".*" if catch_all else _CONSTRAINTS.get((constraint or "").lower(), r"[^/]+")
            group = f"/(?P<{name}>{value})"
            regex += f"(?:{group})?" if optional or catch_all else group
        methods = spec.trigger.get("methods")
        return cls(
            spec=spec,
            template=full,
            methods=frozenset(str(m).upper() for m in methods) if methods else None,
            auth_level=str(spec.trigger.get("authLevel", "function")).lower(),
            pattern=re.compile(f"^{regex}/?$", re.IGNORECASE),
            literal_segments=literals,
            parameter_segments=parameters,
        )

    def match(self, path: str, method: str) -> dict[str, str] | None:
        if self.methods is not None and method not in self.methods:
            return None
        found = self.pattern.match(path)
        if not found:
            return None
        return {k: v for k, v in found.groupdict().items() if v is not None}


def normalise_path(raw_path: str) -> str | None:
    """Resolve dot segments and decode each segment, keeping `%2F` encoded. None if it escapes `/`."""
    segments: list[str] = []
    for raw in raw_path.split("/"):
        if raw in ("", "."):
            continue
        if raw == "..":
            if not segments:
                return None
            segments.pop()
            continue
        segments.append(unquote(re.sub("%2[Ff]", "%252F", raw)))
    return "/" + "/".join(segments)


@dataclass(frozen=True)
class Keys:
    """Function and master keys. None means not checked (the Core Tools default)."""

    function_key: str | None = None
    master_key: str | None = None

    @staticmethod
    def _same(given: str | None, expected: str | None) -> bool:
        return given is not None and expected is not None and hmac.compare_digest(given, expected)

    def allows(self, auth_level: str, given: str | None) -> bool:
        if auth_level == "anonymous":
            return True
        if auth_level == "admin":
            return self.master_key is None or self._same(given, self.master_key)
        if self.function_key is None:
            return True
        return self._same(given, self.function_key) or self._same(given, self.master_key)

    def allows_admin(self, given: str | None) -> bool:
        return self.master_key is None or self._same(given, self.master_key)


class HttpFront:
    """The host's HTTP listener: function routes, and the admin API of Core Tools."""

    def __init__(
        self,
        routes: list[Route],
        invoker: Invoker,
        keys: Keys,
        run_function_now: Callable[[str, str], int],
        host_status: Callable[[], Mapping[str, Any]],
        *,
        easy_auth: EasyAuth | None = None,
        bind: str = "127.0.0.1",
        port: int = 7071,
    ) -> None:
        self.easy_auth = easy_auth or EasyAuth({})
        # Literal routes before parameterised ones, longer before shorter.
        self.routes = sorted(routes, key=lambda r: (-r.literal_segments, r.parameter_segments))
        self.invoker = invoker
        self.keys = keys
        self.run_function_now = run_function_now
        self.host_status = host_status
        handler = type("DevhostRequestHandler", (_Handler,), {"front": self})
        self.server = ThreadingHTTPServer((bind, port), handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self.server.serve_forever, name="devhost-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting requests; requests being served finish on their own threads."""
        self.server.shutdown()
        self.server.server_close()

    def find_route(self, path: str, method: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            params = route.match(path, method)
            if params is not None:
                return route, params
        return None


class _Handler(BaseHTTPRequestHandler):
    front: HttpFront
    protocol_version = "HTTP/1.1"
    server_version = "devhost"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _handle(self) -> None:
        if len(self.path) > MAX_URL_BYTES:
            self._reply(HTTPStatus.REQUEST_URI_TOO_LONG)
            return
        split = urlsplit(self.path)
        path = normalise_path(split.path)
        body = self._read_body()
        if body is None:
            return
        if path is None:
            self._reply(HTTPStatus.BAD_REQUEST)
            return
        query = parse_qsl(split.query, keep_blank_values=True)
        given_key = self.headers.get("x-functions-key") or next((v for k, v in query if k == "code"), None)
        if path.lower().startswith("/admin/"):
            self._admin(path, body, given_key)
            return
        if path.lower() == "/.auth" or path.lower().startswith("/.auth/"):
            self._auth_endpoint(path.lower(), body, query)
            return
        found = self.front.find_route(path, self.command)
        if found is None:
            self._reply(HTTPStatus.NOT_FOUND)
            return
        route, route_params = found
        if not self.front.keys.allows(route.auth_level, given_key):
            self._reply(HTTPStatus.UNAUTHORIZED)
            return
        params: dict[str, str] = {}
        for key, value in query:
            params.setdefault(key, value)
        headers = self._platform_headers()
        if headers is None:
            return
        host = self.headers.get("Host") or f"127.0.0.1:{self.front.port}"
        request = func.HttpRequest(
            method=self.command,
            url=f"http://{host}{self.path}",
            headers=headers,
            params=params,
            route_params=route_params,
            body=body,
        )
        trace = TraceContext.from_header(self.headers.get("traceparent"), self.headers.get("tracestate"))
        future = self.front.invoker.submit(route.spec, request, reason="HTTP request", trace=trace)
        try:
            response = future.result()
        except BaseException:
            self._reply(HTTPStatus.INTERNAL_SERVER_ERROR)
            return
        self._send_function_response(response)

    def _platform_headers(self) -> dict[str, str] | None:
        """The request's headers as App Service Authentication hands them on (None: answered 401).

        Principal headers a client sent are dropped; a bearer token or a session adds the caller's.
        """
        headers = {
            name: value
            for name, value in self.headers.items()
            if not name.lower().startswith(PLATFORM_HEADER_PREFIXES)
        }
        authorization = (self.headers.get("Authorization") or "").strip()
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer":
            try:
                claims = self.front.easy_auth.validate(token.strip())
            except AuthError as exc:
                log.info("Refused a bearer token (401): %s", exc)
                self._problem(
                    HTTPStatus.UNAUTHORIZED,
                    f"The access token was refused: {exc}.",
                    {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{exc}"'},
                )
                return None
            identity = identity_from_token(claims)
        else:
            identity = self.front.easy_auth.session(self.headers.get("Cookie"))
        if identity is not None:
            headers.update(identity.principal_headers())
        return headers

    def _auth_endpoint(self, path: str, body: bytes, query: list[tuple[str, str]]) -> None:
        """`/.auth/login/aad` (mock form), `/.auth/me`, `/.auth/logout`, as the SWA CLI serves them."""
        auth = self.front.easy_auth
        params = dict(query)
        if path == "/.auth/login/aad" and self.command == "GET":
            page = auth.login_form(params.get("post_login_redirect_uri", "/")).encode()
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header(
                "Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"
            )
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        if path == "/.auth/login/aad" and self.command == "POST":
            result = auth.login(body)
            if result is None:
                self._problem(HTTPStatus.BAD_REQUEST, "The sign-in form needs a user name (userDetails).")
                return
            identity, target = result
            log.info("Signed in %s (mock sign-in) with roles %s", identity.name, ", ".join(identity.roles))
            cookie = f"{SESSION_COOKIE}={auth.session_cookie(identity)}; Path=/; HttpOnly; SameSite=Lax"
            self._redirect(target, cookie)
            return
        if path == "/.auth/me" and self.command == "GET":
            identity = auth.session(self.headers.get("Cookie"))
            self._json(HTTPStatus.OK, identity.me() if identity else {"clientPrincipal": None})
            return
        if path == "/.auth/logout" and self.command in ("GET", "POST"):
            cookie = f"{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"
            self._redirect(safe_redirect(params.get("post_logout_redirect_uri", "/")), cookie)
            return
        self._reply(HTTPStatus.NOT_FOUND)

    def _redirect(self, location: str, cookie: str) -> None:
        self.send_response(HTTPStatus.FOUND)
        self.send_header("Location", location)
        self.send_header("Set-Cookie", cookie)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _problem(self, status: HTTPStatus, detail: str, headers: Mapping[str, str] | None = None) -> None:
        document = {"type": "about:blank", "title": status.phrase, "status": int(status), "detail": detail}
        payload = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/problem+json; charset=utf-8")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY_BYTES:
                    self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, close=True)
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._reply(HTTPStatus.BAD_REQUEST, close=True)
            return None
        if length > MAX_BODY_BYTES:
            self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, close=True)
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _admin(self, path: str, body: bytes, given_key: str | None) -> None:
        if not self.front.keys.allows_admin(given_key):
            self._reply(HTTPStatus.UNAUTHORIZED)
            return
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if self.command == "GET" and parts == ["admin", "host", "status"]:
            self._json(HTTPStatus.OK, self.front.host_status())
            return
        if self.command == "POST" and len(parts) == 3 and parts[:2] == ["admin", "functions"]:
            try:
                document = json.loads(body or b"{}")
                value = document.get("input", "") if isinstance(document, dict) else None
            except ValueError:
                value = None
            if not isinstance(value, str):
                self._json(
                    HTTPStatus.BAD_REQUEST, {"error": 'Body must be a JSON object {"input": "<string>"}'}
                )
                return
            status = self.front.run_function_now(parts[2], value)
            if status == HTTPStatus.ACCEPTED:
                self._reply(HTTPStatus.ACCEPTED)
            else:
                self._json(HTTPStatus(status), {"error": f"Cannot run function '{parts[2]}' ({status})"})
            return
        self._reply(HTTPStatus.NOT_FOUND)

    def _send_function_response(self, response: Any) -> None:
        if response is None:
            self._reply(HTTPStatus.NO_CONTENT)
            return
        if isinstance(response, str | bytes):
            response = func.HttpResponse(response)
        if not isinstance(response, func.HttpResponse):
            log.error("HTTP function returned %s, not an HttpResponse", type(response).__name__)
            self._reply(HTTPStatus.INTERNAL_SERVER_ERROR)
            return
        payload = response.get_body() or b""
        headers = {k.lower(): (k, v) for k, v in response.headers.items()}
        if "content-type" not in headers and (payload or response.mimetype):
            mimetype = response.mimetype or "text/plain"
            charset = response.charset or "utf-8"
            headers["content-type"] = ("Content-Type", f"{mimetype}; charset={charset}")
        headers.pop("content-length", None)
        self.send_response(response.status_code)
        for name, value in headers.values():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _json(self, status: HTTPStatus, document: Mapping[str, Any]) -> None:
        payload = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _reply(self, status: HTTPStatus, *, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
