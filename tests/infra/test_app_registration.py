"""The app registration hook (infra/hooks/app_registration.py): what it asks Microsoft Graph for,
and that running it again changes nothing.

`FakeGraph` keeps applications, service principals and federated credentials in memory and
answers the Graph v1.0 calls the hook makes (upsert by `uniqueName` and by credential name with
`Prefer: create-if-missing`, `$filter=appId eq '...'`), with Graph's PATCH semantics: a property
given replaces the stored one as a whole.
"""

from __future__ import annotations

import importlib.util
import re
import uuid
from types import ModuleType
from typing import Any

import pytest

from tests.infra.templates import INFRA

PRINCIPAL = "11112222-3333-4444-5555-666677778888"
TENANT = "aaaabbbb-cccc-dddd-eeee-ffff00001111"
# App role ids of the fake tenant's Graph and Business Central service principals: the hook looks
# them up by value in the tenant it runs in, never hard-codes them.
BOOKINGS_READ_ALL = "6e98f277-b046-4193-a4f2-6bf6a78cd491"
BC_API_READWRITE = "a42b0b75-311e-488d-b67e-8fe84f924341"


def _load_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("app_registration", INFRA / "hooks" / "app_registration.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hook = _load_hook()
GRAPH, BC = hook.GRAPH_APP_ID, hook.BUSINESS_CENTRAL_APP_ID


class FakeGraph:
    def __init__(self) -> None:
        self.applications: dict[str, dict[str, Any]] = {}  # by uniqueName
        self.principals: list[dict[str, Any]] = [
            {"appId": GRAPH, "appRoles": [{"id": BOOKINGS_READ_ALL, "value": "Bookings.Read.All"}]},
            {"appId": BC, "appRoles": [{"id": BC_API_READWRITE, "value": "API.ReadWrite.All"}]},
        ]
        self.credentials: dict[str, dict[str, dict[str, Any]]] = {}
        self.calls: list[tuple[str, str]] = []

    def request(self, method: str, path: str, body: Any = None, *, upsert: bool = False) -> Any:
        self.calls.append((method, path))
        if match := re.fullmatch(r"/applications\(uniqueName='([^']+)'\)", path):
            return self._application(method, match.group(1), body, upsert)
        if match := re.fullmatch(r"/servicePrincipals\?\$filter=appId eq '([^']+)'", path):
            return {"value": [p for p in self.principals if p["appId"] == match.group(1)]}
        if path == "/servicePrincipals" and method == "POST":
            self.principals.append({"appId": body["appId"], "appRoles": []})
            return self.principals[-1]
        match = re.fullmatch(r"/applications/([^/]+)/federatedIdentityCredentials\(name='([^']+)'\)", path)
        if match and method == "PATCH":
            stored = self.credentials.setdefault(match.group(1), {})
            assert upsert or match.group(2) in stored
            stored[match.group(2)] = {**stored.get(match.group(2), {}), **body}
            return None
        raise AssertionError(f"unexpected Graph call {method} {path}")

    def _application(self, method: str, name: str, body: Any, upsert: bool) -> Any:
        if method == "GET":
            return dict(self.applications[name])
        assert method == "PATCH"
        if name not in self.applications:
            assert upsert and body.get("displayName"), "creating needs Prefer: create-if-missing and a name"
            self.applications[name] = {
                "id": str(uuid.uuid4()),
                "appId": str(uuid.uuid4()),
                "uniqueName": name,
            }
        self.applications[name].update(body)
        return None


ENV_BEFORE = {"AZURE_ENV_NAME": "prod"}
ENV_AFTER = {
    **ENV_BEFORE,
    "FUNCTION_APP_HOST_NAME": "func-bookinv-abc.azurewebsites.net",
    "APP_IDENTITY_PRINCIPAL_ID": PRINCIPAL,
    "ENTRA_TENANT_ID": TENANT,
    "ENTRA_AUTHORITY_HOST": "https://login.microsoftonline.com",
}


@pytest.fixture
def graph() -> FakeGraph:
    return FakeGraph()


def test_before_provisioning_the_registration_has_roles_permissions_and_its_own_uri(graph: FakeGraph) -> None:
    application = hook.ensure_registration(graph, ENV_BEFORE)
    stored = graph.applications["bookings-invoicing-prod"]
    assert application["appId"] == stored["appId"]
    assert stored["identifierUris"] == [f"api://{stored['appId']}"]
    assert {r["value"] for r in stored["appRoles"]} == {"Bookings.Read", "Bookings.Invoice"}
    assert all(r["allowedMemberTypes"] == ["User", "Application"] for r in stored["appRoles"])
    assert stored["api"]["requestedAccessTokenVersion"] == 2
    assert stored["web"] == {"redirectUris": [], "implicitGrantSettings": {"enableIdTokenIssuance": True}}
    assert sorted(stored["requiredResourceAccess"], key=lambda e: e["resourceAppId"]) == [
        {"resourceAppId": GRAPH, "resourceAccess": [{"id": BOOKINGS_READ_ALL, "type": "Role"}]},
        {"resourceAppId": BC, "resourceAccess": [{"id": BC_API_READWRITE, "type": "Role"}]},
    ]
    assert any(p["appId"] == stored["appId"] for p in graph.principals)  # its service principal
    assert graph.credentials == {}  # the identity does not exist yet


def test_after_provisioning_the_redirect_uri_and_the_federated_credential(graph: FakeGraph) -> None:
    hook.ensure_registration(graph, ENV_BEFORE)
    hook.ensure_registration(graph, ENV_AFTER)
    stored = graph.applications["bookings-invoicing-prod"]
    assert stored["web"]["redirectUris"] == [
        "https://func-bookinv-abc.azurewebsites.net/.auth/login/aad/callback"
    ]
    assert graph.credentials == {
        stored["id"]: {
            "function-app-identity": {
                "name": "function-app-identity",
                "issuer": f"https://login.microsoftonline.com/{TENANT}/v2.0",
                "subject": PRINCIPAL,
                "audiences": ["api://AzureADTokenExchange"],
                "description": "The Function App's user-assigned managed identity (no client secret).",
            }
        }
    }


def test_running_it_again_changes_nothing_and_keeps_what_others_added(graph: FakeGraph) -> None:
    hook.ensure_registration(graph, ENV_AFTER)
    stored = graph.applications["bookings-invoicing-prod"]
    stored["web"]["redirectUris"].append("https://invoicing.contoso.com/.auth/login/aad/callback")
    stored["appRoles"][0]["id"] = "0f0f0f0f-0000-4000-8000-000000000000"  # roles already held keep their ids
    before = {key: (value.copy() if isinstance(value, dict) else value) for key, value in stored.items()}
    principals = len(graph.principals)

    hook.ensure_registration(graph, ENV_AFTER)

    again = graph.applications["bookings-invoicing-prod"]
    assert again["web"]["redirectUris"] == before["web"]["redirectUris"]
    assert again["appRoles"] == before["appRoles"] and again["identifierUris"] == before["identifierUris"]
    assert len(graph.principals) == principals and len(graph.applications) == 1
    assert len(graph.credentials[again["id"]]) == 1


def test_the_administrators_step_names_consent_and_business_central(graph: FakeGraph) -> None:
    application = hook.ensure_registration(graph, ENV_AFTER)
    text = hook.administrator_step(application, TENANT)
    assert f"az ad app permission admin-consent --id {application['appId']}" in text
    assert f"https://login.microsoftonline.com/{TENANT}/adminconsent?client_id={application['appId']}" in text
    assert '"Microsoft Entra Applications"' in text and application["appId"] in text


def test_the_role_ids_are_those_of_the_runbooks_manifest() -> None:
    runbook = (INFRA.parent / "docs" / "operations.md").read_text(encoding="utf-8")
    for role_id, value, _name, _description in hook.APP_ROLES:
        assert role_id in runbook and value in runbook
    assert hook.SCOPE["id"] in runbook
