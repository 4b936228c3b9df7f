"""App Service Authentication ("Easy Auth"), played locally: who is calling, passed on in headers.

What the platform does in front of a Function App, and so what devhost does in front of the app:

- Headers a client sends that only the platform may set (`X-MS-CLIENT-PRINCIPAL*`,
  `X-MS-TOKEN-*`) are removed from every request.
- `Authorization: Bearer <token>`: an Entra ID access token, validated as the platform does:
  RS256 signature against the keys of `{ENTRA_AUTHORITY_HOST}/{ENTRA_TENANT_ID}/discovery/v2.0/keys`,
  not expired (five minutes of clock skew, as the platform's token handler allows), issuer
  `{host}/{tenant}/v2.0` (v2 tokens) or `https://sts.windows.net/{tenant}/` (v1 tokens), audience
  `ENTRA_CLIENT_ID` or `api://ENTRA_CLIENT_ID`. A token that fails any check is a 401: never an
  anonymous call.
- A browser session from the mock sign-in form at `/.auth/login/aad` (user name and roles, as the
  Static Web Apps CLI's emulator offers), read back at `/.auth/me` and ended at `/.auth/logout`.
  The session cookie is signed with a key made at start, so it cannot be forged or edited.
- The caller is passed on as App Service does (not as Static Web Apps does): `X-MS-CLIENT-PRINCIPAL`
  (base64 of `{auth_typ, name_typ, role_typ, claims: [{typ, val}]}`, Learn, "Work with user
  identities in Azure App Service authentication"), `-ID`, `-NAME` and `-IDP`. App roles are
  claims of type `roles`, as the token carries them: the platform's claim mapping leaves them
  unmapped (Azure/azure-functions-host#3898: `ClaimsPrincipal.IsInRole` misses app roles, and the
  workaround reads `FunctionAppPrincipalRoleClaimType = "roles"`), and `role_typ` is `roles` too,
  so an app that stopped reading `roles` claims would see no roles here either.

Requests without a token or session go on without a caller; the app decides (401 from the API,
`health` and `openapi` open), as with `unauthenticatedClientAction` and `excludedPaths`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs

import jwt
import requests

log = logging.getLogger("devhost.auth")

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
SESSION_COOKIE = "AppServiceAuthSession"
CLOCK_SKEW = timedelta(minutes=5)
JWKS_REFRESH_SECONDS = 10.0
NAME_TYPE = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
ROLE_TYPE = "roles"  # app roles: the token's own claim name (see the module docstring)
OBJECT_ID_TYPE = "http://schemas.microsoft.com/identity/claims/objectidentifier"
PLATFORM_HEADER_PREFIXES = ("x-ms-client-principal", "x-ms-token-")
DEFAULT_FORM_ROLES = ("Bookings.Read", "Bookings.Invoice")
MAX_FORM_FIELD = 256


class AuthError(Exception):
    """A bearer token the platform refuses; the message says why (never the token)."""


@dataclass(frozen=True)
class Identity:
    """A signed-in caller: what goes into the principal headers."""

    user_id: str
    name: str
    roles: tuple[str, ...]
    claims: tuple[tuple[str, str], ...]
    provider: str = "aad"

    def principal_headers(self) -> dict[str, str]:
        document = {
            "auth_typ": self.provider,
            "name_typ": NAME_TYPE,
            "role_typ": ROLE_TYPE,
            "claims": [{"typ": typ, "val": val} for typ, val in self.claims],
        }
        encoded = base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode("ascii")
        return {
            "X-MS-CLIENT-PRINCIPAL": encoded,
            "X-MS-CLIENT-PRINCIPAL-ID": self.user_id,
            "X-MS-CLIENT-PRINCIPAL-NAME": self.name,
            "X-MS-CLIENT-PRINCIPAL-IDP": self.provider,
        }

    def me(self) -> dict[str, Any]:
        """`/.auth/me` as the Static Web Apps CLI answers it."""
        return {
            "clientPrincipal": {
                "identityProvider": self.provider,
                "userId": self.user_id,
                "userDetails": self.name,
                "userRoles": ["anonymous", "authenticated", *self.roles],
                "claims": [{"typ": typ, "val": val} for typ, val in self.claims],
            }
        }


def _token_claims(claims: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """A token's claims as the platform passes them: `oid` and `name` under their mapped types,
    `roles` as in the token."""
    mapped = {"oid": OBJECT_ID_TYPE, "name": NAME_TYPE}
    result: list[tuple[str, str]] = []
    for name, value in claims.items():
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, str | int | float | bool):
                result.append((mapped.get(name, name), str(item)))
    return tuple(result)


def identity_from_token(claims: Mapping[str, Any]) -> Identity:
    roles = claims.get("roles") or []
    user_id = str(claims.get("oid") or claims.get("sub") or "")
    application = claims.get("appid") or claims.get("azp")
    name = str(
        claims.get("name")
        or claims.get("preferred_username")
        or claims.get("upn")
        or (f"application {application}" if application else user_id)
    )
    return Identity(
        user_id=user_id,
        name=name,
        roles=tuple(str(role) for role in roles) if isinstance(roles, list) else (),
        claims=_token_claims(claims),
    )


def mock_identity(user_name: str, user_id: str, roles: list[str]) -> Identity:
    """The identity of a mock sign-in (a stable object id per user name unless one is given)."""
    oid = user_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"devhost-user:{user_name.lower()}"))
    claims = [
        (OBJECT_ID_TYPE, oid),
        (NAME_TYPE, user_name),
        ("name", user_name),
        ("preferred_username", user_name),
    ]
    claims += [(ROLE_TYPE, role) for role in roles]
    return Identity(user_id=oid, name=user_name, roles=tuple(roles), claims=tuple(claims))


def safe_redirect(target: str | None) -> str:
    """Only same-site paths (`/...`, never `//host` or a scheme): no open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(ch) < 0x20 for ch in target):
        return "/"
    return target


