"""`RequestRepository`: the `InvoiceRequests` table, a header per request and a row per booking."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.domain.models import Actor
from shared.domain.requests import RequestItem
from shared.services.ports import RequestRepository

NOW = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
"""What the `requests` fixture's clock says."""
REQUEST = "00000000-0000-4000-8000-000000000001"
WHO = Actor("oid-1", "Ada Bookkeeper")


class RequestRepositoryContract:
    """Subclasses provide a `requests` fixture: an empty request store whose clock says `NOW`."""

    def test_a_header_is_started_read_back_and_finished(self, requests: RequestRepository) -> None:
        assert requests.header(REQUEST) is None
        started = requests.start(REQUEST, {"mode": "keys", "keys": 2}, None, requested_by=WHO)
        assert (started.state, started.created_at) == ("Accepting", NOW)
        read = requests.header(REQUEST)
        assert read is not None and (read.selection, read.requested_by, read.state) == (
            {"mode": "keys", "keys": 2},
            WHO,
            "Accepting",
        )
        requests.finish(started)
        finished = requests.header(REQUEST)
        assert finished is not None and (finished.state, finished.completed_at) == ("Accepted", NOW)

    def test_items_are_kept_in_key_order_and_removed_by_key(self, requests: RequestRepository) -> None:
        requests.start(REQUEST, {"mode": "keys", "keys": 3}, None)
        requests.add_items(REQUEST, [RequestItem("lunch", "C" * 26), RequestItem("dinner", "A" * 26)])
        requests.add_items(REQUEST, [RequestItem("lunch", "B" * 26)])
        assert requests.items(REQUEST) == [
            RequestItem("dinner", "A" * 26),
            RequestItem("lunch", "B" * 26),
            RequestItem("lunch", "C" * 26),
        ]
        requests.remove_items(REQUEST, ["B" * 26])
        assert [item.key for item in requests.items(REQUEST)] == ["A" * 26, "C" * 26]

    def test_a_discarded_request_leaves_nothing(self, requests: RequestRepository) -> None:
        requests.start(REQUEST, {"mode": "all"}, None)
        requests.add_items(REQUEST, [RequestItem("lunch", "A" * 26)])
        requests.discard(REQUEST)
        assert requests.header(REQUEST) is None and requests.items(REQUEST) == []
        requests.discard(REQUEST)  # twice is fine
