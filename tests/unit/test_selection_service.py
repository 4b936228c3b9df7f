"""`SelectionService` over the in-memory fakes: claims, batches, undo on a failed send, limits."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from shared.api.views import selection_view
from shared.domain.errors import ConcurrentChangeError, SelectionTooLargeError, StorageUnavailableError
from shared.domain.filters import BookingFilter
from shared.domain.models import Booking, BookingStatus
from shared.domain.requests import RequestItem
from shared.services.booking_queries import BookingQueries
from shared.services.selection import QueueUnavailableError, Selection
from tests.unit.builders import DINNER, LUNCH, make_booking
from tests.unit.fakes import FakeBookingStore, FakeQueue
from tests.unit.wiring import fake_app

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class World:
    """The selection as production wires it (`tests/unit/wiring.py`), on the shared API thread pool;
    `inline` takes the pool away, so the same rules run without threads too."""

    def __init__(
        self, *, max_selection: int = 100, queue: FakeQueue | None = None, inline: bool = False
    ) -> None:
        app = fake_app(queue=queue, MAX_SELECTION=str(max_selection))
        self.clock, self.store, self.queue, self.requests = app.clock, app.store, app.queue, app.requests
        self.service = app.container.selection
        if inline:
            self.service.executor = self.service.queries.executor = None

    def seed(self, *bookings: Booking) -> list[Booking]:
        return self.store.put_all(bookings)

    def status(self, booking: Booking) -> BookingStatus | None:
        return self.store.status_of(booking.business_id, booking.key)


@pytest.fixture(params=[True, False], ids=["inline", "thread-pool"])
def world(request: pytest.FixtureRequest) -> World:
    return World(inline=request.param)


def test_keys_claim_unbilled_and_failed_skip_the_rest_and_report_unknown_keys(world: World) -> None:
    unbilled, failed, invoiced = world.seed(
        make_booking(LUNCH, 1),
        make_booking(DINNER, 2, status=BookingStatus.FAILED, error_code="BC_REJECTED", error="x"),
        make_booking(LUNCH, 3, status=BookingStatus.INVOICED),
    )
    unknown = "A" * 26
    result = world.service.submit(
        Selection(keys=(unbilled.key, failed.key, invoiced.key, unknown)), traceparent=TRACEPARENT
    )

    assert result.accepted == 2
    assert [(s.key, s.status) for s in result.skipped] == [(invoiced.key, BookingStatus.INVOICED)]
    assert result.not_found == [unknown]
    for booking in (unbilled, failed):
        stored = world.store.get(booking.business_id, booking.key)
        assert stored is not None
        assert (stored.status, stored.request_id, stored.error_code) == (
            BookingStatus.QUEUED,
            result.request_id,
            None,
        )
    assert sorted(world.queue.sent_keys) == sorted([unbilled.key, failed.key])
    assert {m.request_id for m in world.queue.sent} == {result.request_id}
    assert {m.traceparent for m in world.queue.sent} == {TRACEPARENT}
    assert {(m.business_id, m.booking_key) for m in world.queue.sent} == {
        (LUNCH, unbilled.key),
        (DINNER, failed.key),
    }
    assert world.requests.items(result.request_id) == sorted(
        [RequestItem(LUNCH, unbilled.key), RequestItem(DINNER, failed.key)], key=lambda i: i.key
    )
    header = world.requests.header(result.request_id)
    assert header is not None
    assert (header.state, header.accepted, header.skipped, header.not_found, header.not_queued) == (
        "Accepted",
        2,
        1,
        1,
        0,
    )
    assert header.selection == {"mode": "keys", "keys": 4}
    assert selection_view(result)["notFound"] == [unknown]


def test_all_selects_only_unbilled_bookings_matching_the_filter(world: World) -> None:
    wanted = world.seed(make_booking(LUNCH, 1), make_booking(LUNCH, 2))
    world.seed(
        make_booking(DINNER, 3),
        make_booking(LUNCH, 4, status=BookingStatus.FAILED),
        make_booking(LUNCH, 5, status=BookingStatus.CANCELLED),
    )
    result = world.service.submit(Selection(filter=BookingFilter(business_id=LUNCH)))
    assert result.accepted == 2
    assert result.skipped == [] and result.not_found == []
    assert sorted(world.queue.sent_keys) == sorted(b.key for b in wanted)
    assert world.store.count_by_status(BookingStatus.QUEUED) == 2
    assert world.store.count_by_status(BookingStatus.FAILED) == 1  # a filter never re-selects failures


def test_claims_go_in_atomic_batches_of_at_most_the_store_batch() -> None:
    # 33 bookings a transaction: each claim is 3 of its 100 operations (the booking, its list index).
    world = World(max_selection=1000)
    world.seed(*(make_booking(LUNCH, n) for n in range(150)))
    result = world.service.submit(Selection(filter=BookingFilter()))
    assert result.accepted == 150
    assert world.store.writes["save_batch"] == 5
    assert world.store.writes["save"] == 0
    assert world.store.count_by_status(BookingStatus.QUEUED) == 150


def test_a_concurrent_change_in_a_batch_falls_back_to_one_by_one() -> None:
    world = World()
    bookings = world.seed(*(make_booking(LUNCH, n) for n in range(1, 5)))
    raced = bookings[1]
    calls: list[str] = []

    def other_request_wins(kind: str, batch: Sequence[Booking]) -> None:
        calls.append(kind)
        if kind == "save_batch":
            world.store.touch(LUNCH, raced.key, status=BookingStatus.QUEUED, request_id="someone-else")

    world.store.before_write = other_request_wins
    result = world.service.submit(Selection(keys=tuple(b.key for b in bookings)))

    assert result.accepted == 3
    assert [(s.key, s.status) for s in result.skipped] == [(raced.key, BookingStatus.QUEUED)]
    assert world.store.writes["save_batch"] == 0  # the batch wrote nothing
    assert world.store.writes["save"] == 3  # then each booking on its own
    assert raced.key not in world.queue.sent_keys
    stored = world.store.get(LUNCH, raced.key)
    assert stored is not None and stored.request_id == "someone-else"


def test_a_booking_that_vanishes_during_the_claim_is_not_found() -> None:
    world = World()
    kept, gone = world.seed(make_booking(LUNCH, 1), make_booking(LUNCH, 2))

    def delete_one(kind: str, batch: Sequence[Booking]) -> None:
        if kind == "save_batch":
            world.store.delete(LUNCH, gone.key)

    world.store.before_write = delete_one
    result = world.service.submit(Selection(keys=(kept.key, gone.key)))
    assert (result.accepted, result.not_found, result.skipped) == (1, [gone.key], [])


def test_a_failed_send_undoes_that_claim_and_reports_it_skipped() -> None:
    world = World()
    ok, refused_unbilled, refused_failed = world.seed(
        make_booking(LUNCH, 1),
        make_booking(LUNCH, 2),
        make_booking(
            LUNCH, 3, status=BookingStatus.FAILED, error_code="BC_REJECTED", error="old", request_id="r0"
        ),
    )
    world.queue.refuse_keys = {refused_unbilled.key, refused_failed.key}
    result = world.service.submit(Selection(keys=(ok.key, refused_unbilled.key, refused_failed.key)))

    assert result.accepted == 1
    assert world.queue.sent_keys == [ok.key]
    skipped = {s.key: s for s in result.skipped}
    assert set(skipped) == {refused_unbilled.key, refused_failed.key}
    assert skipped[refused_unbilled.key].status == BookingStatus.UNBILLED
    assert skipped[refused_failed.key].status == BookingStatus.FAILED
    assert all("QueueDownError" in (s.reason or "") for s in result.skipped)
    restored = world.store.get(LUNCH, refused_failed.key)
    assert restored is not None
    assert (restored.status, restored.request_id, restored.error_code, restored.error) == (
        BookingStatus.FAILED,
        "r0",
        "BC_REJECTED",
        "old",
    )
    assert world.status(refused_unbilled) == BookingStatus.UNBILLED
    assert world.requests.items(result.request_id) == [RequestItem(LUNCH, ok.key)]
    header = world.requests.header(result.request_id)
    assert header is not None and (header.accepted, header.not_queued, header.skipped) == (1, 2, 2)


def test_a_queue_that_is_down_raises_and_leaves_nothing_queued() -> None:
    world = World(queue=FakeQueue(down=True))
    bookings = world.seed(*(make_booking(LUNCH, n) for n in range(1, 4)))
    with pytest.raises(QueueUnavailableError) as caught:
        world.service.submit(Selection(keys=tuple(b.key for b in bookings)))
    assert caught.value.cause == "QueueDownError"
    assert world.store.count_by_status(BookingStatus.QUEUED) == 0
    assert world.store.count_by_status(BookingStatus.UNBILLED) == 3
    assert world.requests.items(caught.value.request_id) == []
    header = world.requests.header(caught.value.request_id)
    assert header is not None and (header.accepted, header.not_queued) == (0, 3)


def test_a_selection_larger_than_the_limit_claims_nothing() -> None:
    world = World(max_selection=2)
    world.seed(*(make_booking(LUNCH, n) for n in range(3)))
    with pytest.raises(SelectionTooLargeError) as caught:
        world.service.submit(Selection(filter=BookingFilter()))
    assert caught.value.limit == 2
    assert world.store.count_by_status(BookingStatus.UNBILLED) == 3
    assert world.requests.headers == {} and world.queue.attempts == 0


def test_exactly_the_limit_is_accepted() -> None:
    world = World(max_selection=3)
    world.seed(*(make_booking(LUNCH, n) for n in range(3)))
    assert world.service.submit(Selection(filter=BookingFilter())).accepted == 3


def test_storage_trouble_while_claiming_undoes_every_claim_and_raises() -> None:
    world = World()
    lunch, dinner = world.seed(make_booking(LUNCH, 1), make_booking(DINNER, 2))

    def dinner_partition_down(kind: str, batch: Sequence[Booking]) -> None:
        if batch[0].business_id == DINNER and kind != "save":
            raise OSError("storage unreachable")

    world.store.before_write = dinner_partition_down
    with pytest.raises(OSError, match="storage unreachable"):
        world.service.submit(Selection(keys=(lunch.key, dinner.key)))
    assert world.status(lunch) == BookingStatus.UNBILLED
    assert world.status(dinner) == BookingStatus.UNBILLED
    assert world.queue.attempts == 0
    assert world.requests.headers == {}  # the refused request leaves no header behind


def test_failing_to_record_the_items_undoes_the_claims() -> None:
    world = World()
    (booking,) = world.seed(make_booking(LUNCH, 1))
    world.requests.fail_add_items = OSError("table down")
    with pytest.raises(OSError, match="table down"):
        world.service.submit(Selection(keys=(booking.key,)))
    assert world.status(booking) == BookingStatus.UNBILLED
    assert world.queue.attempts == 0
    assert world.requests.headers == {}


def test_two_identical_requests_claim_each_booking_once() -> None:
    world = World()
    bookings = world.seed(*(make_booking(LUNCH, n) for n in range(1, 4)))
    keys = tuple(b.key for b in bookings)
    first = world.service.submit(Selection(keys=keys))
    second = world.service.submit(Selection(keys=keys))
    assert (first.accepted, second.accepted) == (3, 0)
    assert {s.status for s in second.skipped} == {BookingStatus.QUEUED}
    assert len(world.queue.sent) == 3


class AnswerLostStore(FakeBookingStore):
    """A store whose batch claims commit but answer with a conflict (an ambiguous write the retry
    layer could not prove ours, e.g. a row changed again before it was read back)."""

    def save_batch(self, bookings: Sequence[Booking]) -> list[Booking]:
        super().save_batch(bookings)
        raise ConcurrentChangeError("a booking of the batch changed meanwhile")


def test_a_claim_that_committed_although_its_answer_said_otherwise_is_still_ours() -> None:
    world = World()
    world.store = AnswerLostStore(world.clock)
    world.service.store = world.store
    world.service.queries = BookingQueries(world.store, [LUNCH, DINNER])
    bookings = world.seed(*(make_booking(LUNCH, n) for n in range(1, 4)))

    result = world.service.submit(Selection(keys=tuple(b.key for b in bookings)))

    assert result.accepted == 3 and result.skipped == []
    assert sorted(world.queue.sent_keys) == sorted(b.key for b in bookings)  # one message each


def test_storage_unavailable_while_claiming_undoes_the_claims_and_reaches_the_caller() -> None:
    world = World()
    lunch, dinner = world.seed(make_booking(LUNCH, 1), make_booking(DINNER, 2))

    def dinner_down(kind: str, batch: Sequence[Booking]) -> None:
        if batch[0].business_id == DINNER and kind != "save":
            raise StorageUnavailableError("transaction on table Bookings", 6, "ServiceResponseError")

    world.store.before_write = dinner_down
    with pytest.raises(StorageUnavailableError):
        world.service.submit(Selection(keys=(lunch.key, dinner.key)))
    assert world.status(lunch) == BookingStatus.UNBILLED and world.status(dinner) == BookingStatus.UNBILLED
    assert world.queue.attempts == 0
    assert world.requests.headers == {}


def test_a_header_that_cannot_be_discarded_while_storage_is_down_leaves_the_outage_error() -> None:
    world = World()
    (lunch,) = world.seed(make_booking(LUNCH, 1))
    outage = StorageUnavailableError("transaction on table Bookings", 6, "ServiceResponseError")

    def down(kind: str, batch: Sequence[Booking]) -> None:
        if kind != "save":
            raise outage

    def discard_fails(request_id: str) -> None:
        raise StorageUnavailableError("delete on table InvoiceRequests", 6, "ServiceResponseError")

    world.store.before_write = down
    world.requests.discard = discard_fails  # type: ignore[method-assign]
    with pytest.raises(StorageUnavailableError) as raised:
        world.service.submit(Selection(keys=(lunch.key,)))
    assert raised.value is outage
    assert [h.state for h in world.requests.headers.values()] == ["Accepting"]


def test_once_the_messages_are_out_a_storage_outage_only_costs_the_request_totals() -> None:
    world = World()
    (booking,) = world.seed(make_booking(LUNCH, 1))

    def finish_fails(header: object) -> None:
        raise StorageUnavailableError("update on table InvoiceRequests", 6, "ServiceResponseError")

    world.requests.finish = finish_fails  # type: ignore[method-assign]
    result = world.service.submit(Selection(keys=(booking.key,)))
    assert result.accepted == 1 and world.queue.sent_keys == [booking.key]


def test_the_log_line_says_where_the_time_went(world: World, caplog: pytest.LogCaptureFixture) -> None:
    world.seed(make_booking(LUNCH, 1), make_booking(LUNCH, 2))
    with caplog.at_level("INFO", logger="bookings.selection"):
        world.service.submit(Selection(filter=BookingFilter(business_id=LUNCH)))
    (record,) = [r for r in caplog.records if getattr(r, "selectionMode", None) == "all"]
    phases = {name: getattr(record, name) for name in ("readMs", "claimMs", "recordMs", "sendMs")}
    assert all(isinstance(ms, int) and ms >= 0 for ms in phases.values()), phases
    assert sum(phases.values()) <= record.durationMs + len(phases)  # type: ignore[attr-defined]
