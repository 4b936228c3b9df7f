"""No secret anywhere: the app holds only ENTRA_MANAGED_IDENTITY_CLIENT_ID, as infra/ deploys it.

devhost plays App Service's managed identity endpoint (IDENTITY_ENDPOINT / IDENTITY_HEADER), its
tokens signed by the sandbox's Entra ID; the app's real MSAL sends the identity's token as client
assertion, and the sandbox's Entra ID accepts it because the app registration has a federated
credential for that identity. Sync and invoicing then run exactly as with a secret.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import requests

from shared.domain.models import BookingStatus
from tests.auth_support import bearer, client_credentials_token
from tests.e2e.stack import Stack
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def secretless(make_stack: Callable[..., Stack], shared_sandbox: Any) -> Stack:
    identity = shared_sandbox.app.info()["managedIdentityClientId"]
    return make_stack(ENTRA_CLIENT_SECRET="", ENTRA_MANAGED_IDENTITY_CLIENT_ID=identity)


def _api(stack: Stack, caller: dict[str, Any], method: str, path: str, **kwargs: Any) -> requests.Response:
    """The API as a script with its own registration calls it (the app itself has no secret)."""
    token = client_credentials_token(
        stack.settings,
        client_id=caller["clientId"],
        client_secret=caller["clientSecret"],
        verify=str(stack.sandbox.ca_bundle_path),
    )
    return stack.session.request(
        method, f"{stack.url}/api/{path}", headers=bearer(token), timeout=30, **kwargs
    )


def test_the_app_with_only_a_managed_identity_syncs_and_invoices(secretless: Stack) -> None:
    stack = secretless
    assert not stack.settings["ENTRA_CLIENT_SECRET"] and "ENTRA_CLIENT_CERTIFICATE_PATH" not in stack.settings
    assert os.environ["IDENTITY_ENDPOINT"].startswith("http://127.0.0.1:")  # devhost plays the platform

    assert stack.run_function("sync_bookings") == ["Succeeded"]
    unbilled = [b for b in stack.bookings() if b.status is BookingStatus.UNBILLED and b.customer_email]
    assert unbilled

    caller = stack.admin.register_client("invoicing script", ["Bookings.Read", "Bookings.Invoice"])
    keys = sorted(b.key for b in unbilled)[:2]
    response = _api(stack, caller, "POST", "invoice-requests", json={"bookingKeys": keys})
    assert response.status_code == 202, response.text
    location = response.headers["Location"].removeprefix("/api/")

    def settled() -> dict[str, Any] | None:
        document = _api(stack, caller, "GET", location).json()
        done = sum(document["counts"].get(state, 0) for state in ("Invoiced", "Failed"))
        return document if done == len(keys) else None

    status = wait_for(settled, timeout=180, interval=0.3, what="both bookings to be settled")
    assert status["counts"]["Invoiced"] == 2, status["items"]
    numbers = {item["key"]: item["invoiceNumber"] for item in status["items"]}
    invoices = {i["externalDocumentNumber"]: i for i in stack.admin.state(["invoices"])["invoices"]}
    assert {key: invoices[f"BKG-{key}"]["number"] for key in keys} == numbers


def test_an_identity_the_registration_does_not_trust_is_refused_by_name(secretless: Stack) -> None:
    stack = secretless
    info = stack.sandbox.app.info()
    stranger = stack.admin.create_managed_identity("someone else's identity")
    stack.admin.set_federated_credential(
        info["clientId"],
        "function-app-identity",
        issuer=f"{stack.settings['ENTRA_AUTHORITY_HOST']}/{info['tenantId']}/v2.0",
        subject=stranger["principalId"],
        audiences=["api://AzureADTokenExchange"],
    )
    assert stack.run_function("sync_bookings") == ["Failed"]
    assert "AADSTS700213" in stack.logs.text()
    assert [b for b in stack.bookings()] == []
