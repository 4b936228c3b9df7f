"""The tenant's directory, shared by every service: app registrations, managed identities,
federated credentials, the signing key, issuing and validating access tokens.

Entra's token endpoint issues tokens from it; Graph and Business Central validate them against it.
"""

from sandbox.directory.registrations import (
    API_APP_ROLES,
    ASSERTION_CLOCK_SKEW_SECONDS,
    BC_RESOURCE,
    GRAPH_RESOURCE,
    JWT_BEARER,
    MANAGED_IDENTITY_TOKEN_LIFETIME,
    OIDC_SCOPES,
    TOKEN_EXCHANGE_AUDIENCE,
    TOKEN_LIFETIME,
    AppRegistration,
    FederatedCredential,
    ManagedIdentity,
    Principal,
    TokenError,
)
from sandbox.directory.tenant import Directory

__all__ = [
    "API_APP_ROLES",
    "ASSERTION_CLOCK_SKEW_SECONDS",
    "BC_RESOURCE",
    "GRAPH_RESOURCE",
    "JWT_BEARER",
    "MANAGED_IDENTITY_TOKEN_LIFETIME",
    "OIDC_SCOPES",
    "TOKEN_EXCHANGE_AUDIENCE",
    "TOKEN_LIFETIME",
    "AppRegistration",
    "Directory",
    "FederatedCredential",
    "ManagedIdentity",
    "Principal",
    "TokenError",
]
