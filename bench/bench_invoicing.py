"""Benchmark: bulk invoicing throughput against Business Central's limits.

    .venv/bin/python bench/bench_invoicing.py [--count 1000] [--latency 0.05] [--throttle 0.1]

Runs the real app in an in-process devhost (host.json's queue settings), the sandbox as Entra ID and
Business Central (50 ms per request, its 5-concurrent-requests limit on) and Azurite. The customers
and items already exist in Business Central and their links are known, which is the steady state
of a tenant: every invoice should then cost exactly one Business Central request.

It prints invoices per second next to the ceiling Business Central allows (5 in flight / latency,
100/s at 50 ms), Business Central requests per invoice (target 1.0), once without throttling and
once with a share of 429 answers, then one JSON line with the same figures. Nothing is asserted:
the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devhost.azurite import start_azurite  # noqa: E402
from devhost.config import HostConfig  # noqa: E402
from devhost.functions import load_app  # noqa: E402
from devhost.host import DevHost  # noqa: E402
from sandbox import SandboxHandle, running_sandbox  # noqa: E402
from shared import bootstrap  # noqa: E402
from shared.adapters.business_central import MAX_IN_FLIGHT  # noqa: E402
from shared.domain.models import Booking, BookingStatus, InvoiceMessage, PriceType, booking_key  # noqa: E402

PEOPLE = (
    ("Bob Kelly", "Bob.Kelly@TailspinToys.com"),
    ("Aiko Tanaka", "AIKO.TANAKA@fabrikam.com"),
    ("Marie Dubois", "marie.dubois@wideworldimporters.com"),
    ("Siobhán O'Brien", "o'brien@fourthcoffee.com"),
)
SERVICES = (("svc-bento", "Catered bento", PriceType.FIXED_PRICE, 10.0), ("svc-pt", "Personal training",
            PriceType.HOURLY, 60.0))  # fmt: skip
NEVER = "0 0 0 1 1 *"


def bookings(business_id: str, count: int) -> list[Booking]:
    start = datetime(2026, 2, 2, 8, 0, tzinfo=UTC)
    now = datetime.now(UTC)
    result = []
    for i in range(count):
        name, email = PEOPLE[i % len(PEOPLE)]
        service_id, service_name, price_type, price = SERVICES[i % len(SERVICES)]
        appointment = f"bench-{i}"
        begin = start + timedelta(minutes=15 * i)
        result.append(
            Booking(
                key=booking_key(business_id, appointment),
                business_id=business_id,
                appointment_id=appointment,
                service_id=service_id,
                service_name=service_name,
                customer_name=name,
                customer_email=email,
                customer_phone=None,
                staff_member_ids=(),
                start=begin,
                end=begin + timedelta(hours=1),
                price=price,
                price_type=price_type,
                status=BookingStatus.QUEUED,
                request_id="bench",
                updated_at=now,
                status_changed_at=now,
            )
        )
    return result


def warm_links() -> None:
    """The steady state: customers and items are linked already (the first invoice of each did it)."""
    container = bootstrap.container()
    for name, email in PEOPLE:
        container.customer_links.resolve(email, name, None)
    for service_id, service_name, _, _ in SERVICES:
        container.item_links.resolve(service_id, service_name)


def host_config(batch_size: int | None, threshold: int | None) -> HostConfig:
    """host.json as deployed, or with the queue batch settings overridden for exploration."""
    document = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    queues = document["extensions"]["queues"]
    if batch_size:
        queues["batchSize"] = batch_size
    if threshold is not None:
        queues["newBatchThreshold"] = threshold
    return HostConfig.from_document(document)


def run(
    sandbox: SandboxHandle,
    settings: dict[str, str],
    args: argparse.Namespace,
    throttle: float,
) -> dict[str, Any]:
    count, latency = args.count, args.latency
    business_id = f"bench{uuid.uuid4().hex[:8]}@contoso.com"
    os.environ.update(settings | {"BOOKINGS_BUSINESS_IDS": business_id})
    bootstrap.reset_container()
    container = bootstrap.container()
    warm_links()
    batch = bookings(business_id, count)
    store = container.booking_store
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(store.create, batch))
    queue = container.invoice_queue
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda b: queue.send(InvoiceMessage(business_id, b.key, "bench")), batch))

    sandbox.app.reset(counters=True, faults=True)
    faults: dict[str, Any] = {"latency": {"bc": latency}}
    if throttle:
        faults["failures"] = {"bc": [{"status": 429, "fraction": throttle, "retryAfter": args.retry_after}]}
    sandbox.admin.set_faults(faults)
    bootstrap.reset_container()  # the host's invocations start with a fresh container, as in Azure
    host = DevHost(
        load_app("function_app"),
        config=host_config(args.batch_size, args.new_batch_threshold),
        settings=dict(os.environ),
        app_directory=ROOT,
        state_directory=Path(tempfile.mkdtemp(prefix="bench-devhost-")),
        port=0,
    )
    started = time.perf_counter()
    host.start()
    done = failed = 0
    try:
        while done + failed < count:
            time.sleep(0.25)
            statuses = [str(booking.status) for booking in store.of_business(business_id)]
            done = statuses.count(str(BookingStatus.INVOICED))
            failed = statuses.count(str(BookingStatus.FAILED))
            if time.perf_counter() - started > 600:
                break
        elapsed = time.perf_counter() - started
    finally:
        host.stop()
    counters = sandbox.app.counters.snapshot().get("bc", {})
    concurrency = sandbox.app.faults.stats()["concurrency"]["bc"]
    requests_total = int(counters.get("total", 0))
    queues = host.config.queues
    return {
        "throttle": throttle,
        "batchSize": queues.batch_size,
        "invoiced": done,
        "failed": failed,
        "seconds": round(elapsed, 2),
        "invoicesPerSecond": round(done / elapsed, 1),
        "ceilingPerSecond": round(MAX_IN_FLIGHT / latency, 1),
        "bcRequests": requests_total,
        "bcRequestsPerInvoice": round(requests_total / max(done, 1), 3),
        "bc429": int(counters.get("statuses", {}).get("429", 0)),
        "bcMaxRunning": concurrency["maxRunning"],
        "bcMaxQueued": concurrency["maxQueued"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="bookings per run (default 1000)")
    parser.add_argument("--latency", type=float, default=0.05, help="BC latency in seconds (default 0.05)")
    parser.add_argument("--throttle", type=float, default=0.1, help="share of 429s in run 2 (default 0.1)")
    parser.add_argument(
        "--retry-after", type=int, default=None, help="Retry-After of the 429s (default none)"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="override host.json batchSize")
    parser.add_argument("--new-batch-threshold", type=int, default=None, help="override newBatchThreshold")
    args = parser.parse_args()
    with ExitStack() as stack:
        given = os.environ.get("AZURITE_CONNECTION_STRING")
        connection = given or stack.enter_context(start_azurite()).connection_string
        sandbox = stack.enter_context(running_sandbox(seed=1))
        settings = {
            **sandbox.settings,
            "AzureWebJobsStorage": connection,
            "BOOKINGS_TIME_ZONE": "Europe/Amsterdam",
            "CUSTOMER_TEMPLATE": "CT-BOOKINGS",
            "ITEM_TEMPLATE": "IT-BOOKINGS",
            "SYNC_SCHEDULE": NEVER,
            "RECONCILE_SCHEDULE": NEVER,
        }
        results = [
            run(sandbox, settings, args, 0.0),
            run(sandbox, settings, args, args.throttle),
        ]
    print(
        f"\nBulk invoicing, {args.count} bookings, Business Central at {args.latency * 1000:.0f} ms, "
        f"{MAX_IN_FLIGHT} concurrent requests, queue batchSize {results[0]['batchSize']}"
    )
    print(f"{'429 share':>10} {'invoices/s':>11} {'ceiling/s':>10} {'BC req/invoice':>15} {'429s':>6} "
          f"{'max in flight':>14} {'failed':>7}")  # fmt: skip
    for r in results:
        print(
            f"{r['throttle']:>10.0%} {r['invoicesPerSecond']:>11.1f} {r['ceilingPerSecond']:>10.1f} "
            f"{r['bcRequestsPerInvoice']:>15.3f} {r['bc429']:>6} {r['bcMaxRunning']:>14} {r['failed']:>7}"
        )
    print(
        json.dumps({"benchmark": "invoicing", "count": args.count, "latency": args.latency, "runs": results})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
