"""Storage clients built from settings: a connection string locally, the managed identity in Azure."""

from __future__ import annotations

import contextlib
from typing import Any

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


def client_options(**options: Any) -> dict[str, Any]:
    """`CLIENT_DEFAULTS`, the transport's environment read once (`http_sessions.py`), then `options`."""
    return {**CLIENT_DEFAULTS, **sdk_transport_options(), **options}


def table_service_client(storage: StorageSettings, **options: Any) -> TableServiceClient:
    """`options` go to the SDK client (e.g. `retry_total`, `connection_timeout`) over `CLIENT_DEFAULTS`."""
    options = client_options(**options)
    if storage.connection_string is not None:
        return TableServiceClient.from_connection_string(storage.connection_string.reveal(), **options)
    return TableServiceClient(
        endpoint=str(storage.table_service_uri), credential=_credential(storage), **options
    )


def queue_service_client(storage: StorageSettings, **options: Any) -> QueueServiceClient:
    options = client_options(**options)
    if storage.connection_string is not None:
        return QueueServiceClient.from_connection_string(storage.connection_string.reveal(), **options)
    return QueueServiceClient(
        account_url=str(storage.queue_service_uri), credential=_credential(storage), **options
    )


def create_table_if_missing(table: TableClient | ResilientTable) -> None:
    """Create the table on first use; one that exists already is fine (another worker made it)."""
    with contextlib.suppress(ResourceExistsError):
        table.create_table()
