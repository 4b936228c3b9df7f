"""Which Business Central customer or item a booking is billed to, among those that match.

Customers carry `blocked` (enum "Customer Blocked": blank, `Ship`, `Invoice`, `All`; API v2.0
writes the blank as `_x0020_`; page `APIV2 - Customers` field `blocked` in
`microsoft/ALAppExtensions` `Apps/W1/APIV2/app/src/pages/APIV2Customers.Page.al`). A sales invoice
for a customer blocked with `Invoice` or `All` is refused (`Customer.CheckBlockedCustOnDocs` in the
base application: `Ship` blocks quotes, orders and shipments, not an invoice without shipment).
Items carry `blocked` (Boolean, page `APIV2 - Items`); a blocked item cannot be put on a line.

So among the customers with the booking's email the first unblocked one (by number) is chosen; if
every match is blocked, none is, and the booking fails with `CUSTOMER_BLOCKED` naming them, rather
than a new customer being created past the block. Items: the first unblocked Service item with the
name; only blocked ones -> `ITEM_BLOCKED`.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.domain.bc_records import BcCustomer, BcItem
from shared.domain.errors import CustomerBlockedError, ItemBlockedError

INVOICE_BLOCKING = frozenset({"invoice", "all"})


def blocks_invoices(blocked: str | None) -> bool:
    """Whether a customer's `blocked` value refuses sales invoices (`Invoice`, `All`)."""
    return (blocked or "").strip().lower() in INVOICE_BLOCKING


def choose_customer(matches: Sequence[BcCustomer]) -> BcCustomer | None:
    """The customer to bill among `matches` (ordered by number); None when there is none.

    Raises `CustomerBlockedError` when every match is blocked for invoices.
    """
    if not matches:
        return None
    for customer in matches:
        if not blocks_invoices(customer.blocked):
            return customer
    raise CustomerBlockedError([customer.number for customer in matches])


def choose_item(matches: Sequence[BcItem]) -> BcItem | None:
    """The item to bill among `matches`; None when there is none; `ItemBlockedError` if all blocked."""
    if not matches:
        return None
    for item in matches:
        if not item.blocked:
            return item
    raise ItemBlockedError([item.number for item in matches])
