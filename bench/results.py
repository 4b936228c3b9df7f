"""`make bench`: run every benchmark and write `bench/RESULTS.md` from what they measured.

Each benchmark prints its figures as one JSON line last; this script runs them one after another
(in one Azurite it starts), reads those lines and writes one table: each figure beside its floor
or ceiling and the ratio, with the machine's facts and the date. No number is typed in here.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
BENCHMARKS: dict[str, list[str]] = {
    "bench_sync": ["--count", "5000", "--small", "500"],
    "bench_selection": ["--count", "2000", "--table", "2000"],
    "bench_invoicing": ["--count", "400"],
    "bench_scaleout": ["--count", "400"],
    "bench_reconcile": [],
    "bench_portal": ["--table", "100000", "--runs", "5"],
}
"""Each benchmark with its arguments, sized for a 2-CPU machine whose Azurite writes about 400
entities/s in batches, slower as a table grows (each booking is 2: itself and its list index
row; Azurite checks each insert by walking the partition): one partition of 5,000 bookings seeds
in ~15 s, 25,000 did not finish in 18 minutes. The portal benchmark therefore seeds 200 bookings
through the table API and bulk-loads the rest of its 100,000 into Azurite's database file
(`bench/azurite_bulk.py`, about a minute in all); its reads still go through the real API. The
figures name their sizes; the run prints each benchmark's time and its own."""


@dataclass(frozen=True)
class Row:
    area: str
    figure: str
    value: float
    unit: str
    bound: float | None
    bound_kind: str  # "floor" (the best a raw baseline does), "ceiling" (the limit), "target"
    note: str = ""

    @property
    def ratio(self) -> str:
        if not self.bound:
            return "-"
        return f"{self.value / self.bound:.2f}"


def run_benchmark(module: str, arguments: list[str]) -> dict[str, Any]:
    """Run one benchmark, echo its output, and return its last JSON line."""
    print(f"==> {module} {' '.join(arguments)}", flush=True)
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    print(f"    ({time.perf_counter() - started:.0f} s)", flush=True)
    sys.stdout.write(completed.stdout)
    if completed.returncode != 0:
        sys.stderr.write(completed.stderr[-4000:])
        raise SystemExit(f"{module} failed with status {completed.returncode}")
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    raise SystemExit(f"{module} printed no JSON line")


def rows_from(
    sync: dict[str, Any],
    selection: dict[str, Any],
    invoicing: dict[str, Any],
    scaleout: dict[str, Any] | None = None,
) -> list[Row]:
    rows = [
        Row("sync", f"first sync of {sync['appointments']:,} appointments", sync["appointmentsPerSecond"],
            "appointments/s", sync_floor(sync), "floor",
            f"{sync['graphRequests']} Graph requests, {sync['tableTransactions']} table transactions; "
            f"{SYNC_FLOOR}"),
        Row("sync", "re-sync, nothing changed", sync["resyncAppointmentsPerSecond"], "appointments/s",
            sync_floor(sync), "floor",
            f"{sync['resyncTableTransactions']} table transactions; {SYNC_FLOOR}"),
        Row("sync", f"peak memory, {sync['peakMemoryAppointments']:,} appointments", sync["peakMemoryMiB"],
            "MiB", sync["smallPeakMemoryMiB"], "floor",
            f"floor = peak with {sync['smallPeakMemoryAppointments']:,} appointments (flat: ratio near 1)"),
        Row("selection", f"select all {selection['bookings']:,} in one request", selection["selectPerSecond"],
            "bookings/s", selection["floorPerSecond"], "floor",
            f"floor = the same claims and sends with bare SDK calls: the candidates read, one "
            f"conditional batch per 100 bookings, then one raw send each, {selection['fanout']} threads "
            f"({floor_note(selection)}); {phase_note(selection)}"),
        Row("selection", f"list first page, {selection['tableBookings']:,} bookings in the table",
            selection["listFirstPageSeconds"] * 1000, "ms", None, "-",
            f"{selection['listFirstPageItems']} Unbilled items returned"),
        Row("selection", f"request status of {selection['bookings']:,} bookings", selection["statusSeconds"],
            "s", None, "-"),
    ]  # fmt: skip
    for run in invoicing["runs"]:
        rows += invoicing_rows(run, invoicing["latency"])
    for run in (scaleout or {}).get("runs", []):
        rows.append(scaleout_row(run, scaleout))  # type: ignore[arg-type]
    return rows


