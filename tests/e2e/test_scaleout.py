"""Several app instances (devhost processes) against one Azurite and one sandbox: together they
stay inside one Business Central budget, and every booking still gets exactly one invoice."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.devhost_process import HostProcess
from tests.e2e.test_invoicing import (  # noqa: F401 - fixtures `world` and `spawn_host`
    AIKO,
    BENTO,
    BOB,
    MARIE,
    SIOBHAN,
    World,
    spawn_host,
    world,
)

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("concurrency", [3, 5])
def test_three_instances_share_one_business_central_budget(
    world: World,  # noqa: F811
    spawn_host: Callable[..., HostProcess],  # noqa: F811
    concurrency: int,
) -> None:
    # Each process runs 12 invocations at once: 36 against a budget of `concurrency`.
    world.sandbox.admin.set_faults({"latency": {"bc": 0.1}})
    people = [BOB, AIKO, MARIE, SIOBHAN]
    bookings = [world.add(people[i % 4], BENTO) for i in range(72)]
    world.select(bookings, copies=2)  # duplicates too: still one invoice each
    hosts = [spawn_host({**world.settings, "BC_MAX_CONCURRENCY": str(concurrency)}) for _ in range(3)]
    world.settle(bookings, timeout=240)
    world.assert_exactly_one_invoice_each(bookings)
    bc = world.sandbox.app.faults.stats()["concurrency"]["bc"]
    assert bc["maxRunning"] <= concurrency  # the sandbox never saw more in flight
    assert bc["maxQueued"] == 0  # nothing waited inside Business Central
    assert int(world.sandbox.app.counters.snapshot()["bc"]["statuses"].get("429", 0)) == 0
    worked = [host for host in hosts if "Executed 'Functions.create_invoice'" in host.log()]
    assert len(worked) >= 2, "the work was shared between the instances"
