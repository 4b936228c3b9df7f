"""Manual outcomes, reconcile_invoices and retention with in-memory fakes; the caller parser."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.api.input import InvalidInput
from shared.api.update_input import parse_update
from shared.api.views import update_view
from shared.domain.bc_records import BcInvoice
from shared.domain.errors import BusinessCentralError
from shared.domain.models import Actor, BookingStatus, InvoiceSource
from shared.domain.reconcile_rules import (
    FULL_READ_EVERY,
    InvoicePage,
    InvoiceState,
    Watermark,
    read_since,
    seen_posted,
    unposted,
)
from shared.services.booking_queries import BookingQueries
from shared.services.booking_updates import BookingUpdate, BookingUpdates
from shared.services.reconcile import InvoiceReconciler
from shared.services.retention import Retention
from shared.settings import SettingsError, load_settings
from tests.unit.builders import LUNCH, make_booking
from tests.unit.fakes import FakeBookingStore, ManualClock
from tests.unit.wiring import FakeApp

WHO = Actor("oid-1", "Bea")


def test_updates_change_what_they_apply_to_and_skip_the_rest_with_their_state(app: FakeApp) -> None:
    store = app.store
    a, b, c = store.put_all(
        [
            make_booking(number=1),
            make_booking(number=2, status=BookingStatus.QUEUED),
            make_booking(number=3, status=BookingStatus.FAILED),
        ]
    )
    result = app.container.booking_updates.apply(
        BookingUpdate("exclude", (a.key, b.key, c.key, "A" * 26), note="n"), WHO
    )
    assert update_view(result) == {
        "updated": [a.key, c.key],
        "skipped": [{"key": b.key, "status": "Queued"}],
        "notFound": ["A" * 26],
    }
    stored = store.get(LUNCH, a.key)
    assert stored is not None
    assert (stored.status, stored.note, stored.updated_by) == (BookingStatus.EXCLUDED, "n", WHO)


class _Unreachable:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def find_invoices_by_external_document_number(self, number: str) -> list[BcInvoice]:
        self.asked.append(number)
        raise BusinessCentralError("Business Central answered 503", status=503, transient=True)


def test_a_booking_whose_post_may_have_committed_is_left_failed_when_business_central_cannot_say() -> None:
    clock = ManualClock()
    store = FakeBookingStore(clock)
    unsure, other = store.put_all(
        [
            make_booking(
                number=1, status=BookingStatus.FAILED, error_code="BC_UNAVAILABLE", invoice_attempts=1
            ),
            make_booking(number=2, status=BookingStatus.FAILED, error_code="CUSTOMER_NOT_FOUND"),
        ]
    )
    lookup = _Unreachable()
    updates = BookingUpdates(store, BookingQueries(store, [LUNCH]), clock=clock, invoices=lookup)
    result = updates.apply(BookingUpdate("exclude", (unsure.key, other.key)), WHO)
    assert update_view(result)["skipped"] == [{"key": unsure.key, "status": "Failed"}]
    assert result.updated == [other.key] and lookup.asked == [f"BKG-{unsure.key}"]  # asked for that one only


def test_an_update_racing_a_claim_is_decided_again_on_the_fresh_booking(app: FakeApp) -> None:
    store = app.store
    (booking,) = store.put_all([make_booking()])
    updates = app.container.booking_updates
    stale = updates.queries.get(booking.key)
    store.touch(LUNCH, booking.key, status=BookingStatus.QUEUED)  # a selection claimed it meanwhile
    updates.queries.get_many = lambda keys: {booking.key: stale}  # type: ignore[method-assign]
    result = updates.apply(BookingUpdate("markInvoiced", (booking.key,)), WHO)
    assert result.updated == [] and result.skipped[0].status is BookingStatus.QUEUED
    assert store.status_of(LUNCH, booking.key) is BookingStatus.QUEUED


def test_update_body_is_checked_all_or_nothing() -> None:
    key = make_booking().key
    update = parse_update(
        {"action": "markInvoiced", "bookingKeys": [key, key], "reference": " R-1 "}, max_selection=5
    )
    assert (update.keys, update.reference) == ((key,), "R-1")
    for body in (
        {"action": "exclude", "bookingKeys": [key] * 1 + ["x"]},
        {"action": "nope", "bookingKeys": [key]},
        {"action": {}, "bookingKeys": [key]},
        {"action": "include", "bookingKeys": [key], "reference": "R"},
        {"action": "exclude", "bookingKeys": [key], "note": 5},
        {"action": "exclude", "bookingKeys": [make_booking(number=n).key for n in range(6)]},
    ):
        with pytest.raises(InvalidInput):
            parse_update(body, max_selection=5)


class FakeFeed:
    """salesInvoices as reconcile reads them (the app's own, oldest change first, `page_size` a
    page); counts requests like Business Central would see them. `fail_after_pages` cuts a read off."""

    def __init__(self, page_size: int = 1000) -> None:
        self.invoices: dict[str, InvoiceState] = {}
        self.requests = 0
        self.page_size = page_size
        self.fail_after_pages: int | None = None
        self.reads: list[datetime | None] = []

    def _pages(self, rows: list[InvoiceState]) -> Iterator[InvoicePage]:
        for n, start in enumerate(range(0, max(len(rows), 1), self.page_size)):
            if self.fail_after_pages is not None and n >= self.fail_after_pages:
                raise BusinessCentralError("read timed out", transient=True)
            self.requests += 1
            yield InvoicePage(rows[start : start + self.page_size])

    def changed_pages(self, since: datetime | None) -> Iterator[InvoicePage]:
        self.reads.append(since)
        rows = [
            i
            for i in self.invoices.values()
            if since is None or (i.last_modified and i.last_modified > since)
        ]
        return self._pages(sorted(rows, key=lambda i: i.last_modified or datetime.min.replace(tzinfo=UTC)))

    def unposted_pages(self, include_open: bool) -> Iterator[InvoicePage]:
        statuses = {"Draft", "In Review"} | ({"Open"} if include_open else set())
        return self._pages([i for i in self.invoices.values() if i.status in statuses])

    def get(self, invoice_id: str) -> InvoiceState | None:
        self.requests += 1
        return self.invoices.get(invoice_id)

    def find_by_external_document_number(self, number: str) -> list[InvoiceState]:
        self.requests += 1
        return [i for i in self.invoices.values() if i.external_document_number == number]


class FakeMarks:
    def __init__(self) -> None:
        self.mark: Watermark | None = None

    def get(self, company_id: str) -> Watermark | None:
        return self.mark

    def save(self, company_id: str, mark: Watermark, counts: dict[str, int]) -> None:
        self.mark = mark
        self.counts = counts


def _invoiced(store: FakeBookingStore, feed: FakeFeed, clock: ManualClock, count: int) -> list[str]:
    keys = []
    for n in range(count):
        b = make_booking(
            number=n,
            status=BookingStatus.INVOICED,
            invoice_id=f"id-{n}",
            invoice_number=f"S-{n}",
            invoice_status="Draft",
            invoice_source=InvoiceSource.APP,
            invoice_attempts=1,
        )
        store.put(b)
        feed.invoices[b.invoice_id] = InvoiceState(
            b.invoice_id, b.invoice_number, f"BKG-{b.key}", "Draft", clock()
        )
        keys.append(b.key)
    return keys


def test_reconcile_reopens_deleted_drafts_follows_posted_ones_and_costs_a_few_requests() -> None:
    clock = ManualClock()
    store, feed, marks = FakeBookingStore(clock), FakeFeed(), FakeMarks()
    keys = _invoiced(store, feed, clock, 50)
    reconciler = InvoiceReconciler(store, feed, marks, business_ids=[LUNCH], company_id="c", clock=clock)
    assert reconciler.run()["followed"] == 0
    clock.advance(minutes=30)
    del feed.invoices["id-0"]
    feed.invoices["id-1"] = replace(
        feed.invoices["id-1"], number="PS-1", status="Open", last_modified=clock()
    )
    feed.requests = 0
    counts = reconciler.run()
    assert (counts["reopened"], counts["followed"], counts["checked"]) == (1, 1, 1)
    assert feed.requests == 4  # changes, draft ids, by id (404), by externalDocumentNumber
    reopened = store.get(LUNCH, keys[0])
    assert (
        reopened is not None and reopened.status is BookingStatus.UNBILLED and "S-0" in (reopened.note or "")
    )
    assert reopened.invoice_attempts == 1  # remembered: the next invoicing looks up first
    posted = store.get(LUNCH, keys[1])
    assert posted is not None and (posted.invoice_number, posted.invoice_status) == ("PS-1", "Open")


def test_a_released_draft_is_not_taken_for_posted_and_its_deletion_is_noticed() -> None:
    # Codeunit 5477 "Sales Invoice Aggregator" shows a Released (or Pending Prepayment) draft as
    # Open, the word a posted invoice has; posting renames it to the posted number, keeping the id.
    clock = ManualClock()
    store, feed, marks = FakeBookingStore(clock), FakeFeed(), FakeMarks()
    released, posted, review = _invoiced(store, feed, clock, 3)
    reconciler = InvoiceReconciler(store, feed, marks, business_ids=[LUNCH], company_id="c", clock=clock)
    reconciler.run()
    clock.advance(minutes=30)
    feed.invoices["id-0"] = replace(feed.invoices["id-0"], status="Open", last_modified=clock())
    feed.invoices["id-1"] = replace(
        feed.invoices["id-1"], number="PS-1", status="Open", last_modified=clock()
    )
    feed.invoices["id-2"] = replace(feed.invoices["id-2"], status="In Review", last_modified=clock())
    reconciler.run()
    assert [store.get(LUNCH, k).invoice_posted for k in (released, posted, review)] == [False, True, False]  # type: ignore[union-attr]
    clock.advance(minutes=30)
    del feed.invoices["id-0"], feed.invoices["id-2"]  # a person deletes the released and the In Review one
    feed.requests = 0
    counts = reconciler.run()
    assert counts["reopened"] == 2 and counts["checked"] == 2
    assert [store.get(LUNCH, k).status for k in (released, posted, review)] == [  # type: ignore[union-attr]
        BookingStatus.UNBILLED,
        BookingStatus.INVOICED,
        BookingStatus.UNBILLED,
    ]
    assert feed.requests == 1 + 1 + 2 * 2  # changes, unposted ones, and per deleted one: by id and by number


def test_in_review_drafts_are_read_in_the_one_unposted_read_not_by_id() -> None:
    clock = ManualClock()
    store, feed, marks = FakeBookingStore(clock), FakeFeed(), FakeMarks()
    _invoiced(store, feed, clock, 20)
    for invoice_id in list(feed.invoices):
        feed.invoices[invoice_id] = replace(
            feed.invoices[invoice_id], status="In Review", last_modified=clock()
        )
    reconciler = InvoiceReconciler(store, feed, marks, business_ids=[LUNCH], company_id="c", clock=clock)
    reconciler.run()
    clock.advance(minutes=30)
    feed.requests = 0
    counts = reconciler.run()
    assert counts["checked"] == 0 and counts["unposted_pages"] == 1 and feed.requests == 2


def test_a_full_read_cut_off_resumes_where_its_last_page_ended() -> None:
    clock = ManualClock()
    store, feed, marks = FakeBookingStore(clock), FakeFeed(page_size=10), FakeMarks()
    _invoiced(store, feed, clock, 1)
    for n in range(1, 35):  # other invoices of the app, changed one minute apart
        clock.advance(minutes=1)
        feed.invoices[f"x-{n}"] = InvoiceState(f"x-{n}", f"S-x{n}", f"BKG-X{n}", "Draft", clock())
    reconciler = InvoiceReconciler(store, feed, marks, business_ids=[LUNCH], company_id="c", clock=clock)
    feed.fail_after_pages = 2
    with pytest.raises(BusinessCentralError):
        reconciler.run()
    assert marks.mark is not None and marks.mark.full_read_started_at is not None
    assert marks.counts["pages"] == 2 and marks.counts["read"] == 20  # saved after every page
    feed.fail_after_pages = None
    counts = reconciler.run()
    assert feed.reads[0] is None and feed.reads[1] is not None  # resumed, not begun again
    assert counts["full_read"] == 1 and counts["read"] < 35 and counts["pages"] < 4  # 10 min overlap
    assert marks.mark.full_read_at is not None and marks.mark.full_read_started_at is None
    feed.reads.clear()
    reconciler.run()
    assert feed.reads[0] is not None  # the next run is incremental


def test_reconcile_leaves_a_booking_that_changed_meanwhile_alone() -> None:
    clock = ManualClock()
    store, feed, marks = FakeBookingStore(clock), FakeFeed(), FakeMarks()
    (key,) = _invoiced(store, feed, clock, 1)
    del feed.invoices["id-0"]
    reconciler = InvoiceReconciler(store, feed, marks, business_ids=[LUNCH], company_id="c", clock=clock)
    original_get = feed.get

    def get_and_change(invoice_id: str) -> InvoiceState | None:
        store.touch(LUNCH, key, invoice_id="id-new", invoice_number="S-new")  # re-invoiced meanwhile
        return original_get(invoice_id)

    feed.get = get_and_change  # type: ignore[method-assign]
    counts = reconciler.run()
    assert counts["changed_meanwhile"] == 1 and counts["reopened"] == 0
    stored = store.get(LUNCH, key)
    assert stored is not None and (stored.status, stored.invoice_id) == (BookingStatus.INVOICED, "id-new")


def test_read_since_is_incremental_with_an_overlap_and_full_once_a_day() -> None:
    now = ManualClock()()
    assert read_since(None, now) is None
    mark = Watermark(now - timedelta(hours=1), now - timedelta(hours=2))
    since = read_since(mark, now)
    assert since is not None and since < now - timedelta(hours=1)
    assert read_since(Watermark(now, now - FULL_READ_EVERY), now) is None


def test_retention_deletes_only_old_finished_bookings() -> None:
    clock = ManualClock()
    store = FakeBookingStore(clock)
    old = clock() - timedelta(days=500)
    app = {"status": BookingStatus.INVOICED, "invoice_source": InvoiceSource.APP}
    kinds: dict[str, dict[str, object]] = {
        "paid": {**app, "invoice_id": "i", "invoice_status": "Paid"},
        "open": {**app, "invoice_id": "j", "invoice_status": "Open"},
        "manual": dict(status=BookingStatus.INVOICED, invoice_source=InvoiceSource.MANUAL),
        "cancelled": dict(status=BookingStatus.CANCELLED),
        "excluded": dict(status=BookingStatus.EXCLUDED),
        "unbilled": dict(status=BookingStatus.UNBILLED),
        "failed": dict(status=BookingStatus.FAILED),
    }
    keys = {}
    for n, (name, fields) in enumerate(kinds.items()):
        booking = make_booking(number=n, request_id=f"r-{n}", **fields)
        store.put(replace(booking, start=old, end=old + timedelta(hours=1)))
        keys[name] = booking.key
    recent = make_booking(number=99, status=BookingStatus.CANCELLED)
    store.put(recent)

    forgotten: list[tuple[str, str]] = []

    class Requests:
        def forget_booking(self, request_id: str, key: str) -> None:
            forgotten.append((request_id, key))

    target = _RetentionView(store)
    counts = Retention(target, Requests(), business_ids=[LUNCH], retention_days=400, clock=clock).run()
    left = {b.key for b in store.all()}
    assert left == {keys["open"], keys["unbilled"], keys["failed"], recent.key}
    assert counts["deleted"] == 4 and len(forgotten) == 4


class _RetentionView:
    """The retention port over the fake store."""

    def __init__(self, store: FakeBookingStore) -> None:
        self.store = store

    def ended_before(self, business_id: str, statuses: object, cutoff: datetime) -> Iterator:
        return iter([b for b in self.store.all() if b.status in statuses and b.end < cutoff])  # type: ignore[operator]

    def delete(self, booking: object) -> None:
        self.store.delete(LUNCH, booking.key)  # type: ignore[attr-defined]


BASE = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "ENTRA_TENANT_ID": "11111111-2222-3333-4444-555555555555",
    "ENTRA_CLIENT_ID": "66666666-7777-8888-9999-000000000000",
    "ENTRA_CLIENT_SECRET": "s",
    "BOOKINGS_BUSINESS_IDS": "lunch@contoso.com",
    "BC_COMPANY_ID": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
}


def test_retention_shorter_than_the_lookback_plus_a_week_is_refused_naming_both_settings() -> None:
    settings = load_settings(BASE)
    assert (settings.retention_days, settings.reconcile_schedule) == (400, "0 5 * * * *")
    with pytest.raises(SettingsError) as caught:
        load_settings({**BASE, "SYNC_LOOKBACK_DAYS": "60", "RETENTION_DAYS": "67"})
    assert caught.value.setting == "RETENTION_DAYS" and "SYNC_LOOKBACK_DAYS" in str(caught.value)
    assert load_settings({**BASE, "SYNC_LOOKBACK_DAYS": "60", "RETENTION_DAYS": "68"}).retention_days == 68


def test_open_is_posted_only_under_a_posted_number_or_once_final() -> None:
    booking = make_booking(status=BookingStatus.INVOICED, invoice_id="i", invoice_number="S-INV-7")
    seen = InvoiceState("i", "S-INV-7", "BKG-X", "Open")
    assert not seen_posted(booking, seen) and unposted(booking, seen)  # released, same draft number
    assert seen_posted(booking, replace(seen, number="PS-INV-3"))  # renamed on posting
    assert seen_posted(booking, replace(seen, status="Paid")) and not unposted(
        booking, replace(seen, status="Paid")
    )
    assert not seen_posted(booking, replace(seen, status="In Review"))
    assert not unposted(replace(booking, invoice_posted=True), seen)  # once posted, always posted
