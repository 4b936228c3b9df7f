"""Business Central API v2.0 entity schemas and value rules.

Each entity is a list of field specs (Edm type, `Code[n]`/`Text[n]` length, writability) so that one
generic path coerces and validates every POST/PATCH body the way the AL API pages do: `Code`
fields are trimmed and upper-cased, values longer than their declared length are refused, unknown
or read-only properties are refused, and enum values use OData's `_xHHHH_` escaping
(`Non_x002D_Inventory`, blank `_x0020_`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sandbox.core.timefmt import bc_datetime
from sandbox.odata import BOOLEAN, DATE, DATETIME, DECIMAL, ENUM, GUID, INTEGER, STRING

BLANK_GUID = "00000000-0000-0000-0000-000000000000"
BLANK_DATE = "0001-01-01"
CENT = Decimal("0.01")


class BcError(Exception):
    """A request Business Central refuses: HTTP status, BC error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    length: int | None = None
    code: bool = False
    writable: bool = True
    values: tuple[str, ...] = ()
    default: Any = None

    def blank(self) -> Any:
        if self.default is not None:
            return self.default
        return {
            STRING: "",
            ENUM: self.values[0] if self.values else "",
            GUID: BLANK_GUID,
            DECIMAL: 0,
            INTEGER: 0,
            BOOLEAN: False,
            DATE: BLANK_DATE,
            DATETIME: "0001-01-01T00:00:00Z",
        }[self.type]


def _text(name: str, length: int, **kw: Any) -> Field:
    return Field(name, STRING, length, **kw)


def _code(name: str, length: int, **kw: Any) -> Field:
    return Field(name, STRING, length, code=True, **kw)


def _ro(name: str, type_: str, **kw: Any) -> Field:
    return Field(name, type_, writable=False, **kw)


@dataclass(frozen=True)
class EntityType:
    name: str
    """OData type name, as error messages show it (`Microsoft.NAV.customer`)."""
    table: str
    """The AL table behind it, as BC's own error messages name it."""
    fields: tuple[Field, ...]

    def field(self, name: str) -> Field | None:
        return self._index.get(name)

    @property
    def _index(self) -> dict[str, Field]:
        return {f.name: f for f in self.fields}

    @property
    def schema(self) -> dict[str, str]:
        """Property -> Edm type for OData query options (enums as their own kind)."""
        return {f.name: f.type for f in self.fields}


CUSTOMER = EntityType(
    "Microsoft.NAV.customer",
    "Customer",
    (
        _ro("id", GUID),
        _code("number", 20),
        _text("displayName", 100),
        Field("type", ENUM, values=("Company", "Person")),
        _text("addressLine1", 100),
        _text("addressLine2", 50),
        _text("city", 30),
        _text("state", 30),
        _code("country", 10),
        _code("postalCode", 20),
        _text("phoneNumber", 30),
        _text("email", 80),
        _text("website", 80),
        _code("salespersonCode", 20),
        _ro("balanceDue", DECIMAL),
        Field("creditLimit", DECIMAL),
        Field("taxLiable", BOOLEAN),
        Field("taxAreaId", GUID),
        _ro("taxAreaDisplayName", STRING),
        _text("taxRegistrationNumber", 20),
        Field("currencyId", GUID),
        _code("currencyCode", 10),
        Field("paymentTermsId", GUID),
        Field("shipmentMethodId", GUID),
        Field("paymentMethodId", GUID),
        Field("blocked", ENUM, values=("_x0020_", "Ship", "Invoice", "All")),
        _ro("lastModifiedDateTime", DATETIME),
    ),
)

