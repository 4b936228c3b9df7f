"""One Business Central company: its sales invoices on top of its master data, and the business
rules its API v2.0 pages enforce.

Related records (customer, item, currency, unit of measure, ...) must exist; a blocked customer or
item cannot be invoiced; sales invoices are created atomically with their lines (deep insert) and
their totals are computed from the lines; numbers come from number series; every change produces
a new `@odata.etag`, and updates need a matching `If-Match`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from sandbox.business_central.master_data import MasterData
from sandbox.business_central.records import (
    IN_REVIEW,
    Record,
    by_number,
    check_etag,
    check_line_etag,
    check_modifiable,
    date_formula,
    dialog,
    line_amounts,
)
from sandbox.business_central.schema import (
    BLANK_DATE,
    BLANK_GUID,
    CUSTOMER,
    INVOICE_REFS,
    ITEM,
    LINE_REFS,
    POSTED_STATUSES,
    SALES_INVOICE,
    SALES_INVOICE_LINE,
    BcError,
    coerce_body,
)


class CompanyStore(MasterData):
    """One Business Central company: its master data and sales invoices. All methods are atomic
    under one lock."""

    # -- sales invoices -------------------------------------------------------------------------

    def create_invoice(self, body: Any) -> dict[str, Any]:
        """Deep insert: header and lines are validated first and committed together, or not at all."""
        with self.lock:
            if not isinstance(body, dict):
                raise BcError(400, "BadRequest", "The request body must be a JSON object.")
            header_body = {k: v for k, v in body.items() if k != "salesInvoiceLines"}
            lines_body = body.get("salesInvoiceLines", [])
            if not isinstance(lines_body, list):
                raise BcError(400, "BadRequest", "A collection was expected for 'salesInvoiceLines'.")
            given = coerce_body(SALES_INVOICE, header_body)
            values = {spec.name: spec.blank() for spec in SALES_INVOICE.fields}
            values.update(given)
            customer = self._invoice_customer(given)
            self._apply_customer(values, customer, given)
            self._apply_dates(values, given, customer)
            self._resolve_references(values, given, INVOICE_REFS, SALES_INVOICE.table)
            invoice_id = self._guid()
            lines = []
            for index, line_body in enumerate(lines_body):
                line_given = coerce_body(SALES_INVOICE_LINE, line_body)
                lines.append(self._build_line(invoice_id, (index + 1) * 10000, line_given, customer))
            values["id"] = invoice_id
            values["number"] = self.invoice_series.next()
            values["status"] = "Draft"
            record = Record(values, "", lines)
            self._totals(record)
            record.etag = self._etag()
            self.invoices[invoice_id] = record
            return self.render_invoice(record)

    def update_invoice(self, record_id: str, body: Any, if_match: str | None) -> dict[str, Any]:
        with self.lock:
            record = self._existing(self.invoices, record_id, "Sales Invoice")
            check_etag(record, if_match)
            if isinstance(body, dict) and "salesInvoiceLines" in body:
                raise BcError(400, "BadRequest", "Deep update is not supported: update the lines one by one.")
            check_modifiable(record)
            given = coerce_body(SALES_INVOICE, body)
            values = dict(record.values)
            values.update(given)
            customer = self.customers[values["customerId"]]
            if "customerId" in given or "customerNumber" in given:
                customer = self._invoice_customer(given)
                self._apply_customer(values, customer, given)
            self._apply_dates(values, given, customer)
            self._resolve_references(values, given, INVOICE_REFS, SALES_INVOICE.table)
            record.values = values
            self._totals(record)
            record.etag = self._etag()
            return self.render_invoice(record)

    def add_line(self, invoice_id: str, body: Any, if_match: str | None = None) -> dict[str, Any]:
        with self.lock:
            record = self._existing(self.invoices, invoice_id, "Sales Invoice")
            if if_match is not None:
                check_etag(record, if_match)
            check_modifiable(record)
            given = coerce_body(SALES_INVOICE_LINE, body)
            customer = self.customers[record.values["customerId"]]
            sequence = max((line["sequence"] for line in record.lines), default=0) + 10000
            line = self._build_line(record.values["id"], sequence, given, customer)
            record.lines.append(line)
            self._totals(record)
            record.etag = self._etag()
            return self.render_line(line)

    def delete_line(self, invoice_id: str, line_id: str, if_match: str | None) -> None:
        with self.lock:
            record = self._existing(self.invoices, invoice_id, "Sales Invoice")
            line = self._line(record, line_id)
            check_line_etag(line, if_match)
            check_modifiable(record)
            record.lines.remove(line)
            self._totals(record)
            record.etag = self._etag()

    def line(self, invoice_id: str, line_id: str) -> dict[str, Any]:
        with self.lock:
            record = self._existing(self.invoices, invoice_id, "Sales Invoice")
            return self.render_line(self._line(record, line_id))

    def _line(self, record: Record, line_id: str) -> dict[str, Any]:
        for line in record.lines:
            if line["id"] == line_id.lower():
                return line
        raise BcError(
            404,
            "BadRequest_NotFound",
            f"The Sales Line does not exist. Identification fields and values: Id='{line_id}'",
        )

    def post_invoice(self, invoice_id: str) -> dict[str, Any]:
        """What "Post" does to an invoice as the API shows it: a new number, status Open, same id."""
        with self.lock:
            record = self._existing(self.invoices, invoice_id, "Sales Invoice")
            if record.posted:
                raise dialog("The action can be applied to a draft invoice only.")
            if record.values["status"] == IN_REVIEW:
                raise dialog(
                    f"Sales Invoice {record.values['number']} must be approved and released before you "
                    "can perform this action."
                )
            if not any(line["lineType"] != "Comment" for line in record.lines):
                raise dialog("There is nothing to post.")
            self._check_posting_date(record.values["postingDate"])
            record.posted = True
            return self._set_unposted_status(record, "Open", number=self.posted_series.next())

    def move_unposted_invoice(self, invoice_id: str, action: str) -> dict[str, Any]:
        """Approval and release of a draft, as the API shows them (`status`, via the aggregator):
        `sendForApproval` (Pending Approval: `In_x0020_Review`), `approve` and `release` (Released:
        `Open`, still unposted), `reopen` (Open: `Draft`)."""
        moves = {
            "sendForApproval": ({"Draft"}, IN_REVIEW),
            "approve": ({IN_REVIEW}, "Open"),
            "release": ({"Draft"}, "Open"),
            "reopen": ({IN_REVIEW, "Open"}, "Draft"),
        }
        with self.lock:
            record = self._existing(self.invoices, invoice_id, "Sales Invoice")
            sources, target = moves[action]
            if record.posted or record.values["status"] not in sources:
                allowed = ", ".join(sorted(sources))
                raise BcError(409, "BadRequest", f"{action} applies to an unposted invoice in {allowed}.")
            return self._set_unposted_status(record, target)

    def _set_unposted_status(self, record: Record, status: str, number: str | None = None) -> dict[str, Any]:
        values = dict(record.values)
        values["status"] = status
        if number:
            values["number"] = number
        values["lastModifiedDateTime"] = self._stamp()
        record.values = values
        record.etag = self._etag()
        return self.render_invoice(record, expand_lines=True)

    def cancel_invoice(self, invoice_id: str) -> dict[str, Any]:
        """The bound action `Microsoft.NAV.cancel`: a posted, unpaid invoice becomes Canceled."""
        with self.lock:
            record = self._existing(self.invoices, invoice_id, "Sales Invoice")
            status = record.values["status"]
            if not record.posted:
                raise dialog("The action can be applied to a posted invoice only.")
            if status == "Canceled":
                raise dialog("The invoice cannot be canceled because it has already been canceled.")
            if status != "Open":
                raise dialog(
                    f"You cannot cancel the posted sales invoice {record.values['number']} because it is "
                    "fully or partially paid."
                )
            return self._set_posted_status(record, "Canceled")

    def set_invoice_status(self, invoice_id: str, status: str) -> dict[str, Any]:
        """What happens in Business Central outside the API (a payment applied, a correction made)."""
        with self.lock:
            record = self._existing(self.invoices, invoice_id, "Sales Invoice")
            if status not in POSTED_STATUSES:
                raise BcError(400, "BadRequest", f"status must be one of {', '.join(POSTED_STATUSES)}.")
            if not record.posted:
                raise BcError(
                    409, "BadRequest", "Only a posted invoice can change its status; post it first."
                )
            return self._set_posted_status(record, status)

    def _set_posted_status(self, record: Record, status: str) -> dict[str, Any]:
        values = dict(record.values)
        values["status"] = status
        # The page computes remainingAmount from the posted invoice's open ledger entry.
        values["remainingAmount"] = values["totalAmountIncludingTax"] if status == "Open" else 0.0
        values["lastModifiedDateTime"] = self._stamp()
        record.values = values
        record.etag = self._etag()
        return self.render_invoice(record, expand_lines=True)

    def _invoice_customer(self, given: Mapping[str, Any]) -> Record:
        customer_id = given.get("customerId")
        customer_number = given.get("customerNumber")
        if (not customer_id or customer_id == BLANK_GUID) and not customer_number:
            raise dialog('A "customerNumber" or a "customerId" must be provided.')
        customer: Record | None
        if customer_id and customer_id != BLANK_GUID:
            customer = self.customers.get(customer_id)
            if customer is None:
                raise dialog("The sell-to customer cannot be found.")
            if customer_number and customer.values["number"] != customer_number:
                raise dialog("The sell-to customer values do not match to a specific Customer.")
        else:
            customer = self.customer_by_number(str(customer_number))
            if customer is None:
                raise dialog("The sell-to customer cannot be found.")
        blocked = customer.values["blocked"]
        if blocked in ("Invoice", "All"):
            raise dialog(
                "You cannot create this type of document when Customer "
                f"{customer.values['number']} is blocked "
                f"with type {blocked}.",
            )
        return customer

    def _apply_customer(self, values: dict[str, Any], customer: Record, given: Mapping[str, Any]) -> None:
        c = customer.values
        values["customerId"] = c["id"]
        values["customerNumber"] = c["number"]
        values["billToCustomerId"] = c["id"]
        values["billToCustomerNumber"] = c["number"]
        values["billToName"] = c["displayName"]
        for target, source in (
            ("customerName", "displayName"),
            ("shipToName", "displayName"),
            ("sellToAddressLine1", "addressLine1"),
            ("sellToAddressLine2", "addressLine2"),
            ("sellToCity", "city"),
            ("sellToCountry", "country"),
            ("sellToState", "state"),
            ("sellToPostCode", "postalCode"),
            ("phoneNumber", "phoneNumber"),
            ("email", "email"),
        ):
            if target not in given:
                values[target] = c[source]
        if "currencyCode" not in given and "currencyId" not in given:
            values["currencyCode"] = c["currencyCode"]
            values["currencyId"] = c["currencyId"]
        if "paymentTermsId" not in given:
            values["paymentTermsId"] = c["paymentTermsId"]
        if "shipmentMethodId" not in given:
            values["shipmentMethodId"] = c["shipmentMethodId"]
        values["salesperson"] = given.get("salesperson", c["salespersonCode"])

    def _apply_dates(self, values: dict[str, Any], given: Mapping[str, Any], customer: Record) -> None:
        # Sales Header.InitRecord sets Posting Date and Document Date to the work date; the API
        # page then sets only what was sent: `invoiceDate` is the Document Date alone
        # (`RegisterFieldSet(FieldNo("Document Date"))`), `postingDate` the Posting Date.
        if values["invoiceDate"] == BLANK_DATE:
            values["invoiceDate"] = self.today().isoformat()
        if values["postingDate"] == BLANK_DATE:
            values["postingDate"] = self.today().isoformat()
        if "postingDate" in given and self.check_posting_date_at_creation:
            self._check_posting_date(values["postingDate"])
        if "dueDate" not in given or values["dueDate"] == BLANK_DATE:
            terms = self.references["paymentTerms"].get(values["paymentTermsId"])
            formula = str(terms.get("dueDateCalculation", "")) if terms else ""
            values["dueDate"] = date_formula(date.fromisoformat(values["invoiceDate"]), formula).isoformat()
        values["lastModifiedDateTime"] = self._stamp()

    def set_allowed_posting_dates(
        self, start: date | None, end: date | None, at_creation: bool = False
    ) -> None:
        """General Ledger Setup "Allow Posting From" / "Allow Posting To" (blank: no limit), checked
        when posting (codeunit "Sales-Post"); `at_creation` also checks a sent `postingDate` when the
        invoice is created, as a company whose extension validates the date on the header does."""
        with self.lock:
            self.allowed_posting = (start, end)
            self.check_posting_date_at_creation = at_creation

    def _check_posting_date(self, text: str) -> None:
        """Codeunit "Sales-Post", label `PostingDateNotAllowedErr`."""
        start, end = self.allowed_posting
        day = date.fromisoformat(text)
        if (start is not None and day < start) or (end is not None and day > end):
            raise dialog("Posting Date is not within your range of allowed posting dates.")

    def _build_line(
        self, invoice_id: str, sequence: int, given: dict[str, Any], customer: Record
    ) -> dict[str, Any]:
        values = {spec.name: spec.blank() for spec in SALES_INVOICE_LINE.fields}
        values.update(given)
        has_item = bool(given.get("lineObjectNumber")) or given.get("itemId", BLANK_GUID) != BLANK_GUID
        line_type = given.get("lineType") or ("Item" if has_item else "Comment")
        values["lineType"] = line_type
        values["id"] = self._guid()
        values["documentId"] = invoice_id
        values["sequence"] = sequence
        if line_type == "Comment":
            for name in ("quantity", "unitPrice", "discountAmount", "discountPercent"):
                if Decimal(str(given.get(name, 0))) != 0:
                    raise BcError(
                        400, "BadRequest", f'The field "{name}" cannot be set on a line of type Comment.'
                    )
            if has_item:
                raise BcError(400, "BadRequest", "A line of type Comment cannot refer to an item.")
            values["lineObjectNumber"] = ""
        elif line_type == "Item":
            item = self._line_item(given)
            item_values = item.values
            values["itemId"] = item_values["id"]
            values["lineObjectNumber"] = item_values["number"]
            if "description" not in given:
                values["description"] = item_values["displayName"]
            if "unitPrice" not in given:
                values["unitPrice"] = item_values["unitPrice"]
            if "unitOfMeasureCode" not in given and "unitOfMeasureId" not in given:
                values["unitOfMeasureCode"] = item_values["baseUnitOfMeasureCode"]
                values["unitOfMeasureId"] = item_values["baseUnitOfMeasureId"]
            else:
                self._resolve_references(values, given, LINE_REFS, SALES_INVOICE_LINE.table)
            tax_group = str(item_values["taxGroupCode"])
            values["taxCode"] = tax_group
            rate = self.tax_rates.get(tax_group, Decimal(0)) if customer.values["taxLiable"] else Decimal(0)
            values["taxPercent"] = float(rate)
        else:
            raise BcError(
                400,
                "BadRequest",
                f"The line type '{line_type}' is not supported by this company's API setup: "
                "use Item or Comment.",
            )
        line_amounts(values)
        values["@odata.etag"] = self._etag()
        return values

    def _line_item(self, given: Mapping[str, Any]) -> Record:
        item_id = given.get("itemId", BLANK_GUID)
        number = str(given.get("lineObjectNumber", ""))
        item: Record | None
        if item_id != BLANK_GUID:
            item = self.items.get(item_id)
            if item is None:
                raise dialog("Item does not exist.")
            if number and item.values["number"] != number:
                raise BcError(
                    400, "BadRequest", 'The "itemId" and "lineObjectNumber" refer to different items.'
                )
        elif number:
            item = self.item_by_number(number)
            if item is None:
                raise dialog("Item does not exist.")
        else:
            raise BcError(400, "BadRequest", 'A line of type Item needs a "lineObjectNumber" or an "itemId".')
        if item.values["blocked"]:
            # `Item.TestField(Blocked, false)`: a NavTestFieldException.
            raise BcError(
                400,
                "Application_FieldValidationException",
                f"Blocked must be equal to 'No'  in Item: No.={item.values['number']}. "
                "Current value is 'Yes'.",
            )
        return item

    def _totals(self, record: Record) -> None:
        excluding = sum((Decimal(str(line["amountExcludingTax"])) for line in record.lines), Decimal(0))
        tax = sum((Decimal(str(line["totalTaxAmount"])) for line in record.lines), Decimal(0))
        discount = sum((Decimal(str(line["discountAmount"])) for line in record.lines), Decimal(0))
        values = record.values
        values["totalAmountExcludingTax"] = float(excluding)
        values["totalTaxAmount"] = float(tax)
        values["totalAmountIncludingTax"] = float(excluding + tax)
        values["discountAmount"] = float(discount)
        values["remainingAmount"] = float(excluding + tax)
        values["lastModifiedDateTime"] = self._stamp()

    # -- dump -----------------------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        with self.lock:
            return {
                "company": copy.deepcopy(self.company),
                "customers": [self.render(CUSTOMER, r) for r in by_number(self.customers)],
                "items": [self.render(ITEM, r) for r in by_number(self.items)],
                "invoices": [self.render_invoice(r, expand_lines=True) for r in by_number(self.invoices)],
            }
