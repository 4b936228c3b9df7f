"""Sign-in and roles through the real stack: devhost (playing App Service Authentication), the
sandbox's Entra ID issuing tokens, the real app and Azurite.

Every refused request must leave the queue empty and every booking Unbilled; an accepted one
records who made it. Token expiry is judged on the sandbox's clock, which devhost shares here.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import jwt
import msal
import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.adapters.invoice_queue import INVOICE_QUEUE
from shared.api.auth import ROLE_INVOICE, ROLE_READ
from shared.domain.models import BookingStatus
from tests.auth_support import bearer, forged_principal, sign_in
from tests.e2e.stack import Stack

pytestmark = pytest.mark.e2e

GRAPH_SCOPE = "https://graph.microsoft.com/.default"


@pytest.fixture
def synced(stack: Stack) -> Stack:
    outcomes = stack.run_function("sync_bookings")
    assert outcomes == ["Succeeded"], outcomes
    assert stack.bookings(), "the sync found bookings to select"
    return stack


def queued_messages(stack: Stack) -> int:
    queue = QueueClient.from_connection_string(stack.connection_string, INVOICE_QUEUE)
    try:
        return queue.get_queue_properties().approximate_message_count
    except ResourceNotFoundError:
        return 0


def assert_refused(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/problem+json")
    document = response.json()
    assert document["status"] == status and document["detail"]
    return document


def submit_all(stack: Stack, headers: dict[str, str] | None = None, **options: Any) -> requests.Response:
    return requests.post(
        f"{stack.url}/api/invoice-requests", json={"all": True}, headers=headers or {}, timeout=30, **options
    )


def client_token(stack: Stack, roles: list[str], **options: str) -> str:
    client = stack.admin.register_client("test client", roles)
    return stack.token(client_id=client["clientId"], client_secret=client["clientSecret"], **options)


def test_every_refused_caller_queues_nothing(synced: Stack) -> None:
    stack = synced
    before = {b.key: b.status for b in stack.bookings()}
    refusals: list[tuple[str, requests.Response, int]] = []

    refusals.append(("no token", submit_all(stack), 401))

    expired = stack.token()
    stack.clock.advance(timedelta(hours=1, minutes=6))  # 3599 s lifetime + the platform's 5 min skew
    refusals.append(("expired", submit_all(stack, bearer(expired)), 401))

    graph_token = stack.token(scope=GRAPH_SCOPE)  # a real token, but for Graph
    refusals.append(("wrong audience", submit_all(stack, bearer(graph_token)), 401))

    claims = jwt.decode(stack.token(), options={"verify_signature": False})
    foreign_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for kid in (jwt.get_unverified_header(stack.token())["kid"], "foreign-key"):
        forged = jwt.encode(claims, foreign_key, algorithm="RS256", headers={"kid": kid})
        refusals.append((f"foreign signing key (kid {kid})", submit_all(stack, bearer(forged)), 401))
    unsigned = jwt.encode(claims, None, algorithm="none")
    refusals.append(("unsigned", submit_all(stack, bearer(unsigned)), 401))

    refusals.append(("no roles", submit_all(stack, bearer(client_token(stack, []))), 403))
    refusals.append(
        ("read-only role on POST", submit_all(stack, bearer(client_token(stack, [ROLE_READ]))), 403)
    )

    principal = forged_principal("00000000-0000-0000-0000-00000000beef", "Mallory", [ROLE_READ, ROLE_INVOICE])
    refusals.append(("client-sent principal", submit_all(stack, {"X-MS-CLIENT-PRINCIPAL": principal}), 401))
    refusals.append(
        (
            "client-sent principal with a read-only token",
            submit_all(
                stack,
                {**bearer(client_token(stack, [ROLE_READ])), "X-MS-CLIENT-PRINCIPAL": principal},
            ),
            403,
        )
    )
    forged_cookie = base64.urlsafe_b64encode(
        json.dumps({"id": "x", "name": "Mallory", "roles": [ROLE_INVOICE]}).encode()
    ).decode()
    refusals.append(
        (
            "forged session cookie",
            submit_all(stack, cookies={"AppServiceAuthSession": f"{forged_cookie}.00"}),
            401,
        )
    )

    for what, response, status in refusals:
        assert response.status_code == status, (what, response.status_code, response.text)
        assert_refused(response, status)
    assert "Bearer" in refusals[0][1].headers["WWW-Authenticate"]
    assert queued_messages(stack) == 0
    assert {b.key: b.status for b in stack.bookings()} == before
    assert all(b.updated_by is None for b in stack.bookings())
    # The reasons are logged by devhost, never the token.
    assert expired not in stack.logs.text() and graph_token not in stack.logs.text()


def test_reads_need_read_and_health_and_openapi_need_nobody(synced: Stack) -> None:
    stack = synced
    for path in (
        "bookings",
        "bookings/" + stack.bookings()[0].key,
        "invoice-requests/" + "0" * 8 + "-0000-0000-0000-" + "0" * 12,
    ):
        assert_refused(stack.api("GET", path, authenticated=False), 401)
        assert_refused(
            stack.api("GET", path, authenticated=False, headers=bearer(client_token(stack, []))), 403
        )
        assert stack.api(
            "GET", path, authenticated=False, headers=bearer(client_token(stack, [ROLE_READ]))
        ).status_code in (200, 404)
    for path in ("health", "openapi.json"):
        assert stack.api("GET", path, authenticated=False).status_code == 200
    # An invalid token is refused even where no caller is needed: it is never anonymous.
    claims = jwt.decode(stack.token(), options={"verify_signature": False})
    forged = jwt.encode(
        claims, rsa.generate_private_key(public_exponent=65537, key_size=2048), algorithm="RS256"
    )
    assert stack.api("GET", "health", authenticated=False, headers=bearer(forged)).status_code == 401


def test_an_invoicer_submits_and_the_request_names_it(synced: Stack) -> None:
    stack = synced
    client = stack.admin.register_client("Billing flow", [ROLE_INVOICE, ROLE_READ])
    # The client code of the product itself: MSAL client credentials, scope api://{client id}/.default.
    authority = f"{stack.settings['ENTRA_AUTHORITY_HOST']}/{stack.settings['ENTRA_TENANT_ID']}"
    app = msal.ConfidentialClientApplication(
        client["clientId"],
        client_credential=client["clientSecret"],
        authority=authority,
        instance_discovery=False,
    )
    result = app.acquire_token_for_client(scopes=[f"api://{stack.settings['ENTRA_CLIENT_ID']}/.default"])
    assert "access_token" in result, result.get("error_description")

    business = stack.business_ids[0]
    keys = sorted(b.key for b in stack.bookings(business) if b.status is BookingStatus.UNBILLED)[:2]
    answer = requests.post(
        f"{stack.url}/api/invoice-requests",
        json={"bookingKeys": keys},
        headers=bearer(result["access_token"]),
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["accepted"] == 2

    who = {"id": client["servicePrincipalId"], "name": f"application {client['clientId']}"}
    status = stack.api("GET", answer.headers["Location"].removeprefix("/api/")).json()
    assert status["requestedBy"] == who and status["requestedAt"]
    # The queue trigger runs in this stack: each booking is Queued or already further along, and
    # the author of the claim stays on it through invoicing.
    for key in keys:
        booking = stack.api("GET", f"bookings/{key}").json()
        assert booking["status"] in ("Queued", "Invoicing", "Invoiced") and booking["updatedBy"] == who
    [line] = [
        r
        for r in stack.logs.where("bookings.selection")
        if getattr(r, "requestId", None) == status["requestId"]
    ]
    assert (line.requestedById, line.requestedByName) == (who["id"], who["name"])


def test_mock_sign_in_session_me_and_logout(stack: Stack) -> None:
    me = requests.get(f"{stack.url}/.auth/me", timeout=30)
    assert me.status_code == 200 and me.json() == {"clientPrincipal": None}
    form = requests.get(
        f"{stack.url}/.auth/login/aad", params={"post_login_redirect_uri": "/x?a=1"}, timeout=30
    )
    assert form.status_code == 200 and 'name="userDetails"' in form.text and "/x?a=1" in form.text

    session = requests.Session()
    landed = session.post(
        f"{stack.url}/.auth/login/aad",
        data={
            "userDetails": "ana@contoso.com",
            "userRoles": "Bookings.Read",
            "post_login_redirect_uri": "//evil.example/",
        },
        allow_redirects=False,
        timeout=30,
    )
    assert landed.status_code == 302 and landed.headers["Location"] == "/"  # no open redirect
    assert "HttpOnly" in landed.headers["Set-Cookie"]
    principal = session.get(f"{stack.url}/.auth/me", timeout=30).json()["clientPrincipal"]
    assert principal["identityProvider"] == "aad" and principal["userDetails"] == "ana@contoso.com"
    assert principal["userRoles"] == ["anonymous", "authenticated", "Bookings.Read"]

    assert session.get(f"{stack.url}/api/bookings", timeout=30).status_code == 200
    assert_refused(session.post(f"{stack.url}/api/invoice-requests", json={"all": True}, timeout=30), 403)
    # A forged principal from this read-only session is stripped: the session's roles decide.
    forged = forged_principal(principal["userId"], "ana@contoso.com", [ROLE_INVOICE])
    assert_refused(
        session.post(
            f"{stack.url}/api/invoice-requests",
            json={"all": True},
            headers={"X-MS-CLIENT-PRINCIPAL": forged},
            timeout=30,
        ),
        403,
    )
    assert queued_messages(stack) == 0

    out = session.get(f"{stack.url}/.auth/logout", allow_redirects=False, timeout=30)
    assert out.status_code == 302
    assert session.get(f"{stack.url}/.auth/me", timeout=30).json() == {"clientPrincipal": None}
    assert_refused(session.get(f"{stack.url}/api/bookings", timeout=30), 401)
    assert sign_in(stack.url).get(f"{stack.url}/api/bookings", timeout=30).status_code == 200


def test_me_answers_any_caller_with_the_roles_its_token_carries(stack: Stack) -> None:
    """A token's `roles` reach the app as devhost passes them (claims of type `roles`, as App Service
    does); `GET /api/me` needs a caller but no role."""
    for roles in ([], [ROLE_READ], [ROLE_READ, ROLE_INVOICE]):
        client = stack.admin.register_client("whoami client", roles)
        token = stack.token(client_id=client["clientId"], client_secret=client["clientSecret"])
        me = stack.api("GET", "me", authenticated=False, headers=bearer(token))
        assert me.status_code == 200, me.text
        assert me.json() == {
            "name": f"application {client['clientId']}",
            "id": client["servicePrincipalId"],
            "roles": sorted(roles),
            "identityProvider": "aad",
        }
    assert_refused(stack.api("GET", "me", authenticated=False), 401)