SYNC_FLOOR = (
    "floor = the same rows written with raw batched table creates (100 entities a transaction), "
    "in appointments/s: a booking and its list index row are one appointment"
)
INVOICING_FLOOR = (
    "floor = the same deep-insert POSTs from 5 threads with bare requests (a 429 sent again at once) "
    "plus one bare conditional table write per invoice, measured in the same run"
)


def sync_floor(sync: dict[str, Any]) -> float:
    """Appointments per second of the raw floor (older figures: entities, two per appointment)."""
    return float(sync.get("floorAppointmentsPerSecond") or sync["floorEntitiesPerSecond"] / 2)


def floor_note(selection: dict[str, Any]) -> str:
    if "floorClaimsSeconds" not in selection:
        return "phases not reported"
    return f"claims {selection['floorClaimsSeconds']:.1f} s, sends {selection['floorSendsSeconds']:.1f} s"


def invoicing_rows(run: dict[str, Any], latency: float) -> list[Row]:
    """Throughput against the ceiling and against the measured floor; what one invoice costs."""
    share = f"{run['throttle']:.0%} 429s"
    what = f"{run['invoiced']:,} invoices, BC at {latency * 1000:.0f} ms, {share}"
    process = "the app process" if run.get("ownProcess") else "this process (app and sandbox)"
    ceiling_note = (
        f"ceiling = 5 concurrent / latency; max in flight {run['bcMaxRunning']}; {process} spent "
        f"{run['cpuMsPerInvoice']:.1f} ms of CPU per invoice"
    )
    rows = [
        Row(
            "invoicing",
            what,
            run["invoicesPerSecond"],
            "invoices/s",
            run["ceilingPerSecond"],
            "ceiling",
            ceiling_note,
        )
    ]
    if run.get("floorPerSecond"):
        floor = run["floorPerSecond"]
        rows.append(
            Row(
                "invoicing",
                f"{what}, against its floor",
                run["invoicesPerSecond"],
                "invoices/s",
                floor,
                "floor",
                INVOICING_FLOOR,
            )
        )
    if run.get("storageCalls"):
        kinds = ", ".join(
            f"{kind} {v['calls']:.2f} ({v['ms']:.1f} ms)" for kind, v in run["storageCalls"].items()
        )
        cpu_note = f"{process}, from its start-up's end to the last invoice, divided by the invoices"
        calls_note = (
            f"of which table transactions {run['tableTransactionsPerInvoice']:.2f}; by kind, calls "
            f"(wall ms) per invoice: {kinds}"
        )
        rows.append(
            Row(
                "invoicing",
                f"app CPU per invoice, {share}",
                run["cpuMsPerInvoice"],
                "ms",
                None,
                "-",
                cpu_note,
            )
        )
        calls = run["storageCallsPerInvoice"]
        rows.append(
            Row(
                "invoicing",
                f"storage round trips per invoice, {share}",
                calls,
                "calls",
                None,
                "-",
                calls_note,
            )
        )
    requests = run["bcRequestsPerInvoice"]
    rows.append(
        Row(
            "invoicing",
            f"Business Central requests per invoice, {share}",
            requests,
            "requests",
            1.0,
            "target",
            f"{run['bc429']} answers were 429",
        )
    )
    return rows


def scaleout_row(run: dict[str, Any], scaleout: dict[str, Any]) -> Row:
    """Concurrency-bound runs: invoices/s against 5 / latency. Rate-bound runs: the most requests
    in any window against the budget's limit per window (an average rate could pass 1.0 by
    counting the first window's burst; the most in any window cannot, if the budget holds)."""
    latency = f"{run['latency'] * 1000:.0f} ms"
    what = f"{run['hosts']} devhost process(es), {run['invoiced']:,} invoices, BC at {latency}"
    common = (
        f"max in flight {run['bcMaxRunning']} (goal <= 5), mean in flight {run['meanInFlight']:.2f}, "
        f"{run['bcMaxQueued']} queued in BC, {run['bc429']} answers 429, {run['failed']} failed"
    )
    if run["rateBound"]:
        window = scaleout["window"]
        what = f"{what}, 5-min window as {window} s (rate binds)"
    if not run["rateBound"] or run.get("maxInWindow") is None:
        note = f"ceiling = min(5 / latency, budget rate); {common}"
        ceiling = run["ceilingPerSecond"]
        return Row("scale-out", what, run["invoicesPerSecond"], "invoices/s", ceiling, "ceiling", note)
    note = (
        f"ceiling = the budget's limit per window (Business Central allows {run['bcWindowLimit']}); "
        f"{run['invoicesPerSecond']:.2f} invoices/s after the first window; {common}"
    )
    unit = f"requests in any {window} s"
    return Row("scale-out", what, run["maxInWindow"], unit, run["windowLimit"], "ceiling", note)


