"""The composition root's port overrides: the unit tests run on production's wiring."""

from __future__ import annotations

from dataclasses import fields
from functools import cached_property

from shared.bootstrap import Container, Ports
from tests.unit.builders import DINNER, LUNCH
from tests.unit.wiring import FakeApp


def test_every_port_names_an_attribute_the_container_builds() -> None:
    for port in fields(Ports):
        assert isinstance(getattr(Container, port.name, None), cached_property), port.name


def test_the_use_cases_are_built_on_the_ports_given(app: FakeApp) -> None:
    container = app.container
    assert container.booking_store is app.store and container.invoice_queue is app.queue
    assert container.invoice_booking.store is app.store and container.invoice_booking.queue is app.queue
    assert container.invoice_booking.bc is app.bc
    assert container.customer_links.store is app.links
    assert container.selection.requests is app.requests
    assert container.booking_sync.graph is app.graph and container.booking_sync.state is app.sync_state
    assert container.booking_sync.business_ids == (LUNCH, DINNER)
    assert container.now() == app.clock()
