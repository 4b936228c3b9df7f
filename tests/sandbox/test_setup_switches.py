"""The sandbox's setup-check switches answer as the real services do (`FIDELITY.md`, "Setup check")."""

from __future__ import annotations

import jwt
import pytest

from sandbox import SandboxHandle
from sandbox.admin import SandboxAdminError
from tests.sandbox.support import BC_SCOPE, GRAPH_SCOPE, SandboxClient


def _break(sandbox: SandboxHandle, **switches: object) -> dict[str, object]:
    return sandbox.admin.break_app(sandbox.settings["ENTRA_CLIENT_ID"], **switches)


def test_an_expired_secret_is_aadsts7000222(sandbox: SandboxHandle, client: SandboxClient) -> None:
    assert _break(sandbox, secretExpired=True)["secretExpired"] is True
    response = client.request_token(GRAPH_SCOPE)
    assert response.status_code == 401
    body = response.json()
    assert body["error"] == "invalid_client" and body["error_codes"] == [7000222]
    assert body["error_description"].startswith("AADSTS7000222: The provided client secret keys for app")
    assert sandbox.settings["ENTRA_CLIENT_SECRET"] not in response.text


def test_no_consent_issues_a_token_without_roles(sandbox: SandboxHandle, client: SandboxClient) -> None:
    _break(sandbox, consented={"graph": []})
    token = client.token(GRAPH_SCOPE)
    assert "roles" not in jwt.decode(token, options={"verify_signature": False})
    business = client.business_ids[0]
    response = client.graph("GET", f"/solutions/bookingBusinesses/{business}", token=token)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "ErrorAccessDenied"
    bc_token = client.token(BC_SCOPE)  # the other resource keeps its consent
    assert jwt.decode(bc_token, options={"verify_signature": False})["roles"] == ["API.ReadWrite.All"]


def test_bookings_readwrite_alone_cannot_read_a_business(
    sandbox: SandboxHandle, client: SandboxClient
) -> None:
    _break(sandbox, consented={"graph": ["Bookings.ReadWrite.All"]})
    response = client.graph("GET", f"/solutions/bookingBusinesses/{client.business_ids[0]}")
    assert response.status_code == 403


def test_a_denied_business_is_403_and_the_others_answer(
    sandbox: SandboxHandle, client: SandboxClient
) -> None:
    denied, other = client.business_ids[:2]
    _break(sandbox, deniedBusinesses=[denied])
    assert client.graph("GET", f"/solutions/bookingBusinesses/{denied}").status_code == 403
    assert client.graph("GET", f"/solutions/bookingBusinesses/{other}").status_code == 200


def test_an_app_business_central_does_not_list_is_401(sandbox: SandboxHandle, client: SandboxClient) -> None:
    _break(sandbox, businessCentralRegistered=False)
    response = client.bc("GET", "")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "Authentication_InvalidCredentials"
    assert "WWW-Authenticate" in response.headers


def test_a_bc_token_without_api_readwrite_is_401(sandbox: SandboxHandle, client: SandboxClient) -> None:
    _break(sandbox, consented={"bc": []})
    assert client.bc("GET", "/customers").status_code == 401


def test_a_data_reset_restores_the_app(sandbox: SandboxHandle, client: SandboxClient) -> None:
    _break(sandbox, secretExpired=True, businessCentralRegistered=False)
    sandbox.reset_to(sandbox.clock.now())
    assert client.request_token(GRAPH_SCOPE).status_code == 200


def test_records_are_edited_in_place(sandbox: SandboxHandle) -> None:
    template = sandbox.identity.item_template
    changed = sandbox.admin.edit_bc_record("items", template, {"type": "Inventory", "blocked": False})
    assert changed["type"] == "Inventory" and changed["blocked"] is False
    customer = sandbox.admin.edit_bc_record(
        "customers", sandbox.identity.customer_template, {"blocked": "Invoice"}
    )
    assert customer["blocked"] == "Invoice"
    with pytest.raises(SandboxAdminError) as missing:
        sandbox.admin.edit_bc_record("items", "NO-SUCH-ITEM", {"blocked": True})
    assert missing.value.status == 404


def test_unknown_switches_are_refused(sandbox: SandboxHandle) -> None:
    with pytest.raises(SandboxAdminError) as refused:
        _break(sandbox, expired=True)
    assert refused.value.status == 400
