"""Links read from the table are kept in the process for a while; forgetting one drops it there too."""

from __future__ import annotations

from shared.domain.bc_records import Link
from shared.services.links import CUSTOMER, ITEM, CustomerLinks, ItemLinks
from tests.unit.fakes import FakeBusinessCentral, FakeLinkStore


class CountingLinks(FakeLinkStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self, kind: str, natural_key: str):  # type: ignore[no-untyped-def]
        self.reads += 1
        return super().get(kind, natural_key)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_stored_link_is_read_once_then_served_from_the_process_until_it_ages() -> None:
    store, bc, clock = CountingLinks(), FakeBusinessCentral(), Clock()
    customer = bc.add_customer("ann@example.com", "C00001")
    store.record(CUSTOMER, "ann@example.com", Link(customer.id, customer.number))
    links = CustomerLinks(store, bc, create=False, monotonic=clock, cache_seconds=60.0)

    for _ in range(5):
        assert links.resolve("Ann@Example.com", "Ann", None) == Link(customer.id, customer.number)
    assert store.reads == 1
    assert bc.calls == []

    clock.now += 60.0  # aged out: the table is read again (another instance may have relinked)
    store.record(CUSTOMER, "ann@example.com", Link("other-id", "C00002"))
    assert links.resolve("ann@example.com", "Ann", None) == Link("other-id", "C00002")
    assert store.reads == 2


def test_forgetting_a_link_drops_it_from_the_process_as_well_as_the_table() -> None:
    store, bc = CountingLinks(), FakeBusinessCentral()
    old = bc.add_item("Catered bento", "SVC-0001")
    store.record(ITEM, "svc-1", Link(old.id, old.number))
    links = ItemLinks(store, bc, create=False)
    assert links.resolve("svc-1", "Catered bento") == Link(old.id, old.number)

    links.forget("svc-1", "Catered bento")
    assert store.get(ITEM, "svc-1") is None
    store.record(ITEM, "svc-1", Link("new-id", "SVC-0002"))  # relinked (here: by hand)
    assert links.resolve("svc-1", "Catered bento") == Link("new-id", "SVC-0002")


def test_a_link_found_in_business_central_is_cached_too() -> None:
    store, bc = CountingLinks(), FakeBusinessCentral()
    customer = bc.add_customer("bob@example.com", "C00007")
    links = CustomerLinks(store, bc, create=False)
    first = links.resolve("bob@example.com", "Bob", None)
    calls = len(bc.calls)
    assert links.resolve("bob@example.com", "Bob", None) == first == Link(customer.id, customer.number)
    assert len(bc.calls) == calls  # neither Business Central nor the table asked again
    assert store.reads == 1
