"""Storage clients built from settings: a connection string locally, the managed identity in Azure."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any
from urllib.parse import unquote, urlsplit

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.queue import QueueServiceClient

from shared.adapters.http_sessions import sdk_transport_options
from shared.adapters.storage_retry import ResilientTable
from shared.settings import StorageSettings

TRANSACTION_LIMIT = 100
"""Entity group transactions: at most 100 operations, all in one partition, each entity once."""

CLIENT_DEFAULTS: dict[str, Any] = {
    # The SDK's retries are off: `storage_retry.py` retries every call itself, including the writes
    # the SDK would not retry, so tries never multiply.
    "retry_total": 0,
    # Without timeouts a connection that went quiet would hold a worker for the OS's TCP timeout.
    # A table page or a 100-operation batch answers in well under a second; 30 s is ample.
    "connection_timeout": 5,
    "read_timeout": 30,
}


def _credential(storage: StorageSettings) -> Any:
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if storage.managed_identity_client_id:
        return ManagedIdentityCredential(client_id=storage.managed_identity_client_id)
    return DefaultAzureCredential()


class StorageCalls:
    """Storage round trips of this process by kind, with their wall time: what an invoice costs in
    storage is counted, not guessed (the devhost's status endpoint shows them; `bench/` reads them).

    Counted through the SDKs' own request and response hooks (one dictionary update per call, under
    a lock), keyed `<service> <table or queue> <kind>`: for tables `transaction` (an entity group
    batch), `read` or `write`; for queues `receive`, `send`, `delete`, `update` or `other`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, list[float]] = {}

    def hooks(self, service: str) -> dict[str, Any]:
        def on_request(request: Any) -> None:
            request.context["storage_calls_started"] = time.perf_counter()

        def on_response(response: Any) -> None:
            started = response.context.get("storage_calls_started")
            elapsed = time.perf_counter() - started if started is not None else 0.0
            self.add(_call_kind(service, response.http_request), elapsed)

        return {"raw_request_hook": on_request, "raw_response_hook": on_response}

    def add(self, key: str, seconds: float) -> None:
        with self._lock:
            entry = self._calls.setdefault(key, [0, 0.0])
            entry[0] += 1
            entry[1] += seconds

    def snapshot(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {
                key: {"calls": count, "ms": round(seconds * 1000, 1)}
                for key, (count, seconds) in self._calls.items()
            }


STORAGE_CALLS = StorageCalls()


def _call_kind(service: str, request: Any) -> str:
    """`table Bookings transaction`, `queue bookings-to-invoice receive`, ... from a request."""
    method = request.method
    segments = [unquote(s) for s in urlsplit(request.url).path.split("/") if s]
    if service == "table":
        if segments and segments[-1] == "$batch":  # batch > changeset > operations: name the table
            return f"table {_table_name(_first_part(_first_part(request)))} transaction"
        return f"table {_table_name(request)} {'read' if method == 'GET' else 'write'}"
    messages = "messages" in segments
    name = segments[segments.index("messages") - 1] if messages and segments.index("messages") else "-"
    kinds = {"GET": "receive", "POST": "send", "DELETE": "delete", "PUT": "update"}
    return f"queue {name} {kinds.get(method, 'other') if messages else 'other'}"


def _first_part(request: Any) -> Any:
    parts = getattr(request, "multipart_mixed_info", None)
    return parts[0][0] if parts and parts[0] else None


def _table_name(request: Any) -> str:
    if request is None:
        return "-"
    segments = [s for s in urlsplit(request.url).path.split("/") if s]
    return unquote(segments[-1]).split("(")[0] if segments else "-"


def client_options(service: str = "table", **options: Any) -> dict[str, Any]:
    """`CLIENT_DEFAULTS`, the transport's environment read once (`http_sessions.py`), the call
    counting hooks (`StorageCalls`), then `options`."""
    return {**CLIENT_DEFAULTS, **sdk_transport_options(), **STORAGE_CALLS.hooks(service), **options}


def table_service_client(storage: StorageSettings, **options: Any) -> TableServiceClient:
    """`options` go to the SDK client (e.g. `retry_total`, `connection_timeout`) over `CLIENT_DEFAULTS`."""
    options = client_options(**options)
    if storage.connection_string is not None:
        return TableServiceClient.from_connection_string(storage.connection_string.reveal(), **options)
    return TableServiceClient(
        endpoint=str(storage.table_service_uri), credential=_credential(storage), **options
    )


def queue_service_client(storage: StorageSettings, **options: Any) -> QueueServiceClient:
    options = client_options("queue", **options)
    if storage.connection_string is not None:
        return QueueServiceClient.from_connection_string(storage.connection_string.reveal(), **options)
    return QueueServiceClient(
        account_url=str(storage.queue_service_uri), credential=_credential(storage), **options
    )


def create_table_if_missing(table: TableClient | ResilientTable) -> None:
    """Create the table on first use; one that exists already is fine (another worker made it)."""
    with contextlib.suppress(ResourceExistsError):
        table.create_table()
