"""The storage retry layer: which faults are transient, bounded backoff, and how a write whose answer
was lost is settled by reading it back (ours: success; someone else's: the conflict)."""

from __future__ import annotations

import http.client
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import urllib3.exceptions
from azure.core import MatchConditions
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    IncompleteReadError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableEntity, TableTransactionError, UpdateMode

from shared.adapters.storage_retry import (
    NEVER_MATCHING_ETAG,
    WRITE_ID,
    ResilientQueue,
    ResilientTable,
    StoragePolicy,
    StorageRetry,
    is_transient,
)
from shared.domain.errors import StorageUnavailableError


def status_error(status: int, kind: type[HttpResponseError] = HttpResponseError) -> HttpResponseError:
    error = kind(message=f"HTTP {status}")
    error.status_code = status
    return error


def transaction_error(status: int, index: int = 0) -> TableTransactionError:
    error = TableTransactionError(message=f"{index}:failed", index=index)
    error.status_code = status
    return error


RESET = ServiceResponseError(
    "Connection aborted.", error=ConnectionResetError(104, "Connection reset by peer")
)


@pytest.mark.parametrize(
    "error",
    [
        ServiceRequestError("connection refused"),
        RESET,
        IncompleteReadError("IncompleteRead(10 bytes read)"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError("timed out"),
        http.client.IncompleteRead(b"partial"),
        requests.ConnectionError("reset"),
        requests.exceptions.ChunkedEncodingError("IncompleteRead"),
        urllib3.exceptions.ProtocolError("Connection aborted."),
        status_error(500),
        status_error(503),
        status_error(408),
        transaction_error(500),
    ],
    ids=lambda error: type(error).__name__,
)
def test_transient_faults(error: BaseException) -> None:
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        status_error(409, ResourceExistsError),
        status_error(412, ResourceModifiedError),
        status_error(404, ResourceNotFoundError),
        status_error(403, ClientAuthenticationError),
        status_error(400),
        transaction_error(409),
        ValueError("a bug"),
    ],
    ids=lambda error: f"{type(error).__name__}",
)
def test_definite_answers_are_not_retried(error: BaseException) -> None:
    assert not is_transient(error)


def retry(
    attempts: int = 4, slept: list[float] | None = None, now: list[float] | None = None
) -> StorageRetry:
    clock = now if now is not None else [0.0]
    return StorageRetry(
        StoragePolicy(attempts=attempts, base_delay=0.1, max_delay=1.0, outage_seconds=5.0),
        sleep=(slept if slept is not None else []).append,
        rng=lambda: 0.5,
        clock=lambda: clock[0],
    )


def failing(times: int, error: BaseException, result: Any = "ok") -> Callable[[], Any]:
    calls = itertools.count()

    def operation() -> Any:
        if next(calls) < times:
            raise error
        return result

    return operation


def test_transient_faults_are_retried_with_exponential_backoff_and_full_jitter() -> None:
    slept: list[float] = []
    assert retry(attempts=5, slept=slept).call(failing(3, RESET), "op") == "ok"
    assert slept == pytest.approx([0.05, 0.1, 0.2])  # rng 0.5 x 0.1, 0.2, 0.4


def test_backoff_is_capped() -> None:
    policy = StoragePolicy(base_delay=0.1, max_delay=1.0)
    assert policy.delay(10, lambda: 0.999) < 1.0


def test_after_the_last_try_storage_is_unavailable_and_the_next_calls_fail_fast() -> None:
    now = [0.0]
    slept: list[float] = []
    storage = retry(attempts=3, slept=slept, now=now)
    with pytest.raises(StorageUnavailableError) as raised:
        storage.call(failing(99, RESET), "get_entity on table Bookings")
    assert raised.value.attempts == 3 and "ServiceResponseError" in raised.value.cause
    attempts: list[int] = []

    def down() -> None:
        attempts.append(1)
        raise RESET

    with pytest.raises(StorageUnavailableError):
        storage.call(down, "op")
    assert len(attempts) == 1  # an outage: one try, no backoff
    assert storage.call(lambda: "back", "op") == "back"  # storage answers: full retries again
    assert storage.call(failing(2, RESET), "op") == "ok"
    now[0] = 100.0


