"""Microsoft Entra ID stand-in: OIDC discovery, JWKS and the v2.0 token endpoint.

`service` is the HTTP face (routes, Entra's error body, managed identity tokens); `assertions`
checks certificate and federated client assertions. The tenant itself is `sandbox.directory`.
"""

from sandbox.entra.service import EntraService

__all__ = ["EntraService"]
