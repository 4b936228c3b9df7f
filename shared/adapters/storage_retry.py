"""Every call to Azure Storage survives transient faults: retried where repeating is safe, and
where a write may have committed before its answer was lost, decided by reading it back.

Why a layer of our own: the SDKs do not retry what matters most here. `azure-data-tables` uses
azure-core's `RetryPolicy`, which retries a failed connection or read only for the methods in its
allow-list (`HEAD GET PUT DELETE OPTIONS TRACE`, `RetryPolicyBase._is_method_retryable` in
`azure/core/pipeline/policies/_retry.py`), so an entity insert or a table batch (both POST) whose
connection was reset is raised as is: the SDK cannot know whether it committed. The product can,
because every write it makes is conditional or harmless to repeat:

- reads, upserts, unconditional updates, queue sends and receives: plain retry. A queue send
  repeated after a lost answer may leave a duplicate message; invoicing is idempotent (the booking's
  conditional state machine), so a duplicate is a no-op, and a claim's message is never lost;
- conditional writes (an insert, which fails if the row exists; an update or a transaction with
  `IfNotModified` on the ETag it read): each carries a fresh `WriteId` property. When a try failed
  ambiguously and a later try answers "already exists" (409 `EntityAlreadyExists`) or "changed"
  (412 `UpdateConditionNotSatisfied`), the row is read back: if it carries our `WriteId`, our
  earlier try committed and the write succeeded; otherwise someone else wrote it, and the conflict
  is raised as the SDK raised it (the caller re-reads and decides, as it always did). Error codes:
  `TableErrorCode` in `azure/data/tables/_error.py`, mapped there to `ResourceExistsError` and
  `ResourceModifiedError`;
- deletes: a 404 after an ambiguous try means done (the earlier try deleted it).

Transient: azure-core's `ServiceRequestError` / `ServiceResponseError` (connection refused or
reset, `IncompleteRead`, timeouts), any HTTP 408/500/502/503/504 (Azurite answers 500 under load),
and the raw `requests`/`urllib3`/socket errors in case one escapes unwrapped. Tries are bounded,
spaced by exponential backoff with full jitter; when they run out, `StorageUnavailableError`. After
one call ran out, calls in the next `outage_seconds` make one try each (no backoff), so a real
outage costs each caller one failed request, not a backoff sequence each: the HTTP API answers 503
quickly instead of timing out while it undoes its claims.

The clients are built with the SDK's own retries off (`shared/adapters/storage.py`), so tries do
not multiply.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import requests
import urllib3.exceptions
from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    IncompleteReadError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, UpdateMode
from azure.storage.queue import QueueClient

from shared.adapters.http_sessions import prepare_parts_serially
from shared.domain.errors import StorageUnavailableError
from shared.telemetry import get_logger

log = get_logger("bookings.storage_retry")

T = TypeVar("T")

WRITE_ID = "WriteId"
"""Property every conditional write carries: a fresh id per write, to recognise it when read back."""

NEVER_MATCHING_ETAG = "W/\"datetime'1970-01-01T00%3A00%3A00.0000000Z'\""
"""Handed out for a row our committed write touched but someone has changed since: a later
conditional write with it fails (412) and the caller re-reads, never overwriting their change."""

TRANSIENT_STATUSES = frozenset({408, 500, 502, 503, 504})
CONFLICT_STATUSES = frozenset({404, 409, 412})

_TRANSIENT_RAW = (
    ConnectionError,  # ConnectionResetError, ConnectionRefusedError, BrokenPipeError, ...
    TimeoutError,
    http.client.IncompleteRead,
    http.client.RemoteDisconnected,
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.TimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    """Worth trying again: the storage account may answer next time."""
    if isinstance(exc, ServiceRequestError | ServiceResponseError | IncompleteReadError):
        return True
    if isinstance(exc, HttpResponseError):
        status = exc.status_code
        if status is None:  # no answer at all: a body cut off, or a connection error underneath
            return _caused_by_transient(exc)
        return status in TRANSIENT_STATUSES
    if isinstance(exc, _TRANSIENT_RAW):
        return True
    return _caused_by_transient(exc)


def _caused_by_transient(exc: BaseException) -> bool:
    seen = 0
    cause = exc.__cause__ or exc.__context__
    while cause is not None and seen < 5:
        if isinstance(cause, (*_TRANSIENT_RAW, ServiceRequestError, ServiceResponseError)):
            return True
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return False


def is_conflict(exc: BaseException) -> bool:
    """A definite "no" from storage: exists (409), changed (412), gone (404)."""
    if isinstance(exc, ResourceExistsError | ResourceModifiedError | ResourceNotFoundError):
        return True
    return isinstance(exc, HttpResponseError) and exc.status_code in CONFLICT_STATUSES


def _describe(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    return f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "")


@dataclass(frozen=True)
class StoragePolicy:
    """How often and how patiently to try one storage call."""

    attempts: int = 6
    base_delay: float = 0.1
    max_delay: float = 4.0
    outage_seconds: float = 5.0

    def delay(self, failed_attempt: int, rng: Callable[[], float]) -> float:
        """Exponential backoff with full jitter: uniform in [0, min(max, base * 2^(n-1)))."""
        return rng() * min(self.max_delay, self.base_delay * (2 ** (failed_attempt - 1)))


class StorageRetry:
    """Runs storage calls under a `StoragePolicy`. Thread-safe; one per storage client is typical.

    `sleep`, `rng` and `clock` are injectable so the unit tests run without waiting.
    """

    def __init__(
        self,
        policy: StoragePolicy | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy or StoragePolicy()
        self._sleep = sleep
        self._rng = rng
        self._clock = clock
        self._lock = threading.Lock()
        self._outage_until = 0.0
        self.retries = 0
        """Tries repeated after a transient fault, so far (tests and operations read it)."""

    def call(self, operation: Callable[[], T], what: str) -> T:
        """`operation()` until it answers or fails for good; transient faults are retried."""
        attempts = 1 if self._clock() < self._outage_until else self.policy.attempts
        for attempt in range(1, attempts + 1):
            try:
                result = operation()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if attempt == attempts:
                    with self._lock:
                        self._outage_until = self._clock() + self.policy.outage_seconds
                    log.warning(
                        "Storage call %s failed %d time(s), last with %s; giving up",
                        what,
                        attempt,
                        _describe(exc),
                        extra={"outcome": "storage_unavailable", "errorCode": type(exc).__name__},
                    )
                    raise StorageUnavailableError(what, attempt, _describe(exc)) from exc
                with self._lock:
                    self.retries += 1
                log.debug("Storage call %s: %s, trying again", what, _describe(exc))
                self._sleep(self.policy.delay(attempt, self._rng))
                continue
            if attempts == 1 and self._outage_until:
                with self._lock:
                    self._outage_until = 0.0  # storage answers again: back to full retries
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def write(self, send: Callable[[], T], committed: Callable[[BaseException], T], what: str) -> T:
        """A write whose retry may meet its own earlier, committed try.

        After a try failed transiently, a conflict (404/409/412) from a later try is handed to
        `committed(conflict)`, which reads the row back and returns the write's result if our try
        committed, or raises the conflict if someone else's write is what storage holds.
        """
        ambiguous = False

        def attempt() -> T:
            nonlocal ambiguous
            try:
                return send()
            except Exception as exc:
                if is_transient(exc):
                    ambiguous = True
                    raise
                if ambiguous and is_conflict(exc):
                    return committed(exc)
                raise

        return self.call(attempt, what)


DEFAULT_RETRY = StorageRetry()
"""The retry of the product's storage clients (one per process: an outage seen once is seen by all)."""