def test_a_definite_answer_is_raised_at_once() -> None:
    slept: list[float] = []
    with pytest.raises(ResourceExistsError):
        retry(slept=slept).call(failing(1, status_error(409, ResourceExistsError)), "op")
    assert slept == []


# -- a fake table: rows with ETags, and faults that strike before or after a write commits ----------


class FakeTable:
    table_name = "Fake"

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.etags: dict[tuple[str, str], str] = {}
        self.faults: list[str] = []  # per call, in order: "before" (not committed) or "after" (committed)
        self.calls: list[str] = []
        self._etag = itertools.count(1)

    def _fault(self, when: str) -> None:
        if self.faults and self.faults[0] == when:
            self.faults.pop(0)
            raise RESET

    def _write(self, name: str, apply: Callable[[], Any]) -> Any:
        self.calls.append(name)
        self._fault("before")
        result = apply()
        self._fault("after")
        return result

    def _put(self, entity: dict[str, Any]) -> dict[str, Any]:
        key = (entity["PartitionKey"], entity["RowKey"])
        self.rows[key] = dict(entity)
        self.etags[key] = f"W/{next(self._etag)}"
        return {"etag": self.etags[key]}

    def _check(self, entity: dict[str, Any], kind: str, options: dict[str, Any]) -> None:
        key = (entity["PartitionKey"], entity["RowKey"])
        if kind == "create" and key in self.rows:
            raise status_error(409, ResourceExistsError)
        if kind in ("update", "delete"):
            if key not in self.rows:
                raise status_error(404, ResourceNotFoundError)
            if options.get("match_condition") == MatchConditions.IfNotModified and options.get(
                "etag"
            ) != self.etags.get(key):
                raise status_error(412, ResourceModifiedError)

    def get_entity(self, partition_key: str, row_key: str, **_: Any) -> TableEntity:
        self.calls.append("get_entity")
        key = (partition_key, row_key)
        if key not in self.rows:
            raise status_error(404, ResourceNotFoundError)
        entity = TableEntity(self.rows[key])
        entity._metadata = {"etag": self.etags[key]}  # what the SDK sets on a read entity
        return entity

    def create_entity(self, entity: dict[str, Any], **_: Any) -> dict[str, Any]:
        def apply() -> dict[str, Any]:
            self._check(entity, "create", {})
            return self._put(entity)

        return self._write("create_entity", apply)

    def update_entity(
        self, entity: dict[str, Any], mode: UpdateMode = UpdateMode.MERGE, **options: Any
    ) -> Any:
        def apply() -> dict[str, Any]:
            self._check(entity, "update", options)
            return self._put(entity)

        return self._write("update_entity", apply)

    def upsert_entity(self, entity: dict[str, Any], mode: UpdateMode = UpdateMode.MERGE, **_: Any) -> Any:
        return self._write("upsert_entity", lambda: self._put(entity))

    def delete_entity(self, partition_key: str, row_key: str, **options: Any) -> None:
        def apply() -> None:
            entity = {"PartitionKey": partition_key, "RowKey": row_key}
            self._check(entity, "delete", options)
            del self.rows[(partition_key, row_key)]

        self._write("delete_entity", apply)

    def submit_transaction(self, operations: list[Any], **_: Any) -> list[dict[str, Any]]:
        def apply() -> list[dict[str, Any]]:
            for at, operation in enumerate(operations):
                options = operation[2] if len(operation) > 2 else {}
                try:
                    self._check(operation[1], operation[0], options)
                except HttpResponseError as exc:
                    raise transaction_error(exc.status_code or 0, at) from None
            results: list[dict[str, Any]] = []
            for kind, entity, *_rest in operations:
                if kind == "delete":
                    del self.rows[(entity["PartitionKey"], entity["RowKey"])]
                    results.append({})
                else:
                    results.append(self._put(entity))
            return results

        return self._write("submit_transaction", apply)


@pytest.fixture
def fake() -> FakeTable:
    return FakeTable()


def table(fake: FakeTable) -> ResilientTable:
    return ResilientTable(fake, retry(attempts=4))  # type: ignore[arg-type]


