"""Business Central company data and the business rules its API v2.0 pages enforce.

Related records (customer, item, currency, unit of measure, ...) must exist; a blocked customer or
item cannot be invoiced; sales invoices are created atomically with their lines (deep insert) and
their totals are computed from the lines; numbers come from number series; every change produces
a new `@odata.etag`, and updates need a matching `If-Match`.
"""

from __future__ import annotations

import base64
import calendar
import copy
import itertools
import random
import re
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sandbox.bc_schema import (
    BLANK_DATE,
    BLANK_GUID,
    CENT,
    CUSTOMER,
    CUSTOMER_REFS,
    EMAIL,
    INVOICE_REFS,
    ITEM,
    ITEM_REFS,
    LINE_REFS,
    POSTED_STATUSES,
    REFERENCE_TYPES,
    SALES_INVOICE,
    SALES_INVOICE_LINE,
    BcError,
    EntityType,
    coerce_body,
)
from sandbox.clock import Clock
from sandbox.timefmt import bc_datetime

IN_REVIEW = "In_x0020_Review"
"""Enum 5477 value "In Review" as the API writes it (a blank is `_x0020_` in an OData name)."""


@dataclass
class Record:
    values: dict[str, Any]
    etag: str
    lines: list[dict[str, Any]] = field(default_factory=list)
    # A sales invoice: posted (a "Sales Invoice Header") or not (a "Sales Header", whatever its
    # approval status). The API has no such field: `status` `Open` is both a released draft and a
    # posted invoice (codeunit "Sales Invoice Aggregator", InsertOrModifyFromSalesHeader).
    posted: bool = False


class NumberSeries:
    """`C00010`, `C00020`, ... or `S-INV100001`, ...: prefix + zero-padded counter."""

    def __init__(self, prefix: str, start: int, width: int, step: int = 1) -> None:
        self.prefix = prefix
        self.width = width
        self.step = step
        self._next = start

    def next(self) -> str:
        value = f"{self.prefix}{self._next:0{self.width}d}"
        self._next += self.step
        return value


