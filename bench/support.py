"""What the benchmarks share: bookings to seed, seeding that survives storage hiccups, the stacks
they run (Azurite, the sandbox, devhost in process or as processes) and bounded waits.

The benchmark's own seeding must not fail a 10-minute `make bench` on one connection reset from
Azurite, so every seeding call goes through `retry_storage`, which repeats transient storage
errors (connection resets, timeouts, 5xx) and treats "already exists" on a repeated create as
done: the first attempt committed before its answer was lost. The app's own storage code is not
wrapped: what it does on such errors is part of what is measured.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError
from azure.storage.queue import QueueClient

from devhost.azurite import start_azurite
from devhost.processes import HostProcesses
from sandbox import SandboxHandle, running_sandbox
from shared.adapters.booking_entities import BOOKINGS_TABLE
from shared.adapters.booking_index import BOOKING_ROWS_BELOW
from shared.adapters.booking_store import BOOKING_ROWS, CREATES_PER_TRANSACTION, creation_operations
from shared.adapters.invoice_queue import INVOICE_QUEUE
from shared.adapters.storage import client_options
from shared.domain.models import Booking, BookingStatus, PriceType
from tests.unit.builders import make_booking

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")

NEVER = "0 0 0 1 1 *"
"""An NCRONTAB that does not fire during a benchmark (timers stay out of the figures)."""

SEED_ATTEMPTS = 8
SEED_THREADS = 2
"""Azurite runs transactions one at a time: more threads add no speed (2, 4 and 8 seed alike here)
but, with a big table, make it reset connections."""

# -- bookings -----------------------------------------------------------------------------------

PEOPLE = (
    ("Bob Kelly", "Bob.Kelly@TailspinToys.com"),
    ("Aiko Tanaka", "AIKO.TANAKA@fabrikam.com"),
    ("Marie Dubois", "marie.dubois@wideworldimporters.com"),
    ("Siobhán O'Brien", "o'brien@fourthcoffee.com"),
)
SERVICES = (
    ("svc-bento", "Catered bento", PriceType.FIXED_PRICE, 10.0),
    ("svc-pt", "Personal training", PriceType.HOURLY, 60.0),
)
HISTORY_START = datetime(2023, 1, 2, 8, 0, tzinfo=UTC)
"""Early enough that the 100,000 bookings of the portal benchmark, 15 minutes apart, have all ended
(until late 2025): only ended bookings are listed as Unbilled."""


def listed_booking(business: str, number: int, status: BookingStatus) -> Booking:
    """A booking of a big table (500 customers, 15 minutes apart): the list benchmarks' rows."""
    begin = HISTORY_START + timedelta(minutes=15 * number)
    return make_booking(
        business,
        number,
        status=status,
        customer_name=f"Customer {number % 500}",
        customer_email=f"customer{number % 500}@example.com",
        start=begin,
        end=begin + timedelta(minutes=30),
        updated_at=HISTORY_START,
        status_changed_at=HISTORY_START,
    )


def invoiceable_booking(business: str, number: int) -> Booking:
    """A Queued booking whose customer and service are linked in the sandbox's Business Central."""
    name, email = PEOPLE[number % len(PEOPLE)]
    service_id, service_name, price_type, price = SERVICES[number % len(SERVICES)]
    begin = datetime(2026, 2, 2, 8, 0, tzinfo=UTC) + timedelta(minutes=15 * number)
    return make_booking(
        business,
        number,
        status=BookingStatus.QUEUED,
        service_id=service_id,
        service_name=service_name,
        customer_name=name,
        customer_email=email,
        staff_member_ids=(),
        start=begin,
        end=begin + timedelta(hours=1),
        price=price,
        price_type=price_type,
        request_id="bench",
    )


# -- seeding ------------------------------------------------------------------------------------


