"""The Power Platform connector files agree with the API they describe.

`apiProperties.json` must ask for exactly the credential the API's security definition names (a
function key in the `x-functions-key` header), and the import guide may only name operations the
definition has.
"""

from __future__ import annotations

import json
import re

from shared.api.openapi import build_document
from tests.infra.templates import INFRA

CONNECTOR = INFRA / "connector"


def test_connection_asks_for_the_function_key_the_api_expects() -> None:
    properties = json.loads((CONNECTOR / "apiProperties.json").read_text(encoding="utf-8"))["properties"]
    parameters = properties["connectionParameters"]
    # Power Platform maps an apiKey security definition to the connection parameter named api_key.
    assert set(parameters) == {"api_key"}
    assert parameters["api_key"]["type"] == "securestring"
    assert parameters["api_key"]["uiDefinition"]["constraints"]["required"] == "true"

    document = build_document()
    schemes = list(document["securityDefinitions"].values())
    assert schemes == [{**schemes[0], "type": "apiKey", "in": "header", "name": "x-functions-key"}]


def test_the_guide_names_only_operations_the_definition_has() -> None:
    operations = {
        operation["operationId"] for path in build_document()["paths"].values() for operation in path.values()
    }
    guide = (CONNECTOR / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"BookingsInvoicing\.(\w+)\(", guide))
    assert named and named <= operations, named - operations
    listed = set(re.findall(r"`(\w+)`", guide.split("## 1.")[0])) & operations
    assert listed == operations, "the table at the top lists every operation"
