"""The `get_invoice_request` use case: a request's progress from its rows and its bookings' states."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

from shared.domain.models import Booking
from shared.domain.requests import RequestHeader, RequestItem, is_request_id
from shared.services.ports import BookingRepository, RequestRepository


@dataclass(frozen=True)
class RequestStatus:
    """A request's header and, per selected booking in order, the booking now (None: deleted)."""

    header: RequestHeader
    rows: tuple[tuple[str, Booking | None], ...]


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

    def read(self, request_id: str) -> RequestStatus | None:
        """The request and each of its bookings as it is now, or None for an unknown request."""
        if not is_request_id(request_id):
            return None
        header = self.requests.header(request_id)
        if header is None:
            return None
        items = self.requests.items(request_id)
        current = self._current(request_id, items)
        return RequestStatus(header, tuple((item.key, current.get(item.key)) for item in items))

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