# -- tables ------------------------------------------------------------------------------------


def _stamped(entity: Any, write_id: str) -> dict[str, Any]:
    return {**dict(entity), WRITE_ID: write_id}


def _is_conditional(kwargs: dict[str, Any]) -> bool:
    return kwargs.get("match_condition") == MatchConditions.IfNotModified and bool(kwargs.get("etag"))


C = TypeVar("C", TableClient, QueueClient)


class _ResilientClient(Generic[C]):
    """An SDK client and the retry its calls go through; what it does not offer itself is passed
    to the SDK client as is."""

    kind = ""  # "table" or "queue", for the names of the calls in errors and logs

    def __init__(self, client: C, retry: StorageRetry | None = None) -> None:
        self.client = client
        self.retry = retry or DEFAULT_RETRY

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def _name(self) -> str:
        raise NotImplementedError

    def _what(self, operation: str) -> str:
        return f"{operation} on {self.kind} {self._name()}"


class ResilientTable(_ResilientClient[TableClient]):
    """A `TableClient` whose calls survive transient faults (see the module docstring).

    Offers the `TableClient` methods the adapters use, with the same arguments, results and
    conflict errors; anything else is passed to the SDK client as is.
    """

    kind = "table"

    @property
    def table_name(self) -> str:
        return str(self.client.table_name)

    def _name(self) -> str:
        return self.table_name

    # -- reads and idempotent writes ----------------------------------------------------------

    def create_table(self) -> Any:
        return self.retry.call(self.client.create_table, self._what("create_table"))

    def get_entity(self, partition_key: str, row_key: str, **kwargs: Any) -> Any:
        return self.retry.call(
            lambda: self.client.get_entity(partition_key=partition_key, row_key=row_key, **kwargs),
            self._what("get_entity"),
        )

    def query_entities(self, query_filter: str, **kwargs: Any) -> ResilientPaged:
        return ResilientPaged(
            lambda token: self.client.query_entities(query_filter, **kwargs).by_page(
                continuation_token=token
            ),
            self.retry,
            self._what("query_entities"),
        )

    def list_entities(self, **kwargs: Any) -> ResilientPaged:
        return ResilientPaged(
            lambda token: self.client.list_entities(**kwargs).by_page(continuation_token=token),
            self.retry,
            self._what("list_entities"),
        )

    def upsert_entity(self, entity: Any, mode: UpdateMode = UpdateMode.MERGE, **kwargs: Any) -> Any:
        return self.retry.call(
            lambda: self.client.upsert_entity(entity, mode=mode, **kwargs), self._what("upsert_entity")
        )

    # -- conditional writes -------------------------------------------------------------------

    def create_entity(self, entity: Any, **kwargs: Any) -> Any:
        stamped = _stamped(entity, uuid.uuid4().hex)
        return self.retry.write(
            lambda: self.client.create_entity(stamped, **kwargs),
            lambda conflict: self._ours_or_raise(stamped, conflict),
            self._what("create_entity"),
        )

    def update_entity(self, entity: Any, mode: UpdateMode = UpdateMode.MERGE, **kwargs: Any) -> Any:
        if not _is_conditional(kwargs):  # last writer wins: repeating it is harmless
            return self.retry.call(
                lambda: self.client.update_entity(entity, mode=mode, **kwargs), self._what("update_entity")
            )
        stamped = _stamped(entity, uuid.uuid4().hex)
        return self.retry.write(
            lambda: self.client.update_entity(stamped, mode=mode, **kwargs),
            lambda conflict: self._ours_or_raise(stamped, conflict),
            self._what("update_entity"),
        )

    def delete_entity(self, partition_key: str, row_key: str, **kwargs: Any) -> None:
        def gone(conflict: BaseException) -> None:
            if isinstance(conflict, ResourceNotFoundError):
                return None  # our earlier try deleted it
            raise conflict  # 412: the row is still there, changed by someone else

        self.retry.write(
            lambda: self.client.delete_entity(partition_key=partition_key, row_key=row_key, **kwargs),
            gone,
            self._what("delete_entity"),
        )

    def submit_transaction(self, operations: Sequence[Any], **kwargs: Any) -> list[Any]:
        """One entity group transaction (atomic: all of it committed, or none)."""
        write_id = uuid.uuid4().hex
        stamped = [_stamp_operation(operation, write_id) for operation in operations]
        return self._submit(stamped, write_id, kwargs, ambiguous=False)

    def _submit(
        self, operations: list[tuple[Any, ...]], write_id: str, kwargs: dict[str, Any], *, ambiguous: bool
    ) -> list[Any]:
        def send() -> list[Any]:
            return list(self.client.submit_transaction(operations, **kwargs))  # type: ignore[arg-type]

        def committed(conflict: BaseException) -> list[Any]:
            return self._transaction_outcome(operations, write_id, kwargs, conflict)

        if ambiguous:  # resubmitting the rest of a transaction whose earlier try may have committed
            return self.retry.call(lambda: _resolve_conflict(send, committed), self._what("transaction"))
        return self.retry.write(send, committed, self._what("transaction"))

    def _transaction_outcome(
        self,
        operations: list[tuple[Any, ...]],
        write_id: str,
        kwargs: dict[str, Any],
        conflict: BaseException,
    ) -> list[Any]:
        """After an ambiguous try, a retry met a conflict: did the earlier try commit?"""
        own = [at for at, operation in enumerate(operations) if _stamp_of(operation) == write_id]
        if not own:
            # Upserts and deletes only: an unconditional delete answered 404 is done; send the rest.
            at = getattr(conflict, "index", -1)
            if (
                isinstance(conflict, HttpResponseError)
                and conflict.status_code == 404
                and 0 <= at < len(operations)
                and str(operations[at][0]).lower() == "delete"
            ):
                rest = operations[:at] + operations[at + 1 :]
                results = self._submit(rest, write_id, kwargs, ambiguous=True) if rest else []
                return [*results[:at], {}, *results[at:]]
            raise conflict
        rows = {at: self._read(operations[at][1]) for at in own}
        if not any(row is not None and row.get(WRITE_ID) == write_id for row in rows.values()):
            raise conflict  # none of it is ours: a real concurrent change
        log.info(
            "A transaction on %s whose answer was lost had committed",
            self.table_name,
            extra={"outcome": "ambiguous_write_committed"},
        )
        results: list[Any] = [{} for _ in operations]
        for at, row in rows.items():
            ours = row is not None and row.get(WRITE_ID) == write_id
            results[at] = {
                "etag": row.metadata.get("etag") if ours and row is not None else NEVER_MATCHING_ETAG
            }
        return results

    def _ours_or_raise(self, entity: dict[str, Any], conflict: BaseException) -> dict[str, Any]:
        row = self._read(entity)
        if row is None or row.get(WRITE_ID) != entity[WRITE_ID]:
            raise conflict
        log.info(
            "A write to %s whose answer was lost had committed",
            self.table_name,
            extra={"outcome": "ambiguous_write_committed"},
        )
        return {"etag": row.metadata.get("etag")}

    def _read(self, entity: Any) -> Any | None:
        try:
            return self.get_entity(str(entity["PartitionKey"]), str(entity["RowKey"]))
        except ResourceNotFoundError:
            return None


