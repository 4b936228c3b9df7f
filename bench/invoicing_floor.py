"""The measured floor of invoicing: what the same Business Central work costs with bare calls.

The app's invoice is one deep-insert POST plus its storage work. The floor sends the same POSTs
(the same body the app builds, to the same sandbox with the same latency and faults) from
`BC_MAX_CONCURRENCY` threads with a bare `requests` session each (a 429 is sent again at once), and
makes one bare conditional table write (`update_entity` with `If-Match`) of the booking's row per
invoice, the least any exactly-once invoice must write. Measured in the same run on the same
machine, it makes the ratio app / floor a comparison of like with like, whatever its speed.
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import requests
from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableServiceClient, UpdateMode

from bench.support import invoiceable_booking
from shared.adapters.booking_entities import booking_to_entity
from shared.domain.invoice_lines import invoice_body

FLOOR_TABLE = "BenchFloor"


def invoice_bodies(container: Any, business_id: str, count: int) -> list[dict[str, Any]]:
    """The bodies the app would POST for `count` bench bookings (links resolved once, cached)."""
    bodies = []
    now = datetime.now(UTC)
    for number in range(count):
        booking = invoiceable_booking(business_id, number)
        customer = container.customer_links.resolve(booking.customer_email, booking.customer_name, None)
        item = container.item_links.resolve(booking.service_id, booking.service_name)
        body = invoice_body(
            booking,
            customer_id=customer.id,
            item_id=item.id,
            zone=container.settings.time_zone,
            rule=container.settings.invoice_date,
            now=now,
        )
        body["externalDocumentNumber"] = f"FLOOR-{number}"
        bodies.append(body)
    return bodies


def measure_floor(
    container: Any, connection: str, business_id: str, count: int, threads: int
) -> dict[str, Any]:
    """Invoices per second of the bare floor (module docstring)."""
    bodies = invoice_bodies(container, business_id, count)
    url = container.business_central._url("salesInvoices", None)
    token = container.token_provider.business_central_token()
    table = TableServiceClient.from_connection_string(connection).get_table_client(FLOOR_TABLE)
    with contextlib.suppress(ResourceExistsError):
        table.create_table()
    rows = [booking_to_entity(invoiceable_booking(business_id, n)) for n in range(count)]
    etags = [table.upsert_entity({**row, "Status": "Invoicing"})["etag"] for row in rows]
    sessions = threading.local()
    retries = [0]

    def one(number: int) -> None:
        session = getattr(sessions, "session", None) or requests.Session()
        sessions.session = session
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        while True:
            response = session.post(url, json=bodies[number], headers=headers, timeout=60)
            if response.status_code != 429:
                break
            retries[0] += 1
        response.raise_for_status()
        table.update_entity(
            {**rows[number], "Status": "Invoiced", "InvoiceId": response.json().get("id")},
            mode=UpdateMode.REPLACE,
            etag=etags[number],
            match_condition=MatchConditions.IfNotModified,
        )

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(count)))
    elapsed = time.perf_counter() - started
    return {
        "floorPerSecond": round(count / elapsed, 1),
        "floorSeconds": round(elapsed, 2),
        "floor429": retries[0],
    }
