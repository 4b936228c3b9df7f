"""Issue 15 on the whole stack: manual outcomes through `POST /api/booking-updates`, and
`reconcile_invoices` following the sandbox's Business Central (deleted drafts, posted and paid
invoices) and applying retention. Every test asserts on stored bookings and on the invoices the
sandbox's Business Central ends up with: one live invoice per booking, whatever happened."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
import requests

from shared.api.auth import ROLE_INVOICE, ROLE_READ
from shared.domain.models import Booking, BookingStatus
from tests.auth_support import sign_in
from tests.e2e.stack import Stack
from tests.helpers import force_state, wait_for
from tests.sandbox.support import SandboxClient

pytestmark = pytest.mark.e2e

OID = "0a1b2c3d-0000-4000-8000-00000000beaa"
BEA = "Bea Bookkeeper"


@pytest.fixture
def bea(stack: Stack) -> requests.Session:
    """A bookkeeper signed in through the portal's sign-in (devhost's mock form), as a person is."""
    return sign_in(stack.url, user=BEA, user_id=OID, roles=[ROLE_READ, ROLE_INVOICE])


@pytest.fixture
def bc(stack: Stack) -> Iterator[SandboxClient]:
    client = SandboxClient(stack.sandbox)
    try:
        yield client
    finally:
        client.close()


def update(
    session: requests.Session, stack: Stack, body: dict[str, Any], *, status: int = 200
) -> dict[str, Any]:
    response = session.post(f"{stack.url}/api/booking-updates", json=body, timeout=30)
    assert response.status_code == status, response.text
    if status != 200:
        assert response.headers["content-type"].startswith("application/problem+json")
    return dict(response.json())


def booking(stack: Stack, key: str) -> dict[str, Any]:
    response = stack.api("GET", f"bookings/{key}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def unbilled(stack: Stack, count: int) -> list[Booking]:
    assert stack.run_function("sync_bookings") == ["Succeeded"]
    found = sorted(
        (b for b in stack.bookings() if b.status is BookingStatus.UNBILLED and b.customer_email),
        key=lambda b: b.key,
    )
    assert len(found) >= count
    return found[:count]


def invoice(stack: Stack, keys: list[str]) -> dict[str, dict[str, Any]]:
    response = stack.api("POST", "invoice-requests", json={"bookingKeys": keys})
    assert response.status_code == 202 and response.json()["accepted"] == len(keys), response.text
    return wait_for(
        lambda: all_invoiced(stack, keys), timeout=180, interval=0.3, what="the bookings to be invoiced"
    )


def all_invoiced(stack: Stack, keys: list[str]) -> dict[str, dict[str, Any]] | None:
    found = {key: booking(stack, key) for key in keys}
    assert all(b["status"] != "Failed" for b in found.values()), found
    return found if all(b["status"] == "Invoiced" for b in found.values()) else None


def live_invoices(stack: Stack, key: str) -> list[dict[str, Any]]:
    return [
        invoice
        for invoice in stack.admin.state(["invoices"])["invoices"]
        if invoice["externalDocumentNumber"] == f"BKG-{key}"
    ]


def delete_draft(bc: SandboxClient, invoice_id: str) -> None:
    response = bc.bc("DELETE", f"/salesInvoices({invoice_id})", headers={"If-Match": "*"})
    assert response.status_code == 204, response.text


def reconcile(stack: Stack) -> None:
    assert stack.run_function("reconcile_invoices") == ["Succeeded"]


# -- manual outcomes ---------------------------------------------------------------------------


def test_exclude_include_and_mark_invoiced_are_audited_and_refused_where_they_do_not_apply(
    bea: requests.Session,
    stack: Stack,
) -> None:
    a, b, c = (x.key for x in unbilled(stack, 3))

    done = update(bea, stack, {"action": "exclude", "bookingKeys": [a], "note": "no-show, not billed"})
    assert done == {"updated": [a], "skipped": [], "notFound": []}
    excluded = booking(stack, a)
    assert (excluded["status"], excluded["note"]) == ("Excluded", "no-show, not billed")
    assert excluded["updatedBy"] == {"id": OID, "name": BEA}
    assert stack.logs.where("bookings.updates", action="exclude", updatedById=OID)

    # Already in the target state, or not in a state the action applies to: skipped with its state.
    assert update(bea, stack, {"action": "exclude", "bookingKeys": [a]})["skipped"] == [
        {"key": a, "status": "Excluded"}
    ]
    listed = stack.api("GET", "bookings", params={"status": "Excluded"}).json()["value"]
    assert [x["key"] for x in listed] == [a]

    # {"all": true} never selects an Excluded booking.
    email = excluded["customerEmail"]
    selected = stack.api("POST", "invoice-requests", json={"all": True, "filter": {"customerEmail": email}})
    assert selected.status_code == 202
    assert booking(stack, a)["status"] == "Excluded" and live_invoices(stack, a) == []

    marked = update(bea, stack, {"action": "markInvoiced", "bookingKeys": [b], "reference": "POS-17"})
    assert marked["updated"] == [b]
    manual = booking(stack, b)
    assert (manual["status"], manual["invoiceSource"], manual["invoiceId"], manual["invoiceNumber"]) == (
        "Invoiced",
        "manual",
        None,
        "POS-17",
    )
    assert update(bea, stack, {"action": "include", "bookingKeys": [b]})["skipped"] == [
        {"key": b, "status": "Invoiced"}
    ]
    assert update(bea, stack, {"action": "include", "bookingKeys": [a]})["updated"] == [a]
    assert booking(stack, a)["status"] == "Unbilled"

    # All-or-nothing validation: one bad part and nothing changes.
    unknown = "A" * 26
    assert update(bea, stack, {"action": "exclude", "bookingKeys": [unknown]})["notFound"] == [unknown]
    for body in (
        {"action": "delete", "bookingKeys": [c]},
        {"action": "exclude", "bookingKeys": [c], "colour": "red"},
        {"action": "exclude", "bookingKeys": [c, "not-a-key"]},
        {"action": "exclude", "bookingKeys": [c], "reference": "X-1"},
        {"action": "exclude", "bookingKeys": []},
        {"bookingKeys": [c]},
    ):
        update(bea, stack, body, status=400)
    bad_json = stack.api("POST", "booking-updates", data="{", headers={"content-type": "application/json"})
    assert bad_json.status_code == 400
    assert booking(stack, c)["status"] == "Unbilled"


def test_the_sync_never_changes_an_excluded_booking(bea: requests.Session, stack: Stack) -> None:
    (target,) = unbilled(stack, 1)
    update(bea, stack, {"action": "exclude", "bookingKeys": [target.key]})
    stack.admin.cancel_appointment(target.business_id, target.appointment_id)
    assert stack.run_function("sync_bookings") == ["Succeeded"]
    assert booking(stack, target.key)["status"] == "Excluded"  # an Unbilled one would be Cancelled


def test_a_selection_racing_an_exclude_has_exactly_one_winner(bea: requests.Session, stack: Stack) -> None:
    keys = [b.key for b in unbilled(stack, 6)]

    def select(key: str) -> dict[str, Any]:
        return dict(stack.api("POST", "invoice-requests", json={"bookingKeys": [key]}).json())

    def exclude(key: str) -> dict[str, Any]:
        return update(bea, stack, {"action": "exclude", "bookingKeys": [key]})

    with ThreadPoolExecutor(max_workers=4) as pool:
        races = [(key, pool.submit(select, key), pool.submit(exclude, key)) for key in keys]
        outcomes = [(key, s.result(), e.result()) for key, s, e in races]
    for key, selected, excluded in outcomes:
        won_select, won_exclude = selected["accepted"] == 1, excluded["updated"] == [key]
        assert won_select != won_exclude, (selected, excluded)
        if won_exclude:
            assert selected["skipped"] == [{"key": key, "status": "Excluded"}]
        else:
            assert excluded["skipped"][0]["status"] in {"Queued", "Invoicing", "Invoiced", "Failed"}
    winners = [key for key, selected, _ in outcomes if selected["accepted"] == 1]
    if winners:
        invoice_done = wait_for(
            lambda: all(booking(stack, k)["status"] in {"Invoiced", "Failed"} for k in winners),
            timeout=180,
            interval=0.3,
            what="the selected bookings to settle",
        )
        assert invoice_done
    for key, _, excluded in outcomes:
        expected = 0 if excluded["updated"] else 1
        assert len(live_invoices(stack, key)) == expected
        if excluded["updated"]:
            assert booking(stack, key)["status"] == "Excluded"


# -- reconcile_invoices ------------------------------------------------------------------------


def test_deleted_draft_goes_back_to_unbilled_and_is_invoiced_once_and_posted_and_paid_show(
    stack: Stack, bc: SandboxClient
) -> None:
    keys = [b.key for b in unbilled(stack, 3)]
    deleted, posted, paid = keys
    before = invoice(stack, keys)
    assert {b["invoiceStatus"] for b in before.values()} == {"Draft"}
    assert {b["invoiceSource"] for b in before.values()} == {"app"}

    delete_draft(bc, before[deleted]["invoiceId"])
    assert (
        bc.bc("POST", f"/salesInvoices({before[posted]['invoiceId']})/Microsoft.NAV.post").status_code == 204
    )
    stack.admin.post_invoice(before[paid]["invoiceId"])
    stack.admin.mark_invoice_paid(before[paid]["invoiceId"])
    reconcile(stack)

    reopened = booking(stack, deleted)
    assert reopened["status"] == "Unbilled" and reopened["invoiceId"] is None
    assert before[deleted]["invoiceNumber"] in reopened["note"]
    after_post = booking(stack, posted)
    (posted_invoice,) = live_invoices(stack, posted)
    assert (after_post["invoiceStatus"], after_post["invoiceNumber"]) == ("Open", posted_invoice["number"])
    assert after_post["invoiceNumber"] != before[posted]["invoiceNumber"]
    assert booking(stack, paid)["invoiceStatus"] == "Paid"
    paid_list = stack.api("GET", "bookings", params={"status": "Invoiced", "invoiceStatus": "Paid"}).json()
    assert [b["key"] for b in paid_list["value"]] == [paid]

    # Selectable again, by filter too; one new invoice, never two.
    again = invoice(stack, [deleted])
    assert again[deleted]["invoiceNumber"] != before[deleted]["invoiceNumber"]
    assert len(live_invoices(stack, deleted)) == 1
    reconcile(stack)  # nothing changed since: nothing moves
    assert booking(stack, deleted)["status"] == "Invoiced"
    assert booking(stack, posted)["invoiceStatus"] == "Open"


def test_a_draft_deleted_while_its_booking_is_being_reinvoiced(stack: Stack, bc: SandboxClient) -> None:
    (target,) = unbilled(stack, 1)
    key = target.key
    first = invoice(stack, [key])[key]
    delete_draft(bc, first["invoiceId"])
    reconcile(stack)
    assert booking(stack, key)["status"] == "Unbilled"

    # Re-invoiced slowly; reconcile runs while the booking is in flight and must leave it alone.
    stack.admin.set_faults({"latency": {"bc": 1.5}})
    response = stack.api("POST", "invoice-requests", json={"bookingKeys": [key]})
    assert response.json()["accepted"] == 1
    wait_for(lambda: booking(stack, key)["status"] in {"Invoicing", "Invoiced"}, timeout=60, what="a worker")
    reconcile(stack)
    second = wait_for(lambda: all_invoiced(stack, [key]), timeout=180, interval=0.3, what="re-invoicing")[key]
    stack.admin.set_faults({"latency": {"bc": 0}})
    assert len(live_invoices(stack, key)) == 1
    assert second["invoiceId"] != first["invoiceId"]

    # The new draft is deleted too: back to Unbilled, the note naming that draft.
    delete_draft(bc, second["invoiceId"])
    reconcile(stack)
    again = booking(stack, key)
    assert again["status"] == "Unbilled" and second["invoiceNumber"] in again["note"]
    third = invoice(stack, [key])[key]
    assert len(live_invoices(stack, key)) == 1 and third["invoiceId"] not in {
        first["invoiceId"],
        second["invoiceId"],
    }


# -- retention ---------------------------------------------------------------------------------


def test_retention_deletes_only_what_it_may_and_a_later_sync_does_not_revive_it(
    make_stack: Any,
) -> None:
    stack: Stack = make_stack(SYNC_LOOKBACK_DAYS="30", RETENTION_DAYS="40")
    bea = sign_in(stack.url, user=BEA, user_id=OID, roles=[ROLE_READ, ROLE_INVOICE])
    found = unbilled(stack, 7)
    cancelled, excluded, manual, paid, draft, left, failed = found
    update(bea, stack, {"action": "exclude", "bookingKeys": [excluded.key]})
    update(bea, stack, {"action": "markInvoiced", "bookingKeys": [manual.key]})
    done = invoice(stack, [paid.key, draft.key])
    stack.admin.post_invoice(done[paid.key]["invoiceId"])
    stack.admin.mark_invoice_paid(done[paid.key]["invoiceId"])
    stored = {b.key: b for b in stack.bookings()}
    force_state(stack.store, stored[failed.key], BookingStatus.FAILED, error_code="BC_REJECTED", error="no")
    stack.admin.cancel_appointment(cancelled.business_id, cancelled.appointment_id)
    assert stack.run_function("sync_bookings") == ["Succeeded"]
    reconcile(stack)
    assert booking(stack, cancelled.key)["status"] == "Cancelled"
    assert booking(stack, paid.key)["invoiceStatus"] == "Paid"

    newest_end = max(b.end for b in found)
    stack.admin.set_clock(newest_end + timedelta(days=41))
    stack.restart_product()  # a fresh worker: tokens cached by wall clock would be stale in BC's clock
    reconcile(stack)
    remaining = {b.key for b in stack.bookings()}
    gone = {cancelled.key, excluded.key, manual.key, paid.key}
    assert not gone & remaining
    assert {draft.key, left.key, failed.key} <= remaining
    log = stack.logs.where("bookings.reconcile_run")
    assert log and log[-1].__dict__.get("retention_deleted") == 4
    requests_table = stack.tables.get_table_client("InvoiceRequests")
    rows = {e["RowKey"] for e in requests_table.query_entities("RowKey ne '!request'")}
    assert paid.key not in rows and draft.key in rows

    # The appointments still exist in Bookings; the sync's window no longer reaches them.
    assert stack.run_function("sync_bookings") == ["Succeeded"]
    assert not gone & {b.key for b in stack.bookings()}


def test_a_catch_up_longer_than_retention_never_rereads_what_retention_deleted(make_stack: Any) -> None:
    """The sync's catch-up window after an outage starts at its watermark minus an overlap hour; an
    appointment that ended inside that hour, billed, paid and then deleted by retention, would be read
    again and come back Unbilled if the window were not cut at the retention horizon."""
    stack: Stack = make_stack(SYNC_LOOKBACK_DAYS="30", RETENTION_DAYS="40")
    business_id = stack.business_ids[0]
    now = stack.admin.clock()
    created = stack.admin.add_appointment(
        business_id,
        {
            "startDateTime": {"dateTime": (now - timedelta(minutes=50)).isoformat(), "timeZone": "UTC"},
            "endDateTime": {"dateTime": (now - timedelta(minutes=20)).isoformat(), "timeZone": "UTC"},
            "serviceName": "Catered bento",
            "price": 10.0,
            "priceType": "fixedPrice",
            "customers": [{"name": "Robin Retention", "emailAddress": "robin.retention@example.com"}],
        },
    )
    assert stack.run_function("sync_bookings") == ["Succeeded"]
    [key] = [b.key for b in stack.bookings(business_id) if b.appointment_id == created["id"]]
    done = invoice(stack, [key])
    stack.admin.post_invoice(done[key]["invoiceId"])
    stack.admin.mark_invoice_paid(done[key]["invoiceId"])

    stack.admin.set_clock(now + timedelta(days=45))  # nothing synced for 45 days
    stack.restart_product()
    reconcile(stack)
    assert key not in {b.key for b in stack.bookings(business_id)}
    assert stack.run_function("sync_bookings") == ["Succeeded"]

    assert key not in {b.key for b in stack.bookings(business_id)}, "retention's deletion was undone"
    assert len(live_invoices(stack, key)) == 1
    [cut] = stack.logs.where("bookings.sync", outcome="retention_cut", businessId=business_id)
    assert cut.__dict__["windowStart"] > cut.__dict__["watermark"]
