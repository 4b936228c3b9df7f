"""The Business Central and Graph clients over a scripted `requests` adapter: no network, no sleeping."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from shared.adapters.bc_invoice_feed import InvoiceFeed
from shared.adapters.business_central import BusinessCentralClient, odata_string
from shared.adapters.graph_bookings import GraphBookingsClient, GraphError
from shared.adapters.http_retry import RetryPolicy
from shared.domain.bc_records import BcCustomer, BcItem
from shared.domain.errors import BusinessCentralError
from tests.helpers import ManualWaits
from tests.unit.fakes import ManualClock

Answer = tuple[int, Any, dict[str, str]] | BaseException
"""A scripted answer: (status, JSON body or raw bytes, headers), or an exception to raise."""


class ScriptedAdapter(BaseAdapter):
    """Answers each request with the next scripted answer and records what was sent."""

    def __init__(self, *answers: Answer) -> None:
        super().__init__()
        self.answers = list(answers)
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append(request)
        if not self.answers:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        status, body, headers = answer
        response = requests.Response()
        response.status_code = status
        response.reason = "scripted"
        response.headers = CaseInsensitiveDict(headers)
        response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
        response.encoding = "utf-8"
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass

    def query(self, index: int) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.sent[index].url or "").query)


def ok(body: Any, **headers: str) -> Answer:
    return (200, body, headers)


def error(status: int, code: str, message: str, **headers: str) -> Answer:
    return (status, {"error": {"code": code, "message": message}}, headers)


def session_with(adapter: ScriptedAdapter) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxies or netrc from the machine
    session.mount("https://", adapter)
    return session


# -- Business Central -------------------------------------------------------------------------------


class BcWorld:
    def __init__(self, *answers: Answer) -> None:
        self.adapter = ScriptedAdapter(*answers)
        self.waits = ManualWaits()
        self.sleeps = self.waits.sleeps
        self.client = BusinessCentralClient(
            base_url="https://bc.test/v2.0/",
            tenant_id="tenant",
            environment="Production Sandbox",
            company_id="company-1",
            token=lambda: "token-1",
            session=session_with(self.adapter),
            retry=RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=30.0),
            **self.waits.client_options(),
        )


INVOICE = {"id": "inv-1", "number": "S-INV-1001", "externalDocumentNumber": "BKG-X", "status": "Draft"}
BODY = {"customerId": "c", "externalDocumentNumber": "BKG-X", "salesInvoiceLines": []}


def test_odata_literals_double_their_quotes() -> None:
    assert odata_string("O'Brien") == "'O''Brien'"
    assert odata_string("' or 1 eq 1") == "''' or 1 eq 1'"


def test_a_customer_lookup_quotes_the_email_and_sends_the_token() -> None:
    customer = {"id": "c-1", "number": "C00010", "displayName": "Pat O'Brien", "email": "O'Brien@X.com"}
    world = BcWorld(ok({"value": [customer]}))
    (found,) = world.client.find_customers_by_email(" O'Brien@X.com ")
    assert (found.id, found.number, found.email) == ("c-1", "C00010", "O'Brien@X.com")
    request = world.adapter.sent[0]
    assert request.method == "GET"
    assert request.headers["Authorization"] == "Bearer token-1"
    assert (
        urlsplit(request.url or "").path
        == "/v2.0/tenant/Production%20Sandbox/api/v2.0/companies(company-1)/customers"
    )
    query = world.adapter.query(0)
    assert query["$filter"] == ["tolower(email) eq 'o''brien@x.com'"]
    assert query["$top"] == ["20"]


def test_an_invoice_lookup_upper_cases_the_external_document_number() -> None:
    world = BcWorld(ok({"value": [INVOICE]}))
    (invoice,) = world.client.find_invoices_by_external_document_number("bkg-x")
    assert (invoice.id, invoice.external_document_number) == ("inv-1", "BKG-X")
    assert world.adapter.query(0)["$filter"] == ["externalDocumentNumber eq 'BKG-X'"]


def test_a_429_is_retried_after_the_wait_it_asks_for() -> None:
    world = BcWorld(error(429, "TooManyRequests", "slow down", **{"Retry-After": "7"}), ok({"value": []}))
    assert world.client.find_service_items_by_name("Catered bento") == []
    assert world.sleeps == [7.0]
    assert len(world.adapter.sent) == 2
    assert world.client.request_count == 2


def test_a_429_on_the_invoice_post_is_retried_in_place() -> None:
    world = BcWorld(error(429, "TooManyRequests", "slow down", **{"Retry-After": "1"}), (201, INVOICE, {}))
    invoice = world.client.create_invoice(BODY)
    assert invoice.number == "S-INV-1001"
    assert [r.method for r in world.adapter.sent] == ["POST", "POST"]
    assert json.loads(world.adapter.sent[1].body or b"") == BODY


def test_records_by_id_read_404_as_gone_and_carry_blocked() -> None:
    """`GET customers({id})` / `items({id})` of a deleted record answer 404 (ALAppExtensions APIV2
    pages are keyed on SystemId); `blocked` is the customer enum / the item Boolean."""
    customer = {"id": "c-1", "number": "C00010", "email": "a@x.com", "blocked": "Invoice"}
    item = {"id": "i-1", "number": "SVC-1", "displayName": "Bento", "type": "Service", "blocked": True}
    world = BcWorld(
        ok(customer),
        ok(item),
        error(404, "BadRequest_NotFound", "The Customer does not exist."),
        error(404, "BadRequest_NotFound", "The Item does not exist."),
    )
    assert world.client.get_customer("c-1") == BcCustomer("c-1", "C00010", "", "a@x.com", "Invoice")
    assert world.client.get_item("i-1") == BcItem("i-1", "SVC-1", "Bento", "Service", True)
    assert world.client.get_customer("c-2") is None and world.client.get_item("i-2") is None
    assert [urlsplit(r.url or "").path.rsplit("/", 1)[1] for r in world.adapter.sent] == [
        "customers(c-1)",
        "items(i-1)",
        "customers(c-2)",
        "items(i-2)",
    ]


def test_a_record_read_that_fails_otherwise_raises() -> None:
    world = BcWorld(error(403, "Authorization_Failed", "No permission."))
    with pytest.raises(BusinessCentralError):
        world.client.get_customer("c-1")


def test_a_bad_request_is_permanent_with_business_centrals_message() -> None:
    world = BcWorld(error(400, "BadRequest_InvalidValue", "Quantity must be positive."))
    with pytest.raises(BusinessCentralError) as caught:
        world.client.create_invoice(BODY)
    assert (caught.value.transient, caught.value.may_have_committed) == (False, False)
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        400,
        "BadRequest_InvalidValue",
        "Quantity must be positive.",
    )
    assert len(world.adapter.sent) == 1


def test_a_dropped_connection_on_a_post_may_have_committed_and_is_not_repeated() -> None:
    world = BcWorld(requests.ConnectionError("connection reset by peer"))
    with pytest.raises(BusinessCentralError) as caught:
        world.client.create_invoice(BODY)
    assert (caught.value.transient, caught.value.may_have_committed) == (True, True)
    assert "ConnectionError" in caught.value.message
    assert len(world.adapter.sent) == 1 and world.sleeps == []


def test_a_post_whose_answer_is_cut_off_mid_body_may_have_committed() -> None:
    world = BcWorld(requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"))
    with pytest.raises(BusinessCentralError) as caught:
        world.client.create_invoice(BODY)
    assert (caught.value.transient, caught.value.may_have_committed) == (True, True)


def test_a_5xx_answer_to_a_post_may_have_committed_and_is_not_repeated() -> None:
    world = BcWorld(error(503, "ServiceUnavailable", "busy"))
    with pytest.raises(BusinessCentralError) as caught:
        world.client.create_invoice(BODY)
    assert (caught.value.transient, caught.value.may_have_committed, caught.value.status) == (True, True, 503)
    assert len(world.adapter.sent) == 1


def test_a_dropped_connection_on_a_get_is_retried() -> None:
    world = BcWorld(requests.ConnectionError("reset"), requests.Timeout("slow"), ok({"value": [INVOICE]}))
    assert len(world.client.find_invoices_by_external_document_number("BKG-X")) == 1
    assert len(world.adapter.sent) == 3 and len(world.sleeps) == 2


def test_a_get_that_keeps_failing_is_transient_and_not_committed() -> None:
    world = BcWorld(*(error(503, "ServiceUnavailable", "busy") for _ in range(3)))
    with pytest.raises(BusinessCentralError) as caught:
        world.client.find_customers_by_email("a@b.com")
    assert (caught.value.transient, caught.value.may_have_committed) == (True, False)
    assert len(world.adapter.sent) == 3


@pytest.mark.parametrize(
    ("answer", "transient"),
    [
        (error(401, "Unauthorized", "no"), True),
        (error(403, "Forbidden", "no"), True),
        (error(409, "Request_EntityChanged", "changed"), True),
        (error(404, "BadRequest_NotFound", "gone"), False),
        (error(422, "Application_DialogException", "posting group"), False),
        ((400, b"<html>proxy error</html>", {}), False),
    ],
)
def test_error_classification(answer: Answer, transient: bool) -> None:
    world = BcWorld(answer)
    with pytest.raises(BusinessCentralError) as caught:
        world.client.create_customer({"displayName": "x"})
    assert caught.value.transient is transient
    assert caught.value.may_have_committed is False


def test_a_success_without_json_is_a_transient_error() -> None:
    world = BcWorld((200, b"<html>gateway</html>", {}))
    with pytest.raises(BusinessCentralError, match="not JSON") as caught:
        world.client.find_customers_by_email("a@b.com")
    assert caught.value.transient


# -- Graph ------------------------------------------------------------------------------------------

GRAPH = "https://graph.test/v1.0"
BUSINESS = "lunch@contoso.com"
START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2026, 2, 1, tzinfo=UTC)


def appointment_json(appointment_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": appointment_id,
        "serviceId": "svc-1",
        "serviceName": "Catered bento",
        "startDateTime": {"dateTime": "2026-01-20T09:00:00.0000000Z", "timeZone": "UTC"},
        "endDateTime": {"dateTime": "2026-01-20T09:30:00.0000000Z", "timeZone": "UTC"},
        "price": 10,
        "priceType": "fixedPrice",
        "customers": [{"name": "Pat", "emailAddress": "pat@example.com"}],
        **fields,
    }


class GraphWorld:
    def __init__(self, *answers: Answer) -> None:
        self.adapter = ScriptedAdapter(*answers)
        self.sleeps: list[float] = []
        self.clock = ManualClock(datetime(2026, 2, 1, 12, tzinfo=UTC))
        self.client = GraphBookingsClient(
            GRAPH + "/",
            lambda: "graph-token",
            session=session_with(self.adapter),
            retry_policy=RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=60.0),
            sleep=self.sleeps.append,
            rng=lambda: 0.0,
            clock=self.clock,
        )


def test_calendar_view_follows_next_links_verbatim() -> None:
    next_link = f"{GRAPH}/solutions/bookingBusinesses/{BUSINESS}/calendarView?start=x&end=y&$skiptoken=abc%2B"
    world = GraphWorld(
        ok({"value": [appointment_json("a1"), {"id": "broken"}], "@odata.nextLink": next_link}),
        ok({"value": [appointment_json("a2"), "not an object"]}),
    )
    pages = list(world.client.calendar_view_pages(BUSINESS, START, END))

    assert [tuple(a.id for a in page.appointments) for page in pages] == [("a1",), ("a2",)]
    assert pages[0].invalid == (("broken", "startDateTime is missing"),)
    assert pages[1].invalid == ((None, "not a JSON object"),)
    assert pages[0].fetched_at == world.clock()
    first = world.adapter.sent[0]
    assert urlsplit(first.url or "").path == f"/v1.0/solutions/bookingBusinesses/{BUSINESS}/calendarView"
    assert world.adapter.query(0) == {"start": ["2026-01-01T00:00:00Z"], "end": ["2026-02-01T00:00:00Z"]}
    assert first.headers["Authorization"] == "Bearer graph-token"
    assert world.adapter.sent[1].url == next_link


def test_calendar_view_needs_aware_datetimes() -> None:
    world = GraphWorld()
    with pytest.raises(ValueError, match="aware"):
        next(world.client.calendar_view_pages(BUSINESS, START.replace(tzinfo=None), END))


def test_graph_throttling_is_retried_after_the_wait_it_asks_for() -> None:
    world = GraphWorld(
        error(429, "TooManyRequests", "slow", **{"Retry-After": "2"}),
        error(503, "ServiceUnavailable", "busy", **{"Retry-After": "3"}),
        ok({"value": []}),
    )
    (page,) = world.client.calendar_view_pages(BUSINESS, START, END)
    assert page.appointments == ()
    assert world.sleeps == [2.0, 3.0]
    assert world.client.requests_sent == 3


def test_graph_errors_carry_code_status_and_request_id() -> None:
    world = GraphWorld(error(403, "ErrorAccessDenied", "Access is denied", **{"request-id": "rid-1"}))
    with pytest.raises(GraphError) as caught:
        list(world.client.calendar_view_pages(BUSINESS, START, END))
    assert (caught.value.status, caught.value.code, caught.value.request_id) == (
        403,
        "ErrorAccessDenied",
        "rid-1",
    )
    assert "graph-token" not in str(caught.value)


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (ok({"items": []}), "invalidResponse"),
        (ok({"value": [], "@odata.nextLink": 5}), "invalidResponse"),
        ((200, b"not json", {}), "invalidResponse"),
        ((200, [1, 2], {}), "invalidResponse"),
    ],
)
def test_malformed_graph_answers_are_errors(answer: Answer, code: str) -> None:
    world = GraphWorld(answer)
    with pytest.raises(GraphError) as caught:
        list(world.client.calendar_view_pages(BUSINESS, START, END))
    assert caught.value.code == code


def test_a_connection_that_keeps_dropping_ends_in_unreachable() -> None:
    world = GraphWorld(*(requests.ConnectionError("reset") for _ in range(3)))
    with pytest.raises(GraphError) as caught:
        list(world.client.calendar_view_pages(BUSINESS, START, END))
    assert caught.value.code == "unreachable"
    assert len(world.adapter.sent) == 3


def test_get_appointment_encodes_the_id_and_reads_404_as_gone() -> None:
    appointment_id = "AAMk/x+Y="
    world = GraphWorld(ok(appointment_json(appointment_id)), error(404, "ErrorItemNotFound", "gone"))
    found = world.client.get_appointment(BUSINESS, appointment_id)
    assert found is not None and found.id == appointment_id and found.price == 10.0
    assert (world.adapter.sent[0].url or "").endswith("/appointments/AAMk%2Fx%2BY%3D")
    assert world.client.get_appointment(BUSINESS, appointment_id) is None


def test_get_appointment_raises_other_errors() -> None:
    world = GraphWorld(error(400, "BadRequest", "bad id"))
    with pytest.raises(GraphError, match="BadRequest"):
        world.client.get_appointment(BUSINESS, "x")


def test_a_next_link_is_followed_exactly_as_given_with_the_page_size_asked_for() -> None:
    # The server's own spelling (its environment segment, its company key): an opaque URL, never
    # rebuilt from the client's company URL (OData 4.01 Part 1 Protocol, "Server-Driven Paging").
    link = (
        "https://bc.test/v2.0/tenant/Production%20Sandbox/api/v2.0/companies(COMPANY-1)/salesInvoices"
        "?$filter=x&$skiptoken=abc%2B1"
    )
    row = {"id": "inv-1", "number": "S-1", "externalDocumentNumber": "BKG-X", "status": "Draft"}
    world = BcWorld(ok({"value": [row], "@odata.nextLink": link}), ok({"value": [row]}))
    pages = list(InvoiceFeed(world.client, page_size=100).pages({"$select": "id"}))
    assert [len(p.rows) for p in pages] == [1, 1]
    assert world.adapter.sent[1].url == link
    assert all(r.headers["Prefer"] == "odata.maxpagesize=100" for r in world.adapter.sent)


def test_a_next_link_to_another_host_is_refused() -> None:
    world = BcWorld(ok({"value": [], "@odata.nextLink": "https://elsewhere.test/steal?x=1"}))
    with pytest.raises(BusinessCentralError, match="nextLink"):
        list(InvoiceFeed(world.client).pages({}))
    assert len(world.adapter.sent) == 1  # the token never went to the other host


def test_the_unposted_read_is_one_or_on_status_and_asks_once_more_with_the_al_name_if_refused() -> None:
    row = {"id": "inv-1", "number": "S-1", "externalDocumentNumber": "BKG-X", "status": "In_x0020_Review"}
    world = BcWorld(
        error(400, "BadRequest", "Invalid filter: 'In_x0020_Review' is not a valid value"),
        ok({"value": [row]}),
    )
    pages = list(InvoiceFeed(world.client).unposted_pages(include_open=False))
    assert [r.status for p in pages for r in p.rows] == ["In Review"]
    first, second = (world.adapter.query(n)["$filter"][0] for n in (0, 1))
    assert first == (
        "startswith(externalDocumentNumber,'BKG-') and (status eq 'Draft' or status eq 'In_x0020_Review')"
    )
    assert second.endswith("(status eq 'Draft' or status eq 'In Review')") and " in " not in second
