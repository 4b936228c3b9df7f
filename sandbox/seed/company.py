"""The Business Central company of the sample world: setup tables, a template customer and item,
and the customers and items already in Business Central."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sandbox.business_central.company import CompanyStore
from sandbox.seed.catalogue import ITEMS, PEOPLE
from sandbox.seed.identity import CUSTOMER_TEMPLATE, ITEM_TEMPLATE

_NO_DISCOUNT = {"discountDateCalculation": "", "discountPercent": 0}

# (entity set, code, displayName, further fields), in the order they are created (ids follow it).
REFERENCES: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("currencies", "USD", "US dollar", {"symbol": "$", "amountDecimalPlaces": "2:2"}),
    ("currencies", "GBP", "British pound", {"symbol": "£", "amountDecimalPlaces": "2:2"}),
    ("paymentTerms", "14 DAYS", "Net 14 days", {"dueDateCalculation": "14D", **_NO_DISCOUNT}),
    ("paymentTerms", "30 DAYS", "Net 30 days", {"dueDateCalculation": "30D", **_NO_DISCOUNT}),
    ("paymentTerms", "CM", "Current month", {"dueDateCalculation": "CM", **_NO_DISCOUNT}),
    ("paymentTerms", "COD", "Cash on delivery", {"dueDateCalculation": "0D", **_NO_DISCOUNT}),
    ("paymentMethods", "BANK", "Bank transfer", {}),
    ("paymentMethods", "CARD", "Card payment", {}),
    ("paymentMethods", "CASH", "Cash", {}),
    ("shipmentMethods", "PICKUP", "Pickup at location", {}),
    ("shipmentMethods", "DELIVERY", "Delivered", {}),
    ("taxAreas", "NL-DOM", "Domestic (NL)", {"taxType": "VAT"}),
    ("taxAreas", "EU", "EU customers", {"taxType": "VAT"}),
    ("taxGroups", "STANDARD", "Standard VAT", {"taxType": "VAT"}),
    ("taxGroups", "REDUCED", "Reduced VAT", {"taxType": "VAT"}),
    ("taxGroups", "ZERO", "Zero VAT", {"taxType": "VAT"}),
    ("unitsOfMeasure", "HOUR", "Hour", {"internationalStandardCode": "HUR", "symbol": "hour"}),
    ("unitsOfMeasure", "PCS", "Piece", {"internationalStandardCode": "EA", "symbol": "pcs"}),
    ("unitsOfMeasure", "SESSION", "Session", {"internationalStandardCode": "E48", "symbol": "session"}),
    ("unitsOfMeasure", "DAY", "Day", {"internationalStandardCode": "DAY", "symbol": "day"}),
    ("itemCategories", "SERVICES", "Services", {}),
    ("itemCategories", "CATERING", "Catering", {}),
    ("itemCategories", "FITNESS", "Fitness", {}),
    ("itemCategories", "MERCH", "Merchandise", {}),
    ("generalProductPostingGroups", "SERVICES", "Services", {}),
    ("generalProductPostingGroups", "RETAIL", "Retail", {}),
    ("inventoryPostingGroups", "RESALE", "Resale items", {}),
)
TAX_RATES = {"STANDARD": Decimal(21), "REDUCED": Decimal(9), "ZERO": Decimal(0)}
"""VAT percent per tax group."""

CUSTOMER_TEMPLATE_FIELDS: dict[str, Any] = {
    "number": CUSTOMER_TEMPLATE,
    "displayName": "TEMPLATE - Bookings customers (do not invoice)",
    "type": "Person",
    "country": "NL",
    "currencyCode": "",
}
ITEM_TEMPLATE_FIELDS: dict[str, Any] = {
    "number": ITEM_TEMPLATE,
    "displayName": "TEMPLATE - Bookings services (do not sell)",
    "type": "Service",
    "blocked": True,
    "unitPrice": 0,
    "baseUnitOfMeasureCode": "HOUR",
    "taxGroupCode": "STANDARD",
    "generalProductPostingGroupCode": "SERVICES",
    "itemCategoryCode": "SERVICES",
}
COMPANY_CUSTOMERS = (
    ("Adatum Corporation", "Company", "accounts@adatum.com"),
    ("Trey Research", "Company", "ap@treyresearch.net"),
)


def seed_company(store: CompanyStore, seed: int) -> None:
    """Setup tables, a template customer and item, and the customers and items already in BC."""
    store.clear(seed)
    for set_name, code, name, extra in REFERENCES:
        store.add_reference(set_name, code, name, **extra)
    store.tax_rates.update(TAX_RATES)
    terms = store.reference_by_code("paymentTerms", "14 DAYS")
    bank = store.reference_by_code("paymentMethods", "BANK")
    domestic = store.reference_by_code("taxAreas", "NL-DOM")
    assert terms and bank and domestic
    # Payment, tax and posting fields new records copy from the templates and existing customers.
    billing = {"paymentTermsId": terms["id"], "paymentMethodId": bank["id"], "taxLiable": True}
    billing["taxAreaId"] = domestic["id"]
    store.create_customer(CUSTOMER_TEMPLATE_FIELDS | billing | {"blocked": "All"})
    store.create_item(dict(ITEM_TEMPLATE_FIELDS))
    _seed_customers(store, billing)
    _seed_items(store)


def _seed_customers(store: CompanyStore, billing: dict[str, Any]) -> None:
    for name, _email, phone, bc_email, blocked in PEOPLE:
        if bc_email is None:
            continue
        person = {
            "displayName": name,
            "type": "Person",
            "email": bc_email,
            "phoneNumber": phone,
            "addressLine1": "Keizersgracht 1",
            "city": "Amsterdam",
            "country": "NL",
            "postalCode": "1015 CJ",
        }
        store.create_customer(person | billing | {"blocked": blocked})
    for name, type_, email in COMPANY_CUSTOMERS:
        store.create_customer(
            {"displayName": name, "type": type_, "email": email, "taxLiable": True, "country": "NL"}
        )


def _seed_items(store: CompanyStore) -> None:
    for number, name, type_, price, unit, tax_group, category in ITEMS:
        body: dict[str, Any] = {
            "number": number,
            "displayName": name,
            "type": type_,
            "unitPrice": price,
            "baseUnitOfMeasureCode": unit,
            "taxGroupCode": tax_group,
            "itemCategoryCode": category,
            "generalProductPostingGroupCode": "SERVICES" if type_ == "Service" else "RETAIL",
        }
        if type_ == "Inventory":
            body["inventoryPostingGroupCode"] = "RESALE"
        store.create_item(body)
