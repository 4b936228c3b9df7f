"""What the fakes add beyond the ports' contracts (those run against fakes and adapters alike in
`tests/unit/test_contracts.py` and `tests/integration/test_contracts.py`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from shared.domain.errors import BusinessCentralError, ConcurrentChangeError
from shared.domain.filters import BookingFilter
from shared.domain.models import BookingStatus
from tests.unit.builders import DINNER, LUNCH, make_booking
from tests.unit.fakes import FakeBookingStore, FakeBusinessCentral, ManualClock


def test_save_batch_is_all_or_nothing() -> None:
    store = FakeBookingStore()
    first, second = store.put_all([make_booking(LUNCH, 1), make_booking(LUNCH, 2)])
    store.touch(LUNCH, second.key, price=99.0)
    with pytest.raises(ConcurrentChangeError):
        store.save_batch(
            [replace(first, status=BookingStatus.QUEUED), replace(second, status=BookingStatus.QUEUED)]
        )
    assert store.status_of(LUNCH, first.key) is BookingStatus.UNBILLED
    with pytest.raises(ValueError, match="one business"):
        store.save_batch([first, store.put(make_booking(DINNER, 3))])
    with pytest.raises(ValueError, match="at most 33"):
        store.save_batch([first] * 34)


def test_pages_resume_at_their_marker_and_filters_apply() -> None:
    store = FakeBookingStore()
    store.put_all(make_booking(LUNCH, n, customer_email=f"C{n % 2}@x.com") for n in range(5))
    store.put(make_booking(LUNCH, 7, status=BookingStatus.FAILED))
    flt = BookingFilter(customer_email="c0@x.com")
    first = store.index_slice(flt, LUNCH, None, 2, 10)
    assert len(first.items) == 2 and first.resume is not None
    rest = store.index_slice(flt, LUNCH, first.resume, 2, 10)
    assert len(rest.items) == 1 and rest.resume is None
    items = [b for _, b in first.items + rest.items]
    assert [b.start for b in items] == sorted((b.start for b in items), reverse=True)
    assert {b.key for b in items} == {b.key for b in store.iterate(flt, [LUNCH, DINNER])}
    late = make_booking(LUNCH, 4).start
    assert [b.start for b in store.iterate(BookingFilter(start_from=late), [LUNCH])] == [late]


def test_stuck_since_needs_a_state_change_date() -> None:
    clock = ManualClock()
    store = FakeBookingStore(clock)
    store.put(make_booking(LUNCH, 1, status=BookingStatus.QUEUED, status_changed_at=None))
    old = store.put(
        make_booking(LUNCH, 2, status=BookingStatus.QUEUED, status_changed_at=clock() - timedelta(days=1))
    )
    assert [b.key for b in store.stuck_since({BookingStatus.QUEUED}, clock())] == [old.key]


def test_business_central_scripts_errors_before_or_after_the_work() -> None:
    bc = FakeBusinessCentral()
    lost = BusinessCentralError("lost", transient=True, may_have_committed=True)
    bc.fail("create_invoice", lost, after_commit=True)
    with pytest.raises(BusinessCentralError):
        bc.create_invoice({"externalDocumentNumber": "BKG-A"})
    assert len(bc.find_invoices_by_external_document_number("bkg-a")) == 1
    bc.fail("create_invoice", lost)
    with pytest.raises(BusinessCentralError):
        bc.create_invoice({"externalDocumentNumber": "BKG-B"})
    assert bc.find_invoices_by_external_document_number("BKG-B") == []
