"""Business Central as its API pages really answer: error codes, If-Match, Retry-After, filters,
and the invoice lifecycle (post, pay, cancel, delete) with `lastModifiedDateTime`.

Each case names the behaviour row of `sandbox/FIDELITY.md` it checks.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from sandbox import SandboxAdminError, SandboxHandle
from sandbox.business_central.schema import INVOICE_STATUSES
from tests.sandbox.support import FIXED_NOW, SandboxClient, wait_for


def _invoice(external: str = "BKG-FIDELITY", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customerNumber": "C00010",
        "externalDocumentNumber": external,
        "invoiceDate": "2026-01-15",
        "salesInvoiceLines": [{"lineType": "Item", "lineObjectNumber": "SVC-0001", "quantity": 1}],
    }
    body.update(overrides)
    return body


def _error(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    return str(error["message"])


def _create(client: SandboxClient, external: str = "BKG-FIDELITY", **overrides: Any) -> dict[str, Any]:
    response = client.bc("POST", "/salesInvoices", json=_invoice(external, **overrides))
    assert response.status_code == 201, response.text
    return dict(response.json())


def _get(client: SandboxClient, invoice_id: str) -> dict[str, Any]:
    response = client.bc("GET", f"/salesInvoices({invoice_id})")
    assert response.status_code == 200, response.text
    return dict(response.json())


# -- errors -------------------------------------------------------------------------------------


def test_writing_a_read_only_field_is_an_invalid_operation(client: SandboxClient) -> None:
    invoice = _create(client)
    path = f"/salesInvoices({invoice['id']})"
    for body in (
        {"customerName": "Someone else"},
        {"totalAmountIncludingTax": 1},
        {"lastModifiedDateTime": "x"},
    ):
        patched = client.bc("PATCH", path, json=body, headers={"If-Match": "*"})
        name = next(iter(body))
        assert _error(patched, 400, "BadRequest_InvalidOperation").startswith(
            f"Control '{name}' is read-only."
        )
    created = client.bc("POST", "/customers", json={"displayName": "A", "balanceDue": 5})
    _error(created, 400, "BadRequest_InvalidOperation")
    assert _get(client, invoice["id"])["customerName"] == "Bob Kelly"  # nothing changed


def test_patch_and_delete_need_if_match(client: SandboxClient) -> None:
    customer = client.bc("POST", "/customers", json={"displayName": "Etag Person"}).json()
    item = client.bc("POST", "/items", json={"displayName": "Etag item", "type": "Service"}).json()
    invoice = _create(client)
    line = client.bc("GET", f"/salesInvoices({invoice['id']})/salesInvoiceLines").json()["value"][0]
    targets = [
        f"/customers({customer['id']})",
        f"/items({item['id']})",
        f"/salesInvoices({invoice['id']})/salesInvoiceLines({line['id']})",
        f"/salesInvoices({invoice['id']})",
    ]
    for path in targets:
        message = _error(client.bc("DELETE", path), 400, "BadRequest_InvalidToken")
        assert message.startswith("Could not validate the client concurrency token required by the service.")
        stale = client.bc("DELETE", path, headers={"If-Match": 'W/"JzE5OzE7MDA7Jw=="'})
        _error(stale, 409, "Request_EntityChanged")
    for path in targets[:2]:
        _error(client.bc("PATCH", path, json={"displayName": "x"}), 400, "BadRequest_InvalidToken")
    # Everything is still there; with the current etag (or `*`) the deletes go through.
    assert client.bc("GET", targets[0]).status_code == 200
    line_etag = client.bc("GET", targets[2]).json()["@odata.etag"]
    assert client.bc("DELETE", targets[2], headers={"If-Match": line_etag}).status_code == 204
    assert client.bc("DELETE", targets[3], headers={"If-Match": "*"}).status_code == 204
    assert client.bc("DELETE", targets[0], headers={"If-Match": customer["@odata.etag"]}).status_code == 204


def test_a_customer_or_item_that_matches_nothing_is_a_dialog_exception(client: SandboxClient) -> None:
    customer = client.bc(
        "POST", "/customers", json={"displayName": "Gone Soon", "email": "gone@x.org"}
    ).json()
    item = client.bc("POST", "/items", json={"displayName": "Gone item", "type": "Service"}).json()
    for path, etag in (
        (f"/customers({customer['id']})", customer["@odata.etag"]),
        (f"/items({item['id']})", item["@odata.etag"]),
    ):
        assert client.bc("DELETE", path, headers={"If-Match": etag}).status_code == 204
        # A by-id read of the deleted record: 404.
        _error(client.bc("GET", path), 404, "BadRequest_NotFound")
    by_customer = client.bc(
        "POST", "/salesInvoices", json=_invoice(customerNumber="", customerId=customer["id"])
    )
    assert _error(by_customer, 400, "Application_DialogException").startswith(
        "The sell-to customer cannot be found.  CorrelationId:  "
    )
    lines = [{"lineType": "Item", "itemId": item["id"], "quantity": 1}]
    by_item = client.bc("POST", "/salesInvoices", json=_invoice(salesInvoiceLines=lines))
    assert _error(by_item, 400, "Application_DialogException").startswith(
        "Item does not exist.  CorrelationId:  "
    )
    mismatch = client.bc(
        "POST",
        "/salesInvoices",
        json=_invoice(customerNumber="C00020", customerId=_first_customer_id(client)),
    )
    assert "do not match to a specific Customer" in _error(mismatch, 400, "Application_DialogException")
    assert client.bc("GET", "/salesInvoices").json()["value"] == []


def _first_customer_id(client: SandboxClient) -> str:
    rows = client.bc("GET", "/customers", params={"$filter": "number eq 'C00010'"}).json()["value"]
    return str(rows[0]["id"])


@pytest.mark.parametrize("explicit", [None, 7])
def test_an_injected_503_carries_retry_after(
    sandbox: SandboxHandle, client: SandboxClient, explicit: int | None
) -> None:
    rule: dict[str, Any] = {"status": 503, "count": 1}
    if explicit is not None:
        rule["retryAfter"] = explicit
    sandbox.admin.set_faults({"failures": {"bc": [rule]}})
    answer = client.bc("GET", "/customers")
    _error(answer, 503, "Internal_ServiceUnavailable")
    assert answer.headers["Retry-After"] == str(explicit or 1)
    assert client.bc("GET", "/customers").status_code == 200


def test_a_queue_timeout_503_carries_retry_after(sandbox: SandboxHandle, client: SandboxClient) -> None:
    sandbox.admin.set_faults(
        {"latency": {"bc": 1.0}, "bcConcurrency": {"maxRunning": 1, "queueTimeoutSeconds": 0.05}}
    )
    token = client.token("https://api.businesscentral.dynamics.com/.default")
    first: dict[str, Any] = {}

    def hold_the_slot() -> None:
        helper = SandboxClient(sandbox)
        try:
            first["status"] = helper.bc("GET", "/customers", token=token).status_code
        finally:
            helper.close()

    holder = threading.Thread(target=hold_the_slot)
    holder.start()
    try:
        wait_for(
            lambda: sandbox.app.faults.stats()["concurrency"]["bc"]["maxRunning"] >= 1, what="slot taken"
        )
        answer = client.bc("GET", "/items", token=token)
    finally:
        sandbox.app.faults.interrupt()
        holder.join(timeout=10)
    _error(answer, 503, "Internal_ServiceUnavailable")
    assert answer.headers["Retry-After"].isdigit()


# -- filters ------------------------------------------------------------------------------------


def test_or_on_distinct_fields_is_refused_and_in_is_supported(client: SandboxClient) -> None:
    distinct = client.bc(
        "GET", "/customers", params={"$filter": "number eq 'C00010' or email eq 'ap@treyresearch.net'"}
    )
    assert "The 'OR' operator is not supported on distinct fields" in _error(distinct, 400, "BadRequest")
    same = client.bc("GET", "/customers", params={"$filter": "number eq 'C00010' or number eq 'C00020'"})
    assert [c["number"] for c in same.json()["value"]] == ["C00010", "C00020"]
    listed = client.bc("GET", "/customers", params={"$filter": "number in ('C00020', 'C00010', 'NOPE')"})
    assert [c["number"] for c in listed.json()["value"]] == ["C00010", "C00020"]
    blocked = client.bc("GET", "/customers", params={"$filter": "blocked in ('Invoice', 'All')"}).json()[
        "value"
    ]
    assert {c["number"] for c in blocked} >= {"CT-BOOKINGS"} and all(
        c["blocked"] != "_x0020_" for c in blocked
    )
    _error(client.bc("GET", "/customers", params={"$filter": "number in 'C00010'"}), 400, "BadRequest")


def test_invoice_status_enum_has_the_blank_value(client: SandboxClient) -> None:
    assert INVOICE_STATUSES[0] == "_x0020_"
    _create(client)
    blank = client.bc("GET", "/salesInvoices", params={"$filter": "status eq '_x0020_'"}).json()["value"]
    drafts = client.bc("GET", "/salesInvoices", params={"$filter": "status in ('_x0020_', 'Draft')"}).json()[
        "value"
    ]
    assert blank == [] and len(drafts) == 1


# -- invoice lifecycle --------------------------------------------------------------------------


def test_posting_keeps_the_id_and_takes_the_posted_number_then_paid(
    sandbox: SandboxHandle, client: SandboxClient
) -> None:
    draft = _create(client, "bkg-lifecycle")
    sandbox.admin.advance_clock(60)
    posted = client.bc("POST", f"/salesInvoices({draft['id']})/Microsoft.NAV.post")
    assert posted.status_code == 204 and not posted.content
    after = _get(client, draft["id"])
    assert after["id"] == draft["id"] and after["status"] == "Open"
    assert after["number"].startswith("PS-INV") and after["number"] != draft["number"]
    assert after["lastModifiedDateTime"] > draft["lastModifiedDateTime"]
    assert after["remainingAmount"] == after["totalAmountIncludingTax"] > 0
    found = client.bc(
        "GET", "/salesInvoices", params={"$filter": "externalDocumentNumber eq 'BKG-LIFECYCLE'"}
    )
    assert [(i["id"], i["number"]) for i in found.json()["value"]] == [(draft["id"], after["number"])]
    again = client.bc("POST", f"/salesInvoices({draft['id']})/Microsoft.NAV.post")
    assert "draft invoice only" in _error(again, 400, "Application_DialogException")
    change = client.bc(
        "PATCH",
        f"/salesInvoices({draft['id']})",
        json={"invoiceDate": "2026-01-20"},
        headers={"If-Match": "*"},
    )
    assert "posted and can no longer be modified" in _error(change, 400, "Application_DialogException")

    sandbox.admin.advance_clock(60)
    paid = sandbox.admin.mark_invoice_paid(draft["id"])
    assert paid["status"] == "Paid" and paid["remainingAmount"] == 0
    read = _get(client, draft["id"])
    assert read["status"] == "Paid" and read["lastModifiedDateTime"] > after["lastModifiedDateTime"]
    cancel_paid = client.bc("POST", f"/salesInvoices({draft['id']})/Microsoft.NAV.cancel")
    assert "paid" in _error(cancel_paid, 400, "Application_DialogException")


def test_cancel_and_corrective_and_what_the_admin_route_refuses(
    sandbox: SandboxHandle, client: SandboxClient
) -> None:
    invoice = _create(client, "BKG-CANCEL")
    draft_cancel = client.bc("POST", f"/salesInvoices({invoice['id']})/Microsoft.NAV.cancel")
    assert "posted invoice only" in _error(draft_cancel, 400, "Application_DialogException")
    with pytest.raises(SandboxAdminError) as refused:
        sandbox.admin.mark_invoice_paid(invoice["id"])
    assert refused.value.status == 409
    assert client.bc("POST", f"/salesInvoices({invoice['id']})/Microsoft.NAV.post").status_code == 204
    assert client.bc("POST", f"/salesInvoices({invoice['id']})/Microsoft.NAV.cancel").status_code == 204
    assert _get(client, invoice["id"])["status"] == "Canceled"
    twice = client.bc("POST", f"/salesInvoices({invoice['id']})/Microsoft.NAV.cancel")
    assert "already been canceled" in _error(twice, 400, "Application_DialogException")
    assert sandbox.admin.set_invoice_status(invoice["id"], "Corrective")["status"] == "Corrective"
    with pytest.raises(SandboxAdminError):
        sandbox.admin.set_invoice_status(invoice["id"], "Draft")


def test_deleting_a_draft_removes_it_everywhere(client: SandboxClient) -> None:
    keep = _create(client, "BKG-KEEP")
    gone = _create(client, "BKG-GONE")
    assert (
        client.bc(
            "DELETE", f"/salesInvoices({gone['id']})", headers={"If-Match": gone["@odata.etag"]}
        ).status_code
        == 204
    )
    _error(client.bc("GET", f"/salesInvoices({gone['id']})"), 404, "BadRequest_NotFound")
    _error(client.bc("GET", f"/salesInvoices({gone['id']})/salesInvoiceLines"), 404, "BadRequest_NotFound")
    by_number = client.bc("GET", "/salesInvoices", params={"$filter": "externalDocumentNumber eq 'BKG-GONE'"})
    assert by_number.json()["value"] == []
    assert [i["id"] for i in client.bc("GET", "/salesInvoices").json()["value"]] == [keep["id"]]


def test_every_change_moves_last_modified(sandbox: SandboxHandle, client: SandboxClient) -> None:
    invoice = _create(client, "BKG-STAMPS")
    path = f"/salesInvoices({invoice['id']})"
    stamps = [invoice["lastModifiedDateTime"]]

    def changed() -> None:
        stamps.append(_get(client, invoice["id"])["lastModifiedDateTime"])
        assert stamps[-1] > stamps[-2], stamps

    sandbox.admin.advance_clock(1)
    assert (
        client.bc("PATCH", path, json={"invoiceDate": "2026-01-16"}, headers={"If-Match": "*"}).status_code
        == 200
    )
    changed()
    sandbox.admin.advance_clock(1)
    line = client.bc("POST", f"{path}/salesInvoiceLines", json={"lineType": "Comment", "description": "x"})
    assert line.status_code == 201, line.text
    changed()
    sandbox.admin.advance_clock(1)
    deleted = client.bc("DELETE", f"{path}/salesInvoiceLines({line.json()['id']})", headers={"If-Match": "*"})
    assert deleted.status_code == 204
    changed()
    sandbox.admin.advance_clock(1)
    assert client.bc("POST", f"{path}/Microsoft.NAV.post").status_code == 204
    changed()
    sandbox.admin.advance_clock(1)
    sandbox.admin.mark_invoice_paid(invoice["id"])
    changed()


def test_incremental_read_by_last_modified_with_select_and_paging(
    sandbox: SandboxHandle, client: SandboxClient
) -> None:
    invoices = [_create(client, f"BKG-INC-{n}") for n in range(6)]
    since = invoices[-1]["lastModifiedDateTime"]
    sandbox.admin.advance_clock(300)
    edited, posted, paid, deleted = invoices[0], invoices[1], invoices[2], invoices[3]
    client.bc(
        "PATCH",
        f"/salesInvoices({edited['id']})",
        json={"invoiceDate": "2026-01-17"},
        headers={"If-Match": "*"},
    )
    client.bc("POST", f"/salesInvoices({posted['id']})/Microsoft.NAV.post")
    client.bc("POST", f"/salesInvoices({paid['id']})/Microsoft.NAV.post")
    sandbox.admin.mark_invoice_paid(paid["id"])
    client.bc("DELETE", f"/salesInvoices({deleted['id']})", headers={"If-Match": "*"})

    select = "id,number,externalDocumentNumber,status,lastModifiedDateTime"
    params = {"$filter": f"lastModifiedDateTime gt {since}", "$select": select}
    response = client.bc("GET", "/salesInvoices", params=params, headers={"Prefer": "odata.maxpagesize=1"})
    assert response.headers["Preference-Applied"] == "odata.maxpagesize=1"
    pages = [response.json()]
    while "@odata.nextLink" in pages[-1]:
        assert len(pages) < 10
        pages.append(
            client.bc("GET", pages[-1]["@odata.nextLink"], headers={"Prefer": "odata.maxpagesize=1"}).json()
        )
    rows = [row for page in pages for row in page["value"]]
    assert len(pages) == 3 and all(len(page["value"]) == 1 for page in pages)
    assert all(set(row) == {"@odata.etag", *select.split(",")} for row in rows)
    assert {row["id"]: row["status"] for row in rows} == {
        edited["id"]: "Draft",
        posted["id"]: "Open",
        paid["id"]: "Paid",
    }
    assert pages[0]["@odata.context"].endswith(f"/salesInvoices({select})")

    untouched = client.bc(
        "GET", "/salesInvoices", params={"$filter": f"lastModifiedDateTime lt {since}"}
    ).json()
    assert untouched["value"] == []  # every invoice was created at `since`
    at_or_after = client.bc(
        "GET", "/salesInvoices", params={"$filter": f"lastModifiedDateTime ge {since}"}
    ).json()
    assert {row["id"] for row in at_or_after["value"]} == {i["id"] for i in invoices} - {deleted["id"]}
    window = client.bc(
        "GET",
        "/salesInvoices",
        params={"$filter": f"lastModifiedDateTime gt {since} and status eq 'Draft'", "$select": "id"},
    ).json()
    assert [row["id"] for row in window["value"]] == [edited["id"]]
    assert timedelta(seconds=300) == sandbox.clock.now() - FIXED_NOW


# -- dates, approval and release (FIDELITY "Invoice lifecycle") ----------------------------------


def test_invoice_date_is_the_document_date_only(sandbox: SandboxHandle, client: SandboxClient) -> None:
    today = FIXED_NOW.date().isoformat()
    only_invoice_date = _create(client, "BKG-DATES-1", invoiceDate="2025-11-20")
    assert (only_invoice_date["invoiceDate"], only_invoice_date["postingDate"]) == ("2025-11-20", today)
    both = _create(client, "BKG-DATES-2", invoiceDate="2025-11-20", postingDate="2025-11-20")
    assert both["postingDate"] == "2025-11-20"
    sandbox.admin.set_allowed_posting_dates("2025-12-01", None)  # checked when posting (W1)
    early = _create(client, "BKG-DATES-5", postingDate="2025-11-20")
    posting = client.bc("POST", f"/salesInvoices({early['id']})/Microsoft.NAV.post")
    assert "not within your range of allowed posting dates" in _error(
        posting, 400, "Application_DialogException"
    )
    sandbox.admin.set_allowed_posting_dates("2025-12-01", None, at_creation=True)
    refused = client.bc("POST", "/salesInvoices", json=_invoice("BKG-DATES-3", postingDate="2025-11-20"))
    assert "not within your range of allowed posting dates" in _error(
        refused, 400, "Application_DialogException"
    )
    assert _create(client, "BKG-DATES-4", postingDate="2025-12-02")["postingDate"] == "2025-12-02"


def test_approval_and_release_keep_an_invoice_unposted(sandbox: SandboxHandle, client: SandboxClient) -> None:
    draft = _create(client, "BKG-APPROVAL")
    reviewed = sandbox.admin.move_unposted_invoice(draft["id"], "sendForApproval")
    assert reviewed["status"] == "In_x0020_Review"
    refused = client.bc("POST", f"/salesInvoices({draft['id']})/Microsoft.NAV.post")
    assert "must be approved and released" in _error(refused, 400, "Application_DialogException")
    released = sandbox.admin.move_unposted_invoice(draft["id"], "approve")
    assert (released["status"], released["number"]) == ("Open", draft["number"])  # Open, not posted
    locked = client.bc(
        "PATCH",
        f"/salesInvoices({draft['id']})",
        json={"invoiceDate": "2026-01-16"},
        headers={"If-Match": "*"},
    )
    assert "Status must be equal to 'Open'" in _error(locked, 400, "Application_FieldValidationException")
    assert sandbox.admin.move_unposted_invoice(draft["id"], "reopen")["status"] == "Draft"
    sandbox.admin.move_unposted_invoice(draft["id"], "release")
    # A released, unposted invoice can still be deleted (Sales Invoice Aggregator.PropagateOnDelete).
    current = _get(client, draft["id"])
    deleted = client.bc(
        "DELETE", f"/salesInvoices({draft['id']})", headers={"If-Match": current["@odata.etag"]}
    )
    assert deleted.status_code == 204


def test_drafts_in_review_are_filtered_by_the_escaped_name(
    sandbox: SandboxHandle, client: SandboxClient
) -> None:
    draft = _create(client, "BKG-Q-1")
    review = _create(client, "BKG-Q-2")
    _create(client, "OTHER-Q-3")
    sandbox.admin.move_unposted_invoice(review["id"], "sendForApproval")
    query = "startswith(externalDocumentNumber,'BKG-') and (status eq 'Draft' or status eq 'In_x0020_Review')"
    rows = client.bc("GET", "/salesInvoices", params={"$filter": query}).json()["value"]
    assert sorted(r["id"] for r in rows) == sorted([draft["id"], review["id"]])