ITEM = EntityType(
    "Microsoft.NAV.item",
    "Item",
    (
        _ro("id", GUID),
        _code("number", 20),
        _text("displayName", 100),
        _text("displayName2", 50),
        Field("type", ENUM, values=("Inventory", "Service", "Non_x002D_Inventory")),
        Field("itemCategoryId", GUID),
        _code("itemCategoryCode", 20),
        Field("blocked", BOOLEAN),
        _code("gtin", 14),
        _ro("inventory", DECIMAL),
        Field("unitPrice", DECIMAL),
        Field("priceIncludesTax", BOOLEAN),
        Field("unitCost", DECIMAL),
        Field("taxGroupId", GUID),
        _code("taxGroupCode", 20),
        Field("baseUnitOfMeasureId", GUID),
        _code("baseUnitOfMeasureCode", 10),
        Field("generalProductPostingGroupId", GUID),
        _code("generalProductPostingGroupCode", 20),
        Field("inventoryPostingGroupId", GUID),
        _code("inventoryPostingGroupCode", 20),
        _ro("lastModifiedDateTime", DATETIME),
    ),
)

# Enum 5477 "Invoice Entity Aggregate Status": " ", Draft, "In Review", Open, Paid, Canceled, Corrective.
INVOICE_STATUSES = ("_x0020_", "Draft", "In_x0020_Review", "Open", "Paid", "Canceled", "Corrective")
POSTED_STATUSES = ("Open", "Paid", "Canceled", "Corrective")

SALES_INVOICE = EntityType(
    "Microsoft.NAV.salesInvoice",
    "Sales Header",
    (
        _ro("id", GUID),
        Field("number", STRING, 20, code=True, writable=False),
        _code("externalDocumentNumber", 35),
        Field("invoiceDate", DATE),
        Field("postingDate", DATE),
        Field("dueDate", DATE),
        _text("customerPurchaseOrderReference", 35),
        Field("customerId", GUID),
        _code("customerNumber", 20),
        _ro("customerName", STRING),
        _ro("billToName", STRING),
        Field("billToCustomerId", GUID),
        _code("billToCustomerNumber", 20),
        _text("shipToName", 100),
        _text("shipToContact", 100),
        _text("sellToAddressLine1", 100),
        _text("sellToAddressLine2", 50),
        _text("sellToCity", 30),
        _code("sellToCountry", 10),
        _text("sellToState", 30),
        _code("sellToPostCode", 20),
        Field("currencyId", GUID),
        _code("currencyCode", 10),
        Field("paymentTermsId", GUID),
        Field("shipmentMethodId", GUID),
        _code("salesperson", 20),
        _ro("pricesIncludeTax", BOOLEAN),
        _ro("remainingAmount", DECIMAL),
        _ro("discountAmount", DECIMAL),
        _ro("discountAppliedBeforeTax", BOOLEAN),
        _ro("totalAmountExcludingTax", DECIMAL),
        _ro("totalTaxAmount", DECIMAL),
        _ro("totalAmountIncludingTax", DECIMAL),
        Field("status", ENUM, writable=False, values=INVOICE_STATUSES),
        _ro("lastModifiedDateTime", DATETIME),
        _text("phoneNumber", 30),
        _text("email", 80),
    ),
)

LINE_TYPES = (
    "Comment",
    "Account",
    "Item",
    "Resource",
    "Fixed_x0020_Asset",
    "Charge",
    "Allocation_x0020_Account",
)

SALES_INVOICE_LINE = EntityType(
    "Microsoft.NAV.salesInvoiceLine",
    "Sales Line",
    (
        _ro("id", GUID),
        _ro("documentId", GUID),
        _ro("sequence", INTEGER),
        Field("itemId", GUID),
        Field("accountId", GUID),
        Field("lineType", ENUM, values=LINE_TYPES, default="Item"),
        _code("lineObjectNumber", 20),
        _text("description", 100),
        _text("description2", 50),
        Field("unitOfMeasureId", GUID),
        _code("unitOfMeasureCode", 10),
        Field("quantity", DECIMAL),
        Field("unitPrice", DECIMAL),
        Field("discountAmount", DECIMAL),
        Field("discountPercent", DECIMAL),
        _ro("discountAppliedBeforeTax", BOOLEAN),
        _ro("amountExcludingTax", DECIMAL),
        _ro("taxCode", STRING),
        _ro("taxPercent", DECIMAL),
        _ro("totalTaxAmount", DECIMAL),
        _ro("amountIncludingTax", DECIMAL),
        _ro("invoiceDiscountAllocation", DECIMAL),
        _ro("netAmount", DECIMAL),
        _ro("netTaxAmount", DECIMAL),
        _ro("netAmountIncludingTax", DECIMAL),
        Field("shipmentDate", DATE),
        Field("itemVariantId", GUID),
        Field("locationId", GUID),
    ),
)