def _resolve_conflict(send: Callable[[], T], committed: Callable[[BaseException], T]) -> T:
    try:
        return send()
    except Exception as exc:
        if is_conflict(exc):
            return committed(exc)
        raise


def _stamp_operation(operation: Any, write_id: str) -> tuple[Any, ...]:
    """Conditional creates and updates carry the transaction's `WriteId`; the rest is sent as is."""
    kind = str(operation[0]).lower()
    options = operation[2] if len(operation) > 2 else {}
    if kind == "create" or (kind == "update" and _is_conditional(dict(options))):
        return (operation[0], _stamped(operation[1], write_id), *operation[2:])
    return tuple(operation)


def _stamp_of(operation: tuple[Any, ...]) -> str | None:
    entity = operation[1]
    return entity.get(WRITE_ID) if isinstance(entity, dict) else None


class ResilientPaged:
    """Query results, fetched page by page; a page whose fetch failed transiently is fetched
    again from the same continuation token (a page fetch changes nothing)."""

    def __init__(
        self, pages_from: Callable[[Any], Iterator[Iterator[Any]]], retry: StorageRetry, what: str
    ) -> None:
        self._pages_from = pages_from
        self._retry = retry
        self._what = what

    def by_page(self, continuation_token: Any = None) -> ResilientPages:
        pages = self._retry.call(lambda: self._pages_from(continuation_token), self._what)
        return ResilientPages(pages, self._retry, self._what)

    def __iter__(self) -> Iterator[Any]:
        for page in self.by_page():
            yield from page


