"""Access tokens for Graph and Business Central: MSAL client credentials, one app per process.

MSAL keeps its token cache per `ConfidentialClientApplication`, so the app is built once and
reused; each resource (Graph, Business Central) gets its own token, served from the cache until
under five minutes remain. Failures are raised as `TokenError` with MSAL's error code and
description, never the secret.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msal
import msal.exceptions
import requests

from shared.adapters.managed_identity import ManagedIdentityAssertion, ManagedIdentityError
from shared.settings import Settings
from shared.telemetry import get_logger

log = get_logger("bookings.token_provider")

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
BUSINESS_CENTRAL_SCOPE = "https://api.businesscentral.dynamics.com/.default"

# Microsoft Graph's service roots per cloud (Learn, "Microsoft Graph national cloud deployments",
# `graph/deployments`): global, US Government L4, US Government L5 (DOD), China (21Vianet). Their
# tokens "are not interchangeable", and a `.default` scope must use the domain of the cloud's root
# (`graph/sdks/national-clouds`, "Permission scopes"). Any other host (a local stand-in, a proxy)
# gets the global scope.
_GRAPH_HOSTS = frozenset(
    {"graph.microsoft.com", "graph.microsoft.us", "dod-graph.microsoft.us", "microsoftgraph.chinacloudapi.cn"}
)
# Business Central's API host is `api.businesscentral.dynamics.com`; a host of the same family in
# another cloud (`api.businesscentral.dynamics.<tld>`) is its own resource, by the same rule.
_BC_HOST_PREFIX = "api.businesscentral.dynamics."


def graph_scope(base_url: str) -> str:
    """The `.default` scope of the Graph cloud `GRAPH_BASE_URL` points at."""
    host = (urlsplit(base_url).hostname or "").lower()
    return f"https://{host}/.default" if host in _GRAPH_HOSTS else GRAPH_SCOPE


def business_central_scope(base_url: str) -> str:
    """The `.default` scope of the Business Central cloud `BC_BASE_URL` points at."""
    host = (urlsplit(base_url).hostname or "").lower()
    return f"https://{host}/.default" if host.startswith(_BC_HOST_PREFIX) else BUSINESS_CENTRAL_SCOPE


# Authority hosts MSAL knows (public and sovereign clouds); any other host skips instance discovery.
_KNOWN_AUTHORITY_HOSTS = {
    "login.microsoftonline.com",
    "login.microsoftonline.us",
    "login.chinacloudapi.cn",
    "login.partner.microsoftonline.cn",
    "login.windows.net",
    "login.microsoft.com",
    "sts.windows.net",
}


# MSAL's error codes (and ours) for failures that may pass: worth another try later.
_TRANSIENT_ERRORS = frozenset(
    {"temporarily_unavailable", "service_unavailable", "token_endpoint_unreachable", "authority_unavailable"}
)


class TokenError(RuntimeError):
    """No token could be had. The message names the resource and MSAL's error, without secrets.

    `transient` says whether trying again later may help (throttling, 5xx, network), as opposed
    to a configuration problem (wrong secret, unknown client, bad certificate).
    """

    def __init__(self, scope: str, error: str, description: str, *, transient: bool | None = None) -> None:
        self.scope = scope
        self.error = error
        self.transient = error in _TRANSIENT_ERRORS if transient is None else transient
        super().__init__(
            f"token for {scope} failed: {error}: {description.splitlines()[0] if description else ''}"
        )


def _certificate_credential(path: str) -> dict[str, str]:
    """MSAL's certificate credential from one PEM holding the private key and the certificate.

    No `thumbprint`: MSAL Python's `client_credential` docs (`ConfidentialClientApplication`) say a
    given `thumbprint` is taken as SHA-1 (deprecated, for ADFS), while since 1.35.0, without it, MSAL
    computes the SHA-256 thumbprint from `public_certificate` and signs the assertion with PS256
    (`x5t#S256`). requirements.txt pins 1.39.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    pem = Path(path).read_text(encoding="utf-8")
    certificate = x509.load_pem_x509_certificate(pem.encode())
    return {
        "private_key": pem,
        "public_certificate": certificate.public_bytes(serialization.Encoding.PEM).decode(),
    }


