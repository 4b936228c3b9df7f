"""The API's views (`shared/api/views.py`) and what `GET /api/settings` tells the portal."""

from __future__ import annotations

from shared.api.selection_input import FILTER_FIELDS
from shared.api.settings_view import lifecycle_document
from shared.api.views import booking_view, selection_view, skipped_view
from shared.domain import lifecycle
from shared.domain.models import Actor, BookingStatus
from shared.services.selection import SelectionResult, SkippedBooking
from tests.unit.builders import make_booking


def test_the_portal_gets_every_state_and_what_all_selects_from_the_lifecycle() -> None:
    document = lifecycle_document()
    assert sorted(document["states"]) == sorted(str(s) for s in BookingStatus)
    assert document["states"][0] == str(lifecycle.FILTER_SELECTABLE)  # the default list first
    assert set(document["inFlightStates"]) == {str(s) for s in lifecycle.IN_FLIGHT}
    select_all = document["selectAll"]
    assert select_all["status"] == str(lifecycle.FILTER_SELECTABLE)
    # Every filter the portal offers for "all" is one the selection input accepts.
    assert select_all["filters"] == list(FILTER_FIELDS)


def test_a_booking_view_carries_the_contract_fields() -> None:
    booking = make_booking(status=BookingStatus.FAILED, updated_by=Actor("oid-1", "Ada"), error="no")
    view = booking_view(booking)
    assert (view["status"], view["error"], view["updatedBy"]) == (
        "Failed",
        "no",
        {"id": "oid-1", "name": "Ada"},
    )
    assert view["key"] == booking.key and view["start"].endswith("Z")


def test_skipped_reasons_appear_only_when_given() -> None:
    plain = SkippedBooking("k1", BookingStatus.INVOICED)
    why = SkippedBooking("k2", BookingStatus.UNBILLED, "not ended")
    assert skipped_view(plain) == {"key": "k1", "status": "Invoiced"}
    result = selection_view(SelectionResult("r1", 1, [why], ["k3"]))
    assert result == {
        "requestId": "r1",
        "accepted": 1,
        "skipped": [{"key": "k2", "status": "Unbilled", "reason": "not ended"}],
        "notFound": ["k3"],
    }
