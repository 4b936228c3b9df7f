"""A client assertion from the app's managed identity: its credential in Azure, no secret.

The app registration trusts the Function App's user-assigned managed identity through a federated
identity credential (issuer `{authority}/{tenant}/v2.0`, subject the identity's object id, audience
`api://AzureADTokenExchange`). The identity's token for that audience *is* the client assertion
MSAL sends instead of a secret (Learn, "Configure an application to trust a managed identity").

The token comes from the platform's local identity endpoint, App Service's REST protocol
(Learn, "How to use managed identities for App Service and Azure Functions", "REST endpoint
reference"): `GET {IDENTITY_ENDPOINT}?resource=...&api-version=2019-08-01&client_id=...` with
header `X-IDENTITY-HEADER: {IDENTITY_HEADER}`, answer `{access_token, expires_on, resource,
token_type, client_id}` (`expires_on` in epoch seconds). Both variables are read per request: the
platform rotates the header value. The assertion is reused until five minutes before it expires.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping

import requests

TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"  # noqa: S105 - an audience, not a secret
IDENTITY_API_VERSION = "2019-08-01"
_REFRESH_MARGIN_SECONDS = 300


class ManagedIdentityError(RuntimeError):
    """No assertion could be had; `transient` says whether trying again later may help."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class ManagedIdentityAssertion:
    """MSAL's `client_assertion` callable: the managed identity's token for the exchange audience."""

    def __init__(
        self,
        client_id: str,
        *,
        http_client: requests.Session | None = None,
        timeout: float = 30,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client_id = client_id
        self._http = http_client or requests.Session()
        self._timeout = timeout
        self._environ = os.environ if environ is None else environ
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_on = 0.0

    def __call__(self) -> str:
        with self._lock:
            if self._token is None or self._clock() > self._expires_on - _REFRESH_MARGIN_SECONDS:
                self._token, self._expires_on = self._fetch()
            return self._token

    def _fetch(self) -> tuple[str, float]:
        endpoint = self._environ.get("IDENTITY_ENDPOINT")
        header = self._environ.get("IDENTITY_HEADER")
        if not endpoint or not header:
            raise ManagedIdentityError(
                "ENTRA_MANAGED_IDENTITY_CLIENT_ID needs the platform's managed identity endpoint "
                "(IDENTITY_ENDPOINT, IDENTITY_HEADER), which only Azure (or devhost with the sandbox) "
                "provides; run locally with ENTRA_CLIENT_SECRET or ENTRA_CLIENT_CERTIFICATE_PATH",
                transient=False,
            )
        params = {
            "resource": TOKEN_EXCHANGE_AUDIENCE,
            "api-version": IDENTITY_API_VERSION,
            "client_id": self._client_id,
        }
        try:
            response = self._http.get(
                endpoint, params=params, headers={"X-IDENTITY-HEADER": header}, timeout=self._timeout
            )
        except requests.RequestException as exc:
            raise ManagedIdentityError(
                f"managed identity endpoint unreachable: {type(exc).__name__}", transient=True
            ) from None
        return self._parse(response)

    def _parse(self, response: requests.Response) -> tuple[str, float]:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
            detail = _error_text(body) or response.reason or ""
            raise ManagedIdentityError(
                f"managed identity endpoint answered {response.status_code} for client id "
                f"{self._client_id}: {detail}".rstrip(": "),
                transient=response.status_code == 429 or response.status_code >= 500,
            )
        try:
            expires_on = float(body.get("expires_on", 0))
        except (TypeError, ValueError):
            expires_on = 0.0
        return str(body["access_token"]), expires_on


def _error_text(body: object) -> str:
    """The error of an identity endpoint answer (`{"error": ..., "error_description": ...}` or
    `{"error": {"code", "message"}}`), on one line."""
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    if isinstance(error, dict):
        text = f"{error.get('code', '')}: {error.get('message', '')}"
    else:
        text = f"{error or ''}: {body.get('error_description') or body.get('message') or ''}"
    return text.strip(": ").splitlines()[0] if text.strip(": ") else ""
