"""Benchmark: several instances of the app inside one Business Central budget.

    .venv/bin/python -m bench.bench_scaleout [--count 1000] [--hosts 3]

Runs `--hosts` devhost processes (each the real app with host.json's queue settings: 12
invocations at once) against one Azurite and one sandbox whose Business Central has its real
limits on (5 requests running, the rest queued, 429 past 100 connections, a sliding-window rate
limit), then the same with one process. Customers and items are linked already (one request per
invoice).

- at 250 ms per request, concurrency binds: ceiling 5 / 0.25 s = 20 invoices/s (a run of 1,000
  stays far below the 5,400 requests the default 5-minute budget allows);
- at 50 ms, the rate binds: the 5-minute window is scaled down to 20 s so the run is short (the
  sandbox allows 400 per 20 s like 6,000 per 5 minutes; the app's budget 360 per 20 s like its
  default 5,400): ceiling 18 invoices/s, measured after the first window (whose burst the sliding
  window allows).

It prints invoices per second next to the ceiling, the most requests the sandbox saw in flight
and its 429s, then one JSON line. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_invoicing import NEVER, bookings, warm_links  # noqa: E402
from devhost.azurite import start_azurite  # noqa: E402
from sandbox import SandboxHandle, running_sandbox  # noqa: E402
from shared import bootstrap  # noqa: E402
from shared.domain.models import BookingStatus, InvoiceMessage  # noqa: E402

CONCURRENCY = 5
SCALED_WINDOW = 20  # seconds standing for Business Central's 300
BC_LIMIT_SCALED = 6000 * SCALED_WINDOW // 300  # what the sandbox allows per scaled window
BUDGET_SCALED = 5400 * SCALED_WINDOW // 300  # what the app's budget allows per scaled window


def spawn_hosts(count: int, env: dict[str, str], work: Path) -> list[subprocess.Popen[str]]:
    processes = []
    for n in range(count):
        log = (work / f"devhost-{n}.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "devhost", "--port", "0", "--state-dir", str(work / f"state-{n}"),
             "--settings", str(work / "none.json"), "--drain-seconds", "0"],
            stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=ROOT,
        )  # fmt: skip
        processes.append(process)
    for process in processes:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("devhost ready"):
            raise SystemExit(f"a devhost did not start; see {work}")
    return processes


def run(
    sandbox: SandboxHandle, settings: dict[str, str], hosts: int, latency: float, count: int
) -> dict[str, Any]:
    rate_bound = latency < 0.1
    business_id = f"scale{uuid.uuid4().hex[:8]}@contoso.com"
    app_settings = settings | {"BOOKINGS_BUSINESS_IDS": business_id, "BC_MAX_CONCURRENCY": str(CONCURRENCY)}
    if rate_bound:
        app_settings |= {
            "BC_MAX_REQUESTS_PER_5_MIN": str(BUDGET_SCALED),
            "BC_RATE_WINDOW_SECONDS": str(SCALED_WINDOW),
        }
    os.environ.update(app_settings)
    bootstrap.reset_container()
    container = bootstrap.container()
    warm_links()
    batch = bookings(business_id, count)
    store = container.booking_store
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(store.create, batch))
        list(
            pool.map(
                lambda b: container.invoice_queue.send(InvoiceMessage(business_id, b.key, "bench")), batch
            )
        )
    time.sleep(SCALED_WINDOW + 1 if rate_bound else 1)  # the warm-up's requests leave the window
    sandbox.app.reset(counters=True, faults=True)
    faults: dict[str, Any] = {"latency": {"bc": latency}}
    if rate_bound:
        faults["bcRateLimit"] = {"limit": BC_LIMIT_SCALED, "windowSeconds": SCALED_WINDOW}
    sandbox.admin.set_faults(faults)
    work = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    (work / "none.json").write_text("{}", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AzureWebJobsStorage")} | app_settings
    env["PYTHONPATH"] = str(ROOT)
    processes = spawn_hosts(hosts, env, work)
    timeline: list[tuple[float, int]] = []
    done = failed = 0
    started = time.perf_counter()
    try:
        while done + failed < count and time.perf_counter() - started < 900:
            time.sleep(0.5)
            statuses = [booking.status for booking in store.of_business(business_id)]
            done = statuses.count(BookingStatus.INVOICED)
            failed = statuses.count(BookingStatus.FAILED)
            timeline.append((time.perf_counter(), done))
    finally:
        for process in processes:
            process.kill()
            process.wait(10)
    first = next((t for t, d in timeline if d > 0), started)
    end, total = timeline[-1]
    # From the first invoice (the processes' start-up excluded); when the rate binds, from one
    # window later: the first window's burst is what a sliding window allows once, not a rate.
    since = first + (SCALED_WINDOW if rate_bound else 0.0)
    base = max((d for t, d in timeline if t <= since), default=0)
    per_second = (total - base) / max(end - since, 1e-9)
    counters = sandbox.app.counters.snapshot().get("bc", {})
    concurrency = sandbox.app.faults.stats()["concurrency"]["bc"]
    ceiling = min(CONCURRENCY / latency, BUDGET_SCALED / SCALED_WINDOW if rate_bound else float("inf"))
    return {
        "hosts": hosts,
        "latency": latency,
        "rateBound": rate_bound,
        "invoiced": done,
        "failed": failed,
        "seconds": round(end - first, 1),
        "invoicesPerSecond": round(per_second, 2),
        "ceilingPerSecond": round(ceiling, 2),
        "bcRequests": int(counters.get("total", 0)),
        "bc429": int(counters.get("statuses", {}).get("429", 0)),
        "bcMaxRunning": concurrency["maxRunning"],
        "bcMaxQueued": concurrency["maxQueued"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="bookings per run (default 1000)")
    parser.add_argument("--hosts", type=int, default=3, help="devhost processes (default 3)")
    args = parser.parse_args()
    results = []
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
        }
        for latency in (0.25, 0.05):
            for hosts in (args.hosts, 1):
                count = args.count if latency > 0.1 else int(args.count * 1.2)
                results.append(run(sandbox, settings, hosts, latency, count))
                r = results[-1]
                print(f"  {hosts} host(s), {latency * 1000:.0f} ms: {r['invoicesPerSecond']}/s of "
                      f"{r['ceilingPerSecond']}/s, max in flight {r['bcMaxRunning']}, 429s {r['bc429']}",
                      flush=True)  # fmt: skip
    print(f"\nScale-out inside one Business Central budget ({CONCURRENCY} in flight; at 50 ms the "
          f"5-minute window scaled to {SCALED_WINDOW} s)")  # fmt: skip
    print(f"{'hosts':>6} {'latency':>8} {'invoices/s':>11} {'ceiling/s':>10} {'ratio':>6} "
          f"{'max in flight':>14} {'queued':>7} {'429s':>5} {'failed':>7}")  # fmt: skip
    for r in results:
        print(
            f"{r['hosts']:>6} {r['latency'] * 1000:>6.0f}ms {r['invoicesPerSecond']:>11.2f} "
            f"{r['ceilingPerSecond']:>10.2f} {r['invoicesPerSecond'] / r['ceilingPerSecond']:>6.2f} "
            f"{r['bcMaxRunning']:>14} {r['bcMaxQueued']:>7} {r['bc429']:>5} {r['failed']:>7}"
        )
    print(
        json.dumps({"benchmark": "scaleout", "count": args.count, "window": SCALED_WINDOW, "runs": results})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
