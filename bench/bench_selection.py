"""Benchmark: selecting every Unbilled booking in one HTTP request, and listing a big table.

    .venv/bin/python bench/bench_selection.py [--count 10000] [--table 100000]

Starts its own Azurite and runs the real HTTP API (functions.http_triggers) in an in-process devhost:

1. `--count` Unbilled bookings, then `POST /api/invoice-requests {"all": true}` once: wall time,
   bookings claimed and messages queued per second;
2. the floor: the same claims and sends with bare SDK calls, as fast as they go: the candidates
   read (one partition query), one conditional batch per 100 bookings (each booking an update
   with `If-Match`), then one raw queue send each, both with the API's concurrency (API_FANOUT
   threads);
3. `GET /api/invoice-requests/{id}` for that request (one point read per booking);
4. the table grown to `--table` bookings (the rest Invoiced, as years of history are), then the
   first page of `GET /api/bookings` (Unbilled, the default) and of a filtered list, each the
   median of a few calls. With the selected bookings now Queued, few Unbilled remain: the sparse
   case, where a scan has the most rows to skip.

It prints a table, then one JSON line (`{"bench": "selection", ...}`). Nothing is asserted: the
numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from azure.core import MatchConditions  # noqa: E402
from azure.core.exceptions import ResourceExistsError  # noqa: E402
from azure.data.tables import TableServiceClient, UpdateMode  # noqa: E402
from azure.storage.queue import QueueServiceClient  # noqa: E402

from bench import support  # noqa: E402
from bench.support import listed_booking  # noqa: E402
from devhost.host import DevHost  # noqa: E402
from shared.adapters.booking_entities import booking_to_entity  # noqa: E402
from shared.adapters.invoice_queue import InvoiceQueue  # noqa: E402
from shared.bootstrap import API_FANOUT  # noqa: E402
from shared.domain.models import BookingStatus, InvoiceMessage, booking_key  # noqa: E402

BUSINESS = "bench@contoso.com"
FLOOR_TABLE = "BenchSelectionFloor"


def seed(connection: str, first: int, count: int, status: BookingStatus) -> float:
    """Insert bookings `first`.. with their list index rows; returns seconds (see bench/support.py)."""
    numbers = range(first, first + count)
    return support.seed(connection, (listed_booking(BUSINESS, n, status) for n in numbers))


@contextlib.contextmanager
def api_host(connection: str, state: Path, max_selection: int) -> Iterator[DevHost]:
    """The HTTP API alone in a devhost (no queue function drains the messages being counted)."""
    from functions.http_triggers import bp

    settings = {"BOOKINGS_BUSINESS_IDS": BUSINESS, "MAX_SELECTION": str(max_selection)}
    with support.http_host(connection, state, [bp], settings) as host:
        yield host


PHASES = {"readMs": "read candidates", "claimMs": "claims", "recordMs": "request rows", "sendMs": "sends"}


@contextlib.contextmanager
def selection_phases() -> Iterator[dict[str, int]]:
    """Where the selection's time went, from the app's own log line (the API runs in this process)."""
    found: dict[str, int] = {}

    class Phases(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            for field, name in PHASES.items():
                if isinstance(getattr(record, field, None), int):
                    found[name] = getattr(record, field)

    handler, logger = Phases(), logging.getLogger("bookings.selection")
    level = logger.level
    logger.setLevel(logging.INFO)  # the line is INFO; the bench logs nothing else
    logger.addHandler(handler)
    try:
        yield found
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def raw_claims(connection: str, count: int) -> float:
    """The floor's claims: the same `count` booking rows (seeded first in a table of their own, not
    timed) read with one partition query and updated conditionally (`If-Match` on each row's ETag,
    the state set to Queued), 100 to a batch, API_FANOUT batches at a time; returns seconds."""
    table = TableServiceClient.from_connection_string(connection).get_table_client(FLOOR_TABLE)
    with contextlib.suppress(ResourceExistsError):
        table.create_table()
    partition = BUSINESS
    rows = [booking_to_entity(listed_booking(BUSINESS, n, BookingStatus.UNBILLED)) for n in range(count)]
    for first in range(0, count, 100):
        table.submit_transaction([("create", row) for row in rows[first : first + 100]])
    started = time.perf_counter()
    found = list(table.query_entities("PartitionKey eq @pk", parameters={"pk": partition}))
    condition = {"mode": UpdateMode.REPLACE, "match_condition": MatchConditions.IfNotModified}

    def claim(chunk: list[Any]) -> None:
        table.submit_transaction(
            [
                ("update", {**row, "Status": "Queued"}, {**condition, "etag": row.metadata["etag"]})
                for row in chunk
            ]
        )

    with ThreadPoolExecutor(API_FANOUT) as pool:
        list(pool.map(claim, [found[first : first + 100] for first in range(0, len(found), 100)]))
    return time.perf_counter() - started


def raw_sends(connection: str, count: int) -> float:
    """The floor's sends: `count` base64 messages on a fresh queue, API_FANOUT at a time."""
    queue = InvoiceQueue(
        QueueServiceClient.from_connection_string(connection), f"floor-{uuid.uuid4().hex[:8]}"
    )
    queue.ensure_queues()
    messages = [InvoiceMessage(BUSINESS, booking_key(BUSINESS, str(n)), "floor") for n in range(count)]
    started = time.perf_counter()
    with ThreadPoolExecutor(API_FANOUT) as pool:
        list(pool.map(queue.send, messages))
    return time.perf_counter() - started


