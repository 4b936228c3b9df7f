"""The security and wiring properties of infra/ that a deployment relies on.

Bicep's compiler cannot run here, so these tests read the templates (parsed with pycep, as checkov
does) and pin what must never regress: no account keys, identity-based storage and telemetry,
Key Vault with RBAC and purge protection, Flex Consumption on Python 3.11, every contract setting,
queue and table present, and alerts that read the fields the app really logs.
"""

from __future__ import annotations

import json
import re

import pytest

from shared.adapters.invoice_queue import INVOICE_QUEUE, POISON_QUEUE
from tests.infra.templates import (
    Template,
    accessor,
    all_templates,
    code_string_constants,
    function_args,
    load,
    name_value_pairs,
    settings_read_by_app,
)

# Built-in role definition ids.
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
BROAD_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "17d1049b-9a84-46fb-8f53-869881c3d3ab": "Storage Account Contributor",
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": "Key Vault Administrator",
}


@pytest.fixture(scope="module")
def main() -> Template:
    return load("main.bicep")


@pytest.fixture(scope="module")
def storage() -> Template:
    return load("modules/storage.bicep")


@pytest.fixture(scope="module")
def function_app() -> Template:
    return load("modules/functionapp.bicep")


@pytest.fixture(scope="module")
def roles() -> Template:
    return load("modules/roles.bicep")


def test_every_template_parses_and_every_module_exists() -> None:
    templates = all_templates()
    names = {t.name for t in templates}
    assert {"main.bicep", "modules/functionapp.bicep", "modules/storage.bicep"} <= names
    for template in templates:
        for symbol in template.modules:
            target = (template.path.parent / template.module_path(symbol)).resolve()
            assert target.is_file(), f"{template.name}: module {symbol} points at a missing file {target}"


# --- Storage ----------------------------------------------------------------------------------------


def test_storage_account_allows_no_keys_no_anonymous_access_and_only_tls12(storage: Template) -> None:
    account = storage.one("Microsoft.Storage/storageAccounts")
    assert account.get("properties/allowSharedKeyAccess") is False
    assert account.get("properties/allowBlobPublicAccess") is False
    assert account.get("properties/minimumTlsVersion") == "TLS1_2"
    assert account.get("properties/supportsHttpsTrafficOnly") is True
    assert account.get("properties/defaultToOAuthAuthentication") is True
    for container in storage.of_type("Microsoft.Storage/storageAccounts/blobServices/containers"):
        assert container.get("properties/publicAccess") == "None"


def test_no_account_key_or_storage_connection_string_anywhere() -> None:
    for template in all_templates():
        text = template.text
        assert "listKeys" not in text, f"{template.name} reads account keys"
        assert "AccountKey" not in text, f"{template.name} builds a connection string with a key"
        assert not re.search(r"name: 'AzureWebJobsStorage'", text), (
            f"{template.name} sets a connection string"
        )


def test_the_contract_queues_and_every_table_the_code_uses_are_created(
    main: Template, storage: Template
) -> None:
    assert set(main.variables["queueNames"]) == {INVOICE_QUEUE, POISON_QUEUE}
    tables_in_code = set(code_string_constants(r"[A-Z_]*_TABLE").values())
    assert "Bookings" in tables_in_code
    assert tables_in_code <= set(main.variables["tableNames"]), "a table the code uses is not deployed"

    params = main.module_params("storage")
    assert params["queueNames"] == "queueNames" and params["tableNames"] == "tableNames"
    queues = storage.one("Microsoft.Storage/storageAccounts/queueServices/queues")
    tables = storage.one("Microsoft.Storage/storageAccounts/tableServices/tables")
    assert queues.loop and queues.loop["detail"]["array_name"] == "queueNames"
    assert tables.loop and tables.loop["detail"]["array_name"] == "tableNames"


# --- Function App -----------------------------------------------------------------------------------


def test_function_app_is_flex_consumption_linux_python_311(function_app: Template) -> None:
    plan = function_app.one("Microsoft.Web/serverfarms")
    assert plan.get("sku") == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan.get("properties/reserved") is True

    site = function_app.one("Microsoft.Web/sites")
    assert site.get("kind") == "functionapp,linux"
    config = site.get("properties/functionAppConfig")
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    scale = config["scaleAndConcurrency"]
    assert scale["maximumInstanceCount"] in function_app.parameters
    assert scale["instanceMemoryMB"] in function_app.parameters


def test_scale_settings_are_parameters_of_the_deployment(main: Template) -> None:
    params = main.module_params("functionApp")
    for name in ("maximumInstanceCount", "instanceMemoryMB"):
        assert params[name] == name and name in main.parameters


