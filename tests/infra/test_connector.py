"""The Power Platform connector files agree with the API they describe.

`apiProperties.json` signs in with OAuth 2.0 and Microsoft Entra ID (identity provider `aad`) for
the API's app registration, as the API's `oauth2` security definition says, and validates against
the part of the Power Platform connector schema that governs it (microsoft/PowerPlatformConnectors,
`schemas/paconn-apiProperties.schema.json`: `ConnectionParameter` of type `oauthSetting`,
`oAuthSettings` with the `aad` branch: `customParameters` `resourceUri` (required), `loginUri`,
`tenantId`; `redirectMode` Global | Direct; `properties.IsFirstParty`). The import guide may only
name operations the definition has.
"""

from __future__ import annotations

import json
import re

import jsonschema

from shared.api.openapi import build_document
from tests.infra.templates import INFRA

CONNECTOR = INFRA / "connector"

# The schema's rules for an `aad` OAuth connection parameter (transcribed from the file named above).
AAD_CONNECTION_PARAMETER = {
    "type": "object",
    "required": ["type", "oAuthSettings"],
    "additionalProperties": False,
    "properties": {
        "type": {"enum": ["oauthSetting"]},
        "uiDefinition": {"type": "object"},
        "oAuthSettings": {
            "type": "object",
            "required": ["identityProvider"],
            "additionalProperties": False,
            "properties": {
                "identityProvider": {"enum": ["aad"]},
                "clientId": {"type": ["string", "null"]},
                "clientSecret": {"type": ["string", "null"]},
                "redirectMode": {"enum": ["Global", "Direct"]},
                "redirectUrl": {"type": "string", "format": "uri"},
                "scopes": {"type": "array", "items": {"type": "string"}},
                "properties": {
                    "type": "object",
                    "required": ["IsFirstParty"],
                    "properties": {"IsFirstParty": {"enum": ["True", "False"]}},
                },
                "customParameters": {
                    "type": "object",
                    "required": ["resourceUri"],
                    "additionalProperties": False,
                    "properties": {
                        name: {
                            "type": "object",
                            "required": ["value"],
                            "properties": {"value": {"type": "string"}},
                        }
                        for name in ("resourceUri", "loginUri", "tenantId")
                    },
                },
            },
        },
    },
}
API_PROPERTIES = {
    "type": "object",
    "required": ["properties"],
    "additionalProperties": False,
    "properties": {
        "properties": {
            "type": "object",
            "required": ["iconBrandColor"],
            "additionalProperties": False,
            "properties": {
                "iconBrandColor": {"type": "string"},
                "publisher": {"type": "string"},
                "stackOwner": {"type": "string"},
                "capabilities": {"type": "array", "items": {"type": "string"}},
                "connectionParameters": {
                    "type": "object",
                    "additionalProperties": False,
                    "patternProperties": {"^[0-9a-zA-Z_]+$": AAD_CONNECTION_PARAMETER},
                },
                "policyTemplateInstances": {"type": "array"},
            },
        }
    },
}


def test_connection_signs_in_with_entra_id_for_the_apis_app_registration() -> None:
    document = json.loads((CONNECTOR / "apiProperties.json").read_text(encoding="utf-8"))
    jsonschema.validate(document, API_PROPERTIES)
    parameters = document["properties"]["connectionParameters"]
    assert set(parameters) == {"token"}
    settings = parameters["token"]["oAuthSettings"]
    assert settings["identityProvider"] == "aad"
    resource = settings["customParameters"]["resourceUri"]["value"]
    assert (
        resource.startswith("api://") and settings["properties"]["AzureActiveDirectoryResourceId"] == resource
    )
    assert settings["customParameters"]["loginUri"]["value"] == "https://login.microsoftonline.com"
    assert "clientSecret" not in settings  # the secret is entered when the connector is created

    api = build_document()
    (scheme,) = api["securityDefinitions"].values()
    assert scheme["type"] == "oauth2" and scheme["flow"] == "accessCode"
    assert "apiKey" not in json.dumps(api["securityDefinitions"])


def test_a_function_key_connection_is_refused_by_the_schema() -> None:
    legacy = {
        "properties": {
            "iconBrandColor": "#000000",
            "connectionParameters": {"api_key": {"type": "securestring"}},
        }
    }
    try:
        jsonschema.validate(legacy, API_PROPERTIES)
    except jsonschema.ValidationError:
        return
    raise AssertionError("a function-key connection must not pass")


def test_the_guide_names_only_operations_the_definition_has() -> None:
    operations = {
        operation["operationId"] for path in build_document()["paths"].values() for operation in path.values()
    }
    guide = (CONNECTOR / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"BookingsInvoicing\.(\w+)\(", guide))
    assert named and named <= operations, named - operations
    listed = set(re.findall(r"`(\w+)`", guide.split("## 1.")[0])) & operations
    assert listed == operations, "the table at the top lists every operation"
    assert "x-functions-key" not in guide and "aad" in guide


NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty"
)
NUMBERS = {word: n for n, word in enumerate(NUMBER_WORDS.split(" "))}


def test_the_import_steps_count_and_name_the_definitions_operations() -> None:
    """Step 4 of the import guide says how many operations the maker sees, and names each one."""
    operations = {
        operation["operationId"] for path in build_document()["paths"].values() for operation in path.values()
    }
    guide = (CONNECTOR / "README.md").read_text(encoding="utf-8")
    step = guide.split("4. *Definition*:", 1)[1].split("\n5. ", 1)[0]
    match = re.search(r"the (\w+) operations are listed", step)
    assert match, "step 4 names the number of operations"
    count = match.group(1)
    assert NUMBERS.get(count.lower(), int(count) if count.isdigit() else -1) == len(operations)
    assert set(re.findall(r"`(\w+)`", step)) == operations
