"""`BookingRepository`: the `Bookings` table, every write conditional on the ETag it was read with."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from shared.domain import lifecycle
from shared.domain.errors import ConcurrentChangeError
from shared.domain.models import BookingStatus
from shared.services.ports import BookingRepository
from tests.unit.builders import DINNER, LUNCH, make_booking

NOW = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
"""What the `store` fixture's clock says: the store stamps its writes with it."""


class BookingRepositoryContract:
    """Subclasses provide a `store` fixture: an empty store whose clock says `NOW`."""

    def test_create_stamps_reads_back_and_refuses_an_existing_booking(self, store: BookingRepository) -> None:
        created = store.create(make_booking(updated_at=None, status_changed_at=None))
        assert created.etag and created.updated_at == NOW
        assert store.get(LUNCH, created.key) == created
        assert store.get(LUNCH, make_booking(number=2).key) is None
        assert store.get(DINNER, created.key) is None  # a key is looked up in its own business
        with pytest.raises(ConcurrentChangeError):
            store.create(make_booking())

    def test_save_needs_the_etag_it_was_read_with_and_issues_a_new_one(
        self, store: BookingRepository
    ) -> None:
        read = store.create(make_booking())
        claimed = store.save(lifecycle.claim(read, "req-1", NOW))
        assert claimed.etag and claimed.etag != read.etag
        assert store.get(LUNCH, read.key) == claimed
        with pytest.raises(ConcurrentChangeError):
            store.save(lifecycle.claim(read, "req-2", NOW))  # a second writer with the old ETag
        stored = store.get(LUNCH, read.key)
        assert stored is not None and (stored.status, stored.request_id) == (BookingStatus.QUEUED, "req-1")

    def test_a_batch_is_all_or_nothing(self, store: BookingRepository) -> None:
        first, second = (store.create(make_booking(number=n)) for n in (1, 2))
        store.save(replace(second, price=99.0))  # changed after it was read
        with pytest.raises(ConcurrentChangeError):
            store.save_batch([lifecycle.claim(first, "r", NOW), lifecycle.claim(second, "r", NOW)])
        assert store.get(LUNCH, first.key).status is BookingStatus.UNBILLED  # type: ignore[union-attr]
        fresh = store.get(LUNCH, second.key)
        assert fresh is not None
        saved = store.save_batch([lifecycle.claim(first, "r", NOW), lifecycle.claim(fresh, "r", NOW)])
        assert [b.status for b in saved] == [BookingStatus.QUEUED, BookingStatus.QUEUED]
        assert all(b.etag for b in saved)
        with pytest.raises(ValueError):
            store.save_batch([first, store.create(make_booking(DINNER, 3))])  # one business only

    def test_stuck_since_and_of_request_find_what_recovery_and_status_read(
        self, store: BookingRepository
    ) -> None:
        queued = store.save(lifecycle.claim(store.create(make_booking(number=1)), "req-1", NOW))
        store.create(make_booking(number=2))
        later = datetime(2026, 2, 1, 13, 0, tzinfo=UTC)
        stuck = list(store.stuck_since(lifecycle.IN_FLIGHT, later))
        assert [b.key for b in stuck] == [queued.key]
        assert list(store.stuck_since(lifecycle.IN_FLIGHT, NOW.replace(hour=11))) == []
        assert [b.key for b in store.of_request(LUNCH, "req-1")] == [queued.key]
        assert store.count_by_status(BookingStatus.UNBILLED) == 1
