"""The HTTP API through the local host and Azurite: bad input, selection, paging, request status.

The host runs the real API blueprint; no queue function runs, so the messages a request puts on
`bookings-to-invoice` stay there to be counted (the worker is simulated with conditional writes).
Each module run gets a private Azurite, so its queue holds only this module's messages.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from devhost.azurite import start_azurite
from shared.api.auth import ROLE_INVOICE, ROLE_READ
from shared.domain.models import BookingStatus, booking_key
from tests.api_support import ApiWorld, api_world, booking_store, drain, invoice_queue, make_booking, seed
from tests.auth_support import sign_in
from tests.helpers import force_state

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(scope="module")
def connection() -> Iterator[str]:
    with start_azurite() as azurite:
        yield azurite.connection_string


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, connection: str) -> Iterator[ApiWorld]:
    drain(invoice_queue(connection))
    with api_world(monkeypatch, tmp_path, connection, businesses=2, MAX_SELECTION="50") as world:
        yield world


def assert_problem(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    document = response.json()
    assert document["status"] == status and document["title"] and document["detail"]
    assert "Traceback" not in response.text
    return document


def post(world: ApiWorld, body: Any, **kwargs: Any) -> requests.Response:
    return world.post(f"{world.url}/invoice-requests", json=body, timeout=60, **kwargs)


def statuses(world: ApiWorld, bookings: list[Any]) -> list[BookingStatus]:
    store = world.store()
    return [store.get(b.business_id, b.key).status for b in bookings]  # type: ignore[union-attr]


KEY = "A" * 26
JSON = {"Content-Type": "application/json"}


def raw(data: bytes | str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {"data": data, "headers": JSON if headers is None else headers}


def body(document: object) -> dict[str, Any]:
    return {"json": document}


def every(**filter_fields: str) -> dict[str, Any]:
    return body({"all": True, "filter": filter_fields})


MANY_KEYS = [f"{chr(65 + i % 26)}{chr(65 + i // 26)}" + "A" * 24 for i in range(51)]
BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("not JSON", raw(b"{bookingKeys: ["), "not valid JSON"),
    (
        "text/plain",
        raw(json.dumps({"bookingKeys": [KEY]}), {"Content-Type": "text/plain"}),
        "application/json",
    ),
    ("no content type", {"data": json.dumps({"bookingKeys": [KEY]}).encode()}, "Content-Type"),
    ("form post", {"data": {"bookingKeys": KEY}}, "application/json"),
    ("empty body", raw(b""), "empty"),
    ("array body", body([KEY]), "JSON object"),
    ("NaN", raw(b'{"bookingKeys": NaN}'), "JSON"),
    ("duplicate member", raw(b'{"all": true, "all": true}'), "twice"),
    ("keys not an array", body({"bookingKeys": KEY}), "array"),
    ("key not a string", body({"bookingKeys": [KEY, 12]}), "not a booking key"),
    ("all a string", body({"all": "true"}), "must be true"),
    ("filter an array", body({"all": True, "filter": ["x"]}), "object"),
    ("unknown field", body({"bookingKeys": [KEY], "dryRun": True}), "dryRun"),
    ("unknown filter field", every(status="Failed"), "filter.status"),
    ("both keys and all", body({"bookingKeys": [KEY], "all": True}), "not both"),
    ("neither", body({}), "bookingKeys"),
    ("empty selection", body({"bookingKeys": []}), "empty"),
    ("too many keys", body({"bookingKeys": MANY_KEYS}), "MAX_SELECTION"),
    ("OData injection", body({"bookingKeys": [KEY, "x' or 1 eq 1"]}), "not a booking key"),
    ("path tricks", body({"bookingKeys": ["../" + "A" * 23, "%2F" + "A" * 23]}), "2 of the"),
    ("lower case key", body({"bookingKeys": ["a" * 26]}), "not a booking key"),
    ("short key", body({"bookingKeys": ["A" * 25]}), "26 characters"),
    ("foreign business", every(businessId="other@contoso.com"), "BOOKINGS_BUSINESS_IDS"),
    ("bad email", every(customerEmail="bob"), "email"),
    ("naive date-time", every(**{"from": "2026-02-01T10:00:00"}), "time zone"),
    ("from after to", every(**{"from": "2026-03-01", "to": "2026-02-01"}), "later than"),
]


def test_bad_input_is_a_400_problem_and_nothing_is_claimed_or_queued(world: ApiWorld) -> None:
    bookings = seed(world.connection, [make_booking(world.business, i) for i in range(3)])
    keys = [b.key for b in bookings]
    for name, kwargs, says in BAD_BODIES:
        document = kwargs.get("json")
        named = document.get("bookingKeys") if isinstance(document, dict) else None
        if isinstance(named, list) and named:
            # Valid keys of real Unbilled bookings ride along: a rejected request must claim none.
            kwargs = {**kwargs, "json": {**document, "bookingKeys": keys + named}}
        response = world.post(f"{world.url}/invoice-requests", timeout=30, **kwargs)
        problem = assert_problem(response, 400)
        assert says in problem["detail"], f"{name}: {problem['detail']}"
    oversized = b'{"bookingKeys": ["' + b"A" * (5 * 1024 * 1024) + b'"]}'
    response = world.post(
        f"{world.url}/invoice-requests",
        data=oversized,
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert "bytes" in assert_problem(response, 400)["detail"]
    assert statuses(world, bookings) == [BookingStatus.UNBILLED] * 3
    assert drain(world.queue()) == []


def test_malformed_keys_are_reported_by_position(world: ApiWorld) -> None:
    response = post(world, {"bookingKeys": [KEY, "x' or 1 eq 1", KEY, "../etc"]})
    document = assert_problem(response, 400)
    assert [e["field"] for e in document["errors"]] == ["bookingKeys[1]", "bookingKeys[3]"]


def test_bad_list_queries_are_400_problems(world: ApiWorld) -> None:
    seed(world.connection, [make_booking(world.business, i) for i in range(3)])
    first = world.get(f"{world.url}/bookings", params={"top": 1}, timeout=30).json()
    token = first["continuationToken"]
    assert token
    cases = [
        ({"top": "0"}, "top"),
        ({"top": "1001"}, "top"),
        ({"status": "Paid"}, "status"),
        ({"Status": "Unbilled"}, "Unknown query parameter"),
        ({"businessId": "x' or PartitionKey ne ''"}, "businessId"),
        ({"continuationToken": token[:-3] + "abc"}, "continuationToken"),
        ({"continuationToken": "x' or 1 eq 1"}, "continuationToken"),
        ({"continuationToken": token, "status": "Failed"}, "other filters"),
    ]
    for params, says in cases:
        document = assert_problem(world.get(f"{world.url}/bookings", params=params, timeout=30), 400)
        assert says in document["detail"], document["detail"]


def test_get_booking_and_unknown_or_malformed_keys(world: ApiWorld) -> None:
    (booking,) = seed(world.connection, [make_booking(world.businesses[1], 7)])
    response = world.get(f"{world.url}/bookings/{booking.key}", timeout=30)
    assert response.status_code == 200
    document = response.json()
    assert document["key"] == booking.key and document["businessId"] == world.businesses[1]
    assert document["start"] == "2026-02-02T16:00:00Z" and document["status"] == "Unbilled"
    for key in (KEY, "x'%20or%201%20eq%201", "%2F" + "A" * 23, "a" * 26, booking.key.lower()):
        assert_problem(world.get(f"{world.url}/bookings/{key}", timeout=30), 404)


def test_select_one_then_again(world: ApiWorld) -> None:
    (booking,) = seed(world.connection, [make_booking(world.business, 1)])
    response = post(world, {"bookingKeys": [booking.key]}, headers={"traceparent": TRACEPARENT})
    assert response.status_code == 202
    document = response.json()
    assert document["accepted"] == 1 and document["skipped"] == [] and document["notFound"] == []
    assert response.headers["Location"] == f"/api/invoice-requests/{document['requestId']}"
    (message,) = drain(world.queue())
    assert message["bookingKey"] == booking.key and message["businessId"] == world.business
    assert message["requestId"] == document["requestId"]
    assert message["traceparent"].split("-")[1] == TRACEPARENT.split("-")[1]  # the caller's trace goes on
    stored = world.store().get(world.business, booking.key)
    assert stored is not None and stored.status is BookingStatus.QUEUED
    assert stored.request_id == document["requestId"]

    again = post(world, {"bookingKeys": [booking.key]}).json()
    assert again["accepted"] == 0 and again["skipped"] == [{"key": booking.key, "status": "Queued"}]
    assert drain(world.queue()) == []


def test_select_many_with_duplicates_failed_invoiced_and_unknown(world: ApiWorld) -> None:
    first, second = world.businesses
    unbilled = seed(world.connection, [make_booking(first, 1), make_booking(second, 2)])
    failed, invoiced, cancelled = seed(
        world.connection,
        [
            make_booking(first, 3, status=BookingStatus.FAILED),
            make_booking(first, 4, status=BookingStatus.INVOICED),
            make_booking(second, 5, status=BookingStatus.CANCELLED),
        ],
    )
    unknown = booking_key(first, "never synced")
    keys = [
        unbilled[0].key,
        unbilled[1].key,
        unbilled[0].key,
        failed.key,
        invoiced.key,
        cancelled.key,
        unknown,
    ]
    document = post(world, {"bookingKeys": keys}).json()
    assert document["accepted"] == 3
    assert document["skipped"] == [
        {"key": invoiced.key, "status": "Invoiced"},
        {"key": cancelled.key, "status": "Cancelled"},
    ]
    assert document["notFound"] == [unknown]
    messages = drain(world.queue())
    assert sorted(m["bookingKey"] for m in messages) == sorted([unbilled[0].key, unbilled[1].key, failed.key])
    assert statuses(world, [*unbilled, failed]) == [BookingStatus.QUEUED] * 3


def test_select_all_and_all_for_one_customer(world: ApiWorld) -> None:
    first, second = world.businesses
    bob = seed(
        world.connection,
        [make_booking(first, i, email="bob@tailspintoys.com") for i in range(4)]
        + [make_booking(second, 10, email="Bob@TailspinToys.com")],
    )
    others = seed(world.connection, [make_booking(first, 20 + i) for i in range(3)])
    failed = seed(world.connection, [make_booking(second, 30, status=BookingStatus.FAILED)])

    for_bob = post(world, {"all": True, "filter": {"customerEmail": "BOB@tailspintoys.com"}}).json()
    assert for_bob["accepted"] == 5
    assert sorted(m["bookingKey"] for m in drain(world.queue())) == sorted(b.key for b in bob)
    assert statuses(world, others) == [BookingStatus.UNBILLED] * 3

    everything = post(world, {"all": True}).json()
    assert everything["accepted"] == 3 and everything["skipped"] == []
    assert sorted(m["bookingKey"] for m in drain(world.queue())) == sorted(b.key for b in others)
    assert statuses(world, failed) == [BookingStatus.FAILED]  # `all` never re-selects Failed

    nothing = post(world, {"all": True, "filter": {"businessId": second.upper()}}).json()
    assert nothing["accepted"] == 0


def test_all_with_a_time_window(world: ApiWorld) -> None:
    bookings = seed(world.connection, [make_booking(world.business, i) for i in range(6)])  # 09:00 + i hours
    window = {"from": "2026-02-02T10:00:00Z", "to": "2026-02-02T13:00:00+00:00"}
    document = post(world, {"all": True, "filter": window}).json()
    assert document["accepted"] == 3
    assert sorted(m["bookingKey"] for m in drain(world.queue())) == sorted(b.key for b in bookings[1:4])


def test_all_beyond_max_selection_is_refused_whole(world: ApiWorld) -> None:
    bookings = seed(world.connection, [make_booking(world.business, i) for i in range(51)])
    document = assert_problem(post(world, {"all": True}), 400)
    assert "MAX_SELECTION" in document["detail"]
    assert set(statuses(world, bookings)) == {BookingStatus.UNBILLED}
    assert drain(world.queue()) == []


def test_concurrent_identical_submissions_claim_each_booking_once(world: ApiWorld) -> None:
    bookings = seed(world.connection, [make_booking(world.business, i) for i in range(40)])
    keys = [b.key for b in bookings]
    barrier = threading.Barrier(4)

    def submit(body: dict[str, Any]) -> dict[str, Any]:
        barrier.wait(timeout=30)
        response = post(world, body)
        assert response.status_code == 202, response.text
        return response.json()

    bodies = [{"bookingKeys": keys}, {"bookingKeys": keys}, {"all": True}, {"all": True}]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(submit, bodies))
    assert sum(r["accepted"] for r in results) == 40
    for result in results:
        assert all(s["status"] == "Queued" for s in result["skipped"])
    messages = drain(world.queue())
    assert sorted(m["bookingKey"] for m in messages) == sorted(keys)
    owners = {m["bookingKey"]: m["requestId"] for m in messages}
    store = world.store()
    assert all(store.get(world.business, k).request_id == owners[k] for k in keys)  # type: ignore[union-attr]


def test_paging_through_more_than_250_bookings(world: ApiWorld) -> None:
    first, second = world.businesses
    seed(
        world.connection,
        [make_booking(first, i) for i in range(180)]
        + [make_booking(second, i) for i in range(90)]
        + [make_booking(first, 500 + i, status=BookingStatus.INVOICED) for i in range(30)],
    )
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"top": 100}
        if token:
            params["continuationToken"] = token
        response = world.get(f"{world.url}/bookings", params=params, timeout=30)
        assert response.status_code == 200
        document = response.json()
        assert len(document["value"]) <= 100
        assert {b["status"] for b in document["value"]} <= {"Unbilled"}
        seen += [b["key"] for b in document["value"]]
        token = document["continuationToken"]
        pages += 1
        if token is None:
            break
    assert len(seen) == len(set(seen)) == 270
    assert pages >= 3
    invoiced = world.get(f"{world.url}/bookings", params={"status": "Invoiced", "top": 1000}, timeout=30)
    assert len(invoiced.json()["value"]) == 30


def test_request_status_follows_the_bookings(world: ApiWorld) -> None:
    bookings = seed(world.connection, [make_booking(world.business, i) for i in range(5)])
    (already,) = seed(world.connection, [make_booking(world.business, 9, status=BookingStatus.INVOICED)])
    accepted = post(world, {"bookingKeys": [b.key for b in bookings] + [already.key]}).json()
    assert accepted["accepted"] == 5
    assert len(drain(world.queue())) == 5
    # What the queue function does, as conditional writes: two invoiced, one failed, one in flight.
    store = world.store()
    for index, booking in enumerate(bookings[:4]):
        current = store.get(world.business, booking.key)
        assert current is not None
        working = force_state(
            store,
            current,
            BookingStatus.INVOICING,
        )
        if index < 2:
            force_state(
                store,
                working,
                BookingStatus.INVOICED,
                invoice_id=f"id-{index}",
                invoice_number=f"S-INV{index:05d}",
            )
        elif index == 2:
            force_state(
                store,
                working,
                BookingStatus.FAILED,
                error_code="CUSTOMER_NOT_FOUND",
                error="No customer with email customer2@example.com",
            )

    response = world.get(f"{world.url}{accepted_location(accepted)}", timeout=30)
    assert response.status_code == 200
    status = response.json()
    assert status["requestId"] == accepted["requestId"] and status["total"] == 5
    assert status["state"] == "Accepted"
    assert status["counts"]["Invoiced"] == 2 and status["counts"]["Failed"] == 1
    assert status["counts"]["Invoicing"] == 1 and status["counts"]["Queued"] == 1
    items = {item["key"]: item for item in status["items"]}
    assert already.key not in items
    # Who asked, and when: the signed-in caller (its object id and name), on the request and bookings.
    me = world.get(f"{world.host.url}/.auth/me").json()["clientPrincipal"]
    caller = {"id": me["userId"], "name": me["userDetails"]}
    assert status["requestedBy"] == caller and caller["name"] == "office@contoso.com"
    assert status["requestedAt"] == status["createdAt"] and status["requestedAt"].endswith("Z")
    queued = world.get(f"{world.url}/bookings/{bookings[4].key}").json()
    assert queued["status"] == "Queued" and queued["updatedBy"] == caller
    assert world.get(f"{world.url}/bookings/{already.key}").json()["updatedBy"] is None  # skipped
    assert items[bookings[0].key]["invoiceNumber"] == "S-INV00000"
    assert items[bookings[2].key]["errorCode"] == "CUSTOMER_NOT_FOUND"
    assert items[bookings[2].key]["error"].startswith("No customer")

    # A Failed booking can be selected again by key; the new request owns it.
    retry = post(world, {"bookingKeys": [bookings[2].key]}).json()
    assert retry["accepted"] == 1
    retried = store.get(world.business, bookings[2].key)
    assert retried is not None and retried.status is BookingStatus.QUEUED and retried.error_code is None

    for unknown in ("00000000-0000-0000-0000-000000000000", "not-a-request", "..%2F..%2Fhealth"):
        assert_problem(world.get(f"{world.url}/invoice-requests/{unknown}", timeout=30), 404)


def accepted_location(accepted: dict[str, Any]) -> str:
    return f"/invoice-requests/{accepted['requestId']}"


def test_no_function_key_the_caller_and_its_roles_decide(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, connection: str
) -> None:
    """The API is anonymous at the host (no keys: the platform authenticates callers), so a
    configured devhost function key gates nothing; a signed-in caller is what counts."""
    drain(invoice_queue(connection))
    with api_world(monkeypatch, tmp_path, connection, DEVHOST_FUNCTION_KEY="s3cret-function-key") as world:
        seed(world.connection, [make_booking(world.business, 1)])  # something a forged POST could take
        for method, path in (("GET", "/bookings"), ("POST", "/invoice-requests")):
            key = {"x-functions-key": "s3cret-function-key"}
            url = f"{world.url}{path}"
            anonymous = requests.request(method, url, json={"all": True}, headers=key, timeout=30)
            assert_problem(anonymous, 401)
            assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
        assert requests.get(f"{world.url}/openapi.json", timeout=30).status_code == 200
        signed_in = world.get(f"{world.url}/bookings", timeout=30)
        assert signed_in.status_code == 200 and len(signed_in.json()["value"]) == 1
        reader = sign_in(world.host.url, roles=[ROLE_READ])
        assert reader.get(f"{world.url}/bookings", timeout=30).status_code == 200
        refused = reader.post(f"{world.url}/invoice-requests", json={"all": True}, timeout=30)
        assert "Bookings.Invoice" in assert_problem(refused, 403)["detail"]
        assert drain(world.queue()) == []


class _BrokenStorage(BaseHTTPRequestHandler):
    """A storage endpoint that answers nonsense (tables) or refuses messages (queues)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.command == "PUT":  # create queue
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.command == "POST" and self.path.endswith("/messages"):
            body = (
                b'<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthorizationFailure</Code>'
                b"<Message>This request is not authorized to perform this operation.</Message></Error>"
            )
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("x-ms-error-code", "AuthorizationFailure")
        else:
            body = b"this is not what a storage service says"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _answer


