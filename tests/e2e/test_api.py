"""The HTTP API on the whole stack: bookings synced from the sandbox's Graph, listed and selected
through the API, invoiced by the real `create_invoice` in the sandbox's Business Central, and
followed through the request status. One invoice per booking, numbers as Business Central gave them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from shared.domain.models import BookingStatus
from tests.e2e.stack import Stack
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e

SETTLED = {"Invoiced", "Failed"}


def list_all(stack: Stack, **params: Any) -> list[dict[str, Any]]:
    """Every booking the list returns, following continuation tokens."""
    items: list[dict[str, Any]] = []
    token = None
    for _ in range(200):
        query = {**params, **({"continuationToken": token} if token else {})}
        response = stack.api("GET", "bookings", params=query)
        assert response.status_code == 200, response.text
        document = response.json()
        items += document["value"]
        token = document["continuationToken"]
        if token is None:
            return items
    raise AssertionError("the list never ended")


def test_synced_bookings_are_listed_selected_by_customer_and_invoiced_once(stack: Stack) -> None:
    assert stack.run_function("sync_bookings") == ["Succeeded"]
    stored = [b for b in stack.bookings() if b.status is BookingStatus.UNBILLED]
    assert stored

    listed = list_all(stack, top=7)
    assert sorted(b["key"] for b in listed) == sorted(b.key for b in stored)
    assert len({b["key"] for b in listed}) == len(listed)

    emails = Counter(b.customer_email.lower() for b in stored if b.customer_email)
    email, count = emails.most_common(1)[0]
    expected = {b.key for b in stored if (b.customer_email or "").lower() == email}
    assert len(expected) == count

    response = stack.api(
        "POST",
        "invoice-requests",
        json={"all": True, "filter": {"customerEmail": email.upper()}},
        headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["accepted"] == count and accepted["skipped"] == [] and accepted["notFound"] == []
    location = response.headers["Location"]
    assert location == f"/api/invoice-requests/{accepted['requestId']}"

    def settled() -> dict[str, Any] | None:
        document = stack.api("GET", location.removeprefix("/api/")).json()
        done = sum(document["counts"].get(state, 0) for state in SETTLED)
        return document if done == document["total"] else None

    status = wait_for(settled, timeout=180, interval=0.3, what="the selected bookings to be invoiced")
    assert status["total"] == count and {item["key"] for item in status["items"]} == expected

    invoices: dict[str, list[dict[str, Any]]] = {}
    for invoice in stack.admin.state(["invoices"])["invoices"]:
        invoices.setdefault(invoice["externalDocumentNumber"], []).append(invoice)
    for item in status["items"]:
        created = invoices.get(f"BKG-{item['key']}", [])
        if item["status"] == "Invoiced":
            assert len(created) == 1 and created[0]["number"] == item["invoiceNumber"]
        else:
            assert created == [] and item["errorCode"], item
    assert status["counts"]["Invoiced"] >= 1

    # The rest are still Unbilled and listed; the invoiced ones are listed as Invoiced.
    remaining = {b["key"] for b in list_all(stack, top=1000)}
    assert remaining == {b.key for b in stored} - expected
    invoiced = {b["key"] for b in list_all(stack, status="Invoiced", customerEmail=email)}
    assert invoiced == {item["key"] for item in status["items"] if item["status"] == "Invoiced"}

    # Selecting the same customer again finds nothing left to invoice, and creates nothing.
    again = stack.api("POST", "invoice-requests", json={"all": True, "filter": {"customerEmail": email}})
    assert again.status_code == 202 and again.json()["accepted"] == 0
    by_key = stack.api("POST", "invoice-requests", json={"bookingKeys": sorted(expected)}).json()
    assert by_key["accepted"] == status["counts"]["Failed"]
    assert {s["key"] for s in by_key["skipped"]} == {
        item["key"] for item in status["items"] if item["status"] == "Invoiced"
    }