COMPANY = EntityType(
    "Microsoft.NAV.company",
    "Company",
    (
        _ro("id", GUID),
        _ro("systemVersion", STRING),
        _ro("timestamp", INTEGER),
        _ro("name", STRING),
        _ro("displayName", STRING),
        _ro("businessProfileId", STRING),
        _ro("systemCreatedAt", DATETIME),
        _ro("systemCreatedBy", GUID),
        _ro("systemModifiedAt", DATETIME),
        _ro("systemModifiedBy", GUID),
    ),
)


def _reference_type(name: str, table: str, extra: tuple[Field, ...] = ()) -> EntityType:
    return EntityType(
        f"Microsoft.NAV.{name}",
        table,
        (
            _ro("id", GUID),
            _ro("code", STRING),
            _ro("displayName", STRING),
            *extra,
            _ro("lastModifiedDateTime", DATETIME),
        ),
    )


# Read-only setup tables the API exposes and the entities above refer to by id and code.
REFERENCE_TYPES: dict[str, EntityType] = {
    "currencies": _reference_type(
        "currency", "Currency", (_ro("symbol", STRING), _ro("amountDecimalPlaces", STRING))
    ),
    "paymentTerms": _reference_type(
        "paymentTerm",
        "Payment Terms",
        (
            _ro("dueDateCalculation", STRING),
            _ro("discountDateCalculation", STRING),
            _ro("discountPercent", DECIMAL),
        ),
    ),
    "paymentMethods": _reference_type("paymentMethod", "Payment Method"),
    "shipmentMethods": _reference_type("shipmentMethod", "Shipment Method"),
    "taxAreas": _reference_type("taxArea", "Tax Area", (_ro("taxType", STRING),)),
    "taxGroups": _reference_type("taxGroup", "Tax Group", (_ro("taxType", STRING),)),
    "unitsOfMeasure": _reference_type(
        "unitOfMeasure", "Unit of Measure", (_ro("internationalStandardCode", STRING), _ro("symbol", STRING))
    ),
    "itemCategories": _reference_type("itemCategory", "Item Category"),
    "generalProductPostingGroups": _reference_type(
        "generalProductPostingGroup", "Gen. Product Posting Group"
    ),
    "inventoryPostingGroups": _reference_type("inventoryPostingGroup", "Inventory Posting Group"),
}

# (id field, code field or None, reference set, AL field caption used in messages)
CUSTOMER_REFS = (
    ("currencyId", "currencyCode", "currencies", "Currency Code"),
    ("paymentTermsId", None, "paymentTerms", "Payment Terms Code"),
    ("shipmentMethodId", None, "shipmentMethods", "Shipment Method Code"),
    ("paymentMethodId", None, "paymentMethods", "Payment Method Code"),
    ("taxAreaId", None, "taxAreas", "Tax Area Code"),
)
ITEM_REFS = (
    ("itemCategoryId", "itemCategoryCode", "itemCategories", "Item Category Code"),
    ("taxGroupId", "taxGroupCode", "taxGroups", "Tax Group Code"),
    ("baseUnitOfMeasureId", "baseUnitOfMeasureCode", "unitsOfMeasure", "Base Unit of Measure"),
    (
        "generalProductPostingGroupId",
        "generalProductPostingGroupCode",
        "generalProductPostingGroups",
        "Gen. Prod. Posting Group",
    ),
    (
        "inventoryPostingGroupId",
        "inventoryPostingGroupCode",
        "inventoryPostingGroups",
        "Inventory Posting Group",
    ),
)
INVOICE_REFS = (
    ("currencyId", "currencyCode", "currencies", "Currency Code"),
    ("paymentTermsId", None, "paymentTerms", "Payment Terms Code"),
    ("shipmentMethodId", None, "shipmentMethods", "Shipment Method Code"),
)
LINE_REFS = (("unitOfMeasureId", "unitOfMeasureCode", "unitsOfMeasure", "Unit of Measure Code"),)
EMAIL = re.compile(r"^[^@\s;,]+@[^@\s;,]+\.[^@\s;,]+$")