class TokenProvider:
    """Hands out bearer tokens per scope; thread-safe, one MSAL app per instance."""

    def __init__(
        self, settings: Settings, http_client: requests.Session | None = None, timeout: float = 30
    ) -> None:
        self._settings = settings
        self._http_client = http_client
        self._timeout = timeout
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = threading.Lock()

    def _credential(self) -> Any:
        if self._settings.client_secret is not None:
            return self._settings.client_secret.reveal()
        if self._settings.managed_identity_client_id is not None:
            # No secret at all: a federated identity credential trusts this managed identity, and
            # MSAL asks the callable for a fresh assertion whenever it goes to the token endpoint.
            assertion = ManagedIdentityAssertion(
                self._settings.managed_identity_client_id,
                http_client=self._http_client,
                timeout=self._timeout,
            )
            return {"client_assertion": assertion}
        path = str(self._settings.client_certificate_path)
        try:
            return _certificate_credential(path)
        except (OSError, ValueError) as exc:
            # Never echo the file's content: only what is wrong with it.
            raise TokenError(
                "(credential)",
                "invalid_certificate",
                f"ENTRA_CLIENT_CERTIFICATE_PATH {path}: {type(exc).__name__}, expected one PEM with the "
                "private key (unencrypted) and the certificate",
                transient=False,
            ) from None

    def _application(self) -> msal.ConfidentialClientApplication:
        with self._lock:
            if self._app is None:
                host = (urlsplit(self._settings.authority_host).hostname or "").lower()
                try:
                    self._app = msal.ConfidentialClientApplication(
                        self._settings.client_id,
                        client_credential=self._credential(),
                        authority=self._settings.authority,
                        instance_discovery=host in _KNOWN_AUTHORITY_HOSTS,
                        http_client=self._http_client,
                        timeout=self._timeout,
                    )
                except requests.RequestException as exc:
                    # MSAL reads the OIDC metadata here: an unreachable authority ends up here.
                    raise TokenError(
                        "(authority)", "authority_unavailable", _safe(_first_line(exc), self._settings)
                    ) from None
                except msal.exceptions.MsalServiceError as exc:
                    # The discovery document answered 5xx/429 (or an error document).
                    raise TokenError(
                        "(authority)",
                        "authority_unavailable",
                        _safe(_first_line(exc), self._settings),
                        transient=True,
                    ) from None
                except ValueError as exc:
                    # A malformed authority, or one that serves no usable OIDC document.
                    raise TokenError(
                        "(authority)",
                        "invalid_authority",
                        _safe(_first_line(exc), self._settings),
                        transient=False,
                    ) from None
            return self._app

    def token(self, scope: str) -> str:
        """A bearer token for one resource (`https://.../.default`)."""
        application = self._application()
        try:
            result = application.acquire_token_for_client(scopes=[scope])
        except requests.RequestException as exc:
            raise TokenError(
                scope, "token_endpoint_unreachable", _safe(_first_line(exc), self._settings)
            ) from None
        except msal.exceptions.MsalServiceError as exc:
            # MSAL raises (rather than returns an error) when the token endpoint answers 5xx.
            raise TokenError(
                scope, "service_unavailable", _safe(_first_line(exc), self._settings), transient=True
            ) from None
        except ValueError as exc:  # a body that is not JSON
            raise TokenError(
                scope, "invalid_response", _safe(_first_line(exc), self._settings), transient=True
            ) from None
        except ManagedIdentityError as exc:  # the assertion (ENTRA_MANAGED_IDENTITY_CLIENT_ID)
            raise TokenError(
                scope, "managed_identity_unavailable", str(exc), transient=exc.transient
            ) from None
        if "access_token" not in result:
            error = str(result.get("error", "unknown_error"))
            description = _safe(str(result.get("error_description", "")), self._settings)
            raise TokenError(scope, error, description)
        return str(result["access_token"])

    def graph_token(self) -> str:
        return self.token(graph_scope(self._settings.graph_base_url))

    def business_central_token(self) -> str:
        return self.token(business_central_scope(self._settings.bc_base_url))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _safe(text: str, settings: Settings) -> str:
    """Remove the client secret from text that came back from a server or library."""
    if settings.client_secret is not None and settings.client_secret.reveal():
        text = text.replace(settings.client_secret.reveal(), "***")
    return text
