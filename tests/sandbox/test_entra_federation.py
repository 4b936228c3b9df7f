"""Workload identity federation: a managed identity's token as the app registration's credential.

The app registration trusts a managed identity through a federated identity credential (issuer
`{authority}/{tenant}/v2.0`, subject = the identity's object id, audience
`api://AzureADTokenExchange`); the identity's token for that audience is the client assertion.
Entra refuses an assertion that matches no credential, naming the part that did not match
(AADSTS700211 issuer, 700213 subject, 700212 audience), as sandbox/FIDELITY.md cites.
"""

from __future__ import annotations

import jwt
import msal
import pytest

from sandbox import SandboxHandle
from tests.sandbox.support import GRAPH_SCOPE, SandboxClient

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
EXCHANGE = "api://AzureADTokenExchange"


def _identity_token(sandbox: SandboxHandle, resource: str = EXCHANGE, client_id: str | None = None) -> str:
    client_id = client_id or sandbox.app.info()["managedIdentityClientId"]
    return str(sandbox.admin.managed_identity_token(client_id, resource)["access_token"])


def _exchange(client: SandboxClient, assertion: str, client_id: str | None = None) -> dict[str, object]:
    form = {"client_assertion_type": JWT_BEARER, "client_assertion": assertion, "client_secret": ""}
    if client_id:
        form["client_id"] = client_id
    response = client.request_token(GRAPH_SCOPE, **form)
    return {"status": response.status_code, **response.json()}


def test_the_identity_token_is_signed_by_the_tenant_for_the_exchange_audience(sandbox: SandboxHandle) -> None:
    info = sandbox.app.info()
    answer = sandbox.admin.managed_identity_token(info["managedIdentityClientId"], EXCHANGE)
    assert set(answer) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert answer["client_id"] == info["managedIdentityClientId"] and answer["token_type"] == "Bearer"
    assert answer["expires_on"].isdigit()
    keys = jwt.PyJWKClient(
        f"{sandbox.settings['ENTRA_AUTHORITY_HOST']}/{info['tenantId']}/discovery/v2.0/keys"
    ).get_signing_key_from_jwt(answer["access_token"])
    claims = jwt.decode(
        answer["access_token"],
        keys.key,
        algorithms=["RS256"],
        audience=EXCHANGE,
        options={"verify_exp": False},
    )
    assert claims["exp"] == int(answer["expires_on"]) > sandbox.clock.now().timestamp()  # the sandbox's clock
    assert claims["iss"] == f"{sandbox.settings['ENTRA_AUTHORITY_HOST']}/{info['tenantId']}/v2.0"
    assert claims["sub"] == claims["oid"] == info["managedIdentityPrincipalId"]


def test_msal_gets_a_token_with_the_identity_token_as_client_assertion(sandbox: SandboxHandle) -> None:
    s = sandbox.settings
    calls: list[int] = []

    def assertion() -> str:
        calls.append(1)
        return _identity_token(sandbox)

    app = msal.ConfidentialClientApplication(
        s["ENTRA_CLIENT_ID"],
        client_credential={"client_assertion": assertion},
        authority=f"{s['ENTRA_AUTHORITY_HOST']}/{s['ENTRA_TENANT_ID']}",
        instance_discovery=False,
    )
    result = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert "access_token" in result, result
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["appid"] == s["ENTRA_CLIENT_ID"] and claims["appidacr"] == "2"
    assert "Bookings.Read.All" in claims["roles"]
    assert app.acquire_token_for_client(scopes=[GRAPH_SCOPE])["token_source"] == "cache"
    assert calls == [1]  # the assertion is asked for only when MSAL goes to the token endpoint


def test_wrong_audience_is_refused_with_aadsts700212(sandbox: SandboxHandle, client: SandboxClient) -> None:
    answer = _exchange(client, _identity_token(sandbox, resource="api://AzureADTokenExchangeUSGov"))
    assert (answer["status"], answer["error"], answer["error_codes"]) == (400, "invalid_request", [700212])
    assert "presented assertion audience 'api://AzureADTokenExchangeUSGov'" in str(
        answer["error_description"]
    )


def test_wrong_subject_is_refused_with_aadsts700213(sandbox: SandboxHandle, client: SandboxClient) -> None:
    other = sandbox.admin.create_managed_identity("another app's identity")
    answer = _exchange(client, _identity_token(sandbox, client_id=other["clientId"]))
    assert (answer["status"], answer["error"], answer["error_codes"]) == (400, "invalid_request", [700213])
    assert other["principalId"] in str(answer["error_description"])


def test_wrong_issuer_is_refused_with_aadsts700211(sandbox: SandboxHandle, client: SandboxClient) -> None:
    info = sandbox.app.info()
    sandbox.admin.set_federated_credential(
        info["clientId"],
        "function-app-identity",
        issuer="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0",
        subject=info["managedIdentityPrincipalId"],
        audiences=[EXCHANGE],
    )
    answer = _exchange(client, _identity_token(sandbox))
    assert (answer["status"], answer["error"], answer["error_codes"]) == (400, "invalid_request", [700211])


def test_an_app_without_federated_credentials_is_refused_with_aadsts70025(
    sandbox: SandboxHandle, client: SandboxClient
) -> None:
    other_app = sandbox.admin.register_client("no federation", [])
    answer = _exchange(client, _identity_token(sandbox), client_id=other_app["clientId"])
    assert answer["error_codes"] == [70025]


def test_an_expired_identity_token_is_refused(sandbox: SandboxHandle, client: SandboxClient) -> None:
    assertion = _identity_token(sandbox)
    sandbox.admin.advance_clock(25 * 3600)
    assert _exchange(client, assertion)["error_codes"] == [700024]


@pytest.mark.parametrize("tamper", ["signature", "claims"])
def test_a_forged_identity_token_is_refused(
    sandbox: SandboxHandle, client: SandboxClient, tamper: str
) -> None:
    header, payload, signature = _identity_token(sandbox).split(".")
    if tamper == "signature":
        signature = signature[:-6] + ("AAAAAA" if not signature.endswith("AAAAAA") else "BBBBBB")
    else:
        payload = jwt.utils.base64url_encode(jwt.utils.base64url_decode(payload).replace(b'"2.0"', b'"2.1"'))
        payload = payload.decode()
    assert _exchange(client, f"{header}.{payload}.{signature}")["error_codes"] == [700027]