@pytest.fixture
def broken_storage() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BrokenStorage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/devstoreaccount1"
    server.shutdown()
    server.server_close()


def test_queue_refusing_every_message_undoes_all_claims(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, connection: str, broken_storage: str
) -> None:
    queue_elsewhere = connection.replace(connection.split("QueueEndpoint=")[1].split(";")[0], broken_storage)
    with api_world(monkeypatch, tmp_path, connection, AzureWebJobsStorage=queue_elsewhere) as world:
        bookings = seed(connection, [make_booking(world.business, i) for i in range(3)])
        failed = seed(connection, [make_booking(world.business, 8, status=BookingStatus.FAILED)])
        response = post(world, {"bookingKeys": [b.key for b in [*bookings, *failed]]})
        document = assert_problem(response, 503)
        assert "nothing was queued" in document["detail"]
        assert response.headers["Retry-After"] == "60"
        store = booking_store(connection)
        assert [store.get(world.business, b.key).status for b in bookings] == [BookingStatus.UNBILLED] * 3  # type: ignore[union-attr]
        restored = store.get(world.business, failed[0].key)
        assert (
            restored is not None and restored.status is BookingStatus.FAILED and restored.request_id is None
        )
        status = world.get(f"{world.url}/invoice-requests/{document['requestId']}", timeout=30).json()
        assert status["total"] == 0


