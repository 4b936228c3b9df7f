"""Small helpers shared by the tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import requests

from shared.adapters.bc_budget import LocalBudget

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, what: str = "") -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or condition!r}")
        time.sleep(interval)


def force_state(store: Any, booking: Any, status: Any, **changes: Any) -> Any:
    """Test set-up: save a booking in `status` directly (conditional on its ETag), bypassing the
    lifecycle's rules, as another worker or an older version might have left it."""
    return store.save(replace(booking, status=status, status_changed_at=store.clock(), **changes))


class RecordingSession(requests.Session):
    """A real session that remembers the URLs it was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._lock = threading.Lock()

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        response = super().request(method, url, *args, **kwargs)
        with self._lock:
            self.urls.append(response.request.url or "")
        return response


class ManualWaits:
    """Every wait of a Business Central client (retry backoff, a `Retry-After` pause of its budget)
    recorded and moving a manual monotonic clock instead of taking the wall clock's time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def client_options(self) -> dict[str, Any]:
        """`budget` and `sleep` for `BusinessCentralClient`: five slots of this process."""
        budget = LocalBudget(threading.BoundedSemaphore(5), clock=lambda: self.now, sleep=self.sleep)
        return {"budget": budget, "sleep": self.sleep}
