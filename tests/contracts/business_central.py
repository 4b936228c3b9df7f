"""`BusinessCentral`: customers, Service items and draft sales invoices, through the API v2.0 port."""

from __future__ import annotations

from typing import Any

from shared.services.ports import BusinessCentral


def invoice_body(customer_id: str, number: str, item_number: str) -> dict[str, Any]:
    return {
        "customerId": customer_id,
        "externalDocumentNumber": number,
        "invoiceDate": "2026-02-01",
        "salesInvoiceLines": [{"lineType": "Item", "lineObjectNumber": item_number, "quantity": 1}],
    }


class BusinessCentralContract:
    """Subclasses provide a `bc` fixture: a company with no customer, item or invoice of these names."""

    def test_a_created_customer_is_found_by_email_ignoring_case_and_by_id(self, bc: BusinessCentral) -> None:
        assert bc.find_customers_by_email("contract.customer@example.com") == []
        created = bc.create_customer(
            {"displayName": "Contract Customer", "email": "Contract.Customer@Example.com"}
        )
        assert created.id and created.number
        found = bc.find_customers_by_email("  contract.customer@EXAMPLE.com ")
        assert [c.id for c in found] == [created.id]
        assert bc.get_customer(created.id) is not None
        assert bc.get_customer("00000000-0000-0000-0000-00000000dead") is None

    def test_a_created_service_item_is_found_by_name_ignoring_case(self, bc: BusinessCentral) -> None:
        assert bc.find_service_items_by_name("Contract service") == []
        created = bc.create_item({"displayName": "Contract service", "type": "Service"})
        assert created.type == "Service" and created.number
        assert [i.id for i in bc.find_service_items_by_name("CONTRACT SERVICE")] == [created.id]
        assert bc.get_item(created.id) is not None

    def test_an_invoice_is_found_by_its_external_document_number(self, bc: BusinessCentral) -> None:
        customer = bc.create_customer(
            {"displayName": "Contract Buyer", "email": "contract.buyer@example.com"}
        )
        item = bc.create_item({"displayName": "Contract lunch", "type": "Service"})
        number = "BKG-CONTRACTAAAAAAAAAAAAAAAA"
        assert bc.find_invoices_by_external_document_number(number) == []
        created = bc.create_invoice(invoice_body(customer.id, number, item.number))
        assert created.id and created.number and created.external_document_number == number
        found = bc.find_invoices_by_external_document_number(number.lower())
        assert [i.id for i in found] == [created.id]
        assert found[0].status == "Draft"
