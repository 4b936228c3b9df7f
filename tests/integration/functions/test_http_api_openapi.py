"""The Swagger 2.0 document: valid, complete, kept in the connector, and true to the running API.

`schemathesis` fuzzes every operation of the served document against the real API (devhost +
Azurite, a function key set) with a bounded number of examples per operation: no 5xx, status
codes, headers and bodies as documented, invalid input refused, requests without the key refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from openapi_spec_validator import validate

import function_app
from devhost.azurite import start_azurite
from devhost.functions import discover_functions
from shared.api.openapi import build_document, render
from tests.api_support import ApiWorld, api_world, make_booking, seed
from tests.conftest import PRODUCT_ROOT, product_settings

CONNECTOR = PRODUCT_ROOT / "infra" / "connector" / "apiDefinition.swagger.json"
FUNCTION_KEY = "schemathesis-function-key"
MAX_EXAMPLES = 12
# Methods the coverage phase may try on each path; exotic ones (TRACE, QUERY) are the host's business.
SCHEMATHESIS_CONFIG = """
[phases.coverage]
unexpected-methods = ["get", "put", "post", "delete", "patch", "options"]
"""


@pytest.fixture(scope="module")
def connection() -> Iterator[str]:
    with start_azurite() as azurite:
        yield azurite.connection_string


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, connection: str) -> Iterator[ApiWorld]:
    with api_world(monkeypatch, tmp_path, connection, DEVHOST_FUNCTION_KEY=FUNCTION_KEY) as world:
        yield world


def test_connector_definition_is_the_generated_document() -> None:
    assert CONNECTOR.read_text(encoding="utf-8") == render(build_document()), (
        "infra/connector/apiDefinition.swagger.json is stale: regenerate it with "
        "`python -m shared.api.openapi > infra/connector/apiDefinition.swagger.json`"
    )


def test_document_describes_every_http_function_of_the_app() -> None:
    document = build_document()
    validate(document)
    # Through the host's discovery: the app's metadata may be read only once per process.
    specs = discover_functions(function_app.app, product_settings("UseDevelopmentStorage=true"))
    http_functions = {spec.name for spec in specs if spec.trigger_type == "httpTrigger"}
    operations = {
        operation["operationId"]: operation
        for path in document["paths"].values()
        for operation in path.values()
    }
    assert set(operations) == http_functions
    assert all(operation.get("summary") for operation in operations.values())
    assert document["securityDefinitions"]["functionKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-functions-key",
        "description": "A function key of the Function App.",
    }
    assert document["basePath"] == "/api" and document["swagger"] == "2.0"


def test_served_document_points_at_its_host_and_validates(world: ApiWorld) -> None:
    response = requests.get(
        f"{world.url}/openapi.json",
        headers={"x-functions-key": FUNCTION_KEY, "Host": "evil/host"},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.json()["host"] == "your-function-app.azurewebsites.net"  # a bad Host is not echoed
    response = requests.get(
        f"{world.url}/openapi.json", headers={"x-functions-key": FUNCTION_KEY}, timeout=30
    )
    document = response.json()
    validate(document)
    assert document["host"] == world.url.split("//")[1].split("/")[0]
    assert document["schemes"] == ["http"]


def test_schemathesis_finds_no_server_errors_and_no_schema_violations(
    world: ApiWorld, tmp_path: Path
) -> None:
    seed(world.connection, [make_booking(world.business, i) for i in range(5)])
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG, encoding="utf-8")
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file", str(config),
        "run", f"{world.url}/openapi.json",
        "--header", f"x-functions-key: {FUNCTION_KEY}",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", "20260302",
        "--workers", "1",
        "--request-timeout", "60",
        # Swagger 2.0 cannot say "bookingKeys or all" or "to after from": schema-valid requests the
        # API rightly refuses are not failures. The host's 401 carries no body, hence no content type,
        # and the Functions host answers 404 (not 405) for a method a route does not take.
        "--exclude-checks", "positive_data_acceptance,content_type_conformance,unsupported_method",
        "--no-color",
        "--report", "junit", "--report-dir", str(tmp_path / "report"),
    ]  # fmt: skip
    env = {**os.environ, "SCHEMATHESIS_TELEMETRY": "false", "NO_COLOR": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=540, env=env, cwd=tmp_path)
    output = result.stdout[-15000:] + result.stderr[-3000:]
    assert result.returncode == 0, output
    # Every operation but the document itself, which schemathesis leaves out.
    operations = sum(len(path) for path in build_document()["paths"].values())
    assert operations == 7 and f"Tested: {operations - 1}" in output, output


def test_regenerating_prints_the_connector_file() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "shared.api.openapi"],
        capture_output=True,
        text=True,
        cwd=PRODUCT_ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(CONNECTOR.read_text(encoding="utf-8"))
