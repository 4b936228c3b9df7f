"""Microsoft Entra ID stand-in: OIDC discovery, JWKS and the v2.0 token endpoint (client credentials).

Besides Graph and Business Central, the tenant has one more resource: the product's own API, an
app registration exposing `api://{client id}` with the app roles `Bookings.Read` and
`Bookings.Invoice`. A client asking for `api://{client id}/.default` gets a v1.0 access token
(`aud` = the App ID URI, `iss` = `https://sts.windows.net/{tenant}/`, as Entra issues when the
registration keeps the default `accessTokenAcceptedVersion`) whose `roles` are the app roles
assigned to that client (`AppRegistration.api_roles`; the admin API changes them and registers
more clients, so tests can call the API as a reader, an invoicer or an app with no role).

It behaves the way MSAL for Python needs and the way the real service fails: discovery documents
with the endpoints MSAL reads, `client_secret` and certificate (`client_assertion`) credentials,
tokens bound to exactly one resource, and Entra's error body (`error`, `error_description`
starting with an AADSTS code, `error_codes`, `trace_id`, `correlation_id`). Access tokens are
RS256 JWTs signed by a per-run key, so resource servers validate them statelessly: audience,
tenant, signature and expiry (against the injected clock).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import uuid
from typing import Any

from sandbox.core.clock import Clock
from sandbox.core.faults import Throttled
from sandbox.core.httpcore import HttpError, Request, Response, RouteMatch, Router, new_guid
from sandbox.directory import (
    JWT_BEARER,
    MANAGED_IDENTITY_TOKEN_LIFETIME,
    OIDC_SCOPES,
    AppRegistration,
    Directory,
    ManagedIdentity,
    Principal,
)
from sandbox.entra.assertions import ClientAssertions, issued_by_someone_else


class EntraService:
    """HTTP face of the directory, mounted at the authority host (`{base}/login`)."""

    name = "entra"

    def __init__(self, directory: Directory, host_url: str, clock: Clock) -> None:
        self.directory = directory
        self.host_url = host_url.rstrip("/")
        self._clock = clock
        self._assertions = ClientAssertions(directory, self.host_url, clock)
        self.router = Router(ignore_case=True)
        self.router.add("GET", "/{tenant}/v2.0/.well-known/openid-configuration", self._discovery)
        self.router.add("GET", "/{tenant}/discovery/v2.0/keys", self._keys)
        self.router.add("POST", "/{tenant}/oauth2/v2.0/token", self._token)

    # -- errors -------------------------------------------------------------------------------

    def error(
        self,
        request: Request,
        status: int,
        error: str,
        code: int,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Entra's error body: the AADSTS code leads the description, ids and time follow."""
        trace_id = request.request_id
        correlation_id = request.header("client-request-id") or new_guid()
        timestamp = self._clock.now().strftime("%Y-%m-%d %H:%M:%SZ")
        description = (
            f"AADSTS{code}: {message} Trace ID: {trace_id} Correlation ID: {correlation_id} "
            f"Timestamp: {timestamp}"
        )
        body = {
            "error": error,
            "error_description": description,
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"{self.host_url}/error?code={code}",
        }
        return Response.json(status, body, headers)

    def not_found(self, request: Request) -> Response:
        return Response.json(404, {"error": "not_found", "error_description": "The page was not found."})

    def method_not_allowed(self, request: Request, allowed: list[str]) -> Response:
        return Response.json(405, {"error": "invalid_request", "error_description": "Method not allowed."})

    def fault(self, request: Request, status: int, retry_after: int | None) -> Response:
        """An injected 429/5xx, shaped as Entra sends them (MSAL honours Retry-After)."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        if status == 429:
            return self.error(request, 429, "temporarily_unavailable", 50196, "Too many requests.", headers)
        return self.error(
            request,
            status,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.",
            headers,
        )

    def internal_error(self, request: Request) -> Response:
        return self.error(request, 500, "server_error", 90100, "An internal error occurred in the sandbox.")

    def authenticate(self, request: Request, match: RouteMatch | None) -> Principal | None:
        """The token endpoint authenticates clients itself (per grant); nothing to check up front."""
        return None

    def mailbox(self, match: RouteMatch) -> str | None:
        return None

    def throttled(self, request: Request, exc: Throttled) -> Response:
        return self.fault(request, exc.status, exc.retry_after)

    def decorate(self, request: Request, response: Response) -> None:
        response.headers.setdefault("x-ms-request-id", request.request_id)
        response.headers.setdefault(
            "client-request-id", request.header("client-request-id") or request.request_id
        )

    # -- managed identities -------------------------------------------------------------------

    @property
    def v2_issuer(self) -> str:
        """The tenant's v2.0 issuer: of its v2 tokens, and of a federated credential trusting a
        managed identity (Learn: issuer `https://login.microsoftonline.com/{tenant}/v2.0`)."""
        return self._assertions.v2_issuer

    def managed_identity_token(self, identity: ManagedIdentity, resource: str) -> dict[str, Any]:
        """What the platform's identity service hands an app for its managed identity: a v2 access
        token signed by this tenant (subject = the identity's object id), shaped as App Service's
        identity endpoint answers (`access_token`, `expires_on` in epoch seconds as a string,
        `resource`, `token_type`, `client_id`)."""
        now = self._clock.now().replace(microsecond=0)
        expires = now + MANAGED_IDENTITY_TOKEN_LIFETIME
        claims = {
            "aud": resource,
            "iss": self.v2_issuer,
            "iat": now,
            "nbf": now,
            "exp": expires,
            "azp": identity.client_id,
            "azpacr": "2",
            "idtyp": "app",
            "oid": identity.principal_id,
            "sub": identity.principal_id,
            "tid": self.directory.tenant_id,
            "uti": base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii"),
            "ver": "2.0",
        }
        return {
            "access_token": self.directory.sign(claims),
            "expires_on": str(int(expires.timestamp())),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": identity.client_id,
        }

    # -- routes -------------------------------------------------------------------------------

    def _check_tenant(self, request: Request, tenant: str) -> None:
        if tenant.lower() != self.directory.tenant_id.lower():
            raise HttpError(
                self.error(
                    request,
                    400,
                    "invalid_tenant",
                    90002,
                    f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
                    "and are signing into the correct cloud.",
                )
            )

    def _discovery(self, request: Request, params: dict[str, str]) -> Response:
        tenant = params["tenant"]
        self._check_tenant(request, tenant)
        tenant_id = self.directory.tenant_id
        base = f"{self.host_url}/{tenant}"
        document = {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{self.host_url}/{tenant_id}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{self.host_url}/{tenant_id}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{self.host_url}/{tenant_id}/openid/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "ver", "oid"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "sandbox.local",
        }
        return Response.json(200, document)

    def _keys(self, request: Request, params: dict[str, str]) -> Response:
        self._check_tenant(request, params["tenant"])
        return Response.json(200, self.directory.jwks())

    def _token(self, request: Request, params: dict[str, str]) -> Response:
        tenant = params["tenant"]
        self._check_tenant(request, tenant)
        form = request.form()
        basic_id, basic_secret = _basic_credentials(request.header("authorization"))
        grant_type = form.get("grant_type", "")
        if not grant_type:
            return self._missing(request, "grant_type")
        if grant_type != "client_credentials":
            return self.error(
                request,
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant_type}'.",
            )
        client_id = form.get("client_id") or basic_id or ""
        if not client_id:
            return self._missing(request, "client_id")
        app = self.directory.app(client_id)
        if app is None:
            return self.error(
                request,
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.directory.tenant_id}'. This can happen if the application has not been installed "
                "by the administrator of the tenant or consented to by any user in the tenant.",
            )
        scope = form.get("scope", "")
        if not scope.strip():
            return self._missing(request, "scope")
        resource_or_error = self._resource_for(request, scope)
        if isinstance(resource_or_error, Response):
            return resource_or_error
        credential_or_error = self._authenticate(request, app, form, basic_secret, tenant)
        if isinstance(credential_or_error, Response):
            return credential_or_error
        token, expires_in = self.directory.issue_token(app, resource_or_error, credential_or_error)
        body = {
            "token_type": "Bearer",
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "access_token": token,
        }
        return Response.json(200, body, {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})

    def _missing(self, request: Request, parameter: str) -> Response:
        return self.error(
            request,
            400,
            "invalid_request",
            900144,
            f"The request body must contain the following parameter: '{parameter}'.",
        )

    def _resource_for(self, request: Request, scope: str) -> str | Response:
        """Client credentials take exactly one `{resource}/.default` scope."""
        scopes = [part for part in scope.split() if part.lower() not in OIDC_SCOPES]
        invalid = [part for part in scopes if not part.endswith("/.default")]
        if invalid or len(scopes) != 1:
            return self.error(
                request,
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. "
                "Client credential flows must have a scope "
                "value with /.default suffixed to the resource identifier (application ID URI).",
            )
        resource_name = scopes[0][: -len("/.default")].rstrip("/")
        resource = self.directory.resource_for(resource_name)
        if resource is None:
            return self.error(
                request,
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource_name} was not found in the tenant named "
                f"{self.directory.tenant_id}. This can happen if the application has not been installed by "
                "the administrator of the tenant or consented to by any user in the tenant.",
            )
        return resource

    def _authenticate(
        self,
        request: Request,
        app: AppRegistration,
        form: dict[str, str],
        basic_secret: str | None,
        tenant: str,
    ) -> str | Response:
        """Returns the credential kind (`secret`/`certificate`/`federated`) or the error response."""
        secret = form.get("client_secret") or basic_secret
        assertion = form.get("client_assertion")
        if secret:
            return self._check_secret(request, app, secret)
        if assertion:
            return self._check_client_assertion(request, app, form, assertion, tenant)
        return self.error(
            request,
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )

    def _check_secret(self, request: Request, app: AppRegistration, secret: str) -> str | Response:
        if not any(_constant_time_equal(secret, known) for known in app.secrets):
            return self.error(
                request,
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                f"secret value, not the client secret ID, for a secret added to app '{app.client_id}'.",
            )
        if any(_constant_time_equal(secret, old) for old in app.expired_secrets):
            return self.error(
                request,
                401,
                "invalid_client",
                7000222,
                f"The provided client secret keys for app '{app.client_id}' are expired. Visit the "
                "Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or "
                "consider using certificate credentials for added security: "
                "https://aka.ms/certCreds.",
            )
        return "secret"

    def _check_client_assertion(
        self, request: Request, app: AppRegistration, form: dict[str, str], assertion: str, tenant: str
    ) -> str | Response:
        if form.get("client_assertion_type") != JWT_BEARER:
            return self.error(
                request,
                400,
                "invalid_request",
                900144,
                f"The request body must contain the following parameter: 'client_assertion_type' "
                f"with the value '{JWT_BEARER}'.",
            )
        if issued_by_someone_else(assertion, app):
            problem = self._assertions.check_federated(assertion, app)
            if problem is None:
                return "federated"
            code, message = problem
            return self.error(request, 400, "invalid_request", code, message)
        problem = self._assertions.check_certificate(assertion, app, tenant)
        if problem is None:
            return "certificate"
        code, message = problem
        return self.error(request, 401, "invalid_client", code, message)


def _basic_credentials(authorization: str | None) -> tuple[str | None, str | None]:
    """`client_secret_basic`: `Authorization: Basic base64(client_id:secret)`."""
    if not authorization or not authorization.lower().startswith("basic "):
        return None, None
    try:
        decoded = base64.b64decode(authorization[6:].strip()).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    client_id, _, secret = decoded.partition(":")
    return client_id or None, secret or None


def _constant_time_equal(left: str, right: str) -> bool:
    return hmac.compare_digest(left.encode("utf-8"), right.encode("utf-8"))