def coerce_body(entity: EntityType, body: Any) -> dict[str, Any]:
    """Validate a POST/PATCH body against the entity's fields; returns normalised values."""
    if not isinstance(body, dict):
        raise BcError(400, "BadRequest", "The request body must be a JSON object.")
    result: dict[str, Any] = {}
    for name, value in body.items():
        if name.startswith("@odata."):
            continue
        spec = entity.field(name)
        if spec is None:
            raise BcError(
                400,
                "BadRequest",
                f"The property '{name}' does not exist on type '{entity.name}'. "
                "Make sure to only use property "
                "names that are defined by the type or mark the type as open type.",
            )
        if not spec.writable:
            # AL `Editable = false` on the API page: ODataInvalidOperationException.
            raise BcError(400, "BadRequest_InvalidOperation", f"Control '{name}' is read-only.")
        result[name] = coerce_value(entity, spec, value)
    return result


def coerce_value(entity: EntityType, spec: Field, value: Any) -> Any:
    coerce = _COERCERS.get(spec.type)
    if coerce is None:
        raise _cannot_convert(spec, value)
    return coerce(entity, spec, value)


def _cannot_convert(spec: Field, value: Any) -> BcError:
    edm = "Edm.String" if spec.type == ENUM else spec.type
    return BcError(400, "BadRequest", f"Cannot convert the literal '{value}' to the expected type '{edm}'.")


def _coerce_string(entity: EntityType, spec: Field, value: Any) -> str:
    if not isinstance(value, str):
        raise _cannot_convert(spec, value)
    text = value.strip().upper() if spec.code else value
    if spec.length is not None and len(text) > spec.length:
        kind = "Code" if spec.code else "Text"
        raise BcError(
            400,
            "BadRequest",
            f'The value of "{spec.name}" ({kind}[{spec.length}]) exceeds the maximum length of '
            f"{spec.length} "
            f"characters (it has {len(text)}). Table {entity.table}.",
        )
    return text


def _coerce_enum(entity: EntityType, spec: Field, value: Any) -> str:
    if not isinstance(value, str):
        raise _cannot_convert(spec, value)
    # JSON carries OData member names: `Non_x002D_Inventory`, not `Non-Inventory`.
    for allowed in spec.values:
        if value.lower() == allowed.lower():
            return allowed
    raise BcError(
        400,
        "BadRequest",
        f"The value '{value}' is not valid for '{spec.name}'. Valid values: {', '.join(spec.values)}.",
    )


def _coerce_guid(entity: EntityType, spec: Field, value: Any) -> str:
    if not isinstance(value, str):
        raise _cannot_convert(spec, value)
    try:
        return str(uuid.UUID(value.strip("{}")))
    except ValueError:
        raise _cannot_convert(spec, value) from None


def _coerce_number(entity: EntityType, spec: Field, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _cannot_convert(spec, value)
    if spec.type == INTEGER and not float(value).is_integer():
        raise _cannot_convert(spec, value)
    return int(value) if spec.type == INTEGER else value


def _coerce_boolean(entity: EntityType, spec: Field, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _cannot_convert(spec, value)
    return value


def _coerce_date(entity: EntityType, spec: Field, value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise _cannot_convert(spec, value)
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise _cannot_convert(spec, value) from None


def _coerce_datetime(entity: EntityType, spec: Field, value: Any) -> str:
    if not isinstance(value, str):
        raise _cannot_convert(spec, value)
    try:
        return bc_datetime(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        raise _cannot_convert(spec, value) from None


_COERCERS: dict[str, Callable[[EntityType, Field, Any], Any]] = {
    STRING: _coerce_string,
    ENUM: _coerce_enum,
    GUID: _coerce_guid,
    DECIMAL: _coerce_number,
    INTEGER: _coerce_number,
    BOOLEAN: _coerce_boolean,
    DATE: _coerce_date,
    DATETIME: _coerce_datetime,
}
