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
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.clock import Clock
from sandbox.faults import Throttled
from sandbox.httpcore import HttpError, Request, Response, RouteMatch, Router, new_guid

GRAPH_RESOURCE = "https://graph.microsoft.com"
BC_RESOURCE = "https://api.businesscentral.dynamics.com"
# Resources can be named by application ID URI or by the first-party application id.
_RESOURCE_ALIASES = {
    GRAPH_RESOURCE: GRAPH_RESOURCE,
    "00000003-0000-0000-c000-000000000000": GRAPH_RESOURCE,
    BC_RESOURCE: BC_RESOURCE,
    "996def3d-b36c-4153-8607-a6fd3c01b89f": BC_RESOURCE,
}
_RESOURCE_ROLES = {
    GRAPH_RESOURCE: ("Bookings.Read.All", "BookingsAppointment.ReadWrite.All"),
    BC_RESOURCE: ("API.ReadWrite.All",),
}
_OIDC_SCOPES = {"openid", "profile", "offline_access", "email"}
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_LIFETIME = timedelta(seconds=3599)
API_APP_ROLES = ("Bookings.Read", "Bookings.Invoice")
ASSERTION_CLOCK_SKEW_SECONDS = 300
# The audience of a managed identity's token that serves as a client assertion (workload identity
# federation): Learn, "Configure an application to trust a managed identity".
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"  # noqa: S105 - an audience, not a secret
MANAGED_IDENTITY_TOKEN_LIFETIME = timedelta(hours=24)


@dataclass(frozen=True)
class FederatedCredential:
    """A federated identity credential of an app registration (Graph `federatedIdentityCredential`)."""

    name: str
    issuer: str
    subject: str
    audiences: tuple[str, ...] = (TOKEN_EXCHANGE_AUDIENCE,)


@dataclass(frozen=True)
class ManagedIdentity:
    """A user-assigned managed identity: its client id, and its object (principal) id, the subject
    of its tokens and of a federated credential that trusts it."""

    client_id: str
    principal_id: str
    display_name: str


@dataclass
class AppRegistration:
    """An app registration with its service principal in the sandbox tenant."""

    client_id: str
    display_name: str
    secrets: list[str] = field(default_factory=list)
    certificates: list[x509.Certificate] = field(default_factory=list)
    service_principal_id: str = field(default_factory=new_guid)
    # App roles of the product's API assigned to this client (its service principal).
    api_roles: tuple[str, ...] = ()
    # Setup-check switches (admin API `PATCH /_sandbox/entra/apps/{clientId}`): application
    # permissions consented per resource (`None`: all the product needs; `()`: no consent, so the
    # token is issued without `roles`), secrets that have expired (AADSTS7000222), businesses
    # Graph refuses to this app (403), and whether Business Central's "Microsoft Entra
    # Applications" page lists the app (otherwise 401 Authentication_InvalidCredentials).
    consented: dict[str, tuple[str, ...]] = field(default_factory=dict)
    expired_secrets: list[str] = field(default_factory=list)
    denied_businesses: set[str] = field(default_factory=set)
    bc_registered: bool = True
    federated_credentials: list[FederatedCredential] = field(default_factory=list)


@dataclass(frozen=True)
class Principal:
    """What a validated access token says about its caller."""

    client_id: str
    tenant_id: str
    resource: str
    expires_at: datetime
    roles: tuple[str, ...]


