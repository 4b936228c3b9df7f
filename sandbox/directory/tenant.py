"""The tenant: app registrations, the token signing key, issuing and validating tokens.

Access tokens are RS256 JWTs signed by a per-run key, so resource servers (Graph, Business Central)
validate them statelessly: audience, tenant, signature and expiry (against the injected clock).
"""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.core.clock import Clock
from sandbox.directory.registrations import (
    API_APP_ROLES,
    RESOURCE_ALIASES,
    RESOURCE_ROLES,
    TOKEN_LIFETIME,
    AppRegistration,
    FederatedCredential,
    ManagedIdentity,
    Principal,
    TokenError,
)


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
        known = RESOURCE_ALIASES.get(name) or RESOURCE_ALIASES.get(name.lower())
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
            "roles": list(app.consented.get(resource, RESOURCE_ROLES.get(resource, app.api_roles))),
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
        audience = RESOURCE_ALIASES.get(str(claims.get("aud", "")).rstrip("/"))
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
