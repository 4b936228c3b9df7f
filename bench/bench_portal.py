"""Benchmark: the portal's first meaningful paint, and the first page of a big list, newest first.

    .venv/bin/python bench/bench_portal.py [--table 100000] [--runs 5]

Starts its own Azurite, seeds `--table` Unbilled bookings (each with its list index row), runs the
whole HTTP surface (API + portal) in an in-process devhost, then:

1. `GET /api/bookings?top=100` (the first page, newest appointment first): median of `--runs`;
2. in headless Chromium (Debian's `chromium`), signed in through the mock form: the time from
   navigation start to the first rows painted in the list (median of `--runs` page loads).

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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from selenium.webdriver.common.by import By  # noqa: E402

from bench import support  # noqa: E402
from bench.bench_selection import BUSINESS, seed  # noqa: E402
from devhost.host import DevHost  # noqa: E402
from shared.domain.models import BookingStatus  # noqa: E402
from tests.auth_support import sign_in as api_sign_in  # noqa: E402
from tests.e2e.browser import chromium, sign_in, wait  # noqa: E402

PAINTED = "return document.querySelectorAll('#rows tr').length > 0 ? performance.now() : null;"


@contextlib.contextmanager
def portal_host(connection: str, state: Path) -> Iterator[DevHost]:
    from functions.http_triggers import bp as api
    from functions.portal import bp as portal
    from functions.portal_api import bp as portal_api

    with support.http_host(
        connection, state, [api, portal_api, portal], {"BOOKINGS_BUSINESS_IDS": BUSINESS}
    ) as host:
        yield host


def first_page_ms(url: str, runs: int) -> float:
    session = api_sign_in(url)
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        response = session.get(f"{url}/api/bookings", params={"top": "100"}, timeout=60)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200 and len(response.json()["value"]) == 100, response.text[:300]
    return statistics.median(timings)


def first_paint_ms(url: str, runs: int) -> float:
    timings = []
    with chromium() as driver:
        sign_in(driver, url, "bench@contoso.com", ["Bookings.Read", "Bookings.Invoice"])
        for _ in range(runs):
            driver.get(f"{url}/")
            timings.append(float(wait(driver).until(lambda d: d.execute_script(PAINTED))))
            assert driver.find_elements(By.CSS_SELECTOR, "#rows tr")
    return statistics.median(timings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    with support.storage(fresh=True) as connection, tempfile.TemporaryDirectory() as state:
        seeded_s = seed(connection, 0, args.table, BookingStatus.UNBILLED)
        with portal_host(connection, Path(state)) as host:
            page_ms = first_page_ms(host.url, args.runs)
            paint_ms = first_paint_ms(host.url, args.runs)
    print(f"{'bookings in the table':40} {args.table:>10,}  (seeded in {seeded_s:.1f} s)")
    print(f"{'first page of 100, newest first':40} {page_ms:>10.0f} ms  (target < 1000)")
    print(f"{'portal: first rows painted':40} {paint_ms:>10.0f} ms  (target < 1000)")
    support.print_json(
        {"bench": "portal", "table": args.table, "first_page_ms": page_ms, "first_paint_ms": paint_ms}
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
