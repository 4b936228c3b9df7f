"""What the tenant knows: app registrations, managed identities, federated credentials, the
principal a validated token names, and the resources (Graph, Business Central) it issues tokens for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509

from sandbox.core.httpcore import new_guid

GRAPH_RESOURCE = "https://graph.microsoft.com"
BC_RESOURCE = "https://api.businesscentral.dynamics.com"
# Resources can be named by application ID URI or by the first-party application id.
RESOURCE_ALIASES = {
    GRAPH_RESOURCE: GRAPH_RESOURCE,
    "00000003-0000-0000-c000-000000000000": GRAPH_RESOURCE,
    BC_RESOURCE: BC_RESOURCE,
    "996def3d-b36c-4153-8607-a6fd3c01b89f": BC_RESOURCE,
}
RESOURCE_ROLES = {
    GRAPH_RESOURCE: ("Bookings.Read.All", "BookingsAppointment.ReadWrite.All"),
    BC_RESOURCE: ("API.ReadWrite.All",),
}
OIDC_SCOPES = {"openid", "profile", "offline_access", "email"}
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
