"""Who is calling: the caller App Service Authentication passes on, and the app roles it holds.

In Azure, App Service Authentication ("Easy Auth") sits in front of the app: it validates the
Entra ID token or session and passes the caller on in `X-MS-CLIENT-PRINCIPAL`, base64 of
`{"auth_typ", "name_typ", "role_typ", "claims": [{"typ", "val"}]}`. Outside requests cannot set
that header (the platform strips it), so the app trusts it *only* where the platform is known to
be on: in Azure that is `WEBSITE_AUTH_ENABLED=True`; locally devhost plays the platform.

Claim names arrive either as in the token (`oid`, `name`, `roles`) or after the platform's
default claim mapping (`http://schemas.microsoft.com/identity/claims/objectidentifier`, ...); both
are understood. App roles arrive as claims of type `roles` whatever `role_typ` says: App Service
names the ws/2008 role URI as `role_typ` but leaves the token's `roles` claim unmapped
(Azure/azure-functions-host#3898, where `ClaimsPrincipal.IsInRole` misses app roles and the
workaround reads `FunctionAppPrincipalRoleClaimType = "roles"`; AzureAD/microsoft-identity-web#1983
and #2166, which reads App Service's roles from `roles` for the same reason). So `roles` is always
read, besides the type `role_typ` names. Everything here is pure: no I/O, no settings object.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shared.domain.models import Actor

ROLE_READ = "Bookings.Read"
ROLE_INVOICE = "Bookings.Invoice"
APP_ROLES = (ROLE_READ, ROLE_INVOICE)

PRINCIPAL_HEADER = "x-ms-client-principal"
MAX_PRINCIPAL_BYTES = 64 * 1024

OBJECT_ID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role", "role")
NAME_CLAIMS = (
    "name",
    "preferred_username",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
    "upn",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
    "email",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
)
# A daemon's token (client credentials) has no name: it is named by its application id.
APPLICATION_ID_CLAIMS = ("appid", "azp")
SUBJECT_CLAIMS = ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier", "sub")
MAX_FIELD_LENGTH = 256


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: who (object id, display name), how, and which app roles."""

    id: str
    name: str
    roles: frozenset[str]
    identity_provider: str = "aad"

    @property
    def actor(self) -> Actor:
        """What audit fields record about the caller (`requestedBy`, `updatedBy`)."""
        return Actor(id=self.id, name=self.name)

    def has_role(self, role: str) -> bool:
        return role in self.roles


class InvalidPrincipal(ValueError):
    """The principal header is present but is not the platform's format."""


def _first(claims: Mapping[str, list[str]], names: Iterable[str]) -> str | None:
    for name in names:
        for value in claims.get(name.lower(), ()):
            if value.strip():
                return value.strip()[:MAX_FIELD_LENGTH]
    return None


def decode_client_principal(value: str) -> dict[str, object]:
    """The JSON object inside an `X-MS-CLIENT-PRINCIPAL` value; `InvalidPrincipal` if it is not one."""
    if len(value) > MAX_PRINCIPAL_BYTES:
        raise InvalidPrincipal("the principal header is too large")
    text = value.strip()
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raise InvalidPrincipal("the principal header is not base64") from None
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidPrincipal("the principal header is not base64 of JSON") from None
    if not isinstance(document, dict):
        raise InvalidPrincipal("the principal header is not a JSON object")
    return document


def parse_client_principal(value: str | None) -> Caller | None:
    """The caller in an `X-MS-CLIENT-PRINCIPAL` value, or None when there is no usable caller.

    None for: no header, a malformed header, or a principal without an object id (a caller the
    audit could not name is no caller).
    """
    if not value or not value.strip():
        return None
    try:
        document = decode_client_principal(value)
    except InvalidPrincipal:
        return None
    raw_claims = document.get("claims")
    if not isinstance(raw_claims, list):
        return None
    claims: dict[str, list[str]] = {}
    for claim in raw_claims:
        if not isinstance(claim, dict):
            continue
        typ, val = claim.get("typ"), claim.get("val")
        if isinstance(typ, str) and isinstance(val, str):
            claims.setdefault(typ.lower(), []).append(val)
    role_type = document.get("role_typ")
    role_names = [*([role_type] if isinstance(role_type, str) and role_type else []), *ROLE_CLAIMS]
    role_types = dict.fromkeys(n.lower() for n in role_names)
    roles = frozenset(value.strip() for name in role_types for value in claims.get(name, ()))
    name_type = document.get("name_typ")
    name_claims = [*([name_type] if isinstance(name_type, str) and name_type else []), *NAME_CLAIMS]
    object_id = _first(claims, OBJECT_ID_CLAIMS) or _first(claims, SUBJECT_CLAIMS)
    if not object_id:
        return None
    application = _first(claims, APPLICATION_ID_CLAIMS)
    name = _first(claims, name_claims) or (f"application {application}" if application else object_id)
    provider = document.get("auth_typ")
    return Caller(
        id=object_id,
        name=name,
        roles=frozenset(role for role in roles if role),
        identity_provider=provider if isinstance(provider, str) and provider else "aad",
    )


def caller_from_headers(headers: Mapping[str, str]) -> Caller | None:
    """The caller of a request, from its headers (any case)."""
    for name, value in headers.items():
        if name.lower() == PRINCIPAL_HEADER:
            return parse_client_principal(value)
    return None


