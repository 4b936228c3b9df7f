"""Business Central and Graph as they really behave, end to end: devhost runs the app, the sandbox
plays Entra ID, Graph Bookings and Business Central over HTTPS, Azurite holds tables and queue.

Each test makes its appointment in the sandbox's Graph, runs `sync_bookings`, selects the bookings
through `POST /api/invoice-requests`, waits for `create_invoice` to settle them and asserts the
invoices in the sandbox's Business Central and the bookings' final states: exactly one invoice per
invoiced booking, none for the others.

Sources of the behaviours exercised (see also `../shared/reference/`, `sandbox/FIDELITY.md`):
- a `customerId` / line `itemId` that matches nothing: 400 `Application_DialogException`
  `The sell-to customer cannot be found.` / `Item does not exist.` (ALAppExtensions
  `Apps/W1/APIV2/app/src/pages/APIV2SalesInvoices.Page.al`, `APIV2SalesInvoiceLines.Page.al`);
  `GET customers({id})` / `items({id})` of a deleted record: 404;
- customer `blocked` `Invoice`/`All` refuses invoices, `Ship` does not (`Customer.CheckBlockedCustOnDocs`);
- group appointments: `customers` is a collection, `maximumAttendeesCount` (Graph v1.0 CSDL);
- `dateTimeTimeZone` with a Windows zone name and a local time (Graph `resources/datetimetimezone.md`);
- flat `customerName` / `customerEmailAddress` / `customerPhone` (v1.0 schema), used when
  `customers` is empty.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest

from shared.domain.models import Booking, BookingStatus, booking_key
from tests.e2e.stack import E2E_NOW, Stack
from tests.helpers import wait_for
from tests.sandbox.support import SandboxClient

pytestmark = pytest.mark.e2e

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
SETTLED = {"Invoiced", "Failed", "Cancelled"}
POINT_READ = "GET /solutions/bookingBusinesses/{businessId}/appointments/{appointmentId}"

BOB = {
    "name": "Bob Kelly",
    "emailAddress": "Bob.Kelly@TailspinToys.com",
    "customerId": "c0000000-0000-4000-8000-000000000001",
}
JORDAN = {
    "name": "Jordan Miller",
    "emailAddress": "jordanm@contoso.com",
    "customerId": "c0000000-0000-4000-8000-000000000008",
}


@pytest.fixture
def bc(stack: Stack) -> Iterator[SandboxClient]:
    """Business Central as a bookkeeper changes it (deletes, blocks, adds records) meanwhile."""
    client = SandboxClient(stack.sandbox)
    try:
        yield client
    finally:
        client.close()


# -- helpers ----------------------------------------------------------------------------------------


def add_appointment(
    stack: Stack,
    business_id: str,
    *,
    customers: list[dict[str, Any]],
    service: str = "Catered bento",
    price: float = 10.0,
    days_ago: int = 3,
    start: dict[str, str] | None = None,
    end: dict[str, str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    begin = E2E_NOW - timedelta(days=days_ago)
    body = {
        "startDateTime": start or {"dateTime": begin.isoformat(), "timeZone": "UTC"},
        "endDateTime": end or {"dateTime": (begin + timedelta(minutes=45)).isoformat(), "timeZone": "UTC"},
        "serviceName": service,
        "price": price,
        "priceType": "fixedPrice",
        "customers": customers,
        **fields,
    }
    return stack.admin.add_appointment(business_id, body)


def sync(stack: Stack) -> None:
    assert stack.run_function("sync_bookings") == ["Succeeded"]


def stored(stack: Stack, business_id: str, key: str) -> Booking:
    booking = stack.store.get(business_id, key)
    assert booking is not None, key
    return booking


def invoice(stack: Stack, keys: list[str]) -> dict[str, dict[str, Any]]:
    """Select `keys` through the API and wait until each is invoiced or failed; items by key."""
    response = stack.api("POST", "invoice-requests", json={"bookingKeys": keys})
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == len(keys)
    location = response.headers["Location"]

    def settled() -> dict[str, Any] | None:
        document = stack.api("GET", location.removeprefix("/api/")).json()
        return document if all(item["status"] in SETTLED for item in document["items"]) else None

    document = wait_for(settled, timeout=180, interval=0.3, what="the selected bookings to settle")
    return {item["key"]: item for item in document["items"]}


def invoices_of(stack: Stack, key: str) -> list[dict[str, Any]]:
    return [
        invoice
        for invoice in stack.admin.state(["invoices"])["invoices"]
        if invoice["externalDocumentNumber"] == f"BKG-{key}"
    ]


def the_invoice(stack: Stack, business_id: str, key: str) -> dict[str, Any]:
    """The one invoice of an Invoiced booking, checked against what the booking recorded."""
    [found] = invoices_of(stack, key)
    booking = stored(stack, business_id, key)
    assert booking.status is BookingStatus.INVOICED
    assert (booking.invoice_id, booking.invoice_number) == (found["id"], found["number"])
    return found


def item_line(invoice: dict[str, Any]) -> dict[str, Any]:
    [line] = [line for line in invoice["salesInvoiceLines"] if line["lineType"] == "Item"]
    return line


def customers_with_email(bc: SandboxClient, email: str) -> list[dict[str, Any]]:
    rows = bc.bc("GET", "/customers", params={"$filter": f"tolower(email) eq '{email.lower()}'"}).json()
    return list(rows["value"])


def delete(bc: SandboxClient, path: str) -> None:
    answer = bc.bc("DELETE", path, headers={"If-Match": "*"})
    assert answer.status_code == 204, answer.text


def invoiced_once(stack: Stack, business_id: str, customers: list[dict[str, Any]], **kw: Any) -> str:
    """An appointment synced and invoiced; its booking key (it must end Invoiced)."""
    created = add_appointment(stack, business_id, customers=customers, **kw)
    sync(stack)
    key = booking_key(business_id, created["id"])
    assert invoice(stack, [key])[key]["status"] == "Invoiced"
    return key


# -- stale links ------------------------------------------------------------------------------------


def test_a_deleted_linked_customer_is_linked_afresh_and_invoiced_once(
    stack: Stack, bc: SandboxClient
) -> None:
    business_id = stack.business_ids[0]
    first = invoiced_once(stack, business_id, [BOB], days_ago=5)
    old = the_invoice(stack, business_id, first)
    # The bookkeeper deletes the draft and then the customer in Business Central; our link remains.
    delete(bc, f"/salesInvoices({old['id']})")
    delete(bc, f"/customers({old['customerId']})")
    assert bc.bc("GET", f"/customers({old['customerId']})").status_code == 404

    second = invoiced_once(stack, business_id, [BOB], days_ago=2)

    new = the_invoice(stack, business_id, second)
    assert new["customerId"] != old["customerId"]
    [recreated] = customers_with_email(bc, BOB["emailAddress"])  # created once, from the template
    assert (recreated["id"], recreated["type"]) == (new["customerId"], "Person")
    assert stack.logs.where("bookings.invoicing", outcome="stale_link")


def test_a_deleted_linked_item_is_linked_afresh_and_invoiced_once(stack: Stack, bc: SandboxClient) -> None:
    business_id = stack.business_ids[0]
    first = invoiced_once(stack, business_id, [BOB], days_ago=5)
    old = the_invoice(stack, business_id, first)
    old_item = item_line(old)
    delete(bc, f"/salesInvoices({old['id']})")
    delete(bc, f"/items({old_item['itemId']})")
    assert bc.bc("GET", f"/items({old_item['itemId']})").status_code == 404

    second = invoiced_once(stack, business_id, [BOB], days_ago=2)

    line = item_line(the_invoice(stack, business_id, second))
    assert line["itemId"] != old_item["itemId"] and line["lineObjectNumber"] != old_item["lineObjectNumber"]
    item = bc.bc("GET", f"/items({line['itemId']})").json()
    assert (item["displayName"], item["type"], item["blocked"]) == ("Catered bento", "Service", False)
    assert stack.logs.where("bookings.invoicing", outcome="stale_link")


# -- blocked customers ------------------------------------------------------------------------------


def test_an_unblocked_customer_is_chosen_over_a_blocked_one_with_the_same_email(
    stack: Stack, bc: SandboxClient
) -> None:
    business_id = stack.business_ids[0]
    [blocked] = customers_with_email(bc, JORDAN["emailAddress"])
    assert blocked["blocked"] == "Invoice"  # seeded so: Business Central refuses invoices for it
    unblocked = bc.bc(
        "POST",
        "/customers",
        json={"displayName": "Jordan Miller", "type": "Person", "email": "JordanM@Contoso.com"},
    ).json()
    assert unblocked["number"] > blocked["number"]  # the blocked one comes first by number

    key = invoiced_once(stack, business_id, [JORDAN])

    assert the_invoice(stack, business_id, key)["customerId"] == unblocked["id"]


def test_only_blocked_customers_fail_customer_blocked_naming_them(stack: Stack, bc: SandboxClient) -> None:
    business_id = stack.business_ids[0]
    created = bc.bc(
        "POST", "/customers", json={"displayName": "Jordan Miller", "email": "jordanm@contoso.com"}
    )
    assert created.status_code == 201, created.text
    patched = bc.bc(
        "PATCH", f"/customers({created.json()['id']})", json={"blocked": "All"}, headers={"If-Match": "*"}
    )
    assert patched.status_code == 200, patched.text
    numbers = sorted(c["number"] for c in customers_with_email(bc, JORDAN["emailAddress"]))
    appointment = add_appointment(stack, business_id, customers=[JORDAN])
    sync(stack)
    key = booking_key(business_id, appointment["id"])

    item = invoice(stack, [key])[key]

    assert (item["status"], item["errorCode"]) == ("Failed", "CUSTOMER_BLOCKED")
    assert all(number in item["error"] for number in numbers) and len(numbers) == 2
    assert invoices_of(stack, key) == []
    assert len(customers_with_email(bc, JORDAN["emailAddress"])) == 2  # none created past the block


# -- group appointments -----------------------------------------------------------------------------


def attendee(number: int, name: str, email: str) -> dict[str, Any]:
    return {"customerId": f"a0000000-0000-4000-8000-00000000000{number}", "name": name, "emailAddress": email}


CLASS = [
    attendee(1, "Bob Kelly", "Bob.Kelly@TailspinToys.com"),
    attendee(2, "Aiko Tanaka", "AIKO.TANAKA@fabrikam.com"),
    attendee(3, "Marie Dubois", "marie.dubois@wideworldimporters.com"),
    attendee(4, "Lars Jensen", "lars.jensen@northwindtraders.com"),  # not yet in Business Central
    attendee(5, "Chen Wei", "chen.wei@litware.com"),  # not yet in Business Central
]


def test_a_class_of_five_bills_each_attendee_and_one_who_leaves_is_cancelled(
    stack: Stack, bc: SandboxClient
) -> None:
    business_id = stack.business_ids[1]  # Fabrikam Fitness
    created = add_appointment(
        stack, business_id, customers=CLASS, service="Group class", price=15.0, maximumAttendeesCount=10
    )
    sync(stack)
    # CONTRACT.md: key = base32(SHA-256(businessId \n appointmentId \n customerId))[:26].
    keys = {a["emailAddress"]: booking_key(business_id, created["id"], a["customerId"]) for a in CLASS}
    for email, key in keys.items():
        booking = stored(stack, business_id, key)
        assert (booking.status, booking.customer_email, booking.group_appointment) == (
            BookingStatus.UNBILLED,
            email,
            True,
        )
    listed = stack.api("GET", f"bookings/{keys[CLASS[0]['emailAddress']]}").json()
    assert listed["groupAppointment"] is True

    # Marie leaves the class; the appointment itself stays.
    stack.admin.update_appointment(business_id, created["id"], {"customers": CLASS[:2] + CLASS[3:]})
    point_reads = stack.sandbox.app.counters.route("graph", POINT_READ)
    stack.clock.advance(timedelta(minutes=15))
    sync(stack)
    leaver = keys.pop(CLASS[2]["emailAddress"])
    assert stored(stack, business_id, leaver).status is BookingStatus.CANCELLED
    assert stack.sandbox.app.counters.route("graph", POINT_READ) == point_reads  # nothing to confirm

    items = invoice(stack, sorted(keys.values()))

    assert {item["status"] for item in items.values()} == {"Invoiced"}
    billed = set()
    for email, key in keys.items():
        found = the_invoice(stack, business_id, key)
        customer = bc.bc("GET", f"/customers({found['customerId']})").json()
        assert customer["email"].lower() == email.lower()
        line = item_line(found)
        assert (line["quantity"], line["unitPrice"]) == (1, 15.0)
        billed.add(found["customerId"])
    assert len(billed) == 4  # each attendee to its own customer
    assert invoices_of(stack, leaver) == []
    assert stored(stack, business_id, leaver).status is BookingStatus.CANCELLED


# -- Windows time zones and flat customer fields ----------------------------------------------------


def test_a_windows_zone_appointment_crossing_midnight_in_the_business_zone(
    stack: Stack, bc: SandboxClient
) -> None:
    business_id = stack.business_ids[0]
    assert stack.settings["BOOKINGS_TIME_ZONE"] == "Europe/Amsterdam"
    # 22:45-23:45 in London (CLDR: "GMT Standard Time" -> Europe/London, UTC+0 in February) is
    # 23:45-00:45 in Amsterdam: the appointment ends on the next day there, not in its own zone.
    day = (E2E_NOW - timedelta(days=4)).date()
    zone = "GMT Standard Time"
    created = add_appointment(
        stack,
        business_id,
        customers=[BOB],
        start={"dateTime": f"{day.isoformat()}T22:45:00", "timeZone": zone},
        end={"dateTime": f"{day.isoformat()}T23:45:00", "timeZone": zone},
    )
    served = SandboxClient(stack.sandbox).graph(
        "GET", f"/solutions/bookingBusinesses/{business_id}/appointments/{quote(created['id'], safe='')}"
    )
    assert served.json()["startDateTime"] == {
        "dateTime": f"{day.isoformat()}T22:45:00.0000000",
        "timeZone": zone,
    }
    sync(stack)
    key = booking_key(business_id, created["id"])
    booking = stored(stack, business_id, key)
    assert booking.start == datetime(day.year, day.month, day.day, 22, 45, tzinfo=ZoneInfo("Europe/London"))
    assert booking.end.astimezone(AMSTERDAM).date() == day + timedelta(days=1)

    assert invoice(stack, [key])[key]["status"] == "Invoiced"

    found = the_invoice(stack, business_id, key)
    assert found["invoiceDate"] == (day + timedelta(days=1)).isoformat()  # the end date in Amsterdam
    assert item_line(found)["description"] == f"Catered bento {day.isoformat()} 23:45"


def test_an_appointment_with_only_flat_customer_fields_is_billed_to_that_customer(
    stack: Stack, bc: SandboxClient
) -> None:
    business_id = stack.business_ids[0]
    created = add_appointment(
        stack,
        business_id,
        customers=[],
        customerName="Aiko Tanaka",
        customerEmailAddress="Aiko.Tanaka@FABRIKAM.com",
        customerPhone="+81 3 5550 1234",
    )
    sync(stack)
    key = booking_key(business_id, created["id"])
    booking = stored(stack, business_id, key)
    assert (booking.customer_name, booking.customer_email, booking.has_customer) == (
        "Aiko Tanaka",
        "Aiko.Tanaka@FABRIKAM.com",
        True,
    )
    [aiko] = customers_with_email(bc, "aiko.tanaka@fabrikam.com")

    assert invoice(stack, [key])[key]["status"] == "Invoiced"

    assert the_invoice(stack, business_id, key)["customerId"] == aiko["id"]
    assert len(customers_with_email(bc, "aiko.tanaka@fabrikam.com")) == 1
