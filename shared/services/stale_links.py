"""After Business Central refused an invoice: do its stored links still point at usable records?

A stored link can go stale: the customer or item it names was deleted in Business Central, or
blocked. Business Central does not say so with a distinct error code: a `customerId` or line
`itemId` that matches nothing raises an AL error on the API page, which comes back as 400
`Application_DialogException` (`The sell-to customer cannot be found.`, label
`CouldNotFindSellToCustomerErr` of `APIV2 - Sales Invoices`; `Item does not exist.`, label
`ItemDoesNotExistErr` of `APIV2 - Sales Invoice Lines`; `microsoft/ALAppExtensions`
`Apps/W1/APIV2/app/src/pages/`), the same code as any other business rule. So the decision is
never taken on the error code: the linked records are read (`GET customers({id})`,
`GET items({id})`, 404 when gone) and what is gone or blocked for invoices is forgotten and linked
afresh; a linked item that is blocked fails the booking with `ITEM_BLOCKED`. Only a rejection,
which is rare, costs these two reads; the normal path stays one request per invoice.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.domain.bc_records import Link
from shared.domain.record_choice import blocks_invoices
from shared.services.ports import BusinessCentral


@dataclass(frozen=True)
class LinkCheck:
    """What the records an invoice was sent with look like now."""

    customer_gone: bool = False
    customer_blocked: bool = False
    item_gone: bool = False
    item_blocked: bool = False

    @property
    def customer_stale(self) -> bool:
        return self.customer_gone or self.customer_blocked

    @property
    def any_stale(self) -> bool:
        return self.customer_stale or self.item_gone

    def describe(self, customer: Link, item: Link) -> str:
        parts = []
        if self.customer_gone:
            parts.append(f"customer {customer.number} no longer exists")
        if self.customer_blocked:
            parts.append(f"customer {customer.number} is blocked for invoices")
        if self.item_gone:
            parts.append(f"item {item.number} no longer exists")
        if self.item_blocked:
            parts.append(f"item {item.number} is blocked")
        return "; ".join(parts)


def check_links(bc: BusinessCentral, customer: Link, item: Link) -> LinkCheck:
    """Read both linked records by id (raises `BusinessCentralError` if a read itself fails)."""
    found_customer = bc.get_customer(customer.id)
    found_item = bc.get_item(item.id)
    return LinkCheck(
        customer_gone=found_customer is None,
        customer_blocked=found_customer is not None and blocks_invoices(found_customer.blocked),
        item_gone=found_item is None,
        item_blocked=found_item is not None and found_item.blocked,
    )
