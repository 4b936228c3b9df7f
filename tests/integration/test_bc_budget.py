"""The storage-backed Business Central budget against Azurite: instances competing for slots, a
dead holder's slot freed by its lease, the sliding window, a shared pause, storage errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.data.tables import TableClient, TableServiceClient

from shared.adapters.bc_budget import StorageBudget, budget_wait_limit
from shared.domain.bc_budget import BudgetLimits, BudgetTimeoutError, SlotState


@pytest.fixture
def table(storage_connection_string: str, unique_name: str) -> Iterator[TableClient]:
    service = TableServiceClient.from_connection_string(storage_connection_string)
    client = service.get_table_client(unique_name)
    yield client
    service.delete_table(unique_name)


class InFlight:
    """Counts requests "in Business Central" at once across every budget under test."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.total = 0
        self._lock = threading.Lock()

    def request(self, budget: StorageBudget, seconds: float) -> None:
        with budget.slot():
            with self._lock:
                self.now += 1
                self.total += 1
                self.peak = max(self.peak, self.now)
            time.sleep(seconds)
            with self._lock:
                self.now -= 1


def run_threads(count: int, target: Callable[[int], Any]) -> list[BaseException]:
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return errors


def test_two_budgets_in_one_process_never_exceed_the_concurrency(table: TableClient) -> None:
    limits = BudgetLimits(concurrency=3, limit=10_000)
    budgets = [StorageBudget(table, limits), StorageBudget(table, limits)]
    flight = InFlight()
    errors = run_threads(12, lambda i: [flight.request(budgets[i % 2], 0.05) for _ in range(5)])
    assert errors == []
    assert flight.total == 60
    assert flight.peak == 3  # used fully, never exceeded
    # Handing a slot on inside a process: well under 2 storage operations per request.
    operations = sum(budget.operations for budget in budgets)
    assert operations < 2 * flight.total, operations


def test_one_request_alone_costs_two_storage_operations(table: TableClient) -> None:
    budget = StorageBudget(table, BudgetLimits(concurrency=5, limit=100), linger=0.0)
    with budget.slot():
        pass
    before = budget.operations
    for _ in range(5):
        with budget.slot():
            pass
    assert budget.operations - before == 10  # take + give back, the slots' cache kept current


def free_slots(table: TableClient) -> int:
    rows = table.query_entities("PartitionKey eq 'budget'")
    return sum(1 for row in rows if str(row["RowKey"]).startswith("slot-") and not row.get("holder"))


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_back_to_back_requests_share_one_take_and_the_slot_goes_back_when_idle(table: TableClient) -> None:
    budget = StorageBudget(table, BudgetLimits(concurrency=5, limit=100), linger=0.3)
    with budget.slot():
        pass
    assert wait_for(lambda: free_slots(table) == 1)  # the first slot went back once idle
    before = budget.operations
    for _ in range(5):
        with budget.slot():
            pass  # the next request comes well within the linger: no storage operation between
    assert wait_for(lambda: budget.operations - before >= 2)
    assert budget.operations - before <= 3  # one take (maybe one read) and one give back for all 5
    assert wait_for(lambda: free_slots(table) >= 1)
    rows = {row["RowKey"]: row for row in table.query_entities("PartitionKey eq 'budget'")}
    assert all(not row.get("holder") for key, row in rows.items() if key.startswith("slot-"))


def test_a_used_up_slot_rolls_over_to_waiters_in_one_write_and_every_request_is_counted(
    table: TableClient,
) -> None:
    limits = BudgetLimits(concurrency=1, limit=1000, hold_requests=1)
    budget = StorageBudget(table, limits, linger=0.1)
    flight = InFlight()
    assert run_threads(3, lambda i: [flight.request(budget, 0.02) for _ in range(4)]) == []
    assert (flight.total, flight.peak) == (12, 1)
    # One reservation per request: a give-back, a read and a take each (3+) without rolling over.
    assert budget.operations < 2.5 * flight.total, budget.operations
    assert wait_for(lambda: free_slots(table) == 1)
    (row,) = [row for row in table.query_entities("PartitionKey eq 'budget'") if row["RowKey"] == "slot-00"]
    assert sum(count for _, count in SlotState.parse_log(row["log"])) == 12  # the window saw all 12


