"""The fakes against the ports' contracts (`tests/contracts/`); the adapters run the same tests
in `tests/integration/test_contracts.py`."""

from __future__ import annotations

from datetime import datetime

import pytest

from shared.domain.models import Customer
from tests.contracts.booking_repository import NOW, BookingRepositoryContract
from tests.contracts.business_central import BusinessCentralContract
from tests.contracts.graph_bookings import GraphBookingsContract, GraphWorld
from tests.contracts.invoice_queue import InvoiceQueueContract
from tests.contracts.link_repository import LinkRepositoryContract
from tests.contracts.request_repository import RequestRepositoryContract
from tests.contracts.sync_state import SyncStateContract
from tests.unit.builders import LUNCH, make_appointment
from tests.unit.fakes import (
    FakeBookingStore,
    FakeBusinessCentral,
    FakeGraph,
    FakeLinkStore,
    FakeQueue,
    FakeRequestStore,
    FakeSyncState,
    ManualClock,
)


class TestFakeBookingStore(BookingRepositoryContract):
    @pytest.fixture
    def store(self) -> FakeBookingStore:
        return FakeBookingStore(ManualClock(NOW))


class TestFakeLinkStore(LinkRepositoryContract):
    @pytest.fixture
    def links(self) -> FakeLinkStore:
        return FakeLinkStore(ManualClock(NOW))


class TestFakeQueue(InvoiceQueueContract):
    @pytest.fixture
    def invoice_queue(self) -> FakeQueue:
        return FakeQueue()


class TestFakeRequestStore(RequestRepositoryContract):
    @pytest.fixture
    def requests(self) -> FakeRequestStore:
        return FakeRequestStore(ManualClock(NOW))


class TestFakeSyncState(SyncStateContract):
    @pytest.fixture
    def sync_state(self) -> FakeSyncState:
        return FakeSyncState()


class TestFakeBusinessCentral(BusinessCentralContract):
    @pytest.fixture
    def bc(self) -> FakeBusinessCentral:
        return FakeBusinessCentral()


class TestFakeGraph(GraphBookingsContract):
    @pytest.fixture
    def graph_world(self) -> GraphWorld:
        graph = FakeGraph(ManualClock(NOW))
        numbers = iter(range(1, 1000))

        def add(start: datetime, minutes: int, email: str) -> str:
            number = next(numbers)
            customer = Customer(name=f"Customer {number}", email=email)
            appointment = make_appointment(LUNCH, number, start=start, minutes=minutes, customer=customer)
            graph.add(appointment)
            return appointment.id

        return GraphWorld(graph, LUNCH, add)