class TokenError(Exception):
    """An access token a resource server must refuse; `reason` is a short machine word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Directory:
    """The tenant: app registrations, the token signing key, issuing and validating tokens."""

    def __init__(self, tenant_id: str, clock: Clock) -> None:
        self.tenant_id = tenant_id
        self._clock = clock
        self._lock = threading.Lock()
        self._apps: dict[str, AppRegistration] = {}
        self._managed_identities: dict[str, ManagedIdentity] = {}
        # The app registration whose API (`api://{client id}`) the tenant exposes, if any.
        self.api_client_id: str | None = None
        self._signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._public_key = self._signing_key.public_key()
        self.key_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")

    @property
    def token_issuer(self) -> str:
        # Graph and Business Central accept v1.0 access tokens: their issuer is sts.windows.net.
        return f"https://sts.windows.net/{self.tenant_id}/"

    def register(self, app: AppRegistration) -> None:
        with self._lock:
            self._apps[app.client_id.lower()] = app

    def app(self, client_id: str) -> AppRegistration | None:
        with self._lock:
            return self._apps.get(client_id.strip().lower())

    def unregister(self, client_id: str) -> None:
        with self._lock:
            self._apps.pop(client_id.strip().lower(), None)

    def register_managed_identity(self, identity: ManagedIdentity) -> None:
        with self._lock:
            self._managed_identities[identity.client_id.lower()] = identity

    def managed_identity(self, client_id: str) -> ManagedIdentity | None:
        with self._lock:
            return self._managed_identities.get(client_id.strip().lower())

    def forget_managed_identities(self) -> None:
        with self._lock:
            self._managed_identities.clear()

    def set_federated_credential(self, client_id: str, credential: FederatedCredential) -> AppRegistration:
        """Create or replace (by name) a federated credential; `KeyError` if the app is unknown."""
        with self._lock:
            app = self._apps[client_id.strip().lower()]
            kept = [c for c in app.federated_credentials if c.name.lower() != credential.name.lower()]
            app.federated_credentials = [*kept, credential]
            return app

    def client_ids(self) -> list[str]:
        with self._lock:
            return [app.client_id for app in self._apps.values()]

    def set_api_roles(self, client_id: str, roles: Iterable[str]) -> AppRegistration:
        """Assign app roles of the product's API to a client; `KeyError` if it is unknown."""
        unknown = sorted(set(roles) - set(API_APP_ROLES))
        if unknown:
            raise ValueError(f"the API defines no app role {', '.join(unknown)}")
        with self._lock:
            app = self._apps[client_id.strip().lower()]
            app.api_roles = tuple(dict.fromkeys(roles))
            return app

    @property
    def api_resource(self) -> str | None:
        return f"api://{self.api_client_id}" if self.api_client_id else None

    def resource_for(self, name: str) -> str | None:
        """The resource a scope's resource part names (App ID URI or application id), or None."""
        known = _RESOURCE_ALIASES.get(name) or _RESOURCE_ALIASES.get(name.lower())
        if known:
            return known
        api = self.api_client_id
        if api and name.lower() in (f"api://{api}".lower(), api.lower()):
            return f"api://{api}"
        return None

    def issue_token(self, app: AppRegistration, resource: str, credential_kind: str) -> tuple[str, int]:
        now = self._clock.now().replace(microsecond=0)
        expires = now + TOKEN_LIFETIME
        claims: dict[str, Any] = {
            "aud": resource,
            "iss": self.token_issuer,
            "iat": now,
            "nbf": now - timedelta(minutes=5),
            "exp": expires,
            "appid": app.client_id,
            "appidacr": "2" if credential_kind in ("certificate", "federated") else "1",
            "idp": self.token_issuer,
            "idtyp": "app",
            "oid": app.service_principal_id,
            "sub": app.service_principal_id,
            "roles": list(app.consented.get(resource, _RESOURCE_ROLES.get(resource, app.api_roles))),
            "tid": self.tenant_id,
            "uti": base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii"),
            "ver": "1.0",
        }
        if not claims["roles"]:
            del claims["roles"]  # Entra leaves the claim out when no app role is assigned
        token = jwt.encode(claims, self._signing_key, algorithm="RS256", headers={"kid": self.key_id})
        return token, int(TOKEN_LIFETIME.total_seconds())

    def sign(self, claims: dict[str, Any]) -> str:
        """An RS256 JWT over `claims` with the tenant's signing key (the one in its JWKS)."""
        return jwt.encode(claims, self._signing_key, algorithm="RS256", headers={"kid": self.key_id})

    def verify_signature(self, token: str) -> dict[str, Any]:
        """The claims of a token this tenant signed; `jwt.PyJWTError` if it did not."""
        return jwt.decode(
            token,
            self._public_key,
            algorithms=["RS256"],
            options={"verify_exp": False, "verify_nbf": False, "verify_aud": False, "verify_iss": False},
        )

    def validate(self, authorization: str | None, resource: str) -> Principal:
        """Check a `Bearer` header for `resource`; raises `TokenError` saying why it is refused."""
        if not authorization:
            raise TokenError("missing", "Access token is empty.")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise TokenError("malformed", "Access token is missing or not a Bearer token.")
        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=["RS256"],
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise TokenError("invalid_signature", "Invalid signature.") from None
        except jwt.PyJWTError:
            raise TokenError("malformed", "IDX14100: JWT is not well formed.") from None
        audience = _RESOURCE_ALIASES.get(str(claims.get("aud", "")).rstrip("/"))
        if audience != resource:
            raise TokenError("invalid_audience", "Invalid audience.")
        if str(claims.get("tid", "")).lower() != self.tenant_id.lower():
            raise TokenError("wrong_tenant", "Invalid tenant.")
        expires_at = datetime.fromtimestamp(int(claims.get("exp", 0)), tz=self._clock.now().tzinfo)
        if self._clock.now() >= expires_at:
            raise TokenError("expired", "Lifetime validation failed, the token is expired.")
        return Principal(
            client_id=str(claims.get("appid", "")),
            tenant_id=str(claims["tid"]),
            resource=resource,
            expires_at=expires_at,
            roles=tuple(claims.get("roles", [])),
        )

    def jwks(self) -> dict[str, Any]:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self._public_key, as_dict=True)
        jwk.update({"kid": self.key_id, "use": "sig", "alg": "RS256", "issuer": self.token_issuer})
        return {"keys": [jwk]}


