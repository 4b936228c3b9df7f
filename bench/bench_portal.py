"""Benchmark: the portal's first meaningful paint, and the first page of a big list, newest first.

    .venv/bin/python bench/bench_portal.py [--table 100000] [--runs 5]

Fills an Azurite of its own with `--table` Unbilled bookings (each with its list index row), runs
the whole HTTP surface (API + portal) in an in-process devhost on it, then:

1. `GET /api/bookings?top=100` (the first page, newest appointment first): median of `--runs`;
2. in headless Chromium (Debian's `chromium`), signed in through the mock form: the time from
   navigation start to the first rows painted in the list (median of `--runs` page loads).

The table is filled in two ways, both leaving what the product's writes leave: the oldest
`--through-api` bookings (200) through the table API, as every other benchmark seeds, into an Azurite
that keeps its data in a temporary directory; then, with that Azurite stopped, the rest straight
into its database file (`bench/azurite_bulk.py`), because Azurite checks each insert by walking the
whole partition and 100,000 bookings through the API would take hours. Azurite then starts again
on that directory, the first and last bookings and the newest page are checked, and every figure
is a read through the real API. The seeding time is printed for both parts.

It prints a table, then one JSON line (`{"bench": "portal", ...}`). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from azure.data.tables import TableServiceClient  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

from bench import azurite_bulk, support  # noqa: E402
from bench.bench_selection import BUSINESS  # noqa: E402
from bench.support import listed_booking  # noqa: E402
from devhost.azurite import start_azurite  # noqa: E402
from devhost.host import DevHost  # noqa: E402
from shared.adapters.booking_entities import BOOKINGS_TABLE  # noqa: E402
from shared.adapters.booking_store import BookingStore  # noqa: E402
from shared.domain.models import Booking, BookingStatus  # noqa: E402
from tests.auth_support import sign_in as api_sign_in  # noqa: E402
from tests.e2e.browser import chromium, sign_in, wait  # noqa: E402

THROUGH_API = 200
"""Bookings seeded through the table API: enough to check the bulk loader's format against."""
STARTUP_SECONDS = 300.0
"""Azurite reads (and rewrites) a 250 MB database file at start with 100,000 bookings: ~20 s here."""
PAINTED = "return document.querySelectorAll('#rows tr').length > 0 ? performance.now() : null;"
TOTALLED = "return /match/.test(document.getElementById('totals').textContent) ? performance.now() : null;"
TOTALS_TIMEOUT = 120.0
"""The page's total reads every match (100,000 bookings: ~100 storage round trips)."""


@contextlib.contextmanager
def portal_host(connection: str, state: Path) -> Iterator[DevHost]:
    from functions.http_triggers import bp as api
    from functions.portal import bp as portal
    from functions.portal_api import bp as portal_api

    with support.http_host(
        connection, state, [api, portal_api, portal], {"BOOKINGS_BUSINESS_IDS": BUSINESS}
    ) as host:
        yield host


def booking(number: int) -> Booking:
    """The list's bookings: 15 minutes apart, so the highest number is the newest."""
    return listed_booking(BUSINESS, number, BookingStatus.UNBILLED)


def fill(location: Path, size: int, through_api: int) -> dict[str, float]:
    """`size` bookings in the Azurite data directory `location`: the first `through_api` through
    the table API, the rest bulk-loaded into its database file; the seconds of each step."""
    through_api = min(through_api, size)
    with start_azurite(location=location) as azurite:
        api_s = support.seed(azurite.connection_string, (booking(n) for n in range(through_api)))
    # Stopped (SIGTERM): Azurite saved its database file, with the documents it made of those rows.
    azurite_bulk.check_format(location, (booking(n) for n in range(through_api)))
    bulk = azurite_bulk.bulk_load(location, (booking(n) for n in range(through_api, size)))
    if bulk.count != 2 * size:  # each booking is two rows: itself and its list index row
        raise RuntimeError(f"the table holds {bulk.count:,} rows after the bulk load, not {2 * size:,}")
    return {
        "apiSeconds": api_s,
        "bulkSeconds": bulk.build_seconds + bulk.load_seconds,
        "buildSeconds": bulk.build_seconds,
        "lokiSeconds": bulk.load_seconds,
    }