def signed_in(base: str) -> dict[str, str]:
    """devhost's session cookie for a caller with both app roles (its mock /.auth/login/aad form)."""
    form = {"userDetails": "bench@contoso.com", "userRoles": "Bookings.Read\nBookings.Invoice"}
    response = requests.post(f"{base}/.auth/login/aad", data=form, allow_redirects=False, timeout=60)
    assert response.status_code == 302, response.status_code
    return response.cookies.get_dict()


def timed_get(
    url: str, params: dict[str, Any], runs: int = 5, cookies: dict[str, str] | None = None
) -> tuple[float, int]:
    """Median seconds of `runs` GETs, and how many items the first page held."""
    durations, items = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        response = requests.get(url, params=params, cookies=cookies, timeout=300)
        durations.append(time.perf_counter() - started)
        response.raise_for_status()
        items = len(response.json()["value"])
    return statistics.median(durations), items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=10_000, help="Unbilled bookings selected at once")
    parser.add_argument(
        "--table", type=int, default=100_000, help="bookings in the table for the list timing"
    )
    args = parser.parse_args(argv)
    count, table_size = args.count, max(args.table, args.count)

    with support.storage(fresh=True) as connection, tempfile.TemporaryDirectory() as state:
        seed_unbilled = seed(connection, 0, count, BookingStatus.UNBILLED)
        with api_host(connection, Path(state), max_selection=max(count, 1)) as host:
            api = f"{host.url}/api"
            requests.get(f"{api}/health", timeout=60).raise_for_status()  # builds the clients once
            cookies = signed_in(host.url)

            started, cpu = time.perf_counter(), time.process_time()
            with selection_phases() as phases:
                response = requests.post(
                    f"{api}/invoice-requests", json={"all": True}, cookies=cookies, timeout=600
                )
            select_s, select_cpu = time.perf_counter() - started, time.process_time() - cpu
            response.raise_for_status()
            accepted = response.json()["accepted"]
            depth = InvoiceQueue(QueueServiceClient.from_connection_string(connection)).depth()

            floor_claims_s = raw_claims(connection, count)
            floor_sends_s = raw_sends(connection, count)
            floor_s = floor_claims_s + floor_sends_s

            started = time.perf_counter()
            status = requests.get(f"{host.url}{response.headers['Location']}", cookies=cookies, timeout=600)
            status_s = time.perf_counter() - started
            status.raise_for_status()

            extra = table_size - count
            seed_history = seed(connection, count, extra, BookingStatus.INVOICED) if extra else 0.0
            unbilled_tail = 50  # the newest appointments, still Unbilled: what the first page shows
            seed(connection, table_size, unbilled_tail, BookingStatus.UNBILLED)
            list_s, list_items = timed_get(f"{api}/bookings", {"top": 100}, cookies=cookies)
            invoiced_s, invoiced_items = timed_get(
                f"{api}/bookings", {"top": 100, "status": "Invoiced"}, cookies=cookies
            )
            customer_s, customer_items = timed_get(
                f"{api}/bookings",
                {"top": 100, "status": "Invoiced", "customerEmail": "customer7@example.com"},
                cookies=cookies,
            )

    result = {
        "bench": "selection",
        "bookings": count,
        "accepted": accepted,
        "queueDepth": depth,
        "selectSeconds": round(select_s, 3),
        "selectPerSecond": round(count / select_s, 1),
        "selectCpuSeconds": round(select_cpu, 2),
        "floorSeconds": round(floor_s, 3),
        "floorPerSecond": round(count / floor_s, 1),
        "floorClaimsSeconds": round(floor_claims_s, 3),
        "floorSendsSeconds": round(floor_sends_s, 3),
        "fanout": API_FANOUT,
        "statusSeconds": round(status_s, 3),
        "tableBookings": table_size + 50,
        "listFirstPageSeconds": round(list_s, 4),
        "listFirstPageItems": list_items,
        "listInvoicedFirstPageSeconds": round(invoiced_s, 4),
        "listInvoicedFirstPageItems": invoiced_items,
        "listCustomerFirstPageSeconds": round(customer_s, 4),
        "listCustomerFirstPageItems": customer_items,
        "seedSeconds": round(seed_unbilled + seed_history, 1),
        "phasesMs": phases,
    }
    rows = [
        ("select all (POST, one request)", f"{select_s:.2f} s", f"{count / select_s:,.0f} bookings/s"),
        ("  accepted / on the queue", f"{accepted:,} / {depth:,}", ""),
        ("  CPU of the API's process", f"{select_cpu:.2f} s", ""),
        *[(f"  {name}", f"{ms / 1000:.2f} s", "") for name, ms in phases.items()],
        ("floor: bare claims and sends", f"{floor_s:.2f} s", f"{count / floor_s:,.0f} bookings/s"),
        ("  claims (read, 1 batch per 100)", f"{floor_claims_s:.2f} s", ""),
        (f"  sends x{API_FANOUT}", f"{floor_sends_s:.2f} s", ""),
        ("request status (GET)", f"{status_s:.2f} s", f"{count:,} items"),
        (
            f"list first page, {result['tableBookings']:,} in table",
            f"{list_s * 1000:.0f} ms",
            f"{list_items} Unbilled",
        ),
        ("  status=Invoiced", f"{invoiced_s * 1000:.0f} ms", f"{invoiced_items} items"),
        ("  status=Invoiced, one customer", f"{customer_s * 1000:.0f} ms", f"{customer_items} items"),
    ]
    width = max(len(row[0]) for row in rows)
    for name, value, rate in rows:
        print(f"{name:<{width}}  {value:>14}  {rate}")
    support.print_json(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