def test_unexpected_failure_is_a_500_with_an_incident_id_in_the_log(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    connection: str,
    broken_storage: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tables_elsewhere = connection.replace(connection.split("TableEndpoint=")[1].split(";")[0], broken_storage)
    with api_world(monkeypatch, tmp_path, connection, AzureWebJobsStorage=tables_elsewhere) as world:
        with caplog.at_level(logging.ERROR, logger="bookings.http_api"):
            response = world.get(f"{world.url}/bookings", timeout=60)
        document = assert_problem(response, 500)
        incident = document["incidentId"]
        assert incident in document["detail"]
        assert "AccountKey" not in response.text and "devstoreaccount1" not in response.text
        logged = [r for r in caplog.records if getattr(r, "incidentId", None) == incident]
        assert logged and logged[0].exc_info is not None


def test_booking_json_of_the_contract(world: ApiWorld) -> None:
    booking = make_booking(world.business, 3, email="Siobhan@Example.com")
    seed(world.connection, [replace(booking, customer_name="Siobhán O'Brien")])
    (item,) = world.get(f"{world.url}/bookings", timeout=30).json()["value"]
    assert set(item) == {
        "key", "businessId", "appointmentId", "serviceId", "serviceName", "customerName", "customerEmail",
        "staffMemberIds", "start", "end", "price", "priceType", "status", "invoiceId", "invoiceNumber",
        "errorCode", "error", "updatedAt", "invoiceStatus", "invoiceSource", "note", "updatedBy",
        "groupAppointment",
        # Beyond the contract's fields, for the office: what the line comes to, and the invoice's
        # link into Business Central's web client (null until the app created an invoice).
        "amount", "invoiceUrl",
    }  # fmt: skip
    assert (item["amount"], item["invoiceUrl"]) == (10.0, None)
    assert item["updatedBy"] is None  # only the sync wrote it
    assert item["groupAppointment"] is False
    assert item["customerName"] == "Siobhán O'Brien" and item["customerEmail"] == "Siobhan@Example.com"
    assert item["appointmentId"] == booking.appointment_id


def test_a_bad_setting_is_a_503_naming_it_without_secrets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, connection: str
) -> None:
    with api_world(monkeypatch, tmp_path, connection, BC_COMPANY_ID="contoso") as world:
        for response in (
            world.get(f"{world.url}/bookings", timeout=30),
            post(world, {"all": True}),
        ):
            document = assert_problem(response, 503)
            assert "BC_COMPANY_ID" in document["detail"]
            assert world.settings["ENTRA_CLIENT_SECRET"] not in response.text
            assert "AccountKey" not in response.text


