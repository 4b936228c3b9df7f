"""The alert queries against the telemetry of a real run: devhost + sandbox + Azurite.

Locally the app's log records carry the same fields Application Insights turns into
customDimensions, so each alert's filter, applied to the records of a real run, must select
exactly what the alert is about. It must not select those records before the event happens, and
it must select them after: a successful sync for the heartbeat, the bookings that turned Failed
(with their errorCode) for the failed-booking alert, and a poisoned message for the poison alert.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.storage.queue import QueueServiceClient

from devhost.host import DevHost
from sandbox import SandboxHandle
from shared import bootstrap
from shared.adapters.invoice_queue import INVOICE_QUEUE, POISON_QUEUE, InvoiceQueue
from shared.domain.models import BookingStatus, InvoiceMessage, booking_key
from tests.e2e.stack import LogCapture, Stack, clear_product_storage, reset_sandbox, stack_settings
from tests.helpers import wait_for
from tests.infra.templates import function_args, load

pytestmark = pytest.mark.e2e

POISON_PREFIX = "Message has reached MaxDequeueCount"
_STANDARD = set(vars(logging.LogRecord("x", logging.INFO, __file__, 0, "", None, None))) | {"message"}

# The filters of alerts.bicep, as the tests below apply them to log records. The first test pins
# them to the query text, so the two cannot drift apart.
HEARTBEAT_FILTER = (
    'tostring(customDimensions.outcome) == "succeeded" and isnotempty(customDimensions.windowEnd)'
)
FAILED_FILTER = 'tostring(customDimensions.outcome) == "failed" and isnotempty(customDimensions.bookingKey)'
POISON_FILTERS = (
    f'message startswith "{POISON_PREFIX}"',
    'project timestamp, source = "host", poisonDepth = 1',
    "isnotempty(customDimensions.poisonDepth)",
    'project timestamp, source = "sync_bookings", poisonDepth = toint(customDimensions.poisonDepth)',
    "summarize arg_max(timestamp, source, poisonDepth)",
    "| where poisonDepth > 0",
)


def dimensions(record: logging.LogRecord) -> dict[str, Any]:
    """The record's structured fields: what Application Insights stores as customDimensions."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _present(value: Any) -> bool:
    return value is not None and str(value) != ""


def heartbeat_rows(records: list[logging.LogRecord]) -> list[dict[str, Any]]:
    rows = [dimensions(r) for r in records]
    return [d for d in rows if str(d.get("outcome")) == "succeeded" and _present(d.get("windowEnd"))]


def failed_rows(records: list[logging.LogRecord]) -> list[dict[str, Any]]:
    rows = [dimensions(r) for r in records]
    return [
        d
        for d in rows
        if str(d.get("outcome")) == "failed"
        and _present(d.get("bookingKey"))
        and _present(d.get("errorCode"))
    ]


def poison_rows(records: list[logging.LogRecord]) -> list[str]:
    """The poison alert's result: the latest evidence (a host move, depth 1; or a backlog line) if > 0."""
    latest: tuple[str, int] | None = None
    for record in records:
        depth = dimensions(record).get("poisonDepth")
        if record.getMessage().startswith(POISON_PREFIX):
            latest = ("host", 1)
        elif _present(depth):
            latest = ("sync_bookings", int(depth))
    return [latest[0]] if latest is not None and latest[1] > 0 else []


def test_the_filters_applied_here_are_the_alert_queries() -> None:
    alerts = load("modules/alerts.bicep")
    queries = alerts.variables
    assert HEARTBEAT_FILTER in queries["heartbeatQuery"]
    assert FAILED_FILTER in queries["failedBookingsQuery"]
    assert "isnotempty(errorCode)" in queries["failedBookingsQuery"]
    for part in POISON_FILTERS:
        assert part in queries["poisonQuery"]
    rules = {r.symbol: r for r in alerts.of_type("Microsoft.Insights/scheduledQueryRules")}
    (heartbeat,) = rules["heartbeatAlert"].get("properties/criteria/allOf")
    assert function_args(heartbeat["query"], "format")[0] == "heartbeatQuery"


