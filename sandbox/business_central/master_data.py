"""The master data of one Business Central company: customers, items and the reference tables
(currencies, units of measure, payment terms, ...) they point to, with number series and etags.
"""

from __future__ import annotations

import base64
import copy
import itertools
import random
import threading
import uuid
from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from sandbox.business_central.records import (
    NumberSeries,
    Record,
    check_email,
    check_etag,
    dialog,
    duplicate,
    not_found,
)
from sandbox.business_central.schema import (
    BLANK_GUID,
    CUSTOMER,
    CUSTOMER_REFS,
    ITEM,
    ITEM_REFS,
    REFERENCE_TYPES,
    SALES_INVOICE,
    SALES_INVOICE_LINE,
    BcError,
    EntityType,
    coerce_body,
)
from sandbox.core.clock import Clock
from sandbox.core.timefmt import bc_datetime


class MasterData:
    """Customers, items and reference data of one company. All methods are atomic under one lock."""

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
                    raise not_found(caption, table, code, REFERENCE_TYPES[set_name].table)
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
                    raise dialog(f'The "{id_field}" does not match to a {REFERENCE_TYPES[set_name].table}.')
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
            check_email(values["email"])
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
            check_etag(record, if_match)
            given = coerce_body(CUSTOMER, body)
            values = dict(record.values)
            values.update(given)
            if "displayName" in given and not str(values["displayName"]).strip():
                raise BcError(400, "BadRequest", 'The field "displayName" must have a value.')
            if "email" in given:
                check_email(values["email"])
            number = given.get("number")
            if number and number != record.values["number"] and self.customer_by_number(number):
                raise duplicate("Customer", number)
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
            check_etag(record, if_match)
            given = coerce_body(ITEM, body)
            values = dict(record.values)
            values.update(given)
            number = given.get("number")
            if number and number != record.values["number"] and self.item_by_number(number):
                raise duplicate("Item", number)
            self._resolve_references(values, given, ITEM_REFS, ITEM.table)
            values["lastModifiedDateTime"] = self._stamp()
            record.values = values
            record.etag = self._etag()
            return self.render(ITEM, record)

    # -- generic --------------------------------------------------------------------------------

    def _new_number(self, given: str, series: NumberSeries, records: dict[str, Record], table: str) -> str:
        if given:
            if any(r.values["number"] == given for r in records.values()):
                raise duplicate(table, given)
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
            check_etag(record, if_match)
            if records is self.invoices and record.posted:
                raise dialog(f"You cannot delete the posted Sales Invoice {record.values['number']}.")
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