class EasyAuth:
    """Token validation, mock sessions and the `/.auth` endpoints for one devhost."""

    def __init__(
        self,
        settings: Mapping[str, str],
        *,
        clock: Callable[[], datetime] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.tenant_id = (settings.get("ENTRA_TENANT_ID") or "").strip()
        self.client_id = (settings.get("ENTRA_CLIENT_ID") or "").strip()
        host = (settings.get("ENTRA_AUTHORITY_HOST") or DEFAULT_AUTHORITY_HOST).strip().rstrip("/")
        self.authority_host = host
        self.clock = clock or (lambda: datetime.now(UTC))
        self.timeout = timeout
        self._session_key = secrets.token_bytes(32)
        self._keys: dict[str, Any] = {}
        self._keys_fetched_at: float | None = None
        self._lock = threading.Lock()

    # -- bearer tokens ---------------------------------------------------------------------------

    @property
    def jwks_url(self) -> str:
        return f"{self.authority_host}/{self.tenant_id}/discovery/v2.0/keys"

    @property
    def issuers(self) -> tuple[str, str]:
        return (
            f"{self.authority_host}/{self.tenant_id}/v2.0",
            f"https://sts.windows.net/{self.tenant_id}/",
        )

    @property
    def audiences(self) -> tuple[str, str]:
        return (self.client_id, f"api://{self.client_id}")

    def _signing_key(self, kid: str) -> Any:
        with self._lock:
            key = self._keys.get(kid)
            recently = (
                self._keys_fetched_at is not None
                and time.monotonic() - self._keys_fetched_at < JWKS_REFRESH_SECONDS
            )
            if key is not None or recently:
                return key
            try:
                response = requests.get(self.jwks_url, timeout=self.timeout)
                response.raise_for_status()
                document = response.json()
            except (requests.RequestException, ValueError) as exc:
                raise AuthError(f"the signing keys could not be read ({type(exc).__name__})") from None
            keys: dict[str, Any] = {}
            for jwk in document.get("keys", []) if isinstance(document, dict) else []:
                if isinstance(jwk, dict) and jwk.get("kty") == "RSA" and jwk.get("kid"):
                    try:
                        keys[str(jwk["kid"])] = jwt.algorithms.RSAAlgorithm.from_jwk(jwk)
                    except (jwt.PyJWTError, ValueError, KeyError):
                        continue
            self._keys = keys
            self._keys_fetched_at = time.monotonic()
            return keys.get(kid)

    def validate(self, token: str) -> dict[str, Any]:
        """The token's claims if the platform would accept it; `AuthError` saying why not."""
        if not self.tenant_id or not self.client_id:
            raise AuthError("ENTRA_TENANT_ID and ENTRA_CLIENT_ID must be set to validate tokens")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("the token is not a JWT") from None
        if header.get("alg") != "RS256":
            raise AuthError("the token is not signed with RS256")
        key = self._signing_key(str(header.get("kid") or ""))
        if key is None:
            raise AuthError("the token is signed with a key the authority does not publish")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                options={
                    "verify_exp": False,  # checked below against the injected clock
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                    "require": ["exp", "iss", "aud"],
                },
            )
        except jwt.InvalidSignatureError:
            raise AuthError("the token's signature is invalid") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"the token is malformed ({type(exc).__name__})") from None
        now = self.clock()
        try:
            expires = datetime.fromtimestamp(int(claims["exp"]), UTC)
            not_before = datetime.fromtimestamp(int(claims["nbf"]), UTC) if "nbf" in claims else None
        except (TypeError, ValueError, OverflowError):
            raise AuthError("the token's lifetime is malformed") from None
        if now >= expires + CLOCK_SKEW:
            raise AuthError("the token has expired")
        if not_before is not None and now < not_before - CLOCK_SKEW:
            raise AuthError("the token is not valid yet")
        if claims.get("iss") not in self.issuers:
            raise AuthError("the token was issued by another authority or tenant")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if not any(value in self.audiences for value in audiences):
            raise AuthError("the token is for another audience")
        return claims

    # -- sessions --------------------------------------------------------------------------------

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self._session_key, payload, hashlib.sha256).hexdigest()

    def session_cookie(self, identity: Identity) -> str:
        payload = json.dumps(
            {"id": identity.user_id, "name": identity.name, "roles": list(identity.roles)},
            separators=(",", ":"),
        ).encode()
        encoded = base64.urlsafe_b64encode(payload).decode("ascii").rstrip("=")
        return f"{encoded}.{self._sign(payload)}"

    def session(self, cookie_header: str | None) -> Identity | None:
        """The identity of a valid session cookie (signed by this host), else None."""
        if not cookie_header:
            return None
        try:
            cookies = SimpleCookie(cookie_header)
        except CookieError:
            return None
        morsel = cookies.get(SESSION_COOKIE)
        if morsel is None or "." not in morsel.value:
            return None
        encoded, _, signature = morsel.value.rpartition(".")
        try:
            payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            data = json.loads(payload)
            return mock_identity(str(data["name"]), str(data["id"]), [str(r) for r in data["roles"]])
        except (ValueError, KeyError, TypeError):
            return None

    # -- /.auth endpoints ------------------------------------------------------------------------

    def login_form(self, redirect: str) -> str:
        roles = "\n".join(DEFAULT_FORM_ROLES)
        target = html.escape(safe_redirect(redirect), quote=True)
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in (local)</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}}
label{{display:block;margin-top:1rem;font-weight:600}}input,textarea{{width:100%;font:inherit;padding:.4rem}}
button{{margin-top:1.5rem;font:inherit;padding:.5rem 1.5rem}}p{{color:#444}}</style></head>
<body><main>
<h1>Sign in with Microsoft Entra ID (local emulator)</h1>
<p>devhost plays App Service Authentication. Choose who you are and which app roles you hold:
<code>Bookings.Read</code> to see bookings, <code>Bookings.Invoice</code> to invoice.</p>
<form method="post" action="/.auth/login/aad">
<input type="hidden" name="post_login_redirect_uri" value="{target}">
<label for="userDetails">User name</label>
<input id="userDetails" name="userDetails" required maxlength="{MAX_FORM_FIELD}" value="office@contoso.com">
<label for="userId">User id (object id; optional)</label>
<input id="userId" name="userId" maxlength="{MAX_FORM_FIELD}">
<label for="userRoles">App roles (one per line)</label>
<textarea id="userRoles" name="userRoles" rows="3">{html.escape(roles)}</textarea>
<button type="submit">Sign in</button>
</form></main></body></html>
"""

    def login(self, body: bytes) -> tuple[Identity, str] | None:
        """The identity and redirect target of a submitted form; None if it names no user."""
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            return None

        def field(name: str) -> str:
            return (form.get(name) or [""])[0].strip()[:MAX_FORM_FIELD]

        name = field("userDetails")
        if not name:
            return None
        raw_roles = (form.get("userRoles") or [""])[0].replace(",", "\n").splitlines()
        roles = list(dict.fromkeys(r.strip()[:MAX_FORM_FIELD] for r in raw_roles if r.strip()))[:20]
        roles = [r for r in roles if r not in ("anonymous", "authenticated")]
        identity = mock_identity(name, field("userId"), roles)
        return identity, safe_redirect(field("post_login_redirect_uri"))
