"""App Service Authentication (authsettingsV2) in front of the Function App, as infra/ deploys it.

Property names and values were checked against the Azure REST API specification,
Azure/azure-rest-api-specs `specification/web/resource-manager/Microsoft.Web/stable/2024-04-01`
(definitions `SiteAuthSettingsV2`, `GlobalValidation` with `excludedPaths` and
`unauthenticatedClientAction` = AllowAnonymous | RedirectToLoginPage | Return401 | Return403,
`AzureActiveDirectoryRegistration` with `openIdIssuer`, `clientId`, `clientSecretSettingName`,
`AzureActiveDirectoryValidation.allowedAudiences`, `Login.tokenStore`, `HttpSettings.requireHttps`),
and the Microsoft Learn pages "Configure your App Service or Azure Functions app to use Microsoft
Entra sign-in" and "Work with user identities in Azure App Service authentication".
"""

from __future__ import annotations

import json
import re

import pytest

from shared.api.auth import APP_ROLES
from tests.infra.templates import INFRA, ROOT, Template, load

REST_SPEC_UNAUTHENTICATED_ACTIONS = {"AllowAnonymous", "RedirectToLoginPage", "Return401", "Return403"}


@pytest.fixture(scope="module")
def easy_auth() -> Template:
    return load("modules/easyauth.bicep")


def test_authentication_is_required_in_front_of_the_whole_app(easy_auth: Template) -> None:
    config = easy_auth.one("Microsoft.Web/sites/config")
    assert config.api_version == "2024-04-01" and config.body["name"] == "authsettingsV2"
    assert config.get("properties/platform/enabled") is True
    validation = config.get("properties/globalValidation")
    assert validation["requireAuthentication"] is True
    assert validation["unauthenticatedClientAction"] in REST_SPEC_UNAUTHENTICATED_ACTIONS
    assert validation["unauthenticatedClientAction"] == "Return401"  # API callers get 401, not a login page
    assert config.get("properties/httpSettings/requireHttps") is True
    # Only the probe and the API description answer without sign-in, exactly the app's open routes.
    assert validation["excludedPaths"] == "excludedPaths"
    assert easy_auth.parameters["excludedPaths"]["default"] == [
        "/api/health",
        "/api/openapi.json",
        # The portal page and its assets: it signs in through /.auth/login/aad; its data needs a caller.
        "/",
        "/assets/portal.css",
        "/assets/portal.js",
        "/assets/favicon.svg",
    ]


def test_the_entra_provider_accepts_the_app_registrations_tokens(easy_auth: Template) -> None:
    provider = easy_auth.one("Microsoft.Web/sites/config").get(
        "properties/identityProviders/azureActiveDirectory"
    )
    assert provider["enabled"] is True
    registration = provider["registration"]
    assert registration["clientId"] == "clientId"
    assert registration["openIdIssuer"] == "${authorityHost}/${tenantId}/v2.0"
    # Browser sign-in redeems its code with no secret: the setting
    # OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID
    # holds the managed identity whose token the registration trusts (Learn, "Configure your App Service
    # or Azure Functions app to use Microsoft Entra sign-in", "Use a managed identity instead of a secret").
    assert (
        easy_auth.parameters["clientSecretSettingName"]["default"] == "OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID"
    )
    assert registration["clientSecretSettingName"] == "clientSecretSettingName"
    # v2 tokens carry the client id as audience, v1 tokens the App ID URI.
    assert provider["validation"]["allowedAudiences"] == ["clientId", "api://${clientId}"]


def test_main_wires_the_app_registration_into_it() -> None:
    main = load("main.bicep")
    assert main.module_path("easyAuth") == "modules/easyauth.bicep"
    params = main.module_params("easyAuth")
    assert (params["tenantId"], params["clientId"], params["authorityHost"]) == (
        "entraTenantId",
        "entraClientId",
        "entraAuthorityHost",
    )
    assert "functionApp" in json.dumps(params["siteName"])


def test_the_runbook_documents_the_app_roles_manifest_and_assignment() -> None:
    runbook = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = runbook.split("## Sign-in and roles", 1)[1].split("\n## ", 1)[0]
    manifest = json.loads(section.split("```json", 1)[1].split("```", 1)[0])
    roles = {role["value"]: role for role in manifest["appRoles"]}
    assert set(roles) == set(APP_ROLES)
    for role in roles.values():
        assert sorted(role["allowedMemberTypes"]) == ["Application", "User"] and role["isEnabled"] is True
    assert manifest["identifierUris"] == ["api://<client id>"]
    assert "az rest" in section and "appRoleAssignedTo" in section  # how roles are assigned
    assert (INFRA / "modules" / "easyauth.bicep").exists()


def _runbook_sign_in_section() -> str:
    runbook = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    return runbook.split("## Sign-in and roles", 1)[1].split("\n## ", 1)[0]


def test_the_registration_issues_id_tokens_for_the_platforms_browser_sign_in() -> None:
    """App Service's Entra provider signs browsers in with the hybrid flow (code + ID token) when it
    has a client secret; Entra answers AADSTS700054 unless the registration may issue ID tokens.
    Learn, "Configure your App Service or Azure Functions app to use Microsoft Entra sign-in":
    redirect URI `<app-url>/.auth/login/aad/callback`, "enable ID tokens to allow OpenID Connect
    user sign-ins from App Service"; Microsoft Graph `implicitGrantSettings.enableIdTokenIssuance`."""
    section = _runbook_sign_in_section()
    manifest = json.loads(section.split("```json", 1)[1].split("```", 1)[0])
    web = manifest["web"]
    assert web["implicitGrantSettings"] == {"enableIdTokenIssuance": True}  # no implicit access tokens
    assert web["redirectUris"] == ["https://<host>/.auth/login/aad/callback"]
    assert "AADSTS700054" in section and "defaultHostName" in section
    assert "hybrid flow" in section and "Configure your App Service or Azure Functions app" in section


def test_the_runbook_names_exactly_the_paths_open_without_sign_in(easy_auth: Template) -> None:
    section = _runbook_sign_in_section()
    paragraph = section.split("Unauthenticated requests get 401.", 1)[1].split("\n\n", 1)[0]
    named = {path for path in re.findall(r"`(/[^`]*)`", paragraph) if not path.startswith("/.auth")}
    assert named == set(easy_auth.parameters["excludedPaths"]["default"])
    assert "only `/api/health`" not in section
