"""azd hook: create or update the app's Entra ID app registration. Idempotent; run before and after
provisioning (azure.yaml), it does each time everything it has the values for.

Why a hook with the Azure CLI (`az rest` on Microsoft Graph v1.0), not the Microsoft Graph Bicep
extension: the registration must exist before the templates run (its client id is an app setting
and App Service Authentication's client id), while its redirect URI needs the site's host name and
its federated credential the identity's object id, which exist only after them; one Bicep
deployment cannot declare the same application twice, nor set `identifierUris` to `api://{appId}`
of the application it creates. The IaC scanner's Bicep parser also does not read `extension`
declarations. `az` is already what azd users sign in with.

Before provisioning: the registration (uniqueName `bookings-invoicing-{AZURE_ENV_NAME}`) with
the app roles `Bookings.Read` / `Bookings.Invoice`, the `user_impersonation` scope, identifier URI
`api://{appId}`, v2 access tokens, ID tokens for App Service's browser sign-in, the application
permissions Graph `Bookings.Read.All` and Business Central `API.ReadWrite.All`, and its service
principal; then `azd env set ENTRA_CLIENT_ID`. After provisioning (the outputs
FUNCTION_APP_HOST_NAME, APP_IDENTITY_PRINCIPAL_ID, ENTRA_TENANT_ID, ENTRA_AUTHORITY_HOST are in the
environment): the redirect URI `https://{host}/.auth/login/aad/callback` and the federated
identity credential trusting the Function App's managed identity. Each time it prints the one step
that needs an administrator: consent, and the app in Business Central.

Microsoft Graph v1.0: "Upsert application" (`PATCH /applications(uniqueName='...')`,
`Prefer: create-if-missing`), "Upsert federatedIdentityCredential", "Create servicePrincipal";
Learn, "Configure an application to trust a managed identity" (issuer
`https://login.microsoftonline.com/{tenant}/v2.0`, subject = the identity's object id, audience
`api://AzureADTokenExchange`); "Configure your App Service or Azure Functions app to use Microsoft
Entra sign-in" (redirect URI, ID tokens).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from typing import Any, Protocol

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
BUSINESS_CENTRAL_APP_ID = "996def3d-b36c-4153-8607-a6fd3c01b89f"
PERMISSIONS = {GRAPH_APP_ID: "Bookings.Read.All", BUSINESS_CENTRAL_APP_ID: "API.ReadWrite.All"}
EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
CREDENTIAL_NAME = "function-app-identity"
# Kept once people hold the roles: the same ids as the manifest in docs/operations.md.
APP_ROLES = (
    ("5b1e8a43-6f2c-4b8e-9d7a-0c3f2e1d4a51", "Bookings.Read", "Read bookings",
     "See bookings and the progress of invoice requests."),
    ("c7d2f9b0-1a3e-4c5d-8b6f-7e9a0b1c2d62", "Bookings.Invoice", "Invoice bookings",
     "Create draft invoices for bookings (submit invoice requests)."),
)  # fmt: skip
SCOPE = {
    "id": "8a3b1f0e-5c1d-4d3e-9a51-2f0d6b7c9e01",
    "value": "user_impersonation",
    "type": "User",
    "isEnabled": True,
    "adminConsentDisplayName": "Use Bookings invoicing",
    "adminConsentDescription": (
        "Lets the app (the Power Platform connector) call Bookings invoicing as the signed-in user."
    ),
    "userConsentDisplayName": "Use Bookings invoicing",
    "userConsentDescription": "Call Bookings invoicing as you.",
}


class HookError(RuntimeError):
    """A step failed; the message says which and what to do."""


class Graph(Protocol):
    def request(self, method: str, path: str, body: Any = None, *, upsert: bool = False) -> Any: ...


class AzRestGraph:
    """Microsoft Graph v1.0 through `az rest`, with the signed-in Azure CLI account."""

    base = "https://graph.microsoft.com/v1.0"

    def request(self, method: str, path: str, body: Any = None, *, upsert: bool = False) -> Any:
        command = ["az", "rest", "--method", method, "--url", self.base + path, "--only-show-errors"]
        headers = ["Content-Type=application/json"] + (["Prefer=create-if-missing"] if upsert else [])
        command += ["--headers", *headers]
        if body is not None:
            command += ["--body", json.dumps(body)]
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise HookError(f"{method} {path} failed: {completed.stderr.strip().splitlines()[-1:]}")
        return json.loads(completed.stdout) if completed.stdout.strip() else None


def unique_name(environment: str) -> str:
    return f"bookings-invoicing-{environment}".lower()


def app_roles(existing: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The two app roles; an existing role keeps its id (Entra refuses to change an enabled role's)."""
    by_value = {role.get("value"): role for role in existing}
    roles = [
        {
            "id": by_value.get(value, {}).get("id", role_id),
            "value": value,
            "displayName": name,
            "description": description,
            "allowedMemberTypes": ["User", "Application"],
            "isEnabled": True,
        }
        for role_id, value, name, description in APP_ROLES
    ]
    others = [role for role in existing if role.get("value") not in {r["value"] for r in roles}]
    return others + roles