def transient(exc: BaseException) -> bool:
    """A storage error worth repeating: the connection or the service hiccupped."""
    if isinstance(exc, ServiceRequestError | ServiceResponseError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, HttpResponseError) and not isinstance(exc, TableTransactionError):
        return exc.status_code is None or exc.status_code >= 500 or exc.status_code == 408
    if isinstance(exc, TableTransactionError):
        return exc.status_code is not None and exc.status_code >= 500
    return isinstance(exc, AzureError) and not isinstance(exc, HttpResponseError)


def _already_there(exc: BaseException) -> bool:
    if isinstance(exc, ResourceExistsError):
        return True
    return isinstance(exc, TableTransactionError) and exc.status_code == 409


def retry_storage(
    call: Callable[[], T], *, attempts: int = SEED_ATTEMPTS, what: str = "storage call"
) -> T | None:
    """`call()`, repeated on transient storage errors with backoff (0.5 s doubling, at most 10 s).
    A create that meets "already exists" after a failed attempt was committed by that attempt:
    None, done."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:
            if attempt > 1 and _already_there(exc):
                return None
            if not transient(exc) or attempt == attempts:
                raise
            print(f"  ({what}: {type(exc).__name__}, attempt {attempt} of {attempts}; retrying)", flush=True)
            time.sleep(min(10.0, 0.5 * 2 ** (attempt - 1)))
    raise AssertionError("unreachable")  # pragma: no cover


def bookings_table(connection: str) -> TableClient:
    service = TableServiceClient.from_connection_string(connection, **client_options())
    table = service.get_table_client(BOOKINGS_TABLE)
    with contextlib.suppress(ResourceExistsError):
        retry_storage(table.create_table, what="create the Bookings table")
    return table


def seed(connection: str, bookings: Iterable[Booking], threads: int = SEED_THREADS) -> float:
    """Insert bookings with their list index rows (one partition per transaction, 50 bookings each),
    `threads` transactions at a time, each repeated on transient errors; returns seconds."""
    table = bookings_table(connection)
    by_business: dict[str, list[Booking]] = {}
    for booking in bookings:
        by_business.setdefault(booking.business_id, []).append(booking)
    batches = [
        [op for booking in group[i : i + CREATES_PER_TRANSACTION] for op in creation_operations(booking)]
        for group in by_business.values()
        for i in range(0, len(group), CREATES_PER_TRANSACTION)
    ]
    started = time.perf_counter()

    def submit(operations: list[Any]) -> None:
        retry_storage(lambda: table.submit_transaction(operations), what="seeding transaction")

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(submit, batches))
    return time.perf_counter() - started


def send_all(send: Callable[[T], Any], items: Sequence[T], threads: int = 16) -> None:
    """`send(item)` for each item, `threads` at a time, each repeated on transient storage errors."""
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda item: retry_storage(lambda: send(item), what="seeding send"), items))


# -- waiting ------------------------------------------------------------------------------------


def wait_until(
    condition: Callable[[], T], *, timeout: float, interval: float = 0.5, what: str = "condition"
) -> T:
    """Poll `condition` until it returns something truthy; that value, or `TimeoutError` after
    `timeout` seconds. A transient storage error in the condition counts as "not yet"."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except Exception as exc:
            if not transient(exc):
                raise
            value = None  # type: ignore[assignment]
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached within {timeout:.0f} s")
        time.sleep(interval)


def count_settled(table: TableClient, business: str) -> tuple[int, int]:
    """(Invoiced, Failed) bookings of one business: two key-only queries, cheap enough to poll
    while the app works (the benchmark's own polling must not eat the CPU it measures)."""
    counts = []
    for status in (BookingStatus.INVOICED, BookingStatus.FAILED):
        rows = table.query_entities(
            f"PartitionKey eq @pk and {BOOKING_ROWS} and Status eq @status",
            parameters={"pk": business, "bookingRowsBelow": BOOKING_ROWS_BELOW, "status": str(status)},
            select=["RowKey"],
        )
        counts.append(sum(1 for _ in rows))
    return counts[0], counts[1]