def platform_auth_enabled(value: str | None) -> bool:
    """`WEBSITE_AUTH_ENABLED` read as the Functions host reads it to decide whether to run the
    platform's authentication itself: `bool.TryParse` ("True", "false", any case), else a non-zero
    integer (azure-functions-host `HostEasyAuthOptionsSetup.IsSiteAuthEnabled`)."""
    text = (value or "").strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text) != 0
    except ValueError:
        return False


# Where the app runs, told as the Functions host itself tells it (azure-functions-host,
# src/WebJobs.Script/Environment/EnvironmentExtensions.cs): App Service plans set
# WEBSITE_INSTANCE_ID (`IsAppService`); Flex Consumption sets WEBSITE_SKU=FlexConsumption
# (`IsFlexConsumptionSku`), and before specialization is told by LEGION_SERVICE_HOST with
# CONTAINER_NAME or WEBSITE_POD_NAME (`IsLinuxConsumptionOnLegion`). CONTAINER_NAME alone is no
# marker: other container hosts set it too. WEBSITE_SITE_NAME is read-only on every App Service
# app (Learn, "Environment variables and app settings in Azure App Service").
FLEX_CONSUMPTION_SKU = "FlexConsumption"


def _set(environ: Mapping[str, str], name: str) -> bool:
    return bool((environ.get(name) or "").strip())


def running_in_azure(environ: Mapping[str, str]) -> bool:
    """True on any Azure Functions plan (App Service, Consumption, Flex Consumption)."""
    if _set(environ, "WEBSITE_INSTANCE_ID") or _set(environ, "WEBSITE_SITE_NAME"):
        return True
    if (environ.get("WEBSITE_SKU") or "").strip().lower() == FLEX_CONSUMPTION_SKU.lower():
        return True
    in_container = _set(environ, "CONTAINER_NAME") or _set(environ, "WEBSITE_POD_NAME")
    return in_container and _set(environ, "LEGION_SERVICE_HOST")


def platform_problem(environ: Mapping[str, str]) -> str | None:
    """Why the app must not trust principal headers here, or None when it may.

    In Azure without App Service Authentication, anyone could send `X-MS-CLIENT-PRINCIPAL`: fail
    closed. Elsewhere (devhost, which plays the platform) the header is trusted.

    `WEBSITE_AUTH_ENABLED` is the platform's own switch, on every plan this app runs on:
    - App Service plans inject it ("Read-only. Injected into a Windows or Linux app to indicate
      whether App Service authentication is enabled", Learn, "Environment variables and app
      settings in Azure App Service").
    - On Linux Consumption and Flex Consumption the Functions host runs the authentication itself,
      and only when this variable is true: `JobHostEasyAuthMiddleware` is registered for
      `IsAnyLinuxConsumption()` (which includes `IsFlexConsumptionSku()`) and runs when
      `HostEasyAuthOptions.SiteAuthEnabled`, read from `WEBSITE_AUTH_ENABLED`. The host sets the
      variable at specialization from the site's auth settings (`HostAssignmentContext
      .ApplyAppSettings`, called by `LinuxInstanceManager`, the base of Flex's
      `LegionInstanceManager`), and the Python worker gets the host's environment (a new worker
      inherits it; a placeholder worker receives it in `FunctionEnvironmentReloadRequest`).
      Sources: Azure/azure-functions-host, src/WebJobs.Script.WebHost/WebScriptHostBuilderExtension.cs,
      Configuration/HostEasyAuthOptionsSetup.cs, Models/HostAssignmentContext.cs,
      Management/LinuxInstanceManager.cs; src/WebJobs.Script/Environment/EnvironmentExtensions.cs.
    So where the app reads it as false, the platform is not checking callers either.
    """
    if running_in_azure(environ) and not platform_auth_enabled(environ.get("WEBSITE_AUTH_ENABLED")):
        return (
            "App Service Authentication is not enabled for this app, so callers cannot be "
            "identified. An administrator must enable it (authsettingsV2 with the Microsoft Entra "
            "provider, see docs/operations.md); until then only health and openapi answer."
        )
    return None


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: 401 (no caller), 403 (missing role) or 503 (platform auth off)."""

    status: int
    title: str
    detail: str


def identify(headers: Mapping[str, str], environ: Mapping[str, str]) -> Caller | Refusal:
    """The signed-in caller, whatever its roles; 503 when the platform's sign-in is off, 401 without one."""
    problem = platform_problem(environ)
    if problem is not None:
        return Refusal(503, "Authentication not configured", problem)
    caller = caller_from_headers(headers)
    if caller is None:
        return Refusal(
            401,
            "Unauthorized",
            "Sign in with Microsoft Entra ID: send an access token for this API "
            "(Authorization: Bearer) or sign in at /.auth/login/aad.",
        )
    return caller


def authorize(headers: Mapping[str, str], role: str, environ: Mapping[str, str]) -> Caller | Refusal:
    """The caller if it holds `role`, else the refusal to answer with."""
    caller = identify(headers, environ)
    if isinstance(caller, Refusal) or caller.has_role(role):
        return caller
    return Refusal(
        403,
        "Forbidden",
        f"This operation needs the app role {role}, which the caller does not have. "
        "An administrator assigns app roles in Microsoft Entra ID (Enterprise applications).",
    )


def me_document(caller: Caller) -> dict[str, object]:
    """`GET /api/me`: the caller as the app sees it (the portal's answer to "who is signed in")."""
    return {
        "name": caller.name,
        "id": caller.id,
        "roles": sorted(caller.roles),
        "identityProvider": caller.identity_provider,
    }
