"""`BookingSync` with a fake Graph and the fake sync writer: windows, outcomes, isolation."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.models import Booking, BookingStatus
from shared.domain.sync_window import DEFAULT_OVERLAP, RETENTION_GUARD, SyncWindow, plan_window, sub_windows
from shared.services.booking_sync import SyncFailedError, side_by_side
from shared.services.timer_run import SyncTimerRun
from tests.unit.builders import DINNER, LUNCH, make_appointment, make_booking
from tests.unit.fakes import (
    FakeQueue,
)
from tests.unit.wiring import fake_app

LOOKBACK_DAYS = 30
NOW = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)


class World:
    """The sync as production wires it (`tests/unit/wiring.py`); `options` tune its knobs."""

    def __init__(
        self, businesses: tuple[str, ...] = (LUNCH,), retention_days: int = 400, **options: int
    ) -> None:
        app = fake_app(
            NOW,
            BOOKINGS_BUSINESS_IDS=",".join(businesses),
            SYNC_LOOKBACK_DAYS=str(LOOKBACK_DAYS),
            RETENTION_DAYS=str(retention_days),
        )
        self.clock, self.store, self.graph, self.state = app.clock, app.store, app.graph, app.sync_state
        self.sync = app.container.booking_sync
        self.writer = self.sync.upserter
        for name, value in options.items():
            setattr(self.sync, name, value)

    def booking(self, business: str, number: int) -> Booking:
        found = self.store.get(business, make_booking(business, number).key)
        assert found is not None
        return found


def test_plan_window_first_normal_and_catching_up() -> None:
    assert plan_window(NOW, None, 7) == SyncWindow(NOW - timedelta(days=7), NOW, first_run=True)
    assert plan_window(NOW, NOW - timedelta(hours=1), 7) == SyncWindow(NOW - timedelta(days=7), NOW)
    watermark = NOW - timedelta(days=10)
    assert plan_window(NOW, watermark, 7) == SyncWindow(watermark - DEFAULT_OVERLAP, NOW, catching_up=True)
    edge = NOW - timedelta(days=7) + DEFAULT_OVERLAP  # resumes exactly at the lookback's start
    assert plan_window(NOW, edge, 7) == SyncWindow(NOW - timedelta(days=7), NOW)
    with pytest.raises(ValueError, match="aware"):
        plan_window(NOW.replace(tzinfo=None), None, 7)


def test_a_first_run_creates_completed_appointments_and_counts_the_rest() -> None:
    world = World()
    world.graph.add(*(make_appointment(LUNCH, n) for n in range(1, 4)))
    world.graph.add(make_appointment(LUNCH, 4, start=NOW - timedelta(minutes=10)))  # still running
    world.graph.add_invalid(LUNCH, "AAMk-broken", "startDateTime is missing")
    world.graph.add_invalid(LUNCH, None, "not a JSON object")

    report = world.sync.run()

    assert report.ok
    (result,) = report.results
    assert result.window == SyncWindow(NOW - timedelta(days=LOOKBACK_DAYS), NOW, first_run=True)
    assert world.graph.views == [(LUNCH, NOW - timedelta(days=LOOKBACK_DAYS), NOW)]
    counts = result.counts()
    assert (counts["read"], counts["new"], counts["notCompleted"], counts["invalid"]) == (6, 3, 1, 2)
    assert {b.appointment_id for b in world.store.all()} == {make_appointment(LUNCH, n).id for n in (1, 2, 3)}
    assert all(b.status is BookingStatus.UNBILLED for b in world.store.all())
    assert world.state.get(LUNCH).fully_read_to == NOW
    assert world.state.get(LUNCH).last_counts["new"] == 3


def test_a_second_run_writes_only_what_changed_and_cancels_what_is_gone() -> None:
    world = World()
    world.graph.add(*(make_appointment(LUNCH, n) for n in range(1, 5)))
    world.sync.run()
    world.clock.advance(hours=1)
    world.graph.add(make_appointment(LUNCH, 2, price=25.0))  # price corrected
    world.graph.remove(LUNCH, make_appointment(LUNCH, 3).id)  # cancelled in Bookings
    world.store.touch(LUNCH, make_booking(LUNCH, 4).key, status=BookingStatus.QUEUED, request_id="r")
    world.graph.remove(LUNCH, make_appointment(LUNCH, 4).id)  # gone, but invoicing owns it

    (result,) = world.sync.run().results

    counts = result.counts()
    assert (counts["new"], counts["updated"], counts["unchanged"], counts["cancelled"]) == (0, 1, 1, 1)
    assert world.booking(LUNCH, 2).price == 25.0
    assert world.booking(LUNCH, 3).status is BookingStatus.CANCELLED
    assert world.booking(LUNCH, 4).status is BookingStatus.QUEUED
    # Only the missing Unbilled booking was confirmed gone by a point read.
    assert world.graph.point_reads == [(LUNCH, make_appointment(LUNCH, 3).id)]


def test_an_appointment_that_moved_out_of_the_window_is_refreshed_not_cancelled() -> None:
    world = World()
    world.graph.add(make_appointment(LUNCH, 1))
    world.sync.run()
    moved = make_appointment(LUNCH, 1, start=NOW + timedelta(days=40))
    world.graph.add(moved)
    (result,) = world.sync.run().results
    assert result.counts()["cancelled"] == 0
    stored = world.booking(LUNCH, 1)
    assert (stored.status, stored.start) == (BookingStatus.UNBILLED, moved.start)


def test_a_cancelled_booking_that_reappears_is_revived() -> None:
    world = World()
    world.graph.add(make_appointment(LUNCH, 1))
    world.store.put(make_booking(LUNCH, 1, status=BookingStatus.CANCELLED))
    (result,) = world.sync.run().results
    assert result.counts()["revived"] == 1
    assert world.booking(LUNCH, 1).status is BookingStatus.UNBILLED


def test_an_unreadable_appointment_is_not_taken_for_a_cancellation() -> None:
    world = World()
    world.store.put(make_booking(LUNCH, 1))
    world.graph.add_invalid(LUNCH, make_appointment(LUNCH, 1).id, "price is not a number")
    (result,) = world.sync.run().results
    assert result.counts()["invalid"] == 1 and result.counts()["cancelled"] == 0
    assert world.booking(LUNCH, 1).status is BookingStatus.UNBILLED
    assert world.graph.point_reads == []


def test_after_an_outage_the_window_resumes_at_the_watermark() -> None:
    world = World()
    watermark = NOW - timedelta(days=45)
    world.state.set_watermark(LUNCH, watermark)
    (result,) = world.sync.run().results
    assert result.window == SyncWindow(watermark - DEFAULT_OVERLAP, NOW, catching_up=True)
    assert world.writer.windows == [(LUNCH, watermark - DEFAULT_OVERLAP, NOW)]


@pytest.mark.parametrize("parallel", [1, 4])
def test_a_failing_business_is_isolated_and_keeps_its_watermark(parallel: int) -> None:
    world = World((LUNCH, DINNER), max_parallel_businesses=parallel, prefetch_pages=parallel - 1)
    world.graph.add(*(make_appointment(LUNCH, n) for n in range(1, 4)))
    world.graph.add(*(make_appointment(DINNER, n) for n in range(1, 4)))
    earlier = NOW - timedelta(hours=2)
    world.state.set_watermark(DINNER, earlier)
    world.graph.failures[DINNER] = ConnectionError("Graph went away")

    report = world.sync.run()

    assert not report.ok
    assert [r.business_id for r in report.failed] == [DINNER]
    failed = report.failed[0]
    assert failed.error == "ConnectionError: Graph went away"
    assert world.state.get(DINNER).fully_read_to == earlier
    assert world.state.get(DINNER).last_outcome == "failed"
    assert world.state.get(LUNCH).fully_read_to == NOW
    assert len(list(world.store.of_business(LUNCH))) == 3
    # What was read before the failure is correct data and is kept; nothing was cancelled.
    assert all(b.status is BookingStatus.UNBILLED for b in world.store.of_business(DINNER))


def test_the_timer_runs_recovery_and_backlog_even_when_a_business_fails() -> None:
    world = World((LUNCH, DINNER))
    world.graph.failures[DINNER] = ConnectionError("down")
    stuck = world.store.put(
        make_booking(LUNCH, 9, status=BookingStatus.QUEUED, status_changed_at=NOW - timedelta(hours=2))
    )
    queue = FakeQueue()
    with pytest.raises(SyncFailedError, match=DINNER):
        SyncTimerRun(world.sync, world.store, queue, world.clock)()
    assert queue.sent_keys == [stuck.key]


def test_the_timer_returns_the_report_when_every_business_synced() -> None:
    world = World((LUNCH,))
    world.graph.add(make_appointment(LUNCH, 1))
    report = SyncTimerRun(world.sync, world.store, FakeQueue(), world.clock)()
    assert report.ok and report.results[0].counts()["new"] == 1


def test_a_catch_up_never_starts_before_the_retention_horizon() -> None:
    watermark = NOW - timedelta(days=500)
    window = plan_window(NOW, watermark, 7, retention_days=400)
    assert window.start == NOW - timedelta(days=400) + RETENTION_GUARD
    assert window.catching_up and window.not_read_before == watermark - DEFAULT_OVERLAP
    inside = NOW - timedelta(days=200)  # an outage shorter than retention: read from the watermark
    assert plan_window(NOW, inside, 7, retention_days=400) == SyncWindow(
        inside - DEFAULT_OVERLAP, NOW, catching_up=True
    )
    assert plan_window(NOW, watermark, 7).start == watermark - DEFAULT_OVERLAP  # no retention: no cut


def test_a_sync_cut_at_the_retention_horizon_reads_nothing_older() -> None:
    world = World(retention_days=60)
    old = make_appointment(LUNCH, 1, start=NOW - timedelta(days=70))  # older than retention allows
    recent = make_appointment(LUNCH, 2, start=NOW - timedelta(days=50))
    world.graph.add(old, recent)
    world.state.set_watermark(LUNCH, NOW - timedelta(days=90))

    report = world.sync.run()

    assert [b.appointment_id for b in world.store.all()] == [recent.id]
    [result] = report.results
    assert result.window is not None and result.window.not_read_before is not None
    assert world.state.get(LUNCH).fully_read_to == NOW


def test_sub_windows_cover_the_window_in_bounded_consecutive_pieces() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    pieces = sub_windows(start, start + timedelta(days=100), timedelta(days=31))
    assert [b - a for a, b in pieces] == [timedelta(days=31)] * 3 + [timedelta(days=7)]
    assert pieces[0][0] == start and all(pieces[i][1] == pieces[i + 1][0] for i in range(3))
    assert sub_windows(start, start + timedelta(days=30), timedelta(days=31)) == [
        (start, start + timedelta(days=30))
    ]


def test_side_by_side_yields_every_item_of_every_source_and_raises_the_first_failure() -> None:
    sources = [lambda n=n: iter(range(n * 10, n * 10 + 5)) for n in range(6)]
    assert sorted(side_by_side(sources, 4, 2)) == sorted(
        x for n in range(6) for x in range(n * 10, n * 10 + 5)
    )

    def broken() -> Iterator[int]:
        yield 1
        raise RuntimeError("page 2 failed")

    with pytest.raises(RuntimeError, match="page 2 failed"):
        list(side_by_side([lambda: iter(range(3)), broken], 2, 1))


def test_the_time_budget_of_a_run_ends_before_the_hosts_function_timeout() -> None:
    import json
    from pathlib import Path

    from shared.services.booking_sync import INVOCATION_BUDGET

    text = json.loads((Path(__file__).parents[2] / "host.json").read_text(encoding="utf-8"))[
        "functionTimeout"
    ]
    hours, minutes, seconds = (int(part) for part in text.split(":"))
    assert timedelta(minutes=1) < INVOCATION_BUDGET < timedelta(hours=hours, minutes=minutes, seconds=seconds)