@dataclass
class Progress:
    """Invoiced/Failed counts over time, polled until all are settled or the time is up."""

    samples: list[tuple[float, int]]
    invoiced: int
    failed: int
    started: float
    ended: float

    def first_done(self) -> float:
        return next((t for t, done in self.samples if done > 0), self.started)

    def rate_since(self, since: float) -> float:
        """Invoices per second from `since` to the last invoice counted."""
        base = max((done for t, done in self.samples if t <= since), default=0)
        return (self.invoiced - base) / max(self.ended - since, 1e-9)


def follow_invoicing(
    table: TableClient,
    business: str,
    count: int,
    *,
    timeout: float,
    interval: float = 0.5,
    pending: Callable[[], int] | None = None,
) -> Progress:
    """Poll until `count` bookings are Invoiced or Failed, or `timeout` seconds have passed.

    With `pending` (the invoice queue's approximate depth), each poll is that one request, and the
    bookings are counted only when it reaches 0: counting them on every poll is a table scan that
    would take CPU from the app being measured on the same machine."""
    started = time.perf_counter()
    samples: list[tuple[float, int]] = []
    done = failed = 0
    last_change = started
    while done + failed < count and time.perf_counter() - started < timeout:
        time.sleep(interval)
        with contextlib.suppress(AzureError):
            waiting = pending() if pending is not None else 0
            if waiting:
                now_done, failed = count - waiting, 0
            else:
                now_done, failed = count_settled(table, business)
            if now_done != done:
                last_change = time.perf_counter()
            done = now_done
            samples.append((time.perf_counter(), done))
    # The last invoice landed between the last two samples: count it at the last change seen.
    return Progress(samples, done, failed, started, last_change if samples else time.perf_counter())


def queue_depth(connection: str, queue_name: str = INVOICE_QUEUE) -> Callable[[], int]:
    """The queue's approximate message count (in-flight messages included), one request a call."""
    queue = QueueClient.from_connection_string(connection, queue_name, **client_options("queue"))

    def depth() -> int:
        return int(queue.get_queue_properties().approximate_message_count or 0)

    return depth


# -- stacks -------------------------------------------------------------------------------------


@contextlib.contextmanager
def storage(*, fresh: bool = False) -> Iterator[str]:
    """The Azurite `make bench` started (AZURITE_CONNECTION_STRING), or (none given, or `fresh`:
    a benchmark that fills a table of its own) one of our own, stopped by pid afterwards."""
    given = os.environ.get("AZURITE_CONNECTION_STRING")
    if given and not fresh:
        yield given
        return
    with start_azurite() as azurite:
        yield azurite.connection_string


@contextlib.contextmanager
def invoicing_stack() -> Iterator[tuple[str, SandboxHandle, dict[str, str]]]:
    """Azurite, the sandbox (Entra ID, Graph, Business Central) in process, and app settings
    pointing at both, with the timers silenced."""
    with storage() as connection, running_sandbox(seed=1) as sandbox:
        settings = {
            **sandbox.settings,
            "AzureWebJobsStorage": connection,
            "BOOKINGS_TIME_ZONE": "Europe/Amsterdam",
            "CUSTOMER_TEMPLATE": "CT-BOOKINGS",
            "ITEM_TEMPLATE": "IT-BOOKINGS",
            "SYNC_SCHEDULE": NEVER,
            "RECONCILE_SCHEDULE": NEVER,
        }
        yield connection, sandbox, settings


def warm_links() -> None:
    """The steady state: customers and items linked already (the first invoice of each did it)."""
    from shared import bootstrap

    container = bootstrap.container()
    for name, email in PEOPLE:
        container.customer_links.resolve(email, name, None)
    for service_id, service_name, _, _ in SERVICES:
        container.item_links.resolve(service_id, service_name)


def bc_figures(sandbox: SandboxHandle) -> dict[str, int]:
    """What the sandbox's Business Central saw: requests, 429s, most running and queued at once."""
    counters = sandbox.app.counters.snapshot().get("bc", {})
    concurrency = sandbox.app.faults.stats()["concurrency"]["bc"]
    return {
        "bcRequests": int(counters.get("total", 0)),
        "bc429": int(counters.get("statuses", {}).get("429", 0)),
        "bcMaxRunning": int(concurrency["maxRunning"]),
        "bcMaxQueued": int(concurrency["maxQueued"]),
    }