def reconcile_rows(reconcile: dict[str, Any]) -> list[Row]:
    what = (
        f"{reconcile['bookings']:,} Invoiced, {reconcile['deleted']} drafts deleted, "
        f"{reconcile['posted']:,} posted"
    )
    return [
        Row("reconcile", f"Business Central requests per run, {what}", reconcile["bcRequests"], "requests",
            reconcile["naiveRequests"], "ceiling", "ceiling = one by-id read per booking (what it avoids)"),
        Row("reconcile", f"seconds per run, {what}", reconcile["seconds"], "s", None, "-",
            "Bookings table in Azurite; Business Central in process (paging as the real API)"),
    ]  # fmt: skip


def phase_note(selection: dict[str, Any]) -> str:
    """Where the select-all's time went, from the app's log line (claims are 3 table operations
    per booking in 100-operation transactions, request rows 1, sends 1 message each)."""
    phases = selection.get("phasesMs") or {}
    if not phases:
        return "phases not reported"
    return "time in the app: " + ", ".join(f"{name} {ms / 1000:.1f} s" for name, ms in phases.items())


def portal_rows(portal: dict[str, Any]) -> list[Row]:
    seeded = (
        f"{portal['throughApi']:,} seeded through the table API, the other "
        f"{portal['table'] - portal['throughApi']:,} bulk-loaded into Azurite's database file "
        f"({portal['seedBulkSeconds']:.0f} s; seeding them through the API is quadratic, Azurite "
        "walks the partition on every insert), then read through the real API"
        if "throughApi" in portal
        else "all seeded through the table API"
    )
    return [
        Row("portal", f"list first page with {portal['table']:,} bookings in the table",
            portal["first_page_ms"], "ms", 1000.0, "ceiling",
            "GET /api/bookings?top=100, newest first through the list index; median of 5; "
            f"issue #16 asks for under a second; {seeded}"),
        Row("portal", f"portal first rows painted, {portal['table']:,} bookings", portal["first_paint_ms"],
            "ms", 1000.0, "ceiling", "headless Chromium, navigation start to first rows; median of 5"),
        Row("portal", f"portal total of the filter shown, {portal['table']:,} bookings",
            portal.get("totals_ms", 0.0), "ms", None, "-",
            "navigation start to the count and amount of every match (read after the first rows, "
            "a 4-column projection, ~1 round trip per 1,000); median of 5"),
    ]  # fmt: skip


def render(rows: list[Row], started: datetime, wall: float | None = None) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` on {started:%Y-%m-%d %H:%M} UTC. Every number comes from that run.",
        "",
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()} "
        f"{platform.machine()}. Azurite, the sandbox and the app share this machine"
        + (f"; the whole `make bench` took {wall / 60:.1f} minutes." if wall is not None else "."),
        "",
        "| Area | Figure | Value | Unit | Floor / ceiling | Kind | Ratio | Notes |",
        "|---|---|---:|---|---:|---|---:|---|",
    ]
    for row in rows:
        bound = "-" if row.bound is None else f"{row.bound:,.2f}"
        lines.append(
            f"| {row.area} | {row.figure} | {row.value:,.2f} | {row.unit} | {bound} | {row.bound_kind} | "
            f"{row.ratio} | {row.note} |"
        )
    lines += [
        "",
        "Ratio = value / bound. Against a floor (the same work done with bare calls, measured in the "
        "same run, each floor's definition beside it) a ratio near 1.0 means the app adds little to it "
        "(a re-sync that writes nothing can beat it); against a ceiling (Business Central's 5 "
        "concurrent requests at the given latency, or the budget's limit per window) 1.0 is the limit; "
        "scale-out rows run several devhost processes sharing one budget (goal 0.9, no 429, never more "
        "than 5 in flight, never more than the budget's limit in any window), beside the same with one "
        "process; "
        "for requests per invoice the target is 1.0; portal rows against the 1-second target. "
        "The machine may have run other work meanwhile (tests of another branch): figures are noisy.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    started = datetime.now(UTC)
    clock = time.perf_counter()
    figures = {module: run_benchmark(module, arguments) for module, arguments in BENCHMARKS.items()}
    rows = rows_from(
        figures["bench_sync"],
        figures["bench_selection"],
        figures["bench_invoicing"],
        figures["bench_scaleout"],
    )
    rows += reconcile_rows(figures["bench_reconcile"])
    rows += portal_rows(figures["bench_portal"])
    wall = time.perf_counter() - clock
    RESULTS.write_text(render(rows, started, wall), encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(ROOT)}; make bench took {wall / 60:.1f} minutes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