class EntraService:
    """HTTP face of the directory, mounted at the authority host (`{base}/login`)."""

    name = "entra"

    def __init__(self, directory: Directory, host_url: str, clock: Clock) -> None:
        self.directory = directory
        self.host_url = host_url.rstrip("/")
        self._clock = clock
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
        return f"{self.host_url}/{self.directory.tenant_id}/v2.0"

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

    def _check_federated(self, assertion: str, app: AppRegistration) -> tuple[int, str] | None:
        """A client assertion issued by someone other than the app itself: workload identity
        federation. Entra looks for a federated credential matching the assertion's issuer, subject
        and audience exactly, naming the part that matched none (AADSTS700211 issuer, 700213
        subject, 700212 audience; AADSTS70025 when the app has none), then checks the token."""
        try:
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return 50027, "JWT token is invalid or malformed."
        credentials = list(app.federated_credentials)
        if not credentials:
            return (
                70025,
                f"The client '{app.client_id}'({app.display_name}) has no configured federated "
                "identity credentials.",
            )
        issuer, subject = str(claims.get("iss", "")), str(claims.get("sub", ""))
        audiences = claims.get("aud")
        audiences = [str(a) for a in (audiences if isinstance(audiences, list) else [audiences])]
        hint = (
            " Please check your federated identity credential Subject, Audience and Issuer against the "
            "presented assertion."
        )
        unmatched = "No matching federated identity record found for presented assertion"
        credentials = [c for c in credentials if c.issuer == issuer]
        if not credentials:
            return (
                700211,
                f"{unmatched} issuer '{issuer}'.{hint}",
            )
        credentials = [c for c in credentials if c.subject == subject]
        if not credentials:
            return (
                700213,
                f"{unmatched} subject '{subject}'.{hint}",
            )
        if not any(a in c.audiences for c in credentials for a in audiences):
            return (
                700212,
                f"{unmatched} audience '{', '.join(audiences)}'.{hint}",
            )
        return self._check_federated_token(assertion, issuer)

    def _check_federated_token(self, assertion: str, issuer: str) -> tuple[int, str] | None:
        """Signature and lifetime. Only this tenant's own issuer is modelled (a managed identity);
        an outside issuer's keys would be fetched from its OIDC metadata, which the sandbox cannot."""
        if issuer != self.v2_issuer:
            return 50166, f"Request to External OIDC endpoint failed. Issuer: '{issuer}'."
        try:
            claims = self.directory.verify_signature(assertion)
        except jwt.PyJWTError:
            return 700027, "Client assertion failed signature validation."
        now = self._clock.now().timestamp()
        expires = float(claims.get("exp", 0))
        not_before = float(claims.get("nbf", 0))
        if now >= expires + ASSERTION_CLOCK_SKEW_SECONDS or now < not_before - ASSERTION_CLOCK_SKEW_SECONDS:
            return 700024, "Client assertion is not within its valid time range."
        return None

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
        scopes = [part for part in scope.split() if part.lower() not in _OIDC_SCOPES]
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
        """Returns the credential kind (`secret`/`certificate`) or the error response."""
        secret = form.get("client_secret") or basic_secret
        assertion = form.get("client_assertion")
        if secret:
            if any(_constant_time_equal(secret, known) for known in app.secrets):
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
            return self.error(
                request,
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                f"secret value, not the client secret ID, for a secret added to app '{app.client_id}'.",
            )
        if assertion:
            if form.get("client_assertion_type") != JWT_BEARER:
                return self.error(
                    request,
                    400,
                    "invalid_request",
                    900144,
                    f"The request body must contain the following parameter: 'client_assertion_type' "
                    f"with the value '{JWT_BEARER}'.",
                )
            if _issued_by_someone_else(assertion, app):
                problem = self._check_federated(assertion, app)
                if problem is None:
                    return "federated"
                code, message = problem
                return self.error(request, 400, "invalid_request", code, message)
            problem = self._check_assertion(assertion, app, tenant)
            if problem is None:
                return "certificate"
            code, message = problem
            return self.error(request, 401, "invalid_client", code, message)
        return self.error(
            request,
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )

    def _check_assertion(self, assertion: str, app: AppRegistration, tenant: str) -> tuple[int, str] | None:
        """Verify a client assertion against the app's registered certificates (RFC 7523)."""
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            return 50027, "JWT token is invalid or malformed."
        candidates = _matching_certificates(app.certificates, header.get("x5t"), header.get("x5t#S256"))
        if not candidates:
            thumbprint = header.get("x5t") or header.get("x5t#S256") or "(none)"
            return (
                700027,
                f"The certificate with identifier used to sign the client assertion is not registered on "
                f"application. [Reason - The key was not found., Thumbprint of key used by client: "
                f"'{thumbprint}']",
            )
        audiences = {
            f"{self.host_url}/{tenant}/oauth2/v2.0/token".lower(),
            f"{self.host_url}/{self.directory.tenant_id}/oauth2/v2.0/token".lower(),
            f"{self.host_url}/{self.directory.tenant_id}/v2.0".lower(),
        }
        for certificate in candidates:
            try:
                claims = jwt.decode(
                    assertion,
                    certificate.public_key(),  # type: ignore[arg-type]
                    algorithms=["RS256", "PS256"],
                    options={"require": ["exp", "aud", "iss", "sub"], "verify_aud": False},
                    leeway=ASSERTION_CLOCK_SKEW_SECONDS,
                )
            except jwt.ExpiredSignatureError:
                return 700024, "Client assertion is not within its valid time range."
            except jwt.ImmatureSignatureError:
                return 700024, "Client assertion is not within its valid time range."
            except jwt.MissingRequiredClaimError as exc:
                return 50027, f"JWT token is invalid or malformed: {exc}."
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError:
                return 50027, "JWT token is invalid or malformed."
            audience = claims.get("aud")
            audience_values = audience if isinstance(audience, list) else [audience]
            if not any(str(value).lower() in audiences for value in audience_values):
                return (
                    700027,
                    "Client assertion failed signature validation. [Reason - The audience of the client "
                    "assertion is not the token endpoint of this tenant.]",
                )
            if str(claims.get("iss", "")).lower() != app.client_id.lower() or (
                str(claims.get("sub", "")).lower() != app.client_id.lower()
            ):
                return (
                    700021,
                    "Client assertion application identifier doesn't match 'client_id' parameter.",
                )
            return None
        return 700027, "Client assertion failed signature validation."


