"""Fault switches and the throttling models of the real services.

Two kinds of behaviour live here:

* Limits the real services always enforce, on by default so a client meets them in the sandbox
  before it meets them in production: Business Central's per-client concurrency (5 running,
  further requests queued, 429 once running + queued exceed the connection cap, 503 after the
  queue timeout), its sliding 6,000-requests-per-5-minutes window, and Graph Bookings'
  4-concurrent-requests-per-mailbox limit.
* Injected faults, off by default: latency per service, a count or fraction of 429/5xx answers per
  service (optionally per route), and "commit then drop the connection" for invoice POSTs.

Every decision is recorded (counts, maximum concurrency seen, injected delay) so tests assert on
what the server did rather than on wall-clock timings.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sandbox.core.fault_config import INVOICE_POST_ROUTE, FailureRule, FaultConfig


class Throttled(Exception):
    """The request is refused by a limit: answer `status` with an optional Retry-After."""

    def __init__(self, status: int, reason: str, message: str, retry_after: int | None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


@dataclass
class _Slots:
    running: int = 0
    queue: deque[int] = field(default_factory=deque)
    max_running: int = 0
    max_queued: int = 0


class Faults:
    """The live fault state; one instance per sandbox, shared by all request threads."""

    def __init__(
        self,
        seed: int = 0,
        stop_event: threading.Event | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Condition()
        self._seed = seed
        self._random = random.Random(seed)
        self._monotonic = monotonic
        self._stop = stop_event or threading.Event()
        self._config = FaultConfig()
        self._remaining: dict[tuple[str, int], int] = {}
        self._drops_left = 0
        self._bc: dict[str, _Slots] = {}
        self._graph: dict[tuple[str, str], _Slots] = {}
        self._rate: dict[str, deque[float]] = {}
        self._ticket = 0
        self._generation = 0
        self._stats: dict[str, float] = {}
        self._latency: dict[str, dict[str, float]] = {}

    # -- configuration --------------------------------------------------------------------------

    @property
    def config(self) -> FaultConfig:
        with self._lock:
            return self._config

    def configure(self, patch: Mapping[str, Any], *, replace_all: bool = False) -> FaultConfig:
        """Apply a JSON patch (or replace everything); counts of failure rules start afresh."""
        with self._lock:
            base = FaultConfig() if replace_all else self._config
            config = base.merged(patch)
            self._config = config
            self._remaining = {
                (service, index): rule.count
                for service, rules in config.failures.items()
                for index, rule in enumerate(rules)
                if rule.count is not None
            }
            if "dropAfterCommit" in patch or replace_all:
                self._drops_left = config.drop_after_commit
            self._lock.notify_all()
            return config

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            data = self._config.to_json()
            for service, rules in data["failures"].items():
                for index, rule in enumerate(rules):
                    if rule["count"] is not None:
                        rule["remaining"] = self._remaining.get((service, index), 0)
            data["dropAfterCommit"] = self._drops_left
            return data

    def interrupt(self) -> None:
        """End every injected delay in flight now."""
        with self._lock:
            self._generation += 1
            self._lock.notify_all()

    def reset(self) -> None:
        """Back to the real services' defaults; forget statistics and throttling history.

        Injected delays in flight end at once; queued Business Central requests keep their place.
        """
        with self._lock:
            self._generation += 1
            self._config = FaultConfig()
            self._remaining = {}
            self._drops_left = 0
            self._random = random.Random(self._seed)
            self._rate.clear()
            self._stats.clear()
            self._latency.clear()
            for slots in (*self._bc.values(), *self._graph.values()):
                slots.max_running = slots.running
                slots.max_queued = len(slots.queue)
            self._lock.notify_all()

    # -- latency --------------------------------------------------------------------------------

    def apply_latency(self, service: str) -> float:
        """Sleep the configured delay and record it.

        The wait ends early on `reset()`/`interrupt()` (a test cleaning up, or shutdown), so a long
        delay used to hold requests in flight never outlives the test that set it.
        """
        with self._lock:
            delay = float(self._config.latency.get(service, 0.0))
            if delay <= 0:
                return 0.0
            generation = self._generation
            started = self._monotonic()
            deadline = started + delay
            while generation == self._generation and not self._stop.is_set():
                remaining = deadline - self._monotonic()
                if remaining <= 0:
                    break
                self._lock.wait(min(remaining, 0.25))
            slept = self._monotonic() - started
            record = self._latency.setdefault(
                service, {"count": 0, "configuredSeconds": 0.0, "sleptSeconds": 0.0}
            )
            record["count"] += 1
            record["configuredSeconds"] += delay
            record["sleptSeconds"] += slept
        return delay

    # -- injected failures ----------------------------------------------------------------------

    def injected_failure(self, service: str, route_key: str | None) -> FailureRule | None:
        """The failure rule that fires for this request, if any (consumes one of its count)."""
        with self._lock:
            for index, rule in enumerate(self._config.failures.get(service, ())):
                if rule.route is not None and rule.route != route_key:
                    continue
                if rule.count is not None:
                    left = self._remaining.get((service, index), 0)
                    if left <= 0:
                        continue
                    self._remaining[(service, index)] = left - 1
                elif rule.fraction is None or self._random.random() >= rule.fraction:
                    continue
                self._bump(f"{service}.injected.{rule.status}")
                return rule
        return None

    def take_drop_after_commit(self, route_key: str) -> bool:
        """True (and one fewer left) if this committed invoice POST must lose its response."""
        if route_key != INVOICE_POST_ROUTE:
            return False
        with self._lock:
            if self._drops_left <= 0:
                return False
            self._drops_left -= 1
            self._bump("bc.droppedAfterCommit")
            return True

    # -- Business Central limits ----------------------------------------------------------------

    def bc_rate_check(self, client: str) -> None:
        """The sliding request window per client; raises `Throttled` (429) when it is full."""
        with self._lock:
            limits = self._config.bc_rate_limit
            if limits.limit is None:
                return
            now = self._monotonic()
            window = self._rate.setdefault(client, deque())
            while window and window[0] <= now - limits.window_seconds:
                window.popleft()
            if len(window) >= limits.limit:
                self._bump("bc.throttled.rate")
                raise Throttled(
                    429,
                    "rate",
                    f"Too many requests reached.  Actual ({len(window) + 1}).  Maximum ({limits.limit}).",
                    limits.retry_after,
                )
            window.append(now)

    @contextmanager
    def bc_slot(self, client: str) -> Iterator[None]:
        """Run inside one of the client's concurrent slots, queueing FIFO for one if needed."""
        self._bc_acquire(client)
        try:
            yield
        finally:
            with self._lock:
                self._bc[client].running -= 1
                self._lock.notify_all()

    def _bc_acquire(self, client: str) -> None:
        with self._lock:
            limits = self._config.bc_concurrency
            slots = self._bc.setdefault(client, _Slots())
            waiting = len(slots.queue)
            if limits.max_connections is not None and slots.running + waiting + 1 > limits.max_connections:
                self._bump("bc.throttled.connections")
                raise Throttled(
                    429,
                    "connections",
                    f"Too many requests reached.  Actual ({slots.running + waiting + 1}).  "
                    f"Maximum ({limits.max_connections}).",
                    limits.retry_after,
                )
            if not waiting and (limits.max_running is None or slots.running < limits.max_running):
                self._take(slots)
                return
            self._ticket += 1
            ticket = self._ticket
            slots.queue.append(ticket)
            slots.max_queued = max(slots.max_queued, len(slots.queue))
            self._bump("bc.queued")
            deadline = self._monotonic() + limits.queue_timeout_seconds
            while True:
                limits = self._config.bc_concurrency
                free = limits.max_running is None or slots.running < limits.max_running
                if free and slots.queue[0] == ticket:
                    slots.queue.popleft()
                    self._take(slots)
                    self._lock.notify_all()
                    return
                remaining = deadline - self._monotonic()
                if remaining <= 0 or self._stop.is_set():
                    slots.queue.remove(ticket)
                    self._lock.notify_all()
                    self._bump("bc.queueTimeout")
                    raise Throttled(
                        503,
                        "queue_timeout",
                        "The request could not be processed in time: it waited too long for a free slot.",
                        limits.retry_after,
                    )
                self._lock.wait(min(remaining, 0.25))

    def _take(self, slots: _Slots) -> None:
        slots.running += 1
        slots.max_running = max(slots.max_running, slots.running)

    # -- Graph limits ---------------------------------------------------------------------------

    @contextmanager
    def graph_slot(self, client: str, mailbox: str) -> Iterator[None]:
        """At most N concurrent requests per app per mailbox; beyond that an immediate 429."""
        key = (client, mailbox.lower())
        with self._lock:
            limits = self._config.graph_throttling
            slots = self._graph.setdefault(key, _Slots())
            if (
                limits.max_concurrent_per_mailbox is not None
                and slots.running >= limits.max_concurrent_per_mailbox
            ):
                self._bump("graph.throttled.mailboxConcurrency")
                raise Throttled(
                    429,
                    "mailbox_concurrency",
                    f"Application is over its MailboxConcurrency limit for mailbox {mailbox}.",
                    limits.retry_after,
                )
            self._take(slots)
        try:
            yield
        finally:
            with self._lock:
                slots.running -= 1

    # -- statistics -----------------------------------------------------------------------------

    def _bump(self, name: str, amount: float = 1) -> None:
        self._stats[name] = self._stats.get(name, 0) + amount

    def stats(self) -> dict[str, Any]:
        with self._lock:
            bc = {
                client: {
                    "running": s.running,
                    "queued": len(s.queue),
                    "maxRunning": s.max_running,
                    "maxQueued": s.max_queued,
                }
                for client, s in self._bc.items()
            }
            graph = {
                f"{client}|{mailbox}": {"running": s.running, "maxRunning": s.max_running}
                for (client, mailbox), s in self._graph.items()
            }
            return {
                "events": dict(self._stats),
                "latency": {service: dict(values) for service, values in self._latency.items()},
                "concurrency": {
                    "bc": {
                        "maxRunning": max((s.max_running for s in self._bc.values()), default=0),
                        "maxQueued": max((s.max_queued for s in self._bc.values()), default=0),
                        "clients": bc,
                    },
                    "graph": {
                        "maxRunning": max((s.max_running for s in self._graph.values()), default=0),
                        "mailboxes": graph,
                    },
                },
            }
