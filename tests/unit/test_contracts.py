"""The fakes against the ports' contracts (`tests/contracts/`); the adapters run the same tests
in `tests/integration/test_contracts.py`."""

from __future__ import annotations

import pytest

from tests.contracts.booking_repository import NOW, BookingRepositoryContract
from tests.contracts.business_central import BusinessCentralContract
from tests.contracts.invoice_queue import InvoiceQueueContract
from tests.contracts.link_repository import LinkRepositoryContract
from tests.contracts.request_repository import RequestRepositoryContract
from tests.contracts.sync_state import SyncStateContract
from tests.unit.fakes import (
    FakeBookingStore,
    FakeBusinessCentral,
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