def check_table(connection: str, url: str, size: int, through_api: int) -> None:
    """The oldest booking (through the API), the first and last bulk-loaded ones read back through
    the product's store, and the first page holding the 100 newest bookings: or raise."""
    store = BookingStore(
        TableServiceClient.from_connection_string(connection).get_table_client(BOOKINGS_TABLE)
    )
    for number in sorted({0, min(through_api, size - 1), size - 1}):
        expected = booking(number)
        stored = store.get(BUSINESS, expected.key)
        if stored is None or replace(stored, extra={}) != expected:
            raise RuntimeError(f"booking {number} reads back as {stored!r}")
    page = api_sign_in(url).get(f"{url}/api/bookings", params={"top": "100"}, timeout=120)
    keys = [item["key"] for item in page.json()["value"]]
    newest = [booking(n).key for n in range(size - 1, max(size - 101, -1), -1)]
    if keys != newest:
        raise RuntimeError(
            f"the first page is not the 100 newest bookings: {keys[:3]}... ({page.status_code})"
        )


def first_page_ms(url: str, runs: int) -> float:
    session = api_sign_in(url)
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        response = session.get(f"{url}/api/bookings", params={"top": "100"}, timeout=60)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200 and len(response.json()["value"]) == 100, response.text[:300]
    return statistics.median(timings)


def first_paint_ms(url: str, runs: int) -> tuple[float, float]:
    """Medians of the first rows painted and of the filter's total shown, navigation start to each.
    Each run waits for its total before the next navigation, so no run's first page queues behind
    the previous page's total (in Azurite's one thread and the app's)."""
    painted, totalled = [], []
    with chromium() as driver:
        sign_in(driver, url, "bench@contoso.com", ["Bookings.Read", "Bookings.Invoice"])
        for _ in range(runs):
            driver.get(f"{url}/")
            painted.append(float(wait(driver).until(lambda d: d.execute_script(PAINTED))))
            assert driver.find_elements(By.CSS_SELECTOR, "#rows tr")
            totalled.append(float(wait(driver, TOTALS_TIMEOUT).until(lambda d: d.execute_script(TOTALLED))))
    return statistics.median(painted), statistics.median(totalled)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--through-api", type=int, default=THROUGH_API, help="bookings seeded through the table API"
    )
    args = parser.parse_args(argv)
    through_api = min(args.through_api, args.table)
    with tempfile.TemporaryDirectory(prefix="bench-portal-") as work:
        location, state = Path(work) / "azurite", Path(work) / "devhost"
        seeding = fill(location, args.table, through_api)
        started = time.perf_counter()
        with start_azurite(location=location, timeout=STARTUP_SECONDS) as azurite:
            start_s = time.perf_counter() - started
            with portal_host(azurite.connection_string, state) as host:
                check_table(azurite.connection_string, host.url, args.table, through_api)
                page_ms = first_page_ms(host.url, args.runs)
                paint_ms, totals_ms = first_paint_ms(host.url, args.runs)
    rows = [
        ("bookings in the table", f"{args.table:,}", ""),
        ("  seeded through the table API", f"{through_api:,}", f"({seeding['apiSeconds']:.1f} s)"),
        (
            "  bulk-loaded into its database file",
            f"{args.table - through_api:,}",
            f"({seeding['bulkSeconds']:.1f} s: documents built {seeding['buildSeconds']:.1f} s, "
            f"LokiJS load {seeding['lokiSeconds']:.1f} s)",
        ),
    ]
    for name, value, note in rows:
        print(f"{name:40} {value:>10}  {note}")
    print(f"{'  Azurite start on that file':40} {start_s:>10.1f} s")
    print(f"{'first page of 100, newest first':40} {page_ms:>10.0f} ms  (target < 1000)")
    print(f"{'portal: first rows painted':40} {paint_ms:>10.0f} ms  (target < 1000)")
    print(f"{'portal: the filter total shown':40} {totals_ms:>10.0f} ms")
    support.print_json(
        {
            "bench": "portal",
            "table": args.table,
            "first_page_ms": page_ms,
            "first_paint_ms": paint_ms,
            "totals_ms": totals_ms,
            "throughApi": through_api,
            "seedApiSeconds": round(seeding["apiSeconds"], 1),
            "seedBulkSeconds": round(seeding["bulkSeconds"], 1),
            "azuriteStartSeconds": round(start_s, 1),
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