class CompanyStore:
    """One Business Central company. All methods are atomic under one lock."""

    def __init__(self, clock: Clock, company: dict[str, Any], seed: int = 0) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.company = company
        # General Ledger Setup's "LCY Code": what API v2.0's companyInformation shows as currencyCode.
        self.lcy_code = "EUR"
        self.clear(seed)

    def clear(self, seed: int = 0) -> None:
        """Forget all data and restart the number series (used to reseed)."""
        with self.lock:
            self._random = random.Random(seed)
            self._etag_counter = itertools.count(1)
            self.customers: dict[str, Record] = {}
            self.items: dict[str, Record] = {}
            self.invoices: dict[str, Record] = {}
            self.references: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in REFERENCE_TYPES}
            self.tax_rates: dict[str, Decimal] = {}
            self.customer_series = NumberSeries("C", 10, 5, 10)
            self.item_series = NumberSeries("I", 10, 5, 10)
            self.invoice_series = NumberSeries("S-INV", 100001, 6)
            self.posted_series = NumberSeries("PS-INV", 103001, 6)
            self.allowed_posting: tuple[date | None, date | None] = (None, None)
            self.check_posting_date_at_creation = False

    @property
    def id(self) -> str:
        return str(self.company["id"])

    # -- identity and stamps --------------------------------------------------------------------

    def _guid(self) -> str:
        return str(uuid.UUID(int=self._random.getrandbits(128), version=4))

    def _etag(self) -> str:
        """`W/"JzE5OzI4NTY4NDc5OTgyNjM4OTU4ODQxOzAwOyc="`: base64 of `'len;digits;00;'`, new per change."""
        digits = f"{self._random.getrandbits(60)}{next(self._etag_counter):06d}"
        raw = f"'{len(digits)};{digits};00;'".encode("ascii")
        return 'W/"' + base64.b64encode(raw).decode("ascii") + '"'

    def _stamp(self) -> str:
        return bc_datetime(self.clock.now())

    def today(self) -> date:
        return self.clock.now().date()

    # -- reference data -------------------------------------------------------------------------

    def add_reference(self, set_name: str, code: str, display_name: str, **extra: Any) -> dict[str, Any]:
        with self.lock:
            row = {"id": self._guid(), "code": code, "displayName": display_name}
            row.update(extra)
            row["lastModifiedDateTime"] = self._stamp()
            self.references[set_name][row["id"]] = row
            return row

    def reference_by_code(self, set_name: str, code: str) -> dict[str, Any] | None:
        wanted = code.strip().upper()
        for row in self.references[set_name].values():
            if str(row["code"]).upper() == wanted:
                return row
        return None

    def _resolve_references(
        self,
        values: dict[str, Any],
        given: Mapping[str, Any],
        refs: Iterable[tuple[str, str | None, str, str]],
        table: str,
    ) -> None:
        """Fill id from code or code from id for each related setup record; unknown -> 400."""
        for id_field, code_field, set_name, caption in refs:
            code_given = code_field is not None and code_field in given
            id_given = id_field in given
            if code_given and code_field is not None:
                code = str(values[code_field])
                if not code:
                    values[id_field] = BLANK_GUID
                    continue
                row = self.reference_by_code(set_name, code)
                if row is None:
                    raise _not_found(caption, table, code, REFERENCE_TYPES[set_name].table)
                if id_given and values[id_field] not in (BLANK_GUID, row["id"]):
                    raise BcError(
                        400, "BadRequest", f'The "{id_field}" and "{code_field}" refer to different records.'
                    )
                values[id_field] = row["id"]
                values[code_field] = row["code"]
            elif id_given:
                record_id = values[id_field]
                if record_id == BLANK_GUID:
                    if code_field:
                        values[code_field] = ""
                    continue
                found = self.references[set_name].get(record_id)
                if found is None:
                    # The API pages' `...IdDoesNotMatchA...Err` labels.
                    raise _dialog(f'The "{id_field}" does not match to a {REFERENCE_TYPES[set_name].table}.')
                if code_field:
                    values[code_field] = found["code"]

    # -- rendering ------------------------------------------------------------------------------

    def render(self, entity: EntityType, record: Record) -> dict[str, Any]:
        result: dict[str, Any] = {"@odata.etag": record.etag}
        for spec in entity.fields:
            result[spec.name] = copy.deepcopy(record.values.get(spec.name, spec.blank()))
        return result

    def render_line(self, line: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {"@odata.etag": line["@odata.etag"]}
        for spec in SALES_INVOICE_LINE.fields:
            result[spec.name] = copy.deepcopy(line.get(spec.name, spec.blank()))
        return result

    def render_invoice(self, record: Record, expand_lines: bool = False) -> dict[str, Any]:
        result = self.render(SALES_INVOICE, record)
        if expand_lines:
            result["salesInvoiceLines"] = [self.render_line(line) for line in record.lines]
        return result

    def render_reference(self, set_name: str, row: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {"@odata.etag": 'W/"' + base64.b64encode(row["id"].encode()).decode() + '"'}
        for spec in REFERENCE_TYPES[set_name].fields:
            result[spec.name] = copy.deepcopy(row.get(spec.name, spec.blank()))
        return result

    # -- customers ------------------------------------------------------------------------------

    def customer_by_number(self, number: str) -> Record | None:
        wanted = number.strip().upper()
        for record in self.customers.values():
            if record.values["number"] == wanted:
                return record
        return None

    def create_customer(self, body: Any) -> dict[str, Any]:
        with self.lock:
            given = coerce_body(CUSTOMER, body)
            values = {spec.name: spec.blank() for spec in CUSTOMER.fields}
            values.update(given)
            values["type"] = given.get("type", "Company")
            if not str(values["displayName"]).strip():
                raise BcError(400, "BadRequest", 'The field "displayName" must have a value.')
            _check_email(values["email"])
            self._resolve_references(values, given, CUSTOMER_REFS, CUSTOMER.table)
            values["number"] = self._new_number(
                values.get("number", ""), self.customer_series, self.customers, "Customer"
            )
            values["taxAreaDisplayName"] = self._tax_area_name(values["taxAreaId"])
            values["id"] = self._guid()
            values["lastModifiedDateTime"] = self._stamp()
            record = Record(values, self._etag())
            self.customers[values["id"]] = record
            return self.render(CUSTOMER, record)

    def update_customer(self, record_id: str, body: Any, if_match: str | None) -> dict[str, Any]:
        with self.lock:
            record = self._existing(self.customers, record_id, "Customer")
            _check_etag(record, if_match)
            given = coerce_body(CUSTOMER, body)
            values = dict(record.values)
            values.update(given)
            if "displayName" in given and not str(values["displayName"]).strip():
                raise BcError(400, "BadRequest", 'The field "displayName" must have a value.')
            if "email" in given:
                _check_email(values["email"])
            number = given.get("number")
            if number and number != record.values["number"] and self.customer_by_number(number):
                raise _duplicate("Customer", number)
            self._resolve_references(values, given, CUSTOMER_REFS, CUSTOMER.table)
            values["taxAreaDisplayName"] = self._tax_area_name(values["taxAreaId"])
            values["lastModifiedDateTime"] = self._stamp()
            record.values = values
            record.etag = self._etag()
            return self.render(CUSTOMER, record)

    def _tax_area_name(self, tax_area_id: str) -> str:
        row = self.references["taxAreas"].get(tax_area_id)
        return str(row["displayName"]) if row else ""

    # -- items ----------------------------------------------------------------------------------

    def item_by_number(self, number: str) -> Record | None:
        wanted = number.strip().upper()
        for record in self.items.values():
            if record.values["number"] == wanted:
                return record
        return None

    def create_item(self, body: Any) -> dict[str, Any]:
        with self.lock:
            given = coerce_body(ITEM, body)
            values = {spec.name: spec.blank() for spec in ITEM.fields}
            values.update(given)
            values["type"] = given.get("type", "Inventory")
            self._resolve_references(values, given, ITEM_REFS, ITEM.table)
            values["number"] = self._new_number(
                values.get("number", ""), self.item_series, self.items, "Item"
            )
            values["id"] = self._guid()
            values["lastModifiedDateTime"] = self._stamp()
            record = Record(values, self._etag())
            self.items[values["id"]] = record
            return self.render(ITEM, record)

    def update_item(self, record_id: str, body: Any, if_match: str | None) -> dict[str, Any]:
        with self.lock:
            record = self._existing(self.items, record_id, "Item")
            _check_etag(record, if_match)
            given = coerce_body(ITEM, body)
            values = dict(record.values)
            values.update(given)
            number = given.get("number")
            if number and number != record.values["number"] and self.item_by_number(number):
                raise _duplicate("Item", number)
            self._resolve_references(values, given, ITEM_REFS, ITEM.table)
            values["lastModifiedDateTime"] = self._stamp()
            record.values = values
            record.etag = self._etag()
            return self.render(ITEM, record)

    # -- generic --------------------------------------------------------------------------------

    def _new_number(self, given: str, series: NumberSeries, records: dict[str, Record], table: str) -> str:
        if given:
            if any(r.values["number"] == given for r in records.values()):
                raise _duplicate(table, given)
            return given
        while True:
            candidate = series.next()
            if not any(r.values["number"] == candidate for r in records.values()):
                return candidate

    def _existing(self, records: dict[str, Record], record_id: str, caption: str) -> Record:
        record = records.get(record_id.lower())
        if record is None:
            raise BcError(
                404,
                "BadRequest_NotFound",
                f"The {caption} does not exist. Identification fields and values: Id='{record_id}'",
            )
        return record

    def delete(self, records: dict[str, Record], record_id: str, caption: str, if_match: str | None) -> None:
        with self.lock:
            record = self._existing(records, record_id, caption)
            _check_etag(record, if_match)
            if records is self.invoices and record.posted:
                raise _dialog(f"You cannot delete the posted Sales Invoice {record.values['number']}.")
            if records is self.customers and any(
                inv.values["customerId"] == record.values["id"] for inv in self.invoices.values()
            ):
                raise BcError(
                    400,
                    "BadRequest",
                    f"You cannot delete Customer {record.values['number']} because there are one or more "
                    "outstanding Sales Invoices for this customer.",
                )
            del records[record.values["id"]]

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
            _check_etag(record, if_match)
            if isinstance(body, dict) and "salesInvoiceLines" in body:
                raise BcError(400, "BadRequest", "Deep update is not supported: update the lines one by one.")
            _check_modifiable(record)
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
                _check_etag(record, if_match)
            _check_modifiable(record)
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
            _check_line_etag(line, if_match)
            _check_modifiable(record)
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
                raise _dialog("The action can be applied to a draft invoice only.")
            if record.values["status"] == IN_REVIEW:
                raise _dialog(
                    f"Sales Invoice {record.values['number']} must be approved and released before you "
                    "can perform this action."
                )
            if not any(line["lineType"] != "Comment" for line in record.lines):
                raise _dialog("There is nothing to post.")
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
                raise _dialog("The action can be applied to a posted invoice only.")
            if status == "Canceled":
                raise _dialog("The invoice cannot be canceled because it has already been canceled.")
            if status != "Open":
                raise _dialog(
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
            raise _dialog('A "customerNumber" or a "customerId" must be provided.')
        customer: Record | None
        if customer_id and customer_id != BLANK_GUID:
            customer = self.customers.get(customer_id)
            if customer is None:
                raise _dialog("The sell-to customer cannot be found.")
            if customer_number and customer.values["number"] != customer_number:
                raise _dialog("The sell-to customer values do not match to a specific Customer.")
        else:
            customer = self.customer_by_number(str(customer_number))
            if customer is None:
                raise _dialog("The sell-to customer cannot be found.")
        blocked = customer.values["blocked"]
        if blocked in ("Invoice", "All"):
            raise _dialog(
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
            values["dueDate"] = _date_formula(date.fromisoformat(values["invoiceDate"]), formula).isoformat()
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
            raise _dialog("Posting Date is not within your range of allowed posting dates.")

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
        _line_amounts(values)
        values["@odata.etag"] = self._etag()
        return values

    def _line_item(self, given: Mapping[str, Any]) -> Record:
        item_id = given.get("itemId", BLANK_GUID)
        number = str(given.get("lineObjectNumber", ""))
        item: Record | None
        if item_id != BLANK_GUID:
            item = self.items.get(item_id)
            if item is None:
                raise _dialog("Item does not exist.")
            if number and item.values["number"] != number:
                raise BcError(
                    400, "BadRequest", 'The "itemId" and "lineObjectNumber" refer to different items.'
                )
        elif number:
            item = self.item_by_number(number)
            if item is None:
                raise _dialog("Item does not exist.")
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
                "customers": [self.render(CUSTOMER, r) for r in _by_number(self.customers)],
                "items": [self.render(ITEM, r) for r in _by_number(self.items)],
                "invoices": [self.render_invoice(r, expand_lines=True) for r in _by_number(self.invoices)],
            }


def _by_number(records: dict[str, Record]) -> list[Record]:
    return sorted(records.values(), key=lambda r: str(r.values["number"]))


def _line_amounts(values: dict[str, Any]) -> None:
    quantity = Decimal(str(values["quantity"]))
    price = Decimal(str(values["unitPrice"]))
    gross = (quantity * price).quantize(CENT, ROUND_HALF_UP)
    percent = Decimal(str(values["discountPercent"]))
    if percent and not values.get("discountAmount"):
        discount = (gross * percent / 100).quantize(CENT, ROUND_HALF_UP)
    else:
        discount = Decimal(str(values["discountAmount"])).quantize(CENT, ROUND_HALF_UP)
        percent = (discount * 100 / gross).quantize(Decimal("0.00001")) if gross else Decimal(0)
    net = gross - discount
    tax = (net * Decimal(str(values.get("taxPercent", 0))) / 100).quantize(CENT, ROUND_HALF_UP)
    values["discountAmount"] = float(discount)
    values["discountPercent"] = float(percent)
    values["amountExcludingTax"] = float(net)
    values["netAmount"] = float(net)
    values["totalTaxAmount"] = float(tax)
    values["netTaxAmount"] = float(tax)
    values["amountIncludingTax"] = float(net + tax)
    values["netAmountIncludingTax"] = float(net + tax)


def _date_formula(start: date, formula: str) -> date:
    """The date formulas payment terms use: `14D`, `1M`, `CM` (current month end), blank."""
    text = formula.strip().upper()
    if not text:
        return start
    if text == "CM":
        return start.replace(day=calendar.monthrange(start.year, start.month)[1])
    match = re.fullmatch(r"(\d+)([DWM])", text)
    if not match:
        return start
    amount, unit = int(match.group(1)), match.group(2)
    if unit == "D":
        return start + timedelta(days=amount)
    if unit == "W":
        return start + timedelta(weeks=amount)
    month_index = start.month - 1 + amount
    year, month = start.year + month_index // 12, month_index % 12 + 1
    return start.replace(year=year, month=month, day=min(start.day, calendar.monthrange(year, month)[1]))


def _check_email(email: str) -> None:
    if email and not EMAIL.match(email):
        raise BcError(400, "BadRequest", f'The email address "{email}" is not valid.')


def _check_etag(record: Record, if_match: str | None) -> None:
    if if_match is None or not if_match.strip():
        raise _token_required()
    candidates = [part.strip() for part in if_match.split(",")]
    if "*" in candidates or record.etag in candidates:
        return
    raise _entity_changed()


def _check_line_etag(line: dict[str, Any], if_match: str | None) -> None:
    if if_match is None or not if_match.strip():
        raise _token_required()
    candidates = [part.strip() for part in if_match.split(",")]
    if "*" not in candidates and line["@odata.etag"] not in candidates:
        raise _entity_changed()


def _token_required() -> BcError:
    """PATCH and DELETE without `If-Match`: ODataBadRequestInvalidTokenException."""
    return BcError(
        400,
        "BadRequest_InvalidToken",
        "Could not validate the client concurrency token required by the service. Please provide a valid "
        "token in the client request.",
    )


def _dialog(message: str) -> BcError:
    """An AL `Error(...)` raised by the API page: NavNCLDialogException."""
    return BcError(400, "Application_DialogException", message)


def _check_modifiable(record: Record) -> None:
    """A posted invoice: `Sales Invoice Aggregator` `CannotModifyPostedInvioceErr`; an unposted one
    that is released or pending approval: `Sales Header.TestStatusOpen` (a TestField)."""
    if record.posted:
        raise _posted_unchangeable(record)
    if record.values["status"] != "Draft":
        raise BcError(
            400,
            "Application_FieldValidationException",
            f"Status must be equal to 'Open'  in Sales Header: Document Type=Invoice, "
            f"No.={record.values['number']}. Current value is "
            f"'{'Pending Approval' if record.values['status'] == IN_REVIEW else 'Released'}'.",
        )


def _posted_unchangeable(record: Record) -> BcError:
    """`Sales Invoice Aggregator`, label `CannotModifyPostedInvioceErr`."""
    return _dialog("The invoice has been posted and can no longer be modified.")


def _entity_changed() -> BcError:
    return BcError(409, "Request_EntityChanged", "Another user has already changed the record.")


def _not_found(caption: str, table: str, value: str, related: str) -> BcError:
    """A code that validates against no related record: NavCSideValidateTableRelationException."""
    return BcError(
        400,
        "Internal_InvalidTableRelation",
        f"The field {caption} of table {table} contains a value ({value}) that cannot be found in the "
        "related "
        f"table ({related}).",
    )


def _duplicate(table: str, number: str) -> BcError:
    return BcError(
        400,
        "Internal_EntityWithSameKeyExists",
        f"The record in table {table} already exists. Identification fields and values: No.='{number}'",
    )
