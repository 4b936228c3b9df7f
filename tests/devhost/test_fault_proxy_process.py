"""The storage fault proxy in a process of its own (`python -m devhost.fault_proxy`): the fault
tests set its plan and read its counters over its control endpoint, so both must really act."""

from __future__ import annotations

import pytest
from azure.core.exceptions import AzureError
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient

from devhost.fault_proxy import REFUSED, FaultPlan, StorageFaultsProcess


def test_a_plan_set_for_the_queue_endpoint_refuses_the_queue_only_and_the_counters_say_so(
    storage_connection_string: str, unique_name: str
) -> None:
    with StorageFaultsProcess(storage_connection_string, FaultPlan()) as faults:
        assert faults.connection_string != storage_connection_string  # every endpoint through it
        tables = TableServiceClient.from_connection_string(faults.connection_string)
        queue = QueueClient.from_connection_string(
            faults.connection_string, unique_name, retry_total=0, connection_timeout=5
        )
        queue.create_queue()
        tables.create_table(unique_name)

        faults.set_plan(FaultPlan(refuse_all=True), endpoint="queue")

        with pytest.raises(AzureError):
            queue.send_message("lost")
        tables.get_table_client(unique_name).upsert_entity({"PartitionKey": "p", "RowKey": "r"})
        assert faults.counters("queue").get(REFUSED, 0) > 0
        assert faults.counters("table").get(REFUSED, 0) == 0
        assert faults.counters("table")["passed"] >= 2  # create_table and the upsert went through
        assert faults.counters()["requests"] >= faults.counters("table")["requests"] + 1

        faults.set_plan(FaultPlan())
        queue.send_message("kept")
        direct = QueueClient.from_connection_string(storage_connection_string, unique_name)
        assert [message.content for message in direct.peek_messages(max_messages=5)] == ["kept"]


def test_the_process_is_gone_after_stop(storage_connection_string: str) -> None:
    faults = StorageFaultsProcess(storage_connection_string, FaultPlan()).start()
    process = faults._process
    assert process is not None and process.poll() is None
    faults.stop()
    assert process.poll() == 0  # stopped cleanly (SIGTERM), not killed, no abort at exit


def test_the_process_stops_when_its_parent_goes(storage_connection_string: str) -> None:
    faults = StorageFaultsProcess(storage_connection_string, FaultPlan()).start()
    process = faults._process
    assert process is not None and process.stdin is not None
    process.stdin.close()  # what a parent killed outright leaves behind
    assert process.wait(timeout=10) == 0
    faults.stop()
