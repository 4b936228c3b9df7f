"""`GraphBookings`: a business's appointments in a window (`calendarView`, paged) and one by id."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.services.ports import GraphBookings

WINDOW_START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


@dataclass
class GraphWorld:
    """The port, its business, and `add(start, minutes, email)`: an appointment put in Bookings (its id)."""

    graph: GraphBookings
    business_id: str
    add: Callable[[datetime, int, str], str]


class GraphBookingsContract:
    """Subclasses provide a `graph_world` fixture."""

    def test_the_window_holds_each_overlapping_appointment_once(self, graph_world: GraphWorld) -> None:
        start, end = WINDOW_START, WINDOW_START + timedelta(hours=4)
        inside = graph_world.add(start + timedelta(hours=1), 30, "inside@example.com")
        overlapping = graph_world.add(start - timedelta(minutes=30), 60, "overlap@example.com")
        outside = graph_world.add(end + timedelta(hours=1), 30, "outside@example.com")
        ours = {inside, overlapping, outside}
        seen = [
            a.id
            for page in graph_world.graph.calendar_view_pages(graph_world.business_id, start, end)
            for a in page.appointments
            if a.id in ours
        ]
        assert sorted(seen) == sorted([inside, overlapping])

    def test_one_appointment_is_read_by_id_and_an_unknown_one_is_none(self, graph_world: GraphWorld) -> None:
        created = graph_world.add(WINDOW_START, 45, "Point.Read@Example.com")
        appointment = graph_world.graph.get_appointment(graph_world.business_id, created)
        assert appointment is not None and appointment.id == created
        assert appointment.end - appointment.start == timedelta(minutes=45)
        assert appointment.customer is not None and appointment.customer.email is not None
        assert appointment.customer.email.lower() == "point.read@example.com"
        assert graph_world.graph.get_appointment(graph_world.business_id, "AAMkunknown=") is None