def test_in_azure_without_app_service_authentication_every_route_but_health_and_openapi_is_a_503(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, connection: str
) -> None:
    drain(invoice_queue(connection))
    with api_world(monkeypatch, tmp_path, connection, WEBSITE_SITE_NAME="bookinv-func") as world:
        seed(world.connection, [make_booking(world.business, 1)])
        # Even a signed-in caller: without the platform in front, the principal could be forged.
        for response in (world.get(f"{world.url}/bookings"), post(world, {"all": True})):
            assert "App Service Authentication is not enabled" in assert_problem(response, 503)["detail"]
        assert world.get(f"{world.url}/health").status_code == 200
        assert world.get(f"{world.url}/openapi.json").status_code == 200
        assert drain(world.queue()) == []
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    with api_world(monkeypatch, tmp_path, connection, WEBSITE_SITE_NAME="bookinv-func") as world:
        assert world.get(f"{world.url}/bookings").status_code == 200


def test_on_flex_consumption_the_platforms_own_switch_decides(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, connection: str
) -> None:
    """Flex sets WEBSITE_SKU=FlexConsumption and no WEBSITE_INSTANCE_ID; its host runs App Service
    Authentication exactly when WEBSITE_AUTH_ENABLED is true (azure-functions-host,
    HostEasyAuthOptionsSetup and JobHostEasyAuthMiddleware for IsAnyLinuxConsumption)."""
    for name in ("WEBSITE_SITE_NAME", "WEBSITE_INSTANCE_ID", "WEBSITE_AUTH_ENABLED"):
        monkeypatch.delenv(name, raising=False)
    with api_world(monkeypatch, tmp_path, connection, WEBSITE_SKU="FlexConsumption") as world:
        for path in ("bookings", "me"):
            assert (
                "App Service Authentication"
                in assert_problem(world.get(f"{world.url}/{path}"), 503)["detail"]
            )
        assert world.get(f"{world.url}/health").status_code == 200
    with api_world(
        monkeypatch, tmp_path, connection, WEBSITE_SKU="FlexConsumption", WEBSITE_AUTH_ENABLED="True"
    ) as world:
        assert world.get(f"{world.url}/bookings").status_code == 200
        assert world.get(f"{world.url}/me").status_code == 200


def test_me_names_any_signed_in_caller_with_its_roles(world: ApiWorld) -> None:
    """`GET /api/me` needs a caller but no role: the portal learns from it who is signed in."""
    me = world.get(f"{world.url}/me")
    assert me.status_code == 200 and me.headers["Content-Type"].startswith("application/json")
    document = me.json()
    assert set(document) == {"name", "id", "roles", "identityProvider"}
    assert document["roles"] == sorted([ROLE_INVOICE, ROLE_READ]) and document["identityProvider"] == "aad"
    nobody = sign_in(world.host.url, user="new@contoso.com", roles=[])
    answer = nobody.get(f"{world.url}/me", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["name"] == "new@contoso.com" and answer.json()["roles"] == []
    assert answer.json()["id"] and answer.json()["id"] != document["id"]
    assert_problem(nobody.get(f"{world.url}/bookings", timeout=30), 403)
    anonymous = requests.get(f"{world.url}/me", timeout=30)
    assert_problem(anonymous, 401)
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