def required_resource_access(
    existing: list[dict[str, Any]], role_ids: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Existing permissions plus the application permissions the app needs (type Role)."""
    merged = {
        entry["resourceAppId"]: [dict(a) for a in entry.get("resourceAccess", [])] for entry in existing
    }
    for resource, role_id in role_ids.items():
        accesses = merged.setdefault(resource, [])
        if not any(a.get("id") == role_id for a in accesses):
            accesses.append({"id": role_id, "type": "Role"})
    return [{"resourceAppId": resource, "resourceAccess": accesses} for resource, accesses in merged.items()]


def application_body(
    existing: Mapping[str, Any], role_ids: Mapping[str, str], host: str | None
) -> dict[str, Any]:
    """The registration's desired state, merged with what it already has (other redirect URIs,
    identifier URIs, permissions and roles stay)."""
    app_id = existing.get("appId")
    web = existing.get("web") or {}
    redirects = list(web.get("redirectUris") or [])
    if host and f"https://{host}/.auth/login/aad/callback" not in redirects:
        redirects.append(f"https://{host}/.auth/login/aad/callback")
    identifier_uris = list(existing.get("identifierUris") or [])
    if app_id and f"api://{app_id}" not in identifier_uris:
        identifier_uris.append(f"api://{app_id}")
    api = existing.get("api") or {}
    scopes = [s for s in api.get("oauth2PermissionScopes") or [] if s.get("value") != SCOPE["value"]]
    current_scope = next(
        (s for s in api.get("oauth2PermissionScopes") or [] if s.get("value") == SCOPE["value"]), None
    )
    return {
        "signInAudience": "AzureADMyOrg",
        "identifierUris": identifier_uris,
        "api": {
            "requestedAccessTokenVersion": 2,
            "oauth2PermissionScopes": [*scopes, {**SCOPE, "id": (current_scope or SCOPE)["id"]}],
        },
        "appRoles": app_roles(list(existing.get("appRoles") or [])),
        "web": {"redirectUris": redirects, "implicitGrantSettings": {"enableIdTokenIssuance": True}},
        "requiredResourceAccess": required_resource_access(
            list(existing.get("requiredResourceAccess") or []), role_ids
        ),
    }


def federated_credential(authority_host: str, tenant_id: str, principal_id: str) -> dict[str, Any]:
    """The trust in the Function App's user-assigned managed identity."""
    return {
        "name": CREDENTIAL_NAME,
        "issuer": f"{authority_host.rstrip('/')}/{tenant_id}/v2.0",
        "subject": principal_id,
        "audiences": [EXCHANGE_AUDIENCE],
        "description": "The Function App's user-assigned managed identity (no client secret).",
    }


