"""Benchmark: syncing 10,000 Bookings appointments from Graph into Table Storage.

    .venv/bin/python -m bench.bench_sync [--count 10000] [--small 1000] [--latency 0]
    .venv/bin/python bench/bench_sync.py

Starts its own Azurite and sandbox (the sandbox in a child process, so the memory figures are the
sync's alone), adds `--count` completed appointments to one Bookings business and runs the real
sync use case (`shared.services.booking_sync.BookingSync`, built by the composition root) against them:

1. a first run (every booking new): appointments/s, Graph requests, table transactions;
2. a second run over the same window (nothing changed): the cost of re-reading the lookback;
3. the floor: writing the same entities with raw batched table calls (100 per transaction);
4. peak Python memory of a first run at `--small` and at `--count` appointments (tracemalloc):
   flat memory means the two peaks are close, whatever the count.

It prints a table, then one JSON line (`{"bench": "sync", ...}`) for a results generator.
Nothing is asserted: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from azure.data.tables import TableServiceClient  # noqa: E402

from devhost.azurite import start_azurite  # noqa: E402
from sandbox import SandboxAdmin  # noqa: E402
from shared.adapters.booking_entities import BOOKINGS_TABLE  # noqa: E402
from shared.adapters.booking_index import BOOKING_ROWS_BELOW  # noqa: E402
from shared.adapters.sync_state import SYNC_STATE_TABLE  # noqa: E402
from shared.bootstrap import Container  # noqa: E402
from shared.services.booking_sync import BusinessSyncResult  # noqa: E402
from shared.settings import load_settings  # noqa: E402

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
BIG = "FabrikamFitness@contoso.onmicrosoft.com"
SMALL = "ContosoLunchDelivery@contoso.onmicrosoft.com"


@contextlib.contextmanager
def sandbox_process(state_dir: Path, latency: float) -> Iterator[tuple[str, dict[str, str]]]:
    """`python -m sandbox` on a free port with a frozen clock; yields its URL and app settings."""
    settings_path = state_dir / "settings.json"
    command = [
        sys.executable, "-m", "sandbox", "--port", "0", "--state-dir", str(state_dir),
        "--settings-out", str(settings_path), "--now", NOW.isoformat().replace("+00:00", "Z"),
    ]  # fmt: skip
    if latency > 0:
        command += ["--latency", f"graph={latency}"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("sandbox ready "):
            raise RuntimeError(f"the sandbox did not start: {line!r}")
        url = line.split()[-1]
        yield url, json.loads(settings_path.read_text(encoding="utf-8"))
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def fresh_container(settings: dict[str, str], connection_string: str, business_id: str) -> Container:
    """A product container on empty `Bookings`/`SyncState` tables, syncing one business."""
    tables = TableServiceClient.from_connection_string(connection_string)
    for name in (BOOKINGS_TABLE, SYNC_STATE_TABLE):
        tables.delete_table(name)
    env = {**settings, "AzureWebJobsStorage": connection_string, "BOOKINGS_BUSINESS_IDS": business_id}
    container = Container(load_settings(env))
    container.clock = lambda: NOW
    return container


def run_once(container: Container) -> tuple[BusinessSyncResult, float, int, int]:
    """One sync; (result, seconds, Graph requests, table write requests)."""
    sync = container.booking_sync
    graph_before, writes_before = sync.graph.requests_sent, sync.upserter.transactions
    started = time.perf_counter()
    [result] = sync.run().results
    seconds = time.perf_counter() - started
    if not result.succeeded:
        raise RuntimeError(f"sync failed: {result.error}")
    return (
        result,
        seconds,
        sync.graph.requests_sent - graph_before,
        sync.upserter.transactions - writes_before,
    )


def floor_seconds(connection_string: str, table_name: str) -> tuple[float, int, int]:
    """Write the synced entities again with nothing but batched creates: the storage floor. Returns
    seconds, entities and appointments (a booking row and its list index row are one appointment)."""
    service = TableServiceClient.from_connection_string(connection_string)
    entities = [
        {k: v for k, v in entity.items()}
        for entity in service.get_table_client(BOOKINGS_TABLE).list_entities()
    ]
    target = service.create_table(table_name)
    started = time.perf_counter()
    for index in range(0, len(entities), 100):
        target.submit_transaction([("create", entity) for entity in entities[index : index + 100]])
    seconds = time.perf_counter() - started
    service.delete_table(table_name)
    appointments = sum(1 for entity in entities if str(entity["RowKey"]) < BOOKING_ROWS_BELOW)
    return seconds, len(entities), appointments


def peak_memory_mib(settings: dict[str, str], connection_string: str, business_id: str) -> tuple[float, int]:
    container = fresh_container(settings, connection_string, business_id)
    container.booking_sync  # noqa: B018 - build the clients before measuring
    tracemalloc.start()
    try:
        [result] = container.booking_sync.run().results
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / (1024 * 1024), result.read


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_sync", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="appointments added to one business")
    parser.add_argument("--small", type=int, default=1_000, help="appointments of the small memory run")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each Graph request")
    args = parser.parse_args(argv)

    with contextlib.ExitStack() as stack:
        state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-sync-")))
        azurite = stack.enter_context(start_azurite())
        url, settings = stack.enter_context(sandbox_process(state_dir, args.latency))
        os.environ["REQUESTS_CA_BUNDLE"] = settings["REQUESTS_CA_BUNDLE"]
        os.environ["SSL_CERT_FILE"] = settings["SSL_CERT_FILE"]
        admin = SandboxAdmin(url, state_dir / "ca.pem", timeout=300)
        stack.callback(admin.close)
        window = {"start": NOW - timedelta(days=25), "end": NOW - timedelta(hours=1)}
        admin.generate_appointments(BIG, args.count, **window)
        admin.generate_appointments(SMALL, args.small, **window)
        conn = azurite.connection_string

        container = fresh_container(settings, conn, BIG)
        first, first_s, first_graph, first_writes = run_once(container)
        second, second_s, second_graph, second_writes = run_once(container)
        floor_s, floor_entities, floor_appointments = floor_seconds(conn, "benchfloor")
        small_peak, small_read = peak_memory_mib(settings, conn, SMALL)
        big_peak, big_read = peak_memory_mib(settings, conn, BIG)

    new = first.counts()["new"]
    figures: dict[str, Any] = {
        "bench": "sync",
        "appointments": first.read,
        "stored": new,
        "firstRunSeconds": round(first_s, 3),
        "appointmentsPerSecond": round(first.read / first_s, 1),
        "graphRequests": first_graph,
        "tableTransactions": first_writes,
        "resyncSeconds": round(second_s, 3),
        "resyncAppointmentsPerSecond": round(second.read / second_s, 1),
        "resyncGraphRequests": second_graph,
        "resyncTableTransactions": second_writes,
        "floorSeconds": round(floor_s, 3),
        "floorEntities": floor_entities,
        "floorEntitiesPerSecond": round(floor_entities / floor_s, 1),
        "floorAppointments": floor_appointments,
        "floorAppointmentsPerSecond": round(floor_appointments / floor_s, 1),
        "peakMemoryMiB": round(big_peak, 2),
        "peakMemoryAppointments": big_read,
        "smallPeakMemoryMiB": round(small_peak, 2),
        "smallPeakMemoryAppointments": small_read,
        "graphLatencySeconds": args.latency,
    }
    rows = [
        ("first run (all new)", f"{first.read} read, {new} stored in {first_s:.2f} s",
         f"{figures['appointmentsPerSecond']}/s",
         f"{first_graph} Graph requests, {first_writes} table writes"),
        ("second run (unchanged)", f"{second.read} read in {second_s:.2f} s",
         f"{figures['resyncAppointmentsPerSecond']}/s",
         f"{second_graph} Graph requests, {second_writes} table writes"),
        ("floor: raw batched creates",
         f"{floor_appointments} appointments ({floor_entities} entities) in {floor_s:.2f} s",
         f"{figures['floorAppointmentsPerSecond']}/s", f"{-(-floor_entities // 100)} transactions"),
        ("peak memory (tracemalloc)", f"{small_read} appts: {small_peak:.1f} MiB",
         f"{big_read} appts: {big_peak:.1f} MiB", ""),
    ]  # fmt: skip
    width = max(len(row[0]) for row in rows)
    print(f"Sync benchmark: {args.count} generated appointments, Graph latency {args.latency * 1000:.0f} ms")
    for label, *cells in rows:
        print(f"  {label:<{width}}  " + "  |  ".join(cell for cell in cells if cell))
    print(json.dumps(figures, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
