"""Which Business Central customer or item is billed among those that match.

Customer `blocked` (page `APIV2 - Customers`, enum "Customer Blocked": `_x0020_`, `Ship`,
`Invoice`, `All`): `Invoice` and `All` refuse sales invoices, `Ship` does not
(`Customer.CheckBlockedCustOnDocs`); item `blocked` is a Boolean (page `APIV2 - Items`).
"""

from __future__ import annotations

import pytest

from shared.domain.bc_records import BcCustomer, BcItem
from shared.domain.errors import CustomerBlockedError, ItemBlockedError
from shared.domain.record_choice import blocks_invoices, choose_customer, choose_item


def customer(number: str, blocked: str = "_x0020_") -> BcCustomer:
    return BcCustomer(f"id-{number}", number, "Bob", "bob@example.com", blocked)


def item(number: str, blocked: bool = False) -> BcItem:
    return BcItem(f"id-{number}", number, "Catered bento", "Service", blocked)


@pytest.mark.parametrize(
    ("blocked", "refuses"),
    [("_x0020_", False), (" ", False), ("", False), ("Ship", False), ("Invoice", True), ("All", True)],
)
def test_invoice_and_all_block_invoices_ship_does_not(blocked: str, refuses: bool) -> None:
    assert blocks_invoices(blocked) is refuses


def test_an_unblocked_customer_is_preferred_over_an_earlier_blocked_one() -> None:
    assert choose_customer([customer("C001", "Invoice"), customer("C002")]) == customer("C002")
    assert choose_customer([customer("C001", "Ship"), customer("C002")]) == customer("C001", "Ship")
    assert choose_customer([]) is None


def test_every_match_blocked_names_them_all() -> None:
    with pytest.raises(CustomerBlockedError) as caught:
        choose_customer([customer("C001", "All"), customer("C002", "Invoice")])
    assert caught.value.numbers == ["C001", "C002"]
    assert "C001, C002" in str(caught.value)


def test_blocked_items_are_skipped_and_only_blocked_is_an_error() -> None:
    assert choose_item([item("SVC-1", True), item("SVC-2")]) == item("SVC-2")
    assert choose_item([]) is None
    with pytest.raises(ItemBlockedError, match="SVC-1"):
        choose_item([item("SVC-1", True)])
