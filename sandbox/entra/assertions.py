"""Client assertions at the token endpoint: a certificate assertion signed by the app itself
(RFC 7523), or a token from an identity provider exchanged under a federated credential (workload
identity federation). Each check answers `None` or the AADSTS code and message of the refusal.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from sandbox.core.clock import Clock
from sandbox.directory import (
    ASSERTION_CLOCK_SKEW_SECONDS,
    AppRegistration,
    Directory,
)


class ClientAssertions:
    """Checks the assertions of the tenant's token endpoint at `host_url`."""

    def __init__(self, directory: Directory, host_url: str, clock: Clock) -> None:
        self.directory = directory
        self.host_url = host_url
        self._clock = clock

    @property
    def v2_issuer(self) -> str:
        """The tenant's v2.0 issuer: of its v2 tokens, and of a federated credential trusting a
        managed identity (Learn: issuer `https://login.microsoftonline.com/{tenant}/v2.0`)."""
        return f"{self.host_url}/{self.directory.tenant_id}/v2.0"

    def check_federated(self, assertion: str, app: AppRegistration) -> tuple[int, str] | None:
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

    def check_certificate(self, assertion: str, app: AppRegistration, tenant: str) -> tuple[int, str] | None:
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
            claims = _signed_claims(assertion, certificate)
            if claims is None:
                continue  # signed with another key: try the next certificate
            if isinstance(claims, tuple):
                return claims
            return _claims_problem(claims, app, audiences)
        return 700027, "Client assertion failed signature validation."


def _signed_claims(assertion: str, certificate: x509.Certificate) -> dict[str, Any] | tuple[int, str] | None:
    """The assertion's claims if `certificate` signed it; `None` if it did not; else the problem."""
    try:
        return jwt.decode(
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
        return None
    except jwt.PyJWTError:
        return 50027, "JWT token is invalid or malformed."


def _claims_problem(
    claims: dict[str, Any], app: AppRegistration, audiences: set[str]
) -> tuple[int, str] | None:
    """Audience (this tenant's token endpoint) and issuer = subject = the app's client id."""
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


def issued_by_someone_else(assertion: str, app: AppRegistration) -> bool:
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
