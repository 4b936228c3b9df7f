"""Request counters per service and per route, for tests and benchmarks.

A benchmark's claim such as "one Business Central request per invoice" is checked by reading
these numbers, so every request the services see is counted by route template (`METHOD
template`, never the concrete URL) and by response status.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: Counter[str] = Counter()
        self._routes: dict[str, Counter[str]] = {}
        self._statuses: dict[str, Counter[str]] = {}

    def record_request(self, service: str, route_key: str | None) -> None:
        with self._lock:
            self._totals[service] += 1
            self._routes.setdefault(service, Counter())[route_key or "(unmatched)"] += 1

    def record_status(self, service: str, status: int | str) -> None:
        with self._lock:
            self._statuses.setdefault(service, Counter())[str(status)] += 1

    def total(self, service: str) -> int:
        with self._lock:
            return self._totals[service]

    def route(self, service: str, route_key: str) -> int:
        with self._lock:
            return self._routes.get(service, Counter())[route_key]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            services = set(self._totals) | set(self._statuses)
            return {
                service: {
                    "total": self._totals[service],
                    "routes": dict(self._routes.get(service, {})),
                    "statuses": dict(self._statuses.get(service, {})),
                }
                for service in sorted(services)
            }

    def reset(self) -> None:
        with self._lock:
            self._totals.clear()
            self._routes.clear()
            self._statuses.clear()