def test_function_app_runs_as_the_user_assigned_identity_for_everything(function_app: Template) -> None:
    site = function_app.one("Microsoft.Web/sites")
    assert site.get("identity/type") == "UserAssigned"
    assert list(site.get("identity/userAssignedIdentities")) == ["'${identityId}'"]
    # Key Vault references resolve with that identity, not a system-assigned one.
    assert site.get("properties/keyVaultReferenceIdentity") == "identityId"
    deployment = site.get("properties/functionAppConfig/deployment/storage")
    assert deployment["type"] == "blobContainer"
    assert deployment["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": "identityId",
    }
    assert "identityId" in function_app.parameters


def test_function_app_is_https_only_tls12_without_ftp_or_basic_auth_publishing(
    function_app: Template,
) -> None:
    site = function_app.one("Microsoft.Web/sites")
    assert site.get("properties/httpsOnly") is True
    assert site.get("properties/siteConfig/minTlsVersion") == "1.2"
    assert site.get("properties/siteConfig/remoteDebuggingEnabled") is False
    # FTP is closed by the publishing-credentials policies, not by siteConfig.ftpsState, which Flex
    # Consumption stamps reject (github.com/microsoft/azure-pipelines-tasks/issues/21032; pinned
    # with its sources in test_deployable.py).
    assert site.get("properties/siteConfig/ftpsState") is None
    policies = {
        p.get("name"): (p.get("properties/allow"), p.get("location"))
        for p in function_app.of_type("Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    }
    assert policies == {"ftp": (False, "location"), "scm": (False, "location")}


def _app_settings(main: Template, function_app: Template) -> tuple[dict[str, object], dict[str, object]]:
    site = function_app.one("Microsoft.Web/sites")
    platform_var, contract_param = function_args(site.get("properties/siteConfig/appSettings"), "concat")
    contract_var, _additional = function_args(main.module_params("functionApp")["appSettings"], "concat")
    assert contract_param == "appSettings"
    platform = name_value_pairs(function_app.variables[platform_var])
    contract = name_value_pairs(main.variables[contract_var])
    assert not set(platform) & set(contract), "a setting is set twice"
    return platform, contract


def test_storage_and_telemetry_settings_are_identity_based(main: Template, function_app: Template) -> None:
    platform, _ = _app_settings(main, function_app)
    assert platform["AzureWebJobsStorage__credential"] == "managedidentity"
    assert platform["AzureWebJobsStorage__clientId"] == "identityClientId"
    for service in ("blob", "queue", "table"):
        assert platform[f"AzureWebJobsStorage__{service}ServiceUri"] == f"{service}ServiceUri"
    assert (
        platform["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
        == "ClientId=${identityClientId};Authorization=AAD"
    )
    assert platform["PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"] == "true"
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" in platform


def test_settings_flex_consumption_rejects_are_never_set(main: Template, function_app: Template) -> None:
    platform, contract = _app_settings(main, function_app)
    forbidden = {
        "FUNCTIONS_WORKER_RUNTIME",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_TIME_ZONE",
        "AzureWebJobsStorage",
        "APPINSIGHTS_INSTRUMENTATIONKEY",
    }
    assert not forbidden & (set(platform) | set(contract))
    for template in all_templates():
        code = re.sub(r"//.*", "", template.text)
        for name in forbidden - {"AzureWebJobsStorage"}:
            assert name not in code, f"{template.name} sets {name}"


def test_every_setting_the_app_reads_is_deployed_from_a_parameter(
    main: Template, function_app: Template
) -> None:
    _, contract = _app_settings(main, function_app)
    # The credential is the managed identity (no secret or certificate exists in Azure).
    # BC_RATE_WINDOW_SECONDS only shortens Business Central's 5-minute window for tests and
    # benchmarks: production keeps its default, so it is deliberately not deployed.
    expected = (settings_read_by_app() | {"ENTRA_MANAGED_IDENTITY_CLIENT_ID"}) - {"BC_RATE_WINDOW_SECONDS"}
    assert expected, "no settings found in shared/settings.py"
    assert expected <= set(contract), (
        f"settings the app reads but infra does not set: {expected - set(contract)}"
    )
    # The tenant, client id, businesses, Business Central, schedule and time zone come from parameters.
    for setting, parameter in {
        "ENTRA_TENANT_ID": "entraTenantId",
        "ENTRA_CLIENT_ID": "entraClientId",
        "BOOKINGS_BUSINESS_IDS": "bookingsBusinessIds",
        "BOOKINGS_TIME_ZONE": "bookingsTimeZone",
        "BC_ENVIRONMENT": "bcEnvironment",
        "BC_COMPANY_ID": "bcCompanyId",
        "SYNC_SCHEDULE": "syncSchedule",
    }.items():
        assert contract[setting] == parameter and parameter in main.parameters, setting


def test_no_secret_exists_the_app_signs_in_as_its_managed_identity(
    main: Template, function_app: Template
) -> None:
    """No secret anywhere in Azure: the app registration trusts the Function App's user-assigned
    identity (federated identity credential, infra/hooks/app_registration.py); the app
    (ENTRA_MANAGED_IDENTITY_CLIENT_ID) and App Service Authentication
    (OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID) present that identity's token instead of a secret."""
    platform, contract = _app_settings(main, function_app)
    assert accessor(contract["ENTRA_MANAGED_IDENTITY_CLIENT_ID"]) == "identity.outputs.clientId"
    assert accessor(contract["OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID"]) == "identity.outputs.clientId"
    assert accessor(main.module_params("functionApp")["identityId"]) == "identity.outputs.id"
    settings = set(platform) | set(contract)
    assert not settings & {"ENTRA_CLIENT_SECRET", "ENTRA_CLIENT_CERTIFICATE_PATH"}
    for template in all_templates():
        assert not template.of_type("Microsoft.KeyVault/vaults"), template.name
        assert not template.of_type("Microsoft.KeyVault/vaults/secrets"), template.name
        assert not [n for n in template.parameters if template.has_decorator(n, "secure")], template.name
        assert "@Microsoft.KeyVault(" not in template.text, template.name


def test_no_output_carries_a_secret_or_connection_string() -> None:
    for template in all_templates():
        for name, output in template.outputs.items():
            rendered = json.dumps(output.get("value")).lower()
            assert "secretvalue" not in rendered and "entraclientsecret" not in rendered, (
                template.name,
                name,
            )
            if template.name == "main.bicep":
                assert "connectionstring" not in rendered, (template.name, name)


def test_the_function_app_starts_only_after_its_roles_exist(main: Template) -> None:
    assert main.modules["functionApp"]["config"].get("dependsOn") == ["roles"]


# --- Monitoring ---------------------------------------------------------------------------------------


def test_application_insights_takes_only_entra_id_ingestion() -> None:
    monitoring = load("modules/monitoring.bicep")
    component = monitoring.one("Microsoft.Insights/components")
    assert component.get("properties/DisableLocalAuth") is True
    assert accessor(component.get("properties/WorkspaceResourceId")) == "workspace.id"
    monitoring.one("Microsoft.OperationalInsights/workspaces")


# --- Roles --------------------------------------------------------------------------------------------


def _role_assignments(roles: Template) -> list[tuple[str, str, str]]:
    """(principal, role id, scope) of each assignment; a loop contributes one row per role."""
    rows = []
    for assignment in roles.of_type("Microsoft.Authorization/roleAssignments"):
        principal = assignment.get("properties/principalId")
        role = assignment.get("properties/roleDefinitionId")
        role_ids = []
        if assignment.loop:
            items = roles.variables[assignment.loop["detail"]["array_name"]]
            role_ids = [roles.variables["roles"][accessor(item).split(".", 1)[1]] for item in items]
        else:
            role_ids = [
                roles.variables["roles"][
                    accessor(function_args(role, "subscription_resource_id")[1]).split(".", 1)[1]
                ]
            ]
        rows.extend((principal, role_id, assignment.get("scope")) for role_id in role_ids)
    return rows


def test_app_identity_gets_exactly_the_data_roles_it_needs(roles: Template) -> None:
    granted = {
        (role, scope) for principal, role, scope in _role_assignments(roles) if principal == "appPrincipalId"
    }
    assert granted == {
        (STORAGE_BLOB_DATA_OWNER, "storage"),
        (STORAGE_QUEUE_DATA_CONTRIBUTOR, "storage"),
        (STORAGE_TABLE_DATA_CONTRIBUTOR, "storage"),
        (MONITORING_METRICS_PUBLISHER, "appInsights"),
    }
    for assignment in roles.of_type("Microsoft.Authorization/roleAssignments"):
        if assignment.get("properties/principalId") == "appPrincipalId":
            assert assignment.get("properties/principalType") == "ServicePrincipal"


def test_no_broad_role_is_granted_anywhere() -> None:
    for template in all_templates():
        for role_id, role in BROAD_ROLES.items():
            assert role_id not in template.text, f"{template.name} grants {role}"


def test_roles_go_to_the_identity_the_app_runs_as(main: Template) -> None:
    assert accessor(main.module_params("roles")["appPrincipalId"]) == "identity.outputs.principalId"
    assert accessor(main.module_params("functionApp")["identityId"]) == "identity.outputs.id"
