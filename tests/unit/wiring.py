"""The app as production wires it (`shared.bootstrap.Container`), on the in-memory fakes.

`fake_app()` builds the composition root with every port replaced by its fake from
`tests/unit/fakes.py` and the clock by a `ManualClock`; the use cases (`app.container.invoice_booking`,
`.booking_sync`, `.selection`, ...) are then built by the same code as in production. Settings are
the tests' product settings; pass app-setting overrides by name (`SYNC_CUSTOMERS="true"`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.bootstrap import Container, Ports
from shared.settings import load_settings
from tests.conftest import product_settings
from tests.unit.builders import DINNER, LUNCH
from tests.unit.fakes import (
    T0,
    FakeBookingStore,
    FakeBusinessCentral,
    FakeGraph,
    FakeLinkStore,
    FakeQueue,
    FakeRequestStore,
    FakeSyncState,
    ManualClock,
)


@dataclass
class FakeApp:
    container: Container
    clock: ManualClock
    store: FakeBookingStore
    queue: FakeQueue
    requests: FakeRequestStore
    links: FakeLinkStore
    sync_state: FakeSyncState
    bc: FakeBusinessCentral
    graph: FakeGraph


def fake_app(now: datetime = T0, *, queue: FakeQueue | None = None, **settings: str) -> FakeApp:
    """The app on fresh fakes (`queue`: one scripted to fail); `settings` override app settings."""
    env = product_settings(
        "UseDevelopmentStorage=true",
        **{
            "BOOKINGS_BUSINESS_IDS": f"{LUNCH},{DINNER}",
            "BOOKINGS_TIME_ZONE": "Europe/Amsterdam",
            **settings,
        },
    )
    clock = ManualClock(now)
    store = FakeBookingStore(clock)
    queue, requests, links = queue or FakeQueue(), FakeRequestStore(clock), FakeLinkStore(clock)
    sync_state, bc, graph = FakeSyncState(), FakeBusinessCentral(), FakeGraph(clock)
    ports = Ports(
        booking_store=store,
        invoice_queue=queue,
        invoice_requests=requests,
        link_store=links,
        sync_state=sync_state,
        business_central=bc,
        graph_bookings=graph,
    )
    container = Container(load_settings(env), ports)
    container.clock = clock
    return FakeApp(container, clock, store, queue, requests, links, sync_state, bc, graph)
