"""`azd up`: azure.yaml is valid against the Azure Developer CLI's published schema (vendored in
tests/infra/schemas with its source and version), and azd's parameters file supplies every
parameter of infra/main.bicep that has no default, from azd's environment."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT201909

from tests.infra.templates import INFRA, ROOT, function_args, load

SCHEMA = ROOT / "tests" / "infra" / "schemas" / "azure.yaml.json"
# azd substitutes ${NAME} and ${NAME=default} from the environment (its `envsubst`).
SUBSTITUTION = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?:=([^}]*))?\}")
# Set by azd itself, by the preprovision hook, or asked for / documented for the operator.
AZD_VARIABLES = {"AZURE_ENV_NAME", "AZURE_LOCATION"}
HOOK_VARIABLES = {"ENTRA_CLIENT_ID"}


@pytest.fixture(scope="module")
def azure_yaml() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "azure.yaml").read_text(encoding="utf-8"))


def _extension_schema(uri: str) -> Resource:
    """The schema refers to the schemas of azd extensions' hosts (AI agents, ...) by URL; they
    apply only to those hosts, and a test never downloads anything: an empty schema stands in."""
    assert "/cli/azd/extensions/" in uri, f"unexpected remote schema {uri}"
    return Resource.from_contents({}, default_specification=DRAFT201909)


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2019-09/schema"
    return jsonschema.Draft201909Validator(schema, registry=Registry(retrieve=_extension_schema))


@pytest.fixture(scope="module")
def parameters() -> dict[str, Any]:
    return json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]


def test_azure_yaml_is_valid_against_the_published_schema(
    azure_yaml: dict[str, Any], validator: jsonschema.protocols.Validator
) -> None:
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(azure_yaml)
    ]
    assert errors == []
    # The validator is not vacuous: the schema refuses what azd refuses.
    assert list(validator.iter_errors({"name": "x", "services": {}}))  # name too short
    broken = {**azure_yaml, "hooks": {"preprovision": {"shell": "bash", "run": "x"}}}
    assert list(validator.iter_errors(broken))  # shell is sh or pwsh
    assert list(validator.iter_errors({**azure_yaml, "services": {"api": {"project": "."}}}))  # no host
    assert list(validator.iter_errors({**azure_yaml, "hooks": {"preprovison": {"run": "x"}}}))  # a typo


def test_the_vendored_schema_names_its_source_and_version() -> None:
    readme = (SCHEMA.parent / "README.md").read_text(encoding="utf-8")
    assert "Azure/azure-dev" in readme and "schemas/v1.0/azure.yaml.json" in readme
    assert re.search(r"commit `[0-9a-f]{40}`", readme) and "azure-dev-cli_1.31.2" in readme


def test_the_service_is_the_python_function_app_and_the_infra_is_bicep(azure_yaml: dict[str, Any]) -> None:
    assert azure_yaml["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    assert azure_yaml["services"] == {
        "api": {"project": ".", "host": "function", "language": "python", "remoteBuild": True}
    }
    # azd finds the site by its azd-service-name tag.
    main = load("main.bicep")
    site_tags = function_args(main.module_params("functionApp")["siteTags"], "union")
    assert site_tags == ["allTags", {"'azd-service-name'": "api"}]
    site = load("modules/functionapp.bicep").one("Microsoft.Web/sites")
    assert site.get("tags") == "siteTags"


def test_the_hooks_run_the_app_registration_script_before_and_after_provisioning(
    azure_yaml: dict[str, Any],
) -> None:
    for hook in ("preprovision", "postprovision"):
        config = azure_yaml["hooks"][hook]
        assert config["posix"] == {"shell": "sh", "run": "python3 infra/hooks/app_registration.py"}
        assert config["windows"] == {"shell": "pwsh", "run": "python infra/hooks/app_registration.py"}
    assert (INFRA / "hooks" / "app_registration.py").is_file()


def test_every_parameter_without_a_default_is_supplied(parameters: dict[str, Any]) -> None:
    main = load("main.bicep")
    required = {name for name, p in main.parameters.items() if p.get("default") is None}
    assert required, "main.bicep has required parameters (entraClientId, bookingsBusinessIds, ...)"
    assert required <= set(parameters), f"not supplied: {required - set(parameters)}"
    assert set(parameters) <= set(main.parameters), f"unknown: {set(parameters) - set(main.parameters)}"


def test_values_come_from_azds_environment_and_fit_their_parameter(parameters: dict[str, Any]) -> None:
    main = load("main.bicep")
    used: set[str] = set()
    for name, entry in parameters.items():
        value = entry["value"]
        assert isinstance(value, str) and main.parameters[name]["type"] == "string", name
        match = SUBSTITUTION.fullmatch(value)
        assert match, f"{name}: {value!r} is not one ${{VARIABLE}} azd substitutes"
        used.add(match.group(1))
        decorators = {d["type"]: d["argument"] for d in main.parameters[name].get("decorators", [])}
        if match.group(2) is not None and "allowed" in decorators:
            assert match.group(2) in decorators["allowed"], name
    assert {"AZURE_ENV_NAME", "AZURE_LOCATION"} <= used
    assert parameters["entraClientId"]["value"] == "${ENTRA_CLIENT_ID}"
    # Every variable the operator may have to set is documented in the runbook.
    runbook = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    for variable in used - AZD_VARIABLES - HOOK_VARIABLES:
        assert variable in runbook, f"{variable} is not documented in docs/operations.md"


def test_no_secret_parameter_is_left() -> None:
    main = load("main.bicep")
    secure = [name for name in main.parameters if main.has_decorator(name, "secure")]
    assert secure == []
    assert not (INFRA / "main.parameters.example.json").exists()
