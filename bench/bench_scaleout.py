"""Benchmark: several instances of the app inside one Business Central budget.

    .venv/bin/python -m bench.bench_scaleout [--count 600] [--hosts 3]

Runs `--hosts` devhost processes (each the real app with host.json's queue settings) against one
Azurite and one sandbox whose Business Central has its real limits on (5 requests running, the
rest queued, 429 past 100 connections, a sliding-window rate limit), then the same with one
process. Customers and items are linked already (one request per invoice).

- at 250 ms per request, concurrency binds: ceiling 5 / 0.25 s = 20 invoices/s (a run stays far
  below the 5,400 requests the default 5-minute budget allows);
- at 50 ms, the rate binds: the 5-minute window is scaled down to `SCALED_WINDOW` seconds so the
  run is short (the sandbox allows 6,000 per 5 minutes scaled alike, the app's budget 5,400):
  ceiling 18 invoices/s, measured from one window after the first invoice (the first window's
  burst is what a sliding window allows once, not a rate).

It prints invoices per second next to the ceiling, the most requests the sandbox saw in flight
(goal: never more than 5), the mean number in flight and its 429s, then one JSON line. Nothing
is asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.support import (  # noqa: E402
    bc_figures,
    bookings_table,
    follow_invoicing,
    invoiceable_booking,
    invoicing_stack,
    print_json,
    queue_depth,
    seed,
    send_all,
    spawn_hosts,
    wait_until,
    warm_links,
)
from sandbox import SandboxHandle  # noqa: E402
from shared import bootstrap  # noqa: E402
from shared.domain.models import InvoiceMessage  # noqa: E402

CONCURRENCY = 5
SCALED_WINDOW = 15  # seconds standing for Business Central's 300
BC_LIMIT_SCALED = 6000 * SCALED_WINDOW // 300  # what the sandbox allows per scaled window
BUDGET_SCALED = 5400 * SCALED_WINDOW // 300  # what the app's budget allows per scaled window
TIMEOUT = 600.0


class BusyTime:
    """Seconds of Business Central requests running in the sandbox, summed (in-flight x time), and
    when each started (for the most requests in any window)."""

    def __init__(self, sandbox: SandboxHandle) -> None:
        self._faults = sandbox.app.faults
        self._lock = threading.Lock()
        self.seconds = 0.0
        self.starts: list[float] = []

    @contextmanager
    def installed(self) -> Iterator[BusyTime]:
        original = self._faults.bc_slot

        @contextmanager
        def timed(client: str) -> Iterator[None]:
            with original(client):
                started = time.perf_counter()
                with self._lock:
                    self.starts.append(started)
                try:
                    yield
                finally:
                    with self._lock:
                        self.seconds += time.perf_counter() - started

        self._faults.bc_slot = timed  # type: ignore[method-assign]
        try:
            yield self
        finally:
            self._faults.bc_slot = original  # type: ignore[method-assign]


def most_in_any_window(starts: list[float], window: float) -> int:
    """The most request starts that fall in any `window` seconds (a sliding window over them all)."""
    ordered, most, low = sorted(starts), 0, 0
    for high, moment in enumerate(ordered):
        while moment - ordered[low] >= window:
            low += 1
        most = max(most, high - low + 1)
    return most


def run(
    sandbox: SandboxHandle, connection: str, settings: dict[str, str], hosts: int, latency: float, count: int
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
    batch = [invoiceable_booking(business_id, n) for n in range(count)]
    seed(connection, batch)
    send_all(lambda b: container.invoice_queue.send(InvoiceMessage(business_id, b.key, "bench")), batch)
    budget = container.bc_budget
    # The warm-up's slots go back and its requests leave the (scaled) window before the run.
    time.sleep(SCALED_WINDOW + 1 if rate_bound else 0.5)
    wait_until(lambda: not budget._out and not budget._ready, timeout=30, what="warm-up slots back")
    sandbox.app.reset(counters=True, faults=True)
    faults: dict[str, Any] = {"latency": {"bc": latency}}
    if rate_bound:
        faults["bcRateLimit"] = {"limit": BC_LIMIT_SCALED, "windowSeconds": SCALED_WINDOW}
    sandbox.admin.set_faults(faults)
    env = dict(os.environ) | app_settings
    table = bookings_table(connection)
    with BusyTime(sandbox).installed() as busy:
        processes = spawn_hosts(hosts, env)
        try:
            progress = follow_invoicing(
                table, business_id, count, timeout=TIMEOUT, pending=queue_depth(connection)
            )
        finally:
            processes.stop()
    first = progress.first_done()
    # From the first invoice (the processes' start-up excluded); when the rate binds, from one
    # window later.
    since = first + (SCALED_WINDOW if rate_bound else 0.0)
    per_second = progress.rate_since(since)
    ceiling = min(CONCURRENCY / latency, BUDGET_SCALED / SCALED_WINDOW if rate_bound else float("inf"))
    return {
        "hosts": hosts,
        "latency": latency,
        "rateBound": rate_bound,
        "invoiced": progress.invoiced,
        "failed": progress.failed,
        "seconds": round(progress.ended - first, 1),
        "invoicesPerSecond": round(per_second, 2),
        "ceilingPerSecond": round(ceiling, 2),
        "meanInFlight": round(busy.seconds / max(progress.ended - first, 1e-9), 2),
        # Rate-bound runs: the most requests in any (scaled) window, against the budget's limit.
        "window": SCALED_WINDOW if rate_bound else None,
        "maxInWindow": most_in_any_window(busy.starts, SCALED_WINDOW) if rate_bound else None,
        "windowLimit": BUDGET_SCALED if rate_bound else None,
        "bcWindowLimit": BC_LIMIT_SCALED if rate_bound else None,
        **bc_figures(sandbox),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=600, help="bookings per run at 250 ms (default 600)")
    parser.add_argument("--hosts", type=int, default=3, help="devhost processes (default 3)")
    args = parser.parse_args(argv)
    results = []
    with invoicing_stack() as (connection, sandbox, settings):
        for latency in (0.25, 0.05):
            for hosts in (args.hosts, 1):
                # At 50 ms: the first window's burst plus about one and a half windows at the budget's rate.
                count = args.count if latency > 0.1 else BUDGET_SCALED * 5 // 2
                results.append(run(sandbox, connection, settings, hosts, latency, count))
                r = results[-1]
                print(f"  {hosts} host(s), {latency * 1000:.0f} ms: {r['invoicesPerSecond']}/s of "
                      f"{r['ceilingPerSecond']}/s, max in flight {r['bcMaxRunning']}, 429s {r['bc429']}",
                      flush=True)  # fmt: skip
    print(f"\nScale-out inside one Business Central budget ({CONCURRENCY} in flight; at 50 ms the "
          f"5-minute window scaled to {SCALED_WINDOW} s)")  # fmt: skip
    print(f"{'hosts':>6} {'latency':>8} {'invoices/s':>11} {'ceiling/s':>10} {'ratio':>6} "
          f"{'max in flight':>14} {'mean':>5} {'queued':>7} {'429s':>5} {'failed':>7}")  # fmt: skip
    for r in results:
        print(
            f"{r['hosts']:>6} {r['latency'] * 1000:>6.0f}ms {r['invoicesPerSecond']:>11.2f} "
            f"{r['ceilingPerSecond']:>10.2f} {r['invoicesPerSecond'] / r['ceilingPerSecond']:>6.2f} "
            f"{r['bcMaxRunning']:>14} {r['meanInFlight']:>5.2f} {r['bcMaxQueued']:>7} {r['bc429']:>5} "
            f"{r['failed']:>7}"
        )
    for r in results:
        if r["rateBound"]:
            print(
                f"{r['hosts']} host(s), 50 ms: at most {r['maxInWindow']} requests in any {SCALED_WINDOW} s "
                f"window, of the budget's {r['windowLimit']} ({r['maxInWindow'] / r['windowLimit']:.2f}; "
                f"Business Central allows {r['bcWindowLimit']})"
            )
    print_json({"benchmark": "scaleout", "count": args.count, "window": SCALED_WINDOW, "runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