class ResilientPages:
    """An SDK page iterator whose `next()` is retried; azure-core's `PageIterator` keeps its
    continuation token when a fetch fails, so the same page is asked for again."""

    def __init__(self, pages: Iterator[Iterator[Any]], retry: StorageRetry, what: str) -> None:
        self._pages = pages
        self._retry = retry
        self._what = what

    @property
    def continuation_token(self) -> Any:
        return getattr(self._pages, "continuation_token", None)

    def __iter__(self) -> ResilientPages:
        return self

    def __next__(self) -> Iterator[Any]:
        page = self._retry.call(self._fetch, self._what)
        if page is None:
            raise StopIteration
        return iter(page)

    def _fetch(self) -> list[Any] | None:
        page = next(self._pages, None)
        return None if page is None else list(page)


# -- queues ------------------------------------------------------------------------------------


class ResilientQueue(_ResilientClient[QueueClient]):
    """A `QueueClient` whose calls survive transient faults.

    Sends and receives are retried (a repeated send may leave a duplicate: harmless, invoicing is
    idempotent; a receive whose answer was lost leaves its messages invisible until their
    visibility timeout ends, then they come back). A delete answered 404 after an ambiguous try is
    done. Anything not offered here is passed to the SDK client as is.
    """

    kind = "queue"

    @property
    def queue_name(self) -> str:
        return str(self.client.queue_name)

    def _name(self) -> str:
        return self.queue_name

    def create_queue(self, **kwargs: Any) -> None:
        self.retry.call(lambda: self.client.create_queue(**kwargs), self._what("create_queue"))

    def send_message(self, content: Any, **kwargs: Any) -> Any:
        return self.retry.call(
            lambda: self.client.send_message(content, **kwargs), self._what("send_message")
        )

    def receive_messages(self, **kwargs: Any) -> list[Any]:
        return self.retry.call(
            lambda: list(self.client.receive_messages(**kwargs)), self._what("receive_messages")
        )

    def peek_messages(self, **kwargs: Any) -> list[Any]:
        return self.retry.call(lambda: list(self.client.peek_messages(**kwargs)), self._what("peek_messages"))

    def update_message(self, message: Any, pop_receipt: str | None = None, **kwargs: Any) -> Any:
        return self.retry.call(
            lambda: self.client.update_message(message, pop_receipt, **kwargs), self._what("update_message")
        )

    def delete_message(self, message: Any, pop_receipt: str | None = None, **kwargs: Any) -> None:
        def gone(conflict: BaseException) -> None:
            if isinstance(conflict, ResourceNotFoundError):
                return None  # our earlier try deleted it
            raise conflict

        self.retry.write(
            lambda: self.client.delete_message(message, pop_receipt, **kwargs),
            gone,
            self._what("delete_message"),
        )

    def get_queue_properties(self, **kwargs: Any) -> Any:
        return self.retry.call(
            lambda: self.client.get_queue_properties(**kwargs), self._what("get_queue_properties")
        )

    def clear_messages(self, **kwargs: Any) -> None:
        self.retry.call(lambda: self.client.clear_messages(**kwargs), self._what("clear_messages"))


def resilient_table(table: TableClient | ResilientTable, retry: StorageRetry | None = None) -> ResilientTable:
    """`table` with retries (a table already wrapped keeps its own retry unless one is given)."""
    if isinstance(table, ResilientTable):
        return table if retry is None else ResilientTable(table.client, retry)
    return ResilientTable(prepare_parts_serially(table), retry)


def resilient_queue(queue: QueueClient | ResilientQueue, retry: StorageRetry | None = None) -> ResilientQueue:
    if isinstance(queue, ResilientQueue):
        return queue if retry is None else ResilientQueue(queue.client, retry)
    return ResilientQueue(queue, retry)