def spawn_hosts(count: int, env: dict[str, str], *, ready_timeout: float = 120.0) -> HostProcesses:
    """`count` devhost processes (the app with host.json, settings from `env` only), each on a free
    port; waits until each is ready (bounded), or stops them all and raises."""
    work = Path(tempfile.mkdtemp(prefix="bench-hosts-"))
    (work / "none.json").write_text("{}", encoding="utf-8")
    env = {k: v for k, v in env.items() if not k.startswith("AzureWebJobsStorage__")}
    hosts = HostProcesses(work)
    try:
        for _ in range(count):
            hosts.spawn(
                env,
                "--settings",
                str(work / "none.json"),
                "--drain-seconds",
                "0",
                ready_timeout=ready_timeout,
            )
    except BaseException:
        hosts.stop()
        raise
    return hosts


API_SETTINGS = {
    "ENTRA_TENANT_ID": "11111111-2222-3333-4444-555555555555",
    "ENTRA_CLIENT_ID": "66666666-7777-8888-9999-000000000000",
    "ENTRA_CLIENT_SECRET": "bench-placeholder",
    "BC_COMPANY_ID": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
}
"""Settings the HTTP surface validates; nothing in Entra ID or Business Central is called."""


@contextlib.contextmanager
def http_host(
    connection: str, state: Path, blueprints: Sequence[Any], settings: dict[str, str]
) -> Iterator[Any]:
    """The given blueprints (HTTP routes only: no queue function drains what is measured) in an
    in-process devhost on a free port, with a fresh composition root."""
    import azure.functions as func

    from devhost.config import HostConfig
    from devhost.host import DevHost
    from shared import bootstrap

    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    for blueprint in blueprints:
        app.register_functions(blueprint)
    os.environ.update({"AzureWebJobsStorage": connection, **API_SETTINGS, **settings})
    bootstrap.reset_container()
    host = DevHost(
        app,
        config=HostConfig.load(ROOT / "host.json"),
        settings=dict(os.environ),
        app_directory=ROOT,
        state_directory=state,
        port=0,
    )
    host.start()
    try:
        yield host
    finally:
        host.stop()
        bootstrap.reset_container()


def print_json(figures: dict[str, Any]) -> None:
    """The benchmark's last line: what `bench/results.py` reads."""
    print(json.dumps(figures), flush=True)


def host_storage_calls(base_url: str, env: dict[str, str]) -> dict[str, dict[str, float]]:
    """The storage round trips a devhost process made so far, by kind (its status endpoint)."""
    import requests

    headers = {"x-functions-key": env["DEVHOST_MASTER_KEY"]} if env.get("DEVHOST_MASTER_KEY") else {}
    status = requests.get(f"{base_url}/admin/host/status", headers=headers, timeout=30).json()
    return dict(status.get("storageCalls", {}))


def calls_between(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], per: int
) -> dict[str, dict[str, float]]:
    """Storage calls and their wall ms between two snapshots, per unit (`per` invoices)."""
    per = max(per, 1)
    figures = {}
    for key, now in sorted(after.items()):
        then = before.get(key, {"calls": 0, "ms": 0.0})
        calls = now["calls"] - then["calls"]
        if calls:
            figures[key] = {"calls": round(calls / per, 3), "ms": round((now["ms"] - then["ms"]) / per, 2)}
    return figures


def print_storage_calls(label: str, figures: dict[str, dict[str, float]]) -> None:
    """One line per kind of storage call: calls and wall ms per invoice."""
    print(f"\nStorage round trips per invoice, {label}")
    print(f"{'kind':<48} {'calls':>7} {'wall ms':>8}")
    for key, value in figures.items():
        print(f"{key:<48} {value['calls']:>7.3f} {value['ms']:>8.2f}")
    total = sum(v["calls"] for v in figures.values())
    print(f"{'all':<48} {total:>7.3f} {sum(v['ms'] for v in figures.values()):>8.2f}")
