"""Business Central stand-in: deep insert rules, entities, paging, etags, posting."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox import SandboxHandle
from tests.sandbox.support import SandboxClient


def _invoice(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customerNumber": "C00010",
        "externalDocumentNumber": "BKG-ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "invoiceDate": "2026-01-15",
        "salesInvoiceLines": [
            {
                "lineType": "Item",
                "lineObjectNumber": "SVC-0001",
                "description": "Catered bento 2026-01-15 13:00",
                "quantity": 2,
                "unitPrice": 10.0,
            },
            {"lineType": "Comment", "description": "Bookings appointment with Bob Kelly"},
        ],
    }
    body.update(overrides)
    return body


def _error(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert "  CorrelationId:  " in error["message"] and error["message"].endswith(".")
    return str(error["message"])


def _invoice_count(sandbox: SandboxHandle) -> int:
    return len(sandbox.admin.state(["invoices"])["invoices"])


def test_deep_insert_creates_a_draft_with_lines_and_totals(client: SandboxClient) -> None:
    response = client.bc("POST", "/salesInvoices", json=_invoice(externalDocumentNumber="  bkg-lower  "))
    assert response.status_code == 201, response.text
    invoice = response.json()
    assert invoice["status"] == "Draft"
    assert invoice["number"] == "S-INV100001"
    assert invoice["externalDocumentNumber"] == "BKG-LOWER"
    assert invoice["customerName"] == "Bob Kelly"
    assert invoice["totalAmountExcludingTax"] == 20.0
    assert invoice["totalAmountIncludingTax"] == pytest.approx(20.0 + invoice["totalTaxAmount"])
    assert invoice["@odata.etag"].startswith('W/"')
    assert "salesInvoiceLines" not in invoice
    second = client.bc("POST", "/salesInvoices", json=_invoice()).json()
    assert second["number"] == "S-INV100002"

    expanded = client.bc(
        "GET", f"/salesInvoices({invoice['id']})", params={"$expand": "salesInvoiceLines"}
    ).json()
    item_line, comment = expanded["salesInvoiceLines"]
    assert item_line["lineType"] == "Item" and item_line["amountExcludingTax"] == 20.0
    assert item_line["sequence"] == 10000
    assert comment["lineType"] == "Comment"
    assert (
        comment["amountExcludingTax"] == 0 and comment["quantity"] == 0 and comment["lineObjectNumber"] == ""
    )
    lines = client.bc("GET", f"/salesInvoices({invoice['id']})/salesInvoiceLines").json()["value"]
    assert [line["sequence"] for line in lines] == [10000, 20000]


def test_line_without_unit_price_takes_the_item_price(client: SandboxClient) -> None:
    lines = [{"lineType": "Item", "lineObjectNumber": "svc-0004", "quantity": 1}]
    invoice = client.bc(
        "POST",
        "/salesInvoices",
        json=_invoice(salesInvoiceLines=lines),
        params={"$expand": "salesInvoiceLines"},
    ).json()
    line = invoice["salesInvoiceLines"][0]
    assert line["unitPrice"] == 250.0
    assert line["lineObjectNumber"] == "SVC-0004"
    assert line["description"] == "Event catering"
    item = client.bc("GET", "/items", params={"$filter": "number eq 'SVC-0004'"}).json()["value"][0]
    by_id = [{"lineType": "Item", "itemId": item["id"], "quantity": 1.5}]
    invoice = client.bc(
        "POST",
        "/salesInvoices",
        json=_invoice(salesInvoiceLines=by_id),
        params={"$expand": "salesInvoiceLines"},
    ).json()
    assert invoice["salesInvoiceLines"][0]["amountExcludingTax"] == 375.0


BLOCKED_TEMPLATE_LINE = {"lineType": "Item", "lineObjectNumber": "IT-BOOKINGS", "quantity": 1}
LONG_DESCRIPTION_LINE = {"lineType": "Item", "lineObjectNumber": "SVC-0001", "description": "d" * 101}
TEXT_QUANTITY_LINE = {"lineType": "Item", "lineObjectNumber": "SVC-0001", "quantity": "1"}
UNKNOWN_CUSTOMER_ID = "00000000-0000-0000-0000-00000000abcd"


@pytest.mark.parametrize(
    ("overrides", "status", "code", "fragment"),
    [
        ({"externalDocumentNumber": "B" * 36}, 400, "BadRequest", "exceeds the maximum length"),
        ({"customerNumber": None}, 400, "BadRequest", "Cannot convert"),
        (
            {"customerNumber": "C99999"},
            400,
            "Application_DialogException",
            "The sell-to customer cannot be found.",
        ),
        (
            {"customerId": UNKNOWN_CUSTOMER_ID, "customerNumber": ""},
            400,
            "Application_DialogException",
            "The sell-to customer cannot be found.",
        ),
        ({"invoiceDate": "15-01-2026"}, 400, "BadRequest", "Edm.Date"),
        ({"discount": 5}, 400, "BadRequest", "does not exist on type 'Microsoft.NAV.salesInvoice'"),
        ({"number": "X1"}, 400, "BadRequest_InvalidOperation", "Control 'number' is read-only."),
        ({"customerName": "X"}, 400, "BadRequest_InvalidOperation", "Control 'customerName' is read-only."),
        ({"status": "Open"}, 400, "BadRequest_InvalidOperation", "Control 'status' is read-only."),
        (
            {"salesInvoiceLines": [{"lineType": "Item", "lineObjectNumber": "NOPE", "quantity": 1}]},
            400,
            "Application_DialogException",
            "Item does not exist.",
        ),
        (
            {"salesInvoiceLines": [{"lineType": "Item", "itemId": UNKNOWN_CUSTOMER_ID, "quantity": 1}]},
            400,
            "Application_DialogException",
            "Item does not exist.",
        ),
        ({"salesInvoiceLines": [{"lineType": "Item", "quantity": 1}]}, 400, "BadRequest", "lineObjectNumber"),
        ({"salesInvoiceLines": [LONG_DESCRIPTION_LINE]}, 400, "BadRequest", "exceeds the maximum length"),
        (
            {"salesInvoiceLines": [{"lineType": "Comment", "description": "x", "quantity": 1}]},
            400,
            "BadRequest",
            "Comment",
        ),
        ({"salesInvoiceLines": [TEXT_QUANTITY_LINE]}, 400, "BadRequest", "Edm.Decimal"),
        (
            {"salesInvoiceLines": [{"lineType": "Free text", "description": "x"}]},
            400,
            "BadRequest",
            "not valid",
        ),
        (
            {"salesInvoiceLines": [BLOCKED_TEMPLATE_LINE]},
            400,
            "Application_FieldValidationException",
            "Blocked",
        ),
    ],
)
def test_deep_insert_validation(
    sandbox: SandboxHandle,
    client: SandboxClient,
    overrides: dict[str, Any],
    status: int,
    code: str,
    fragment: str,
) -> None:
    body = _invoice(**overrides)
    message = _error(client.bc("POST", "/salesInvoices", json=body), status, code)
    assert fragment in message
    assert _invoice_count(sandbox) == 0  # atomic: nothing was created


def test_customer_is_required_with_the_exact_message(client: SandboxClient) -> None:
    body = _invoice()
    del body["customerNumber"]
    message = _error(client.bc("POST", "/salesInvoices", json=body), 400, "Application_DialogException")
    assert message.startswith('A "customerNumber" or a "customerId" must be provided.  CorrelationId:  ')


def test_blocked_customers_cannot_be_invoiced(client: SandboxClient) -> None:
    jordan = client.bc("GET", "/customers", params={"$filter": "email eq 'jordanm@contoso.com'"}).json()[
        "value"
    ][0]
    assert jordan["blocked"] == "Invoice"
    message = _error(
        client.bc("POST", "/salesInvoices", json=_invoice(customerNumber=jordan["number"])),
        400,
        "Application_DialogException",
    )
    assert f"Customer {jordan['number']} is blocked with type Invoice" in message


def test_customers_and_items(client: SandboxClient) -> None:
    created = client.bc(
        "POST",
        "/customers",
        json={"displayName": "Lars Jensen", "type": "Person", "email": "lars.jensen@northwindtraders.com"},
    )
    assert created.status_code == 201, created.text
    customer = created.json()
    assert customer["number"].startswith("C") and len(customer["number"]) == 6
    assert customer["type"] == "Person"
    assert customer["blocked"] == "_x0020_"
    _error(client.bc("POST", "/customers", json={"type": "Person"}), 400, "BadRequest")
    _error(client.bc("POST", "/customers", json={"displayName": "x" * 101}), 400, "BadRequest")
    _error(client.bc("POST", "/customers", json={"displayName": "A", "type": "Robot"}), 400, "BadRequest")

    template = client.bc("GET", "/customers", params={"$filter": "number eq 'CT-BOOKINGS'"}).json()["value"][
        0
    ]
    assert template["paymentTermsId"] != "00000000-0000-0000-0000-000000000000"
    copied = client.bc(
        "POST",
        "/customers",
        json={
            "displayName": "Chen Wei",
            "type": "Person",
            "email": "chen.wei@litware.com",
            "currencyCode": template["currencyCode"],
            "paymentTermsId": template["paymentTermsId"],
            "paymentMethodId": template["paymentMethodId"],
            "taxLiable": template["taxLiable"],
            "taxAreaId": template["taxAreaId"],
        },
    ).json()
    assert copied["taxAreaDisplayName"] == template["taxAreaDisplayName"]

    items = client.bc("GET", "/items").json()["value"]
    assert "Non_x002D_Inventory" in {item["type"] for item in items}
    service = client.bc(
        "POST",
        "/items",
        json={
            "displayName": "Kitchen tour",
            "type": "Service",
            "unitPrice": 12.5,
            "baseUnitOfMeasureCode": "hour",
        },
    )
    assert service.status_code == 201, service.text
    assert service.json()["baseUnitOfMeasureCode"] == "HOUR"
    assert service.json()["baseUnitOfMeasureId"] != "00000000-0000-0000-0000-000000000000"
    unknown_unit = client.bc("POST", "/items", json={"displayName": "x", "baseUnitOfMeasureCode": "LITRE"})
    _error(unknown_unit, 400, "Internal_InvalidTableRelation")
    _error(client.bc("POST", "/items", json={"displayName": "x", "type": "Non-Inventory"}), 400, "BadRequest")


def test_server_driven_paging(sandbox: SandboxHandle, client: SandboxClient) -> None:
    everything = client.bc("GET", "/customers").json()
    assert "@odata.nextLink" not in everything
    total = len(everything["value"])
    assert total >= 8
    response = client.bc(
        "GET", "/customers", headers={"Prefer": "odata.maxpagesize=3"}, params={"$count": "true"}
    )
    assert response.headers["Preference-Applied"] == "odata.maxpagesize=3"
    body = response.json()
    assert body["@odata.count"] == total
    seen = [c["number"] for c in body["value"]]
    url = body["@odata.nextLink"]
    assert url.startswith(sandbox.url + "/bc/v2.0/")
    while url:
        page = client.bc("GET", url, headers={"Prefer": "odata.maxpagesize=3"}).json()
        assert len(page["value"]) <= 3
        seen.extend(c["number"] for c in page["value"])
        url = page.get("@odata.nextLink")
    assert seen == [c["number"] for c in everything["value"]]

    sandbox.admin.set_config(bcMaxPageSize=4)
    capped = client.bc(
        "GET", "/customers", params={"$select": "number,email", "$orderby": "number desc"}
    ).json()
    assert len(capped["value"]) == 4 and "@odata.nextLink" in capped
    assert set(capped["value"][0]) == {"@odata.etag", "number", "email"}
    assert capped["@odata.context"].endswith("/customers(number,email)")
    top = client.bc("GET", "/customers", params={"$top": "2"}).json()
    assert len(top["value"]) == 2 and "@odata.nextLink" not in top


def test_etags_and_if_match(client: SandboxClient) -> None:
    invoice = client.bc("POST", "/salesInvoices", json=_invoice()).json()
    path = f"/salesInvoices({invoice['id']})"
    _error(client.bc("PATCH", path, json={"invoiceDate": "2026-01-20"}), 400, "BadRequest_InvalidToken")
    updated = client.bc(
        "PATCH", path, json={"invoiceDate": "2026-01-20"}, headers={"If-Match": invoice["@odata.etag"]}
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["invoiceDate"] == "2026-01-20"
    assert updated.json()["@odata.etag"] != invoice["@odata.etag"]
    stale = client.bc(
        "PATCH", path, json={"invoiceDate": "2026-01-21"}, headers={"If-Match": invoice["@odata.etag"]}
    )
    _error(stale, 409, "Request_EntityChanged")
    star = client.bc("PATCH", path, json={"externalDocumentNumber": "bkg-2"}, headers={"If-Match": "*"})
    assert star.json()["externalDocumentNumber"] == "BKG-2"
    deep = client.bc("PATCH", path, json={"salesInvoiceLines": []}, headers={"If-Match": "*"})
    _error(deep, 400, "BadRequest")
    every = client.bc("GET", "/customers").json()["value"]
    assert all(c["@odata.etag"].startswith('W/"') for c in every)


def test_lookup_by_external_document_number_survives_posting(client: SandboxClient) -> None:
    invoice = client.bc("POST", "/salesInvoices", json=_invoice(externalDocumentNumber="BKG-POSTED")).json()
    assert client.bc("POST", f"/salesInvoices({invoice['id']})/Microsoft.NAV.post").status_code == 204
    found = client.bc(
        "GET", "/salesInvoices", params={"$filter": "externalDocumentNumber eq 'BKG-POSTED'"}
    ).json()
    assert [(i["id"], i["status"]) for i in found["value"]] == [(invoice["id"], "Open")]
    assert found["value"][0]["number"] != invoice["number"]
    deleting = client.bc("DELETE", f"/salesInvoices({invoice['id']})", headers={"If-Match": "*"})
    _error(deleting, 400, "Application_DialogException")


def test_delete_draft_and_not_found(client: SandboxClient) -> None:
    invoice = client.bc("POST", "/salesInvoices", json=_invoice()).json()
    path = f"/salesInvoices({invoice['id']})"
    _error(client.bc("DELETE", path), 400, "BadRequest_InvalidToken")
    _error(client.bc("DELETE", path, headers={"If-Match": 'W/"stale"'}), 409, "Request_EntityChanged")
    assert client.bc("DELETE", path, headers={"If-Match": invoice["@odata.etag"]}).status_code == 204
    _error(client.bc("GET", f"/salesInvoices({invoice['id']})"), 404, "BadRequest_NotFound")
    _error(client.bc("GET", "/salesInvoices(not-a-guid)"), 400, "BadRequest")
    _error(client.bc("PUT", f"/salesInvoices({invoice['id']})", json={}), 405, "BadRequest_MethodNotAllowed")
    _error(client.bc("GET", "/salesOrders"), 404, "BadRequest_NotFound")


def test_companies_and_context(client: SandboxClient) -> None:
    s = client.settings
    root = f"{s['BC_BASE_URL']}/{s['ENTRA_TENANT_ID']}/{s['BC_ENVIRONMENT']}/api/v2.0"
    companies = client.bc("GET", f"{root}/companies").json()
    assert [c["id"] for c in companies["value"]] == [s["BC_COMPANY_ID"]]
    customers = client.bc("GET", "/customers").json()
    assert customers["@odata.context"] == f"{root}/$metadata#companies({s['BC_COMPANY_ID']})/customers"
    wrong_env = client.bc("GET", f"{s['BC_BASE_URL']}/{s['ENTRA_TENANT_ID']}/Production/api/v2.0/companies")
    assert wrong_env.status_code == 404
