"""devhost's managed identity endpoint speaks App Service's 2019-08-01 protocol (Learn, "How to use
managed identities for App Service and Azure Functions", "REST endpoint reference")."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import requests

from devhost.identity import ManagedIdentityEndpoint, SourceError

KNOWN = "5e29463d-71da-4fe0-8e69-999b57db23b0"


def source(client_id: str, resource: str) -> Mapping[str, Any] | None:
    if client_id == "broken":
        raise SourceError("identity service answered 500")
    if client_id != KNOWN:
        return None
    return {
        "access_token": f"token-for-{resource}",
        "expires_on": "1586984735",
        "resource": resource,
        "token_type": "Bearer",
        "client_id": client_id,
    }


@pytest.fixture
def endpoint() -> Iterator[ManagedIdentityEndpoint]:
    served = ManagedIdentityEndpoint(source)
    served.start()
    try:
        yield served
    finally:
        served.stop()


def get(endpoint: ManagedIdentityEndpoint, header: str | None = "ours", **params: str) -> requests.Response:
    headers = {"X-IDENTITY-HEADER": endpoint.header if header == "ours" else header} if header else {}
    return requests.get(endpoint.url, params=params, headers=headers, timeout=10)


def test_the_environment_names_a_local_url_and_a_header_value(endpoint: ManagedIdentityEndpoint) -> None:
    environment = endpoint.environment()
    assert environment["IDENTITY_ENDPOINT"].startswith("http://127.0.0.1:")
    assert environment["IDENTITY_ENDPOINT"].endswith("/msi/token")
    assert len(environment["IDENTITY_HEADER"]) >= 32


def test_a_user_assigned_identity_gets_its_token(endpoint: ManagedIdentityEndpoint) -> None:
    response = get(
        endpoint, resource="api://AzureADTokenExchange", client_id=KNOWN, **{"api-version": "2019-08-01"}
    )
    assert response.status_code == 200
    assert response.json() == {
        "access_token": "token-for-api://AzureADTokenExchange",
        "expires_on": "1586984735",
        "resource": "api://AzureADTokenExchange",
        "token_type": "Bearer",
        "client_id": KNOWN,
    }


@pytest.mark.parametrize(
    ("header", "params", "status"),
    [
        (None, {"client_id": KNOWN}, 401),
        ("wrong", {"client_id": KNOWN}, 401),
        ("ours", {"client_id": KNOWN, "api-version": "2017-09-01"}, 400),
        ("ours", {"client_id": KNOWN, "resource": ""}, 400),
        ("ours", {"client_id": KNOWN, "principal_id": KNOWN}, 400),
        ("ours", {}, 400),  # no system-assigned identity here
        ("ours", {"client_id": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"}, 400),
        ("ours", {"client_id": "broken"}, 500),
    ],
)
def test_requests_the_protocol_refuses(
    endpoint: ManagedIdentityEndpoint, header: str | None, params: dict[str, str], status: int
) -> None:
    query = {"resource": "https://vault.azure.net", "api-version": "2019-08-01", **params}
    response = get(endpoint, header, **query)
    assert response.status_code == status
    assert set(response.json()) == {"error", "error_description"}
