"""The `get_invoice_request` use case: a request's progress from its rows and its bookings' states."""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Any

from shared.domain.models import Booking, BookingStatus
from shared.domain.moments import iso_utc
from shared.domain.requests import RequestItem, is_request_id
from shared.services.ports import BookingRepository, RequestRepository


class RequestStatusReader:
    """A request's progress: its rows, then the bookings' current state.

    Small requests read each booking by point (bounded concurrency). From `scan_from` bookings of
    one business on, one partition query on `RequestId` is cheaper than thousands of point reads;
    bookings it misses (selected again by a later request) are still read by point.
    """

    def __init__(
        self,
        requests: RequestRepository,
        bookings: BookingRepository,
        executor: Executor | None = None,
        *,
        scan_from: int = 500,
    ) -> None:
        self.requests = requests
        self.bookings = bookings
        self.executor = executor
        self.scan_from = scan_from

    def read(self, request_id: str) -> dict[str, Any] | None:
        """The contract's request status document, or None for an unknown request."""
        if not is_request_id(request_id):
            return None
        header = self.requests.header(request_id)
        if header is None:
            return None
        items = self.requests.items(request_id)
        current = self._current(request_id, items)
        rows = []
        for item in items:
            booking = current.get(item.key)
            if booking is None:  # deleted from the table by hand: say so rather than guess
                rows.append(
                    {
                        "key": item.key,
                        "status": "Missing",
                        "invoiceNumber": None,
                        "errorCode": None,
                        "error": None,
                    }
                )
                continue
            rows.append(
                {
                    "key": item.key,
                    "status": str(booking.status),
                    "invoiceNumber": booking.invoice_number,
                    "errorCode": booking.error_code,
                    "error": booking.error,
                }
            )
        counts = {str(status): 0 for status in BookingStatus}
        for row in rows:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        return {
            "requestId": request_id,
            "state": header.state,
            "createdAt": iso_utc(header.created_at),
            "requestedAt": iso_utc(header.created_at),
            "requestedBy": header.requested_by.to_json() if header.requested_by else None,
            "selection": header.selection,
            "total": len(rows),
            "counts": counts,
            "items": rows,
        }

    def _current(self, request_id: str, items: list[RequestItem]) -> dict[str, Booking]:
        wanted: dict[str, list[str]] = {}
        for item in items:
            wanted.setdefault(item.business_id, []).append(item.key)
        found: dict[str, Booking] = {}
        for business_id, keys in wanted.items():
            if len(keys) >= self.scan_from:
                keyset = set(keys)
                for booking in self.bookings.of_request(business_id, request_id):
                    if booking.key in keyset:
                        found[booking.key] = booking
        missing = [item for item in items if item.key not in found]

        def point(item: RequestItem) -> Booking | None:
            return self.bookings.get(item.business_id, item.key)

        if self.executor is None or len(missing) < 2:
            read = [point(item) for item in missing]
        else:
            read = list(self.executor.map(point, missing))
        found.update({booking.key: booking for booking in read if booking is not None})
        return found
