"""The adapters against the ports' contracts (`tests/contracts/`) on Azurite; the fakes run the
same tests in `tests/unit/test_contracts.py`."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TypeVar

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueServiceClient

from sandbox import SandboxHandle
from shared.adapters.booking_store import BookingStore
from shared.adapters.business_central import BusinessCentralClient
from shared.adapters.invoice_queue import InvoiceQueue
from shared.adapters.invoice_requests import InvoiceRequestStore
from shared.adapters.link_store import LinkStore
from shared.adapters.sync_state import SyncStateStore
from tests.contracts.booking_repository import NOW, BookingRepositoryContract
from tests.contracts.business_central import BusinessCentralContract
from tests.contracts.graph_bookings import GraphBookingsContract, GraphWorld
from tests.contracts.invoice_queue import InvoiceQueueContract
from tests.contracts.link_repository import LinkRepositoryContract
from tests.contracts.request_repository import RequestRepositoryContract
from tests.contracts.sync_state import SyncStateContract
from tests.integration.test_business_central import make_client
from tests.integration.test_graph_bookings import BUSINESS
from tests.integration.test_graph_bookings import make_client as make_graph_client

S = TypeVar("S", BookingStore, LinkStore, InvoiceRequestStore, SyncStateStore)


def table_store(store_type: type[S], connection_string: str, table_name: str) -> S:
    """A store on a fresh Azurite table, its clock fixed at NOW as the contracts expect."""
    tables = TableServiceClient.from_connection_string(connection_string)
    store = store_type(tables.get_table_client(table_name), clock=lambda: NOW)
    store.ensure_table()
    return store


class TestBookingStore(BookingRepositoryContract):
    @pytest.fixture
    def store(self, storage_connection_string: str, unique_name: str) -> BookingStore:
        return table_store(BookingStore, storage_connection_string, unique_name)


class TestLinkStore(LinkRepositoryContract):
    @pytest.fixture
    def links(self, storage_connection_string: str, unique_name: str) -> LinkStore:
        return table_store(LinkStore, storage_connection_string, unique_name)


class TestInvoiceQueue(InvoiceQueueContract):
    @pytest.fixture
    def invoice_queue(self, storage_connection_string: str, unique_name: str) -> InvoiceQueue:
        queue = InvoiceQueue(
            QueueServiceClient.from_connection_string(storage_connection_string), unique_name
        )
        queue.ensure_queues()
        return queue


class TestInvoiceRequestStore(RequestRepositoryContract):
    @pytest.fixture
    def requests(self, storage_connection_string: str, unique_name: str) -> InvoiceRequestStore:
        return table_store(InvoiceRequestStore, storage_connection_string, unique_name)


class TestSyncStateStore(SyncStateContract):
    @pytest.fixture
    def sync_state(self, storage_connection_string: str, unique_name: str) -> SyncStateStore:
        return table_store(SyncStateStore, storage_connection_string, unique_name)


class TestBusinessCentralClient(BusinessCentralContract):
    """Over real HTTP and TLS against the sandbox's Business Central API."""

    @pytest.fixture
    def bc(self, fresh_sandbox: SandboxHandle, storage_connection_string: str) -> BusinessCentralClient:
        return make_client(fresh_sandbox, storage_connection_string, sleep=lambda _s: None)


class TestGraphBookingsClient(GraphBookingsContract):
    """Over real HTTP and TLS against the sandbox's Graph, appointments added through its admin API."""

    @pytest.fixture
    def graph_world(self, fresh_sandbox: SandboxHandle) -> GraphWorld:
        client, _ = make_graph_client(fresh_sandbox)

        def add(start: datetime, minutes: int, email: str) -> str:
            end = start + timedelta(minutes=minutes)
            customer = {
                "@odata.type": "#microsoft.graph.bookingCustomerInformation",
                "customerId": email,
                "name": email.split("@")[0],
                "emailAddress": email,
            }
            created = fresh_sandbox.admin.add_appointment(
                BUSINESS,
                {
                    "startDateTime": {"dateTime": start.replace(tzinfo=None).isoformat(), "timeZone": "UTC"},
                    "endDateTime": {"dateTime": end.replace(tzinfo=None).isoformat(), "timeZone": "UTC"},
                    "customers": [customer],
                    "price": 10.0,
                    "priceType": "fixedPrice",
                },
            )
            return str(created["id"])

        return GraphWorld(client, BUSINESS, add)
