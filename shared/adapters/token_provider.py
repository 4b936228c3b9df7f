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
    """MSAL's certificate credential from one PEM holding the private key and the certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    pem = Path(path).read_text(encoding="utf-8")
    certificate = x509.load_pem_x509_certificate(pem.encode())
    return {
        "private_key": pem,
        "thumbprint": certificate.fingerprint(hashes.SHA1()).hex(),  # noqa: S303 - the thumbprint is SHA-1
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
        return self.token(GRAPH_SCOPE)

    def business_central_token(self) -> str:
        return self.token(BUSINESS_CENTRAL_SCOPE)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _safe(text: str, settings: Settings) -> str:
    """Remove the client secret from text that came back from a server or library."""
    if settings.client_secret is not None and settings.client_secret.reveal():
        text = text.replace(settings.client_secret.reveal(), "***")
    return text
