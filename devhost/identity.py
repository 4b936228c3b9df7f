"""App Service's managed identity endpoint, played for the app devhost runs.

In Azure the platform gives an app with a managed identity two environment variables,
`IDENTITY_ENDPOINT` (a local URL) and `IDENTITY_HEADER` (a value the caller must send back in
`X-IDENTITY-HEADER`, against server-side request forgery), and answers
`GET {IDENTITY_ENDPOINT}?resource=...&api-version=2019-08-01[&client_id=...|principal_id=...|
object_id=...|mi_res_id=...]` with `{access_token, expires_on, resource, token_type, client_id}`
(Learn, "How to use managed identities for App Service and Azure Functions", "REST endpoint
reference"). devhost does the same when `DEVHOST_MANAGED_IDENTITY_SOURCE` names where tokens come
from: the sandbox's identity service (`{sandbox}/_sandbox/entra/managedIdentities`), which signs
them with the sandbox tenant's key, as Azure's identity service signs with Entra's.

Not documented by Learn, and chosen here: a missing or wrong header is a 401, an unknown identity
or a request without an identity (devhost has no system-assigned identity) a 400; every error is
`{"error", "error_description"}`, the shape the rest of the protocol uses.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import requests

log = logging.getLogger("devhost.identity")

API_VERSION = "2019-08-01"
TOKEN_PATH = "/msi/token"  # noqa: S105 - a path, not a secret
_IDENTITY_PARAMETERS = ("client_id", "principal_id", "object_id", "mi_res_id")

TokenSource = Callable[[str, str], Mapping[str, Any] | None]
"""(managed identity client id, resource) -> the token answer, or None for an unknown identity."""


class SourceError(RuntimeError):
    """The token source failed (unreachable, or an unexpected answer)."""


def sandbox_token_source(base_url: str, session: requests.Session | None = None) -> TokenSource:
    """Tokens from the sandbox's identity service (`POST {base}/{clientId}/token`)."""
    http = session or requests.Session()

    def fetch(client_id: str, resource: str) -> Mapping[str, Any] | None:
        try:
            response = http.post(
                f"{base_url.rstrip('/')}/{quote(client_id, safe='')}/token",
                json={"resource": resource},
                timeout=30,
            )
        except requests.RequestException as exc:
            raise SourceError(f"identity service unreachable: {type(exc).__name__}") from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise SourceError(f"identity service answered {response.status_code}")
        return dict(response.json())

    return fetch


class ManagedIdentityEndpoint:
    """A local HTTP endpoint speaking App Service's 2019-08-01 identity protocol."""

    def __init__(self, source: TokenSource, bind: str = "127.0.0.1", port: int = 0) -> None:
        self.source = source
        self.header = secrets.token_hex(16)
        self.server = ThreadingHTTPServer((bind, port), _Handler)
        self.server.daemon_threads = True
        self.server.endpoint = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{TOKEN_PATH}"

    def environment(self) -> dict[str, str]:
        """What the platform puts in an app's environment."""
        return {"IDENTITY_ENDPOINT": self.url, "IDENTITY_HEADER": self.header}

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="identity-endpoint", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(5)
        self.server.server_close()

    def answer(
        self, path: str, query: Mapping[str, list[str]], header: str | None
    ) -> tuple[int, dict[str, Any]]:
        """(status, body) for one request."""
        if path != TOKEN_PATH:
            return _error(HTTPStatus.NOT_FOUND, "not_found", f"no such path {path}")
        if header is None or not secrets.compare_digest(header, self.header):
            return _error(HTTPStatus.UNAUTHORIZED, "invalid_request", "X-IDENTITY-HEADER is missing or wrong")
        values = {
            name: (query.get(name) or [""])[0] for name in ("api-version", "resource", *_IDENTITY_PARAMETERS)
        }
        if values["api-version"] != API_VERSION:
            return _error(HTTPStatus.BAD_REQUEST, "invalid_request", f"api-version must be {API_VERSION}")
        if not values["resource"]:
            return _error(HTTPStatus.BAD_REQUEST, "invalid_request", "resource is missing")
        given = [name for name in _IDENTITY_PARAMETERS if values[name]]
        if len(given) > 1:
            return _error(
                HTTPStatus.BAD_REQUEST, "invalid_request", f"use one of {', '.join(given)}, not several"
            )
        if given != ["client_id"]:
            return _error(
                HTTPStatus.BAD_REQUEST,
                "invalid_request",
                "no such identity: devhost serves user-assigned identities by client_id only",
            )
        try:
            token = self.source(values["client_id"], values["resource"])
        except SourceError as exc:
            return _error(HTTPStatus.INTERNAL_SERVER_ERROR, "server_error", str(exc))
        if token is None:
            return _error(
                HTTPStatus.BAD_REQUEST,
                "invalid_request",
                f"no managed identity with client id {values['client_id']}",
            )
        return HTTPStatus.OK, dict(token)


def _error(status: HTTPStatus, error: str, description: str) -> tuple[int, dict[str, Any]]:
    return int(status), {"error": error, "error_description": description}


class _Handler(BaseHTTPRequestHandler):
    server_version = "devhost-identity"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("identity endpoint: " + format, *args)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        endpoint: ManagedIdentityEndpoint = self.server.endpoint  # type: ignore[attr-defined]
        status, body = endpoint.answer(
            parts.path, parse_qs(parts.query), self.headers.get("X-IDENTITY-HEADER")
        )
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