def _poison_ready_message(connection_string: str, business_id: str) -> str:
    """An invoice message already received `maxDequeueCount` times: the host's next receive poisons it."""
    queue = InvoiceQueue(QueueServiceClient.from_connection_string(connection_string))
    queue.ensure_queues()
    key = booking_key(business_id, "alert-test/poison+=")
    queue.send(InvoiceMessage(business_id, key, "alert-test"))
    raw = QueueServiceClient.from_connection_string(connection_string).get_queue_client(INVOICE_QUEUE)
    for _ in range(5):
        message = wait_for(
            lambda: next(iter(raw.receive_messages(max_messages=1, visibility_timeout=30)), None),
            timeout=10,
            what="the test message to be visible",
        )
        raw.update_message(message, pop_receipt=message.pop_receipt, visibility_timeout=0)
    return key


@pytest.fixture
def alert_stack(
    shared_sandbox: SandboxHandle,
    storage_connection_string: str,
    start_product_host: Callable[..., DevHost],
) -> Iterator[Stack]:
    """The product against the sandbox, started with one message on the queue that is due for poison."""
    clock = reset_sandbox(shared_sandbox)
    clear_product_storage(storage_connection_string)
    settings = stack_settings(shared_sandbox, storage_connection_string)
    business_id = settings["BOOKINGS_BUSINESS_IDS"].split(",")[0].strip()
    _poison_ready_message(storage_connection_string, business_id)
    logs = LogCapture()
    logs.install()
    try:
        host = start_product_host(settings, clock=clock.now)
        bootstrap.container().clock = clock.now
        stack = Stack(shared_sandbox, host, settings, storage_connection_string, clock, logs)
        yield stack
        stack.close()
    finally:
        logs.remove()


def test_alert_filters_select_exactly_what_they_alert_on_in_a_real_run(alert_stack: Stack) -> None:
    stack = alert_stack
    business_id = stack.business_ids[0]

    # Poison: the host moves the over-dequeued message and logs the line the alert matches.
    wait_for(lambda: "host" in poison_rows(stack.logs.records), timeout=30, what="the poison log line")

    # Heartbeat: nothing before the first sync (the alert would fire), a row per business after.
    assert heartbeat_rows(stack.logs.records) == []
    assert stack.run_function("sync_bookings") == ["Succeeded"]
    beats = heartbeat_rows(stack.logs.records)
    assert {row["businessId"] for row in beats} == set(stack.business_ids)

    # The timer reports the poison queue's depth each run: the alert stays on until it is drained.
    assert poison_rows(stack.logs.records) == ["sync_bookings"]
    # Drained: the next run reports an empty poison queue, and the alert resolves on it.
    poison = QueueServiceClient.from_connection_string(stack.connection_string).get_queue_client(POISON_QUEUE)
    poison.clear_messages()
    assert stack.run_function("sync_bookings") == ["Succeeded"]
    assert poison_rows(stack.logs.records) == []

    # Failed bookings: select good ones and ones that must fail, through the HTTP API.
    stored = stack.bookings(business_id)
    no_customer = [b for b in stored if not b.has_customer]
    good = [b for b in stored if b.has_customer and b.customer_email][:2]
    assert no_customer and len(good) == 2
    selection = [*good, no_customer[0]]
    assert failed_rows(stack.logs.records) == []
    response = stack.api("POST", "invoice-requests", json={"bookingKeys": [b.key for b in selection]})
    assert response.status_code == 202, response.text

    settled = {BookingStatus.INVOICED, BookingStatus.FAILED}

    def all_settled() -> list[Any] | None:
        current = [stack.store.get(business_id, b.key) for b in selection]
        return current if all(b is not None and b.status in settled for b in current) else None

    final = wait_for(all_settled, timeout=90, interval=0.2, what="the selection to be invoiced or failed")
    failed = {b.key: b.error_code for b in final if b.status is BookingStatus.FAILED}
    invoiced = {b.key for b in final if b.status is BookingStatus.INVOICED}
    assert failed and invoiced

    def alert_rows() -> dict[str, Any] | None:
        rows = {row["bookingKey"]: row["errorCode"] for row in failed_rows(stack.logs.records)}
        return rows if set(rows) >= set(failed) else None

    rows = wait_for(alert_rows, timeout=10, what="a failed-booking log line per Failed booking")
    assert rows == failed, "the alert must name every Failed booking with its errorCode, and nothing else"
    assert not set(rows) & invoiced