def row(pk: str = "p", rk: str = "r", **values: Any) -> dict[str, Any]:
    return {"PartitionKey": pk, "RowKey": rk, **values}


def test_an_insert_that_committed_before_its_answer_was_lost_is_ours(fake: FakeTable) -> None:
    fake.faults = ["after"]
    metadata = table(fake).create_entity(row(Claim="mine"))
    assert metadata["etag"] == fake.etags[("p", "r")]
    assert fake.calls == ["create_entity", "create_entity", "get_entity"]


def test_an_insert_that_lost_to_someone_else_is_their_row(fake: FakeTable) -> None:
    fake.faults = ["before"]
    original = fake.create_entity
    raced = []

    def create_after_a_rival(entity: dict[str, Any], **options: Any) -> Any:
        if not raced:  # the rival's insert lands while ours is in the air
            raced.append(1)
            fake.rows[("p", "r")] = row(Claim="theirs")
            fake.etags[("p", "r")] = "W/rival"
        return original(entity, **options)

    fake.create_entity = create_after_a_rival  # type: ignore[method-assign]
    with pytest.raises(ResourceExistsError):
        table(fake).create_entity(row(Claim="mine"))
    assert fake.rows[("p", "r")]["Claim"] == "theirs"


def test_an_existing_row_without_any_fault_is_a_conflict_without_a_read(fake: FakeTable) -> None:
    fake.create_entity(row())
    fake.calls.clear()
    with pytest.raises(ResourceExistsError):
        table(fake).create_entity(row())
    assert fake.calls == ["create_entity"]


def test_a_conditional_update_that_committed_is_ours_and_a_real_change_is_a_conflict(fake: FakeTable) -> None:
    etag = fake.create_entity(row(State="Unbilled"))["etag"]
    fake.faults = ["after"]
    condition = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
    metadata = table(fake).update_entity(row(State="Queued"), mode=UpdateMode.REPLACE, **condition)
    assert metadata["etag"] == fake.etags[("p", "r")] and fake.rows[("p", "r")]["State"] == "Queued"

    fake.update_entity(row(State="Invoiced"))  # someone else, since we read it
    fake.faults = ["before"]  # our try fails, the retry meets their change
    with pytest.raises(ResourceModifiedError):
        table(fake).update_entity(
            row(State="Unbilled"),
            mode=UpdateMode.REPLACE,
            etag=metadata["etag"],
            match_condition=MatchConditions.IfNotModified,
        )
    assert fake.rows[("p", "r")]["State"] == "Invoiced"


def test_every_conditional_write_carries_a_fresh_write_id(fake: FakeTable) -> None:
    resilient = table(fake)
    resilient.create_entity(row())
    first = fake.rows[("p", "r")][WRITE_ID]
    etag = fake.etags[("p", "r")]
    resilient.update_entity(row(), etag=etag, match_condition=MatchConditions.IfNotModified)
    assert fake.rows[("p", "r")][WRITE_ID] != first
    resilient.upsert_entity(row(rk="plain"))
    assert WRITE_ID not in fake.rows[("p", "plain")]  # an upsert is repeated as is


def test_a_delete_answered_404_after_a_lost_answer_is_done(fake: FakeTable) -> None:
    fake.create_entity(row())
    fake.faults = ["after"]
    table(fake).delete_entity("p", "r")
    assert ("p", "r") not in fake.rows
    with pytest.raises(ResourceNotFoundError):  # without an earlier try, 404 is the caller's answer
        table(fake).delete_entity("p", "r")


def test_a_transaction_that_committed_is_ours_with_each_rows_etag(fake: FakeTable) -> None:
    etag = fake.create_entity(row(rk="a", State="Unbilled"))["etag"]
    fake.faults = ["after"]
    condition = {"mode": UpdateMode.REPLACE, "etag": etag, "match_condition": MatchConditions.IfNotModified}
    results = table(fake).submit_transaction(
        [
            ("update", row(rk="a", State="Queued"), condition),
            ("create", row(rk="b")),
            ("upsert", row(rk="ix")),
        ]
    )
    assert [r.get("etag") for r in results] == [fake.etags[("p", "a")], fake.etags[("p", "b")], None]
    assert fake.calls.count("submit_transaction") == 2


