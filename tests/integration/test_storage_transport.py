"""The storage clients' transport against Azurite: table transactions without thread pools, and
the count of storage round trips by kind (what the benchmarks divide per invoice)."""

from __future__ import annotations

import concurrent.futures
import uuid

import pytest
from azure.core import MatchConditions
from azure.data.tables import TableServiceClient, TableTransactionError, UpdateMode
from azure.storage.queue import QueueClient

from shared.adapters.http_sessions import SerialMultipartPipeline
from shared.adapters.storage import STORAGE_CALLS, client_options
from shared.adapters.storage_retry import resilient_table


def test_a_transaction_prepares_and_reads_its_parts_without_a_thread_pool(
    storage_connection_string: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = TableServiceClient.from_connection_string(storage_connection_string, **client_options())
    table = resilient_table(service.get_table_client(unique_name))
    assert type(table.client._client._client._pipeline) is SerialMultipartPipeline
    table.create_table()
    pk = uuid.uuid4().hex

    def no_pool(*_: object, **__: object) -> None:
        raise AssertionError("a table transaction started a thread pool")

    monkeypatch.setattr(concurrent.futures.ThreadPoolExecutor, "__init__", no_pool)
    created = table.submit_transaction([("create", {"PartitionKey": pk, "RowKey": k}) for k in "ab"])
    assert len(created) == 2 and all(result["etag"] for result in created)
    condition = {"mode": UpdateMode.REPLACE, "match_condition": MatchConditions.IfNotModified}
    # Entities written in one transaction may share an ETag (it is the batch's timestamp), so the
    # refused part carries an ETag from a day no write of this test can have: never b's.
    never_written = "W/\"datetime'2000-01-01T00%3A00%3A00.0000000Z'\""
    stale = [
        ("update", {"PartitionKey": pk, "RowKey": "a", "N": 1}, {**condition, "etag": created[0]["etag"]}),
        ("update", {"PartitionKey": pk, "RowKey": "b", "N": 1}, {**condition, "etag": never_written}),
    ]
    with pytest.raises(TableTransactionError) as refused:  # the second part's ETag is not b's
        table.submit_transaction(stale)
    assert refused.value.status_code == 412
    assert "N" not in table.get_entity(pk, "a")  # all or nothing, as the service promises


def test_storage_calls_are_counted_by_table_queue_and_kind(
    storage_connection_string: str, unique_name: str
) -> None:
    service = TableServiceClient.from_connection_string(storage_connection_string, **client_options())
    table = service.get_table_client(unique_name)
    queue = QueueClient.from_connection_string(
        storage_connection_string, unique_name, **client_options("queue")
    )
    table.create_table()
    queue.create_queue()
    before = STORAGE_CALLS.snapshot()
    pk = uuid.uuid4().hex
    table.submit_transaction([("create", {"PartitionKey": pk, "RowKey": k}) for k in "ab"])
    table.get_entity(pk, "a")
    table.upsert_entity({"PartitionKey": pk, "RowKey": "c"})
    queue.send_message("x")
    [message] = queue.receive_messages(max_messages=1)
    queue.delete_message(message)
    after = STORAGE_CALLS.snapshot()

    def calls(key: str) -> float:
        return after.get(key, {}).get("calls", 0) - before.get(key, {}).get("calls", 0)

    assert calls(f"table {unique_name} transaction") == 1
    assert calls(f"table {unique_name} read") == 1
    assert calls(f"table {unique_name} write") == 1
    assert calls(f"queue {unique_name} send") == 1
    assert calls(f"queue {unique_name} receive") == 1
    assert calls(f"queue {unique_name} delete") == 1
