"""The Swagger 2.0 document: valid, complete, kept in the connector, and true to the running API.

`schemathesis` fuzzes every operation of the served document against the real API (devhost +
Azurite, the sandbox's Entra ID issuing the token) with a bounded number of examples per operation:
no 5xx, status codes, headers and bodies as documented, invalid input refused, requests without
the token refused.
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
from sandbox import SandboxHandle
from shared.api.openapi import build_document, render
from tests.api_support import ApiWorld, api_world, make_booking, seed
from tests.auth_support import client_credentials_token
from tests.conftest import PRODUCT_ROOT, product_settings

CONNECTOR = PRODUCT_ROOT / "infra" / "connector" / "apiDefinition.swagger.json"
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


ENTRA_SETTINGS = ("ENTRA_AUTHORITY_HOST", "ENTRA_TENANT_ID", "ENTRA_CLIENT_ID", "ENTRA_CLIENT_SECRET")


@pytest.fixture
def world(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, connection: str, fresh_sandbox: SandboxHandle
) -> Iterator[ApiWorld]:
    """An API host whose callers present tokens from the sandbox's Entra ID (on its clock)."""
    entra = {name: fresh_sandbox.settings[name] for name in ENTRA_SETTINGS}
    with api_world(monkeypatch, tmp_path, connection, clock=fresh_sandbox.clock.now, **entra) as world:
        yield world


def token(world: ApiWorld, sandbox: SandboxHandle) -> str:
    return client_credentials_token(world.settings, verify=str(sandbox.ca_bundle_path))


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
    # The portal page (`GET /`) is a web page, not an API operation.
    http_functions = {spec.name for spec in specs if spec.trigger_type == "httpTrigger"} - {"portal"}
    operations = {
        operation["operationId"]: operation
        for path in document["paths"].values()
        for operation in path.values()
    }
    assert set(operations) == http_functions
    assert all(operation.get("summary") for operation in operations.values())
    (scheme,) = document["securityDefinitions"].values()
    assert scheme["type"] == "oauth2" and scheme["flow"] == "accessCode"
    assert document["security"] == [{"oauth2-auth": []}]
    for operation in operations.values():
        open_to_all = operation["operationId"] in ("health", "openapi")
        any_caller = operation["operationId"] == "get_me"  # a caller, but no role
        assert (operation.get("security") == []) is open_to_all
        assert ("401" in operation["responses"]) is not open_to_all
        assert ("403" in operation["responses"]) is not (open_to_all or any_caller)
    booking = document["definitions"]["Booking"]
    assert "updatedBy" in booking["required"] and booking["properties"]["updatedBy"]["x-nullable"]
    status = document["definitions"]["InvoiceRequestStatus"]["properties"]
    assert {"requestedBy", "requestedAt"} <= set(status)
    assert document["basePath"] == "/api" and document["swagger"] == "2.0"


def test_served_document_points_at_its_host_and_validates(world: ApiWorld) -> None:
    response = requests.get(f"{world.url}/openapi.json", headers={"Host": "evil/host"}, timeout=30)
    assert response.status_code == 200
    assert response.json()["host"] == "your-function-app.azurewebsites.net"  # a bad Host is not echoed
    response = requests.get(f"{world.url}/openapi.json", timeout=30)  # no caller needed
    document = response.json()
    validate(document)
    assert document["host"] == world.url.split("//")[1].split("/")[0]
    assert document["schemes"] == ["http"]


def test_schemathesis_finds_no_server_errors_and_no_schema_violations(
    world: ApiWorld, tmp_path: Path, fresh_sandbox: SandboxHandle
) -> None:
    seed(world.connection, [make_booking(world.business, i) for i in range(5)])
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG, encoding="utf-8")
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file", str(config),
        "run", f"{world.url}/openapi.json",
        "--header", f"Authorization: Bearer {token(world, fresh_sandbox)}",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", "20260302",
        "--workers", "1",
        "--request-timeout", "60",
        # Swagger 2.0 cannot say "bookingKeys or all" or "to after from": schema-valid requests the
        # API rightly refuses are not failures. The Functions host answers 404 (not 405) for a
        # method a route does not take, without a body (hence no content type).
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
    assert operations == 13 and f"Tested: {operations - 1}" in output, output


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