def _service_principal(graph: Graph, app_id: str) -> dict[str, Any] | None:
    found = graph.request("GET", f"/servicePrincipals?$filter=appId eq '{app_id}'")
    values = (found or {}).get("value") or []
    return values[0] if values else None


def permission_role_ids(graph: Graph) -> dict[str, str]:
    """The ids of Bookings.Read.All (Graph) and API.ReadWrite.All (Business Central) in this tenant."""
    ids: dict[str, str] = {}
    for resource, value in PERMISSIONS.items():
        principal = _service_principal(graph, resource) or {}
        role = next((r for r in principal.get("appRoles") or [] if r.get("value") == value), None)
        if role is None:
            print(f"warning: {value} not found (no service principal of {resource} in this tenant): "
                  "add it later under API permissions", file=sys.stderr)  # fmt: skip
            continue
        ids[resource] = str(role["id"])
    return ids


def ensure_registration(graph: Graph, env: Mapping[str, str]) -> dict[str, Any]:
    """Create or update the registration, its service principal and (after provisioning) its
    federated credential; returns the application."""
    name = unique_name(env.get("AZURE_ENV_NAME") or "default")
    path = f"/applications(uniqueName='{name}')"
    graph.request("PATCH", path, {"displayName": f"Bookings invoicing ({name})"}, upsert=True)
    existing = graph.request("GET", path)
    body = application_body(existing, permission_role_ids(graph), env.get("FUNCTION_APP_HOST_NAME"))
    graph.request("PATCH", path, body)
    application = graph.request("GET", path)
    if _service_principal(graph, application["appId"]) is None:
        graph.request("POST", "/servicePrincipals", {"appId": application["appId"]})
    principal_id, tenant_id = env.get("APP_IDENTITY_PRINCIPAL_ID"), env.get("ENTRA_TENANT_ID")
    if principal_id and tenant_id:
        credential = federated_credential(
            env.get("ENTRA_AUTHORITY_HOST") or "https://login.microsoftonline.com", tenant_id, principal_id
        )
        credential_path = (
            f"/applications/{application['id']}/federatedIdentityCredentials(name='{CREDENTIAL_NAME}')"
        )
        graph.request("PATCH", credential_path, credential, upsert=True)
    return dict(application)


def administrator_step(application: Mapping[str, Any], tenant_id: str | None) -> str:
    app_id = application["appId"]
    consent_url = (
        f"https://login.microsoftonline.com/{tenant_id or 'organizations'}/adminconsent?client_id={app_id}"
    )
    return "\n".join(
        [
            "",
            f"App registration {application.get('displayName')} (client id {app_id}) is ready.",
            "One step needs an administrator, once per tenant and Business Central environment:",
            "  1. Grant admin consent for Bookings.Read.All (Microsoft Graph) and API.ReadWrite.All",
            "     (Dynamics 365 Business Central), as a Privileged Role Administrator:",
            f"       az ad app permission admin-consent --id {app_id}",
            f"     or open {consent_url}",
            '  2. In Business Central, page "Microsoft Entra Applications": New, Client ID '
            f"{app_id}, State Enabled,",
            "     permission sets for customers, items and sales invoices (docs/operations.md,",
            '     "App registration"), then Grant Consent.',
            "Then give people the app roles Bookings.Read / Bookings.Invoice (docs/operations.md).",
            "",
        ]
    )


def main() -> int:
    if shutil.which("az") is None:
        print("app_registration: the Azure CLI (az) is needed: https://aka.ms/azure-cli", file=sys.stderr)
        return 1
    env = dict(os.environ)
    try:
        application = ensure_registration(AzRestGraph(), env)
    except HookError as exc:
        print(f"app_registration: {exc}", file=sys.stderr)
        return 1
    if env.get("ENTRA_CLIENT_ID") != application["appId"] and shutil.which("azd"):
        subprocess.run(["azd", "env", "set", "ENTRA_CLIENT_ID", application["appId"]], check=True)
    print(administrator_step(application, env.get("ENTRA_TENANT_ID")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
