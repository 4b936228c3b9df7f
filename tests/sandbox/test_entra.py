"""Entra ID stand-in: discovery, client credentials with real MSAL, errors, audience binding."""

from __future__ import annotations

import time
import uuid

import jwt
import msal
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox import SandboxHandle
from tests.sandbox.support import BC_SCOPE, GRAPH_SCOPE, SandboxClient

TOKEN_ROUTE = "POST /{tenant}/oauth2/v2.0/token"


def _app(sandbox: SandboxHandle, credential: object) -> msal.ConfidentialClientApplication:
    s = sandbox.settings
    return msal.ConfidentialClientApplication(
        s["ENTRA_CLIENT_ID"],
        client_credential=credential,
        authority=f"{s['ENTRA_AUTHORITY_HOST']}/{s['ENTRA_TENANT_ID']}",
        instance_discovery=False,
    )


def test_discovery_document_has_the_endpoints_msal_reads(client: SandboxClient) -> None:
    s = client.settings
    url = f"{s['ENTRA_AUTHORITY_HOST']}/{s['ENTRA_TENANT_ID']}/v2.0/.well-known/openid-configuration"
    document = client.session.get(url, verify=client.verify, timeout=10).json()
    assert document["token_endpoint"] == client.token_endpoint
    assert document["authorization_endpoint"].startswith(s["ENTRA_AUTHORITY_HOST"])
    assert document["issuer"] == f"{s['ENTRA_AUTHORITY_HOST']}/{s['ENTRA_TENANT_ID']}/v2.0"
    keys = client.session.get(document["jwks_uri"], verify=client.verify, timeout=10).json()
    assert keys["keys"][0]["kty"] == "RSA"


def test_unknown_tenant_is_refused(client: SandboxClient) -> None:
    url = f"{client.settings['ENTRA_AUTHORITY_HOST']}/{uuid.uuid4()}/v2.0/.well-known/openid-configuration"
    response = client.session.get(url, verify=client.verify, timeout=10)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_tenant"


def test_msal_client_secret_flow_and_cache(sandbox: SandboxHandle) -> None:
    app = _app(sandbox, sandbox.settings["ENTRA_CLIENT_SECRET"])
    first = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert first.get("token_type") == "Bearer", first
    assert first["expires_in"] > 3000
    second = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert second["access_token"] == first["access_token"]
    assert second["token_source"] == "cache"
    assert sandbox.app.counters.route("entra", TOKEN_ROUTE) == 1


@pytest.mark.parametrize("with_public_certificate", [False, True])
def test_msal_certificate_flow(
    sandbox: SandboxHandle, client: SandboxClient, with_public_certificate: bool
) -> None:
    certificate = sandbox.client_certificate
    credential: dict[str, str] = {"private_key": certificate.private_key_pem}
    if with_public_certificate:
        credential["public_certificate"] = certificate.certificate_pem  # PS256 with x5t#S256
    else:
        credential["thumbprint"] = certificate.thumbprint_sha1  # RS256 with x5t
    result = _app(sandbox, credential).acquire_token_for_client(scopes=[BC_SCOPE])
    assert "access_token" in result, result
    response = client.bc("GET", "/customers", token=result["access_token"], params={"$top": "1"})
    assert response.status_code == 200
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["appidacr"] == "2"


def test_msal_wrong_secret_reports_entra_error(sandbox: SandboxHandle) -> None:
    result = _app(sandbox, "not-the-secret").acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert result["error"] == "invalid_client"
    assert result["error_description"].startswith("AADSTS7000215:")
    assert "not-the-secret" not in result["error_description"]
    assert result["error_codes"] == [7000215]


def test_error_body_carries_trace_and_correlation_ids(client: SandboxClient) -> None:
    response = client.request_token(GRAPH_SCOPE, client_secret="wrong")
    assert response.status_code == 401
    body = response.json()
    assert body["error"] == "invalid_client"
    assert {"error_description", "error_codes", "timestamp", "trace_id", "correlation_id"} <= set(body)
    assert f"Trace ID: {body['trace_id']}" in body["error_description"]


