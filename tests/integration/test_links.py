"""Customer and item links: cached in Azurite, matched and created in the sandbox's Business Central."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from sandbox import SandboxHandle
from shared.adapters.business_central import BusinessCentralClient, BusinessCentralError
from shared.adapters.link_store import LinkStore
from shared.domain.errors import LinkBusyError, LinkNotFoundError
from shared.services.links import CUSTOMER, CustomerLinks, ItemLinks
from tests.integration.test_business_central import make_client

NEW_EMAIL = "new.person@example.org"


@pytest.fixture
def bc(fresh_sandbox: SandboxHandle, storage_connection_string: str) -> BusinessCentralClient:
    return make_client(fresh_sandbox, storage_connection_string)


@pytest.fixture
def store(storage_connection_string: str, unique_name: str) -> LinkStore:
    service = TableServiceClient.from_connection_string(storage_connection_string)
    links = LinkStore(service.get_table_client(unique_name))
    links.ensure_table()
    return links


def store_table(store: LinkStore) -> Any:
    """The table under a store, for a second store with another clock (a worker that crashed)."""
    return store._table


def bc_requests(sandbox: SandboxHandle) -> int:
    return sandbox.app.counters.total("bc")


def customers_with_email(sandbox: SandboxHandle, email: str) -> list[dict[str, Any]]:
    return [c for c in sandbox.admin.state(["customers"])["customers"] if c["email"].lower() == email.lower()]


def test_an_existing_customer_is_linked_once_then_served_from_the_table(
    store: LinkStore, bc: BusinessCentralClient, fresh_sandbox: SandboxHandle
) -> None:
    links = CustomerLinks(store, bc, template=None, create=False)
    first = links.resolve("Bob.Kelly@TailspinToys.com", "Bob Kelly", None)
    before = bc_requests(fresh_sandbox)
    again = CustomerLinks(store, bc, template=None, create=False).resolve(
        "bob.kelly@tailspintoys.com", "", None
    )
    assert again == first
    assert bc_requests(fresh_sandbox) == before  # the next booking costs no lookup
    assert customers_with_email(fresh_sandbox, "bob.kelly@tailspintoys.com")[0]["id"] == first.id


def test_no_match_with_creation_off_creates_nothing(store: LinkStore, bc, fresh_sandbox) -> None:
    with pytest.raises(LinkNotFoundError):
        CustomerLinks(store, bc, template=None, create=False).resolve(NEW_EMAIL, "New Person", None)
    assert customers_with_email(fresh_sandbox, NEW_EMAIL) == []
    assert store.get(CUSTOMER, NEW_EMAIL) is None


def test_a_new_customer_is_a_person_with_the_templates_setup(store: LinkStore, bc, fresh_sandbox) -> None:
    link = CustomerLinks(store, bc, template="CT-BOOKINGS", create=True).resolve(
        NEW_EMAIL, "New Person", "+31 6 1234 5678"
    )
    [created] = customers_with_email(fresh_sandbox, NEW_EMAIL)
    template = fresh_sandbox.app.company.customer_by_number("CT-BOOKINGS").values
    assert created["id"] == link.id and created["type"] == "Person"
    assert created["displayName"] == "New Person" and created["phoneNumber"] == "+31 6 1234 5678"
    for field in ("paymentTermsId", "paymentMethodId", "taxAreaId", "taxLiable"):
        assert created[field] == template[field], field
    assert created["blocked"] != template["blocked"]  # the template is blocked; its copies are not


def test_concurrent_workers_create_one_customer(
    store: LinkStore, fresh_sandbox: SandboxHandle, storage_connection_string: str
) -> None:
    fresh_sandbox.admin.set_faults({"latency": {"bc": 0.05}})
    barrier = threading.Barrier(8)

    def worker(_i: int) -> str:
        # Each worker has its own client and resolver, as separate processes would.
        client = make_client(fresh_sandbox, storage_connection_string)
        links = CustomerLinks(store, client, template="CT-BOOKINGS", create=True, poll_seconds=0.02)
        barrier.wait()
        return links.resolve(NEW_EMAIL.upper(), "New Person", None).id

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(worker, range(8)))
    created = customers_with_email(fresh_sandbox, NEW_EMAIL)
    assert len(created) == 1 and ids == {created[0]["id"]}


def test_a_creation_that_reached_bc_before_a_crash_is_linked_not_repeated(
    store: LinkStore, bc, fresh_sandbox
) -> None:
    old = datetime.now(UTC) - timedelta(hours=1)
    # A worker crashed after creating the customer but before recording the link.
    crashed = bc.create_customer({"displayName": "Crashed Creation", "type": "Person", "email": NEW_EMAIL})
    crashed_worker = LinkStore(store_table(store), clock=lambda: old)
    assert crashed_worker.claim(CUSTOMER, NEW_EMAIL, "dead") is not None
    links = CustomerLinks(store, bc, template=None, create=True)
    assert links.resolve(NEW_EMAIL, "Crashed Creation", None).id == crashed.id
    assert len(customers_with_email(fresh_sandbox, NEW_EMAIL)) == 1


def test_a_stale_marker_without_a_record_leads_to_one_creation(store: LinkStore, bc, fresh_sandbox) -> None:
    crashed_worker = LinkStore(store_table(store), clock=lambda: datetime.now(UTC) - timedelta(hours=1))
    assert crashed_worker.claim(CUSTOMER, NEW_EMAIL, "dead") is not None
    link = CustomerLinks(store, bc, template=None, create=True).resolve(NEW_EMAIL, "Late Person", None)
    [created] = customers_with_email(fresh_sandbox, NEW_EMAIL)
    assert created["id"] == link.id
    assert store.link_of(CUSTOMER, NEW_EMAIL) == link


def test_a_live_marker_makes_others_wait_a_bounded_time(store: LinkStore, bc, fresh_sandbox) -> None:
    assert store.claim(CUSTOMER, NEW_EMAIL, "busy-worker") is not None
    waits: list[float] = []
    clock = iter(float(i) for i in range(1000))
    links = CustomerLinks(
        store,
        bc,
        template=None,
        create=True,
        wait_seconds=3,
        sleep=waits.append,
        monotonic=lambda: next(clock),
    )
    with pytest.raises(LinkBusyError):
        links.resolve(NEW_EMAIL, "New Person", None)
    assert 1 <= len(waits) <= 3
    assert customers_with_email(fresh_sandbox, NEW_EMAIL) == []


def test_a_missing_template_is_a_permanent_error(store: LinkStore, bc) -> None:
    with pytest.raises(BusinessCentralError) as caught:
        CustomerLinks(store, bc, template="NO-SUCH", create=True).resolve(NEW_EMAIL, "X", None)
    assert not caught.value.transient and "CUSTOMER_TEMPLATE" in caught.value.message
    assert store.get(CUSTOMER, NEW_EMAIL) is None  # the claim was released


def test_services_link_by_name_and_new_ones_become_service_items_from_the_template(
    store: LinkStore, bc, fresh_sandbox: SandboxHandle
) -> None:
    items = ItemLinks(store, bc, template="IT-BOOKINGS", create=True)
    assert items.resolve("svc-a", "personal training").number == "SVC-0002"
    wine = items.resolve("svc-b", "Wine pairing", Decimal("18.5"))  # the BC item of that name is Inventory
    state = {i["id"]: i for i in fresh_sandbox.admin.state(["items"])["items"]}
    created = state[wine.id]
    template = fresh_sandbox.app.company.item_by_number("IT-BOOKINGS").values
    assert created["type"] == "Service" and created["displayName"] == "Wine pairing"
    assert created["unitPrice"] == 18.5 and created["blocked"] is False
    for field in (
        "baseUnitOfMeasureCode",
        "taxGroupCode",
        "generalProductPostingGroupCode",
        "itemCategoryCode",
    ):
        assert created[field] == template[field], field
    before = bc_requests(fresh_sandbox)
    assert items.resolve("svc-b", "Wine pairing (renamed)") == wine  # by the stored link first
    assert bc_requests(fresh_sandbox) == before


def test_unmapped_service_with_creation_off(store: LinkStore, bc) -> None:
    with pytest.raises(LinkNotFoundError):
        ItemLinks(store, bc, template=None, create=False).resolve("svc-x", "Aqua yoga")