def test_a_transaction_meeting_a_real_change_raises_and_a_row_changed_since_gets_a_stale_etag(
    fake: FakeTable,
) -> None:
    etag = fake.create_entity(row(rk="a"))["etag"]
    fake.update_entity(row(rk="a", By="someone else"))
    fake.faults = ["before"]
    condition = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
    with pytest.raises(TableTransactionError):
        table(fake).submit_transaction([("update", row(rk="a"), condition)])

    # Ours committed, then someone changed one of its rows before we read it back.
    fake.rows.clear()
    fake.faults = ["after"]
    original = fake.submit_transaction

    def then_changed(operations: list[Any], **options: Any) -> Any:
        try:
            return original(operations, **options)
        finally:
            if ("p", "b") in fake.rows and fake.rows[("p", "b")].get(WRITE_ID):
                fake.rows[("p", "b")] = row(rk="b", By="someone else")

    fake.submit_transaction = then_changed  # type: ignore[method-assign]
    results = table(fake).submit_transaction([("create", row(rk="a")), ("create", row(rk="b"))])
    assert results[0]["etag"] == fake.etags[("p", "a")]
    assert results[1]["etag"] == NEVER_MATCHING_ETAG  # a later conditional write re-reads instead


def test_a_delete_only_transaction_that_meets_its_own_delete_sends_the_rest(fake: FakeTable) -> None:
    for key in "abc":
        fake.create_entity(row(rk=key))
    fake.faults = ["before"]
    del fake.rows[("p", "a")]  # gone meanwhile (as if our lost try had deleted it)
    table(fake).submit_transaction([("delete", row(rk=k)) for k in "abc"])
    assert fake.rows == {}


class Pages:
    """A page iterator like azure-core's: a failed fetch keeps its continuation token."""

    def __init__(self, pages: list[list[int]], fail_at: set[int]) -> None:
        self.pages = pages
        self.fail_at = fail_at
        self.continuation_token: int | None = None
        self.fetches = 0

    def __iter__(self) -> Iterator[Iterator[int]]:
        return self

    def __next__(self) -> Iterator[int]:
        at = self.continuation_token or 0
        if at >= len(self.pages):
            raise StopIteration
        self.fetches += 1
        if self.fetches in self.fail_at:
            raise RESET
        self.continuation_token = at + 1 if at + 1 < len(self.pages) else len(self.pages)
        return iter(self.pages[at])


def test_a_query_page_that_failed_is_fetched_again_never_skipped_or_doubled() -> None:
    pages = Pages([[1, 2], [3, 4], [5]], fail_at={2, 3})

    class Client:
        table_name = "Fake"

        def query_entities(self, _filter: str, **_: Any) -> Any:
            class Paged:
                def by_page(self, continuation_token: Any = None) -> Pages:
                    return pages

            return Paged()

    resilient = ResilientTable(Client(), retry())  # type: ignore[arg-type]
    assert list(resilient.query_entities("PartitionKey eq @pk")) == [1, 2, 3, 4, 5]


def test_queue_sends_are_retried_and_a_delete_met_by_its_own_earlier_try_is_done() -> None:
    sent: list[str] = []
    deleted: list[str] = []

    class Queue:
        queue_name = "q"

        def __init__(self) -> None:
            self.send_faults = ["after"]
            self.delete_faults = ["after"]

        def send_message(self, content: str, **_: Any) -> str:
            sent.append(content)
            if self.send_faults:
                self.send_faults.pop()
                raise RESET
            return "id"

        def delete_message(self, message: str, pop_receipt: str | None = None, **_: Any) -> None:
            if message in deleted:
                raise status_error(404, ResourceNotFoundError)
            deleted.append(message)
            if self.delete_faults:
                self.delete_faults.pop()
                raise RESET

    queue = ResilientQueue(Queue(), retry())  # type: ignore[arg-type]
    assert queue.send_message("hello") == "id"
    assert sent == ["hello", "hello"]  # a duplicate at worst: invoicing is idempotent
    queue.delete_message("m1", "receipt")
    assert deleted == ["m1"]
