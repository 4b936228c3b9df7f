"""What a bookkeeper reaches for after the first week, through the API host, Azurite and the sandbox:
totals over every page in the company's currency, the CSV export, invoice links into Business
Central's web client, the businesses' display names, and request items that say whose booking failed.

The host talks to the sandbox's Graph and Business Central (names, currency); the bookings are
seeded straight into the table, in the sandbox's own businesses.
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient

from devhost.azurite import start_azurite
from sandbox import SandboxHandle
from shared import bootstrap
from shared.adapters.booking_entities import BOOKINGS_TABLE
from shared.domain.models import BookingStatus, InvoiceSource, PriceType
from tests.api_support import BASE_START, ApiWorld, api_world, make_booking, seed

SANDBOX_SETTINGS = (
    "ENTRA_AUTHORITY_HOST",
    "ENTRA_TENANT_ID",
    "ENTRA_CLIENT_ID",
    "ENTRA_CLIENT_SECRET",
    "GRAPH_BASE_URL",
    "BOOKINGS_BUSINESS_IDS",
    "BC_BASE_URL",
    "BC_ENVIRONMENT",
    "BC_COMPANY_ID",
)


@pytest.fixture(scope="module")
def connection() -> Iterator[str]:
    with start_azurite() as azurite:
        yield azurite.connection_string


@pytest.fixture
def world(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, connection: str, fresh_sandbox: SandboxHandle
) -> Iterator[ApiWorld]:
    with contextlib.suppress(ResourceNotFoundError):  # every test starts from an empty table
        TableServiceClient.from_connection_string(connection).delete_table(BOOKINGS_TABLE)
    overrides = {name: fresh_sandbox.settings[name] for name in SANDBOX_SETTINGS}
    with api_world(
        monkeypatch,
        tmp_path,
        connection,
        clock=fresh_sandbox.clock.now,
        BOOKINGS_TIME_ZONE="Europe/Amsterdam",
        **overrides,
    ) as world:
        yield world


def graph_names(sandbox: SandboxHandle) -> dict[str, str]:
    return {b.id: b.fields["displayName"] for b in sandbox.app.bookings.businesses()}


def test_totals_count_and_sum_every_page_in_the_companys_currency(world: ApiWorld) -> None:
    first, second = world.businesses[:2]
    hourly = replace(make_booking(first, 0), price=40.0, price_type=PriceType.HOURLY)  # 30 min: 20.00
    hourly = replace(hourly, end=hourly.start + timedelta(minutes=90))  # 1.5 h: 60.00
    free = replace(make_booking(first, 1), price=25.0, price_type=PriceType.FREE)  # 0
    fixed = [make_booking(first, n) for n in range(2, 130)] + [
        make_booking(second, n) for n in range(130, 260)
    ]
    invoiced = make_booking(first, 300, status=BookingStatus.INVOICED)
    seed(world.connection, [hourly, free, *fixed, invoiced])

    answer = world.get(f"{world.url}/booking-totals")
    assert answer.status_code == 200, answer.text
    expected = Decimal("60.00") + 10 * len(fixed)
    assert answer.json() == {"count": 2 + len(fixed), "amount": float(expected), "currencyCode": "EUR"}
    # The list's own filters: one business; a customer; a status; a time window.
    one = world.get(f"{world.url}/booking-totals", params={"businessId": second}).json()
    assert (one["count"], one["amount"]) == (130, 1300.0)
    named = world.get(f"{world.url}/booking-totals", params={"customerName": "customer 3"}).json()
    assert named["count"] == sum(1 for b in fixed if b.customer_name == "Customer 3")
    done = world.get(f"{world.url}/booking-totals", params={"status": "Invoiced"}).json()
    assert (done["count"], done["amount"]) == (1, 10.0)
    window = {"from": BASE_START.isoformat(), "to": (BASE_START + timedelta(hours=2)).isoformat()}
    assert world.get(f"{world.url}/booking-totals", params=window).json()["count"] == 2
    # Totals cover every page: paging parameters are refused, not ignored.
    for bad in ({"top": "10"}, {"continuationToken": "x"}, {"status": "Nope"}, {"page": "2"}):
        refused = world.get(f"{world.url}/booking-totals", params=bad)
        assert refused.status_code == 400 and refused.headers["Content-Type"].startswith(
            "application/problem+json"
        )


def test_settings_name_the_businesses_and_the_company_from_graph_and_business_central(
    world: ApiWorld, fresh_sandbox: SandboxHandle
) -> None:
    document = world.get(f"{world.url}/settings").json()
    names = graph_names(fresh_sandbox)
    assert document["businessNames"] == {b: names[b] for b in world.businesses}
    company = fresh_sandbox.admin.state(["company"])["company"]
    bc = document["businessCentral"]
    assert (bc["companyName"], bc["companyDisplayName"], bc["currencyCode"]) == (
        company["name"],
        company["displayName"],
        "EUR",
    )
    tenant, environment = world.settings["ENTRA_TENANT_ID"], world.settings["BC_ENVIRONMENT"]
    assert bc["webClientUrl"] == f"https://businesscentral.dynamics.com/{tenant}/{environment}"
    assert document["priceSource"] == "bookings"
    # Cached: a second page view reads neither Graph nor Business Central again.
    counters = fresh_sandbox.app.counters
    before = (counters.total("graph"), counters.total("bc"))
    world.get(f"{world.url}/settings")
    world.get(f"{world.url}/bookings")
    assert (counters.total("graph"), counters.total("bc")) == before


def test_an_invoice_number_links_to_its_draft_or_posted_page_in_the_web_client(
    world: ApiWorld, fresh_sandbox: SandboxHandle
) -> None:
    business = world.business
    app = InvoiceSource.APP
    draft = make_booking(business, 1, status=BookingStatus.INVOICED)
    draft = replace(
        draft, invoice_id="i-1", invoice_number="S-INV 1001", invoice_source=app, invoice_status="Draft"
    )
    posted = replace(
        make_booking(business, 2, status=BookingStatus.INVOICED), invoice_id="i-2", invoice_source=app
    )
    posted = replace(posted, invoice_number="PS-INV103", invoice_status="Open", invoice_posted=True)
    manual = replace(make_booking(business, 3, status=BookingStatus.INVOICED), invoice_number="CASH-7")
    manual = replace(manual, invoice_source=InvoiceSource.MANUAL)
    seed(world.connection, [draft, posted, manual])
    rows = {
        b["key"]: b for b in world.get(f"{world.url}/bookings", params={"status": "Invoiced"}).json()["value"]
    }
    company = fresh_sandbox.admin.state(["company"])["company"]["name"]
    tenant, environment = world.settings["ENTRA_TENANT_ID"], world.settings["BC_ENVIRONMENT"]
    for booking, page in ((draft, "43"), (posted, "132")):
        url = urlsplit(rows[booking.key]["invoiceUrl"])
        assert (url.scheme, url.netloc, url.path) == (
            "https",
            "businesscentral.dynamics.com",
            f"/{tenant}/{environment}/",
        )
        query = parse_qs(url.query)
        assert query == {
            "company": [company],
            "page": [page],
            "filter": [f"'No.' IS '{booking.invoice_number}'"],
        }
        assert rows[booking.key]["amount"] == 10.0
    assert rows[manual.key]["invoiceUrl"] is None  # a reference typed by hand is no BC number
    one = world.get(f"{world.url}/bookings/{posted.key}").json()
    assert one["invoiceUrl"] == rows[posted.key]["invoiceUrl"]


def test_export_is_every_match_as_csv_with_a_bom_and_no_formulas(
    world: ApiWorld, fresh_sandbox: SandboxHandle
) -> None:
    business = world.business
    many = [make_booking(business, n) for n in range(1, 1106)]  # more than one page of 1,000
    sly = replace(
        make_booking(business, 2000), customer_name='=HYPERLINK("http://x")', service_name="+1 massage"
    )
    sly = replace(sly, customer_email="@evil@example.com")
    other = make_booking(world.businesses[1], 3000)
    seed(world.connection, [*many, sly, other])

    answer = world.get(f"{world.url}/booking-export", params={"businessId": business})
    assert answer.status_code == 200, answer.text[:300]
    assert answer.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert answer.headers["Content-Disposition"].startswith('attachment; filename="bookings-unbilled-')
    assert answer.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"), newline="")))
    header, body = rows[0], rows[1:]
    assert header[:3] == ["Business", "Business id", "Appointment start"]
    column = {name: index for index, name in enumerate(header)}
    assert len(body) == len(many) + 1  # every page, this business only
    keys = [row[column["Booking key"]] for row in body]
    assert set(keys) == {b.key for b in [*many, sly]}
    assert body[0][column["Booking key"]] == sly.key  # newest first, as the list
    evil = body[0]
    assert evil[column["Customer"]] == '\'=HYPERLINK("http://x")'
    assert evil[column["Service"]] == "'+1 massage" and evil[column["Customer email"]] == "'@evil@example.com"
    assert evil[column["Business"]] == graph_names(fresh_sandbox)[business]
    assert (evil[column["Amount"]], evil[column["Currency"]]) == ("10.00", "EUR")
    assert evil[column["Appointment start"]] == sly.start.astimezone(
        bootstrap.container().settings.time_zone
    ).strftime("%Y-%m-%d %H:%M")
    assert answer.content.count(b"\r\n") == len(rows)
    assert world.get(f"{world.url}/booking-export", params={"top": "5"}).status_code == 400


def test_request_items_say_whose_booking_it_is(world: ApiWorld) -> None:
    booking = seed(world.connection, [make_booking(world.business, 1)])[0]
    accepted = world.post(f"{world.url}/invoice-requests", json={"bookingKeys": [booking.key]})
    assert accepted.status_code == 202, accepted.text
    status = world.get(f"{world.url}/invoice-requests/{accepted.json()['requestId']}").json()
    [item] = status["items"]
    assert item["customerName"] == booking.customer_name and item["customerEmail"] == booking.customer_email
    assert item["serviceName"] == booking.service_name and item["businessId"] == booking.business_id
    assert item["start"] == booking.start.isoformat().replace("+00:00", "Z")
