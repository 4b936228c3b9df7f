"""Benchmark: bulk invoicing throughput of one app process against Business Central's limits.

    .venv/bin/python -m bench.bench_invoicing [--count 1000] [--latency 0.05] [--throttle 0.1] [--profile]

Runs the real app in a devhost process of its own (host.json's queue settings), as on one
instance, with the sandbox as Entra ID and Business Central (50 ms per request, its
5-concurrent-requests limit on) in this process and Azurite. `--profile` and the batch overrides
run the devhost inside this process instead (the spans need it); its CPU figure then includes the
sandbox's. The customers
and items already exist in Business Central and their links are known, which is the steady state
of a tenant: every invoice should then cost exactly one Business Central request.

It prints invoices per second next to the ceiling Business Central allows (5 in flight / latency,
100/s at 50 ms), Business Central requests per invoice (target 1.0), once without throttling and
once with a share of 429 answers, then one JSON line with the same figures. `--profile` adds where
an invoice's time goes (`bench/spans.py`). Nothing is asserted: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.invoicing_floor import measure_floor  # noqa: E402
from bench.spans import Spans, print_breakdown  # noqa: E402
from bench.support import (  # noqa: E402
    Progress,
    bc_figures,
    bookings_table,
    calls_between,
    follow_invoicing,
    host_storage_calls,
    invoiceable_booking,
    invoicing_stack,
    print_json,
    print_storage_calls,
    queue_depth,
    seed,
    send_all,
    spawn_hosts,
    warm_links,
)
from devhost.config import HostConfig  # noqa: E402
from devhost.functions import load_app  # noqa: E402
from devhost.host import DevHost  # noqa: E402
from sandbox import SandboxHandle  # noqa: E402
from shared import bootstrap  # noqa: E402
from shared.adapters.business_central import MAX_IN_FLIGHT  # noqa: E402
from shared.domain.models import InvoiceMessage  # noqa: E402

TIMEOUT = 600.0


def host_config(batch_size: int | None, threshold: int | None) -> HostConfig:
    """host.json as deployed, or with the queue batch settings overridden for exploration."""
    document = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    queues = document["extensions"]["queues"]
    if batch_size:
        queues["batchSize"] = batch_size
    if threshold is not None:
        queues["newBatchThreshold"] = threshold
    return HostConfig.from_document(document)


def in_own_process(
    connection: str, business_id: str, count: int
) -> tuple[Progress, float, int, dict[str, dict[str, float]]]:
    """The app in a devhost process of its own (as on an instance: Business Central, the sandbox
    here, is elsewhere); CPU and storage calls are that process's, from its start-up's end to the
    last invoice."""
    env = dict(os.environ)
    hosts = spawn_hosts(1, env)
    handle = hosts.started[0]
    try:
        calls = host_storage_calls(handle.url, env)
        cpu = process_cpu_seconds(handle.process.pid)
        progress = follow_invoicing(
            bookings_table(connection), business_id, count, timeout=TIMEOUT, pending=queue_depth(connection)
        )
        cpu = process_cpu_seconds(handle.process.pid) - cpu
        calls = calls_between(calls, host_storage_calls(handle.url, env), progress.invoiced)
    finally:
        hosts.stop()
    return progress, cpu, host_config(None, None).queues.batch_size, calls


def in_this_process(
    connection: str, business_id: str, count: int, args: argparse.Namespace, spans: Spans | None, label: str
) -> tuple[Progress, float, int]:
    """The app in an in-process devhost (what `--profile`'s spans and the batch overrides need);
    CPU is this whole process's, the sandbox's included."""
    host = DevHost(
        load_app("function_app"),
        config=host_config(args.batch_size, args.new_batch_threshold),
        settings=dict(os.environ),
        app_directory=ROOT,
        state_directory=Path(tempfile.mkdtemp(prefix="bench-devhost-")),
        port=0,
    )
    cpu = time.process_time()
    host.start()
    try:
        progress = follow_invoicing(
            bookings_table(connection), business_id, count, timeout=TIMEOUT, pending=queue_depth(connection)
        )
    finally:
        cpu = time.process_time() - cpu
        host.stop()
    if spans is not None:
        print_breakdown(label, spans.breakdown(), MAX_IN_FLIGHT)
    return progress, cpu, host.config.queues.batch_size


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(
    sandbox: SandboxHandle,
    connection: str,
    settings: dict[str, str],
    args: argparse.Namespace,
    throttle: float,
    spans: Spans | None,
) -> dict[str, Any]:
    count, latency = args.count, args.latency
    business_id = f"bench{uuid.uuid4().hex[:8]}@contoso.com"
    os.environ.update(settings | {"BOOKINGS_BUSINESS_IDS": business_id})
    bootstrap.reset_container()
    container = bootstrap.container()
    warm_links()
    batch = [invoiceable_booking(business_id, n) for n in range(count)]
    seed(connection, batch)
    queue = container.invoice_queue
    send_all(lambda b: queue.send(InvoiceMessage(business_id, b.key, "bench")), batch)

    sandbox.app.reset(counters=True, faults=True)
    faults: dict[str, Any] = {"latency": {"bc": latency}}
    if throttle:
        faults["failures"] = {"bc": [{"status": 429, "fraction": throttle, "retryAfter": args.retry_after}]}
    sandbox.admin.set_faults(faults)
    bootstrap.reset_container()  # the host's invocations start with a fresh container, as in Azure
    own_process = spans is None and not (args.batch_size or args.new_batch_threshold is not None)
    if spans is not None:
        spans.clear()
    calls: dict[str, dict[str, float]] = {}
    if own_process:
        progress, cpu, batch_size, calls = in_own_process(connection, business_id, count)
        print_storage_calls(f"one process, {throttle:.0%} 429s", calls)
    else:
        progress, cpu, batch_size = in_this_process(
            connection, business_id, count, args, spans, f"one process, {throttle:.0%} 429s"
        )
    bc = bc_figures(sandbox)
    elapsed = progress.ended - progress.started
    floor = {} if args.no_floor else measure_floor(container, connection, business_id, count, MAX_IN_FLIGHT)
    return {
        **floor,
        "storageCalls": calls,
        "storageCallsPerInvoice": round(sum(v["calls"] for v in calls.values()), 2),
        "tableTransactionsPerInvoice": round(
            sum(v["calls"] for k, v in calls.items() if k.endswith(" transaction")), 2
        ),
        "throttle": throttle,
        "batchSize": batch_size,
        "ownProcess": own_process,
        "invoiced": progress.invoiced,
        "failed": progress.failed,
        "seconds": round(elapsed, 2),
        "invoicesPerSecond": round(progress.invoiced / elapsed, 1),
        "ceilingPerSecond": round(MAX_IN_FLIGHT / latency, 1),
        "bcRequestsPerInvoice": round(bc["bcRequests"] / max(progress.invoiced, 1), 3),
        "cpuMsPerInvoice": round(cpu * 1000 / max(progress.invoiced, 1), 1),
        **bc,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="bookings per run (default 1000)")
    parser.add_argument("--latency", type=float, default=0.05, help="BC latency in seconds (default 0.05)")
    parser.add_argument("--throttle", type=float, default=0.1, help="share of 429s in run 2 (default 0.1)")
    parser.add_argument(
        "--retry-after", type=int, default=None, help="Retry-After of the 429s (default none)"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="override host.json batchSize")
    parser.add_argument("--new-batch-threshold", type=int, default=None, help="override newBatchThreshold")
    parser.add_argument("--profile", action="store_true", help="print where an invoice's time goes")
    parser.add_argument("--no-floor", action="store_true", help="skip the bare floor after each run")
    parser.add_argument("--only", type=float, default=None, help="run only this 429 share")
    args = parser.parse_args(argv)
    spans = Spans().install() if args.profile else None
    with invoicing_stack() as (connection, sandbox, settings):
        shares = (0.0, args.throttle) if args.only is None else (args.only,)
        results = [run(sandbox, connection, settings, args, share, spans) for share in shares]
    print(
        f"\nBulk invoicing, {args.count} bookings, Business Central at {args.latency * 1000:.0f} ms, "
        f"{MAX_IN_FLIGHT} concurrent requests, queue batchSize {results[0]['batchSize']}"
    )
    print(f"{'429 share':>10} {'invoices/s':>11} {'ceiling/s':>10} {'ratio':>6} {'floor/s':>8} {'ratio':>6} "
          f"{'CPU ms/inv':>11} {'storage/inv':>12} {'txn/inv':>8} {'BC req/invoice':>15} "
          f"{'429s':>6} {'max in flight':>14} {'failed':>7}")  # fmt: skip
    for r in results:
        floor = r.get("floorPerSecond")
        print(
            f"{r['throttle']:>10.0%} {r['invoicesPerSecond']:>11.1f} {r['ceilingPerSecond']:>10.1f} "
            f"{r['invoicesPerSecond'] / r['ceilingPerSecond']:>6.2f} "
            f"{floor or 0:>8.1f} {r['invoicesPerSecond'] / floor if floor else 0:>6.2f} "
            f"{r['cpuMsPerInvoice']:>11.1f} {r['storageCallsPerInvoice']:>12.2f} "
            f"{r['tableTransactionsPerInvoice']:>8.2f} {r['bcRequestsPerInvoice']:>15.3f} "
            f"{r['bc429']:>6} {r['bcMaxRunning']:>14} {r['failed']:>7}"
        )
    print(
        "floor = the same deep-insert POSTs from 5 threads with bare requests (a 429 sent again at "
        "once) plus one bare conditional table write per invoice, in the same run"
    )
    print_json({"benchmark": "invoicing", "count": args.count, "latency": args.latency, "runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
