"""Records of a Business Central company and the checks and errors its API pages share:
number series, etags, `If-Match`, blocked and missing related records, posting rules.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sandbox.business_central.schema import (
    CENT,
    EMAIL,
    BcError,
)

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


def by_number(records: dict[str, Record]) -> list[Record]:
    return sorted(records.values(), key=lambda r: str(r.values["number"]))


def line_amounts(values: dict[str, Any]) -> None:
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


def date_formula(start: date, formula: str) -> date:
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


def check_email(email: str) -> None:
    if email and not EMAIL.match(email):
        raise BcError(400, "BadRequest", f'The email address "{email}" is not valid.')


def check_etag(record: Record, if_match: str | None) -> None:
    if if_match is None or not if_match.strip():
        raise token_required()
    candidates = [part.strip() for part in if_match.split(",")]
    if "*" in candidates or record.etag in candidates:
        return
    raise entity_changed()


def check_line_etag(line: dict[str, Any], if_match: str | None) -> None:
    if if_match is None or not if_match.strip():
        raise token_required()
    candidates = [part.strip() for part in if_match.split(",")]
    if "*" not in candidates and line["@odata.etag"] not in candidates:
        raise entity_changed()


def token_required() -> BcError:
    """PATCH and DELETE without `If-Match`: ODataBadRequestInvalidTokenException."""
    return BcError(
        400,
        "BadRequest_InvalidToken",
        "Could not validate the client concurrency token required by the service. Please provide a valid "
        "token in the client request.",
    )


def dialog(message: str) -> BcError:
    """An AL `Error(...)` raised by the API page: NavNCLDialogException."""
    return BcError(400, "Application_DialogException", message)


def check_modifiable(record: Record) -> None:
    """A posted invoice: `Sales Invoice Aggregator` `CannotModifyPostedInvioceErr`; an unposted one
    that is released or pending approval: `Sales Header.TestStatusOpen` (a TestField)."""
    if record.posted:
        raise posted_unchangeable(record)
    if record.values["status"] != "Draft":
        raise BcError(
            400,
            "Application_FieldValidationException",
            f"Status must be equal to 'Open'  in Sales Header: Document Type=Invoice, "
            f"No.={record.values['number']}. Current value is "
            f"'{'Pending Approval' if record.values['status'] == IN_REVIEW else 'Released'}'.",
        )


def posted_unchangeable(record: Record) -> BcError:
    """`Sales Invoice Aggregator`, label `CannotModifyPostedInvioceErr`."""
    return dialog("The invoice has been posted and can no longer be modified.")


def entity_changed() -> BcError:
    return BcError(409, "Request_EntityChanged", "Another user has already changed the record.")


def not_found(caption: str, table: str, value: str, related: str) -> BcError:
    """A code that validates against no related record: NavCSideValidateTableRelationException."""
    return BcError(
        400,
        "Internal_InvalidTableRelation",
        f"The field {caption} of table {table} contains a value ({value}) that cannot be found in the "
        "related "
        f"table ({related}).",
    )


def duplicate(table: str, number: str) -> BcError:
    return BcError(
        400,
        "Internal_EntityWithSameKeyExists",
        f"The record in table {table} already exists. Identification fields and values: No.='{number}'",
    )