def test_unknown_client_and_bad_scopes(client: SandboxClient) -> None:
    unknown = client.request_token(GRAPH_SCOPE, client_id=str(uuid.uuid4()))
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "unauthorized_client"
    assert unknown.json()["error_codes"] == [700016]
    not_default = client.request_token("https://graph.microsoft.com/Bookings.Read.All")
    assert not_default.json()["error"] == "invalid_scope"
    two_resources = client.request_token(f"{GRAPH_SCOPE} {BC_SCOPE}")
    assert two_resources.json()["error"] == "invalid_scope"
    unknown_resource = client.request_token("https://example.invalid/.default")
    assert unknown_resource.json()["error"] == "invalid_resource"
    missing = client.request_token("")
    assert missing.json()["error"] == "invalid_request"


def _assertion(client: SandboxClient, key: object, **overrides: object) -> str:
    now = int(time.time())
    claims = {
        "aud": client.token_endpoint,
        "iss": client.settings["ENTRA_CLIENT_ID"],
        "sub": client.settings["ENTRA_CLIENT_ID"],
        "exp": now + 600,
        "iat": now,
        "jti": str(uuid.uuid4()),
    }
    claims.update(overrides)
    return jwt.encode(claims, key, algorithm="RS256")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"aud": "https://login.microsoftonline.com/common/oauth2/v2.0/token"}, 700027),
        ({"exp": int(time.time()) - 3600}, 700024),
        ({"iss": "someone-else", "sub": "someone-else"}, 700021),
    ],
)
def test_client_assertion_is_verified(
    sandbox: SandboxHandle, client: SandboxClient, overrides: dict[str, object], code: int
) -> None:
    key = serialization.load_pem_private_key(sandbox.client_certificate.private_key_pem.encode(), None)
    response = client.request_token(
        GRAPH_SCOPE,
        client_secret="",
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        client_assertion=_assertion(client, key, **overrides),
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.json()["error_codes"] == [code]


def test_assertion_signed_by_another_key_is_refused(client: SandboxClient) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    response = client.request_token(
        GRAPH_SCOPE,
        client_secret="",
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        client_assertion=_assertion(client, stranger),
    )
    assert response.json()["error_codes"] == [700027]


def test_graph_token_is_refused_by_business_central(client: SandboxClient) -> None:
    response = client.bc("GET", "/customers", token=client.token(GRAPH_SCOPE))
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "Authentication_InvalidCredentials"
    assert "  CorrelationId:  " in error["message"]
    assert error["message"].endswith(".")


def test_business_central_token_is_refused_by_graph(client: SandboxClient) -> None:
    business = client.business_ids[0]
    response = client.graph("GET", f"/solutions/bookingBusinesses/{business}", token=client.token(BC_SCOPE))
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "InvalidAuthenticationToken"
    assert {"date", "request-id", "client-request-id"} <= set(error["innerError"])


def test_missing_and_garbage_tokens_are_refused(client: SandboxClient) -> None:
    business = client.business_ids[0]
    url = client.graph_url(f"/solutions/bookingBusinesses/{business}")
    assert client.session.get(url, verify=client.verify, timeout=10).status_code == 401
    assert client.graph("GET", url, token="not.a.jwt").status_code == 401
    assert client.bc("GET", "/customers", token="garbage").status_code == 401


def test_expired_tokens_are_refused(sandbox: SandboxHandle, client: SandboxClient) -> None:
    graph_token, bc_token = client.token(GRAPH_SCOPE), client.token(BC_SCOPE)
    business = client.business_ids[0]
    assert (
        client.graph("GET", f"/solutions/bookingBusinesses/{business}", token=graph_token).status_code == 200
    )
    sandbox.app.clock.advance(3600)  # type: ignore[attr-defined]
    graph = client.graph("GET", f"/solutions/bookingBusinesses/{business}", token=graph_token)
    assert graph.status_code == 401
    assert "expired" in graph.json()["error"]["message"]
    assert client.bc("GET", "/customers", token=bc_token).status_code == 401