def test_a_lingering_slot_is_not_used_while_paused(table: TableClient) -> None:
    budget = StorageBudget(table, BudgetLimits(concurrency=5, limit=100), linger=5.0)
    with budget.slot():
        pass  # kept for the next request...
    budget.pause(1.0)  # ...but Business Central asked to wait
    started = time.monotonic()
    with budget.slot():
        waited = time.monotonic() - started
    assert waited >= 0.9


def test_the_sliding_window_is_shared_and_never_exceeded(table: TableClient) -> None:
    limits = BudgetLimits(concurrency=2, limit=10, window=3.0)
    budgets = [StorageBudget(table, limits), StorageBudget(table, limits)]
    sent: list[float] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        for _ in range(4):
            with budgets[i % 2].slot(), lock:
                sent.append(time.monotonic())

    assert run_threads(6, work) == []
    assert len(sent) == 24
    sent.sort()
    for i, moment in enumerate(sent):
        inside = [t for t in sent[i:] if t - moment < limits.window]
        assert len(inside) <= limits.limit
    assert sent[-1] - sent[0] >= 2 * limits.window * 0.9  # 24 requests need three windows


def test_a_dead_holders_slot_is_free_after_its_lease(table: TableClient) -> None:
    limits = BudgetLimits(concurrency=1, limit=100, lease=3.0)
    dead = StorageBudget(table, limits)
    dead.renew_due = lambda: None  # type: ignore[method-assign]  # a dead instance renews nothing
    dead._give_back = lambda hold: None  # type: ignore[method-assign]  # nor gives anything back
    held = dead.slot()
    held.__enter__()  # the instance dies holding it: never given back, never renewed
    alive = StorageBudget(table, limits)
    started = time.monotonic()
    with budget_wait_limit(1.0), pytest.raises(BudgetTimeoutError), alive.slot():
        pass
    with alive.slot():
        waited = time.monotonic() - started
    assert limits.lease - 0.5 <= waited <= limits.lease + 2 + 3  # lease + clock-skew margin + a poll


def test_a_long_request_keeps_its_slot_by_renewing_the_lease(table: TableClient) -> None:
    limits = BudgetLimits(concurrency=1, limit=100, lease=1.5)
    holder = StorageBudget(table, limits)
    other = StorageBudget(table, limits)
    with holder.slot():
        for _ in range(8):
            time.sleep(0.5)
            holder.renew_due()
        with budget_wait_limit(0.5), pytest.raises(BudgetTimeoutError), other.slot():
            pass


def test_a_retry_after_pauses_every_instance(table: TableClient) -> None:
    limits = BudgetLimits(concurrency=5, limit=100)
    first, second = StorageBudget(table, limits), StorageBudget(table, limits)
    with second.slot():
        pass
    first.pause(2.0)
    time.sleep(1.1)  # past the other instance's cache
    started = time.monotonic()
    with second.slot():
        pass
    assert time.monotonic() - started >= 0.5


class FlakyTable:
    """A table client whose every call fails while `down` is set."""

    def __init__(self, table: TableClient) -> None:
        self._table = table
        self.down = True
        self.failed = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._table, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                self.failed += 1
                raise ServiceRequestError("connection refused")
            return attribute(*args, **kwargs)

        return call


def test_a_storage_error_makes_acquire_wait_never_bypass(table: TableClient) -> None:
    flaky = FlakyTable(table)
    budget = StorageBudget(flaky, BudgetLimits(concurrency=5, limit=100))  # type: ignore[arg-type]
    entered = threading.Event()

    def request() -> None:
        with budget_wait_limit(30), budget.slot():
            entered.set()

    thread = threading.Thread(target=request)
    thread.start()
    assert not entered.wait(2.0)  # storage down: no slot, no request
    assert 1 <= flaky.failed <= 6  # backing off, not hammering
    flaky.down = False
    assert entered.wait(10.0)  # storage back: the request goes
    thread.join(10)


def test_a_storage_outage_ends_in_a_budget_timeout_not_a_request(table: TableClient) -> None:
    budget = StorageBudget(FlakyTable(table), BudgetLimits())  # type: ignore[arg-type]
    with budget_wait_limit(1.0), pytest.raises(BudgetTimeoutError) as raised, budget.slot():
        raise AssertionError("sent without a slot")
    assert raised.value.transient and not raised.value.may_have_committed