def _issued_by_someone_else(assertion: str, app: AppRegistration) -> bool:
    """A certificate assertion is issued by the app itself (`iss` = its client id, RFC 7523); a
    token from an identity provider names it by URL (Graph `federatedIdentityCredential.issuer`:
    "the URL of the external identity provider"), and is exchanged under a federated credential."""
    try:
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        return False
    issuer = str(claims.get("iss", ""))
    return issuer.lower() != app.client_id.lower() and issuer.startswith("https://")


def _matching_certificates(
    certificates: Iterable[x509.Certificate], x5t: str | None, x5t_s256: str | None
) -> list[x509.Certificate]:
    """Registered certificates named by the assertion's thumbprint header (all if it names none)."""
    certificates = list(certificates)
    if not x5t and not x5t_s256:
        return certificates
    found: list[x509.Certificate] = []
    for certificate in certificates:
        sha1 = certificate.fingerprint(hashes.SHA1())  # noqa: S303 - x5t is SHA-1 by definition
        sha256 = certificate.fingerprint(hashes.SHA256())
        if (x5t and _b64url_equal(x5t, sha1)) or (x5t_s256 and _b64url_equal(x5t_s256, sha256)):
            found.append(certificate)
    return found


def _b64url_equal(encoded: str, digest: bytes) -> bool:
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)) == digest
    except (binascii.Error, ValueError):
        return False


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
