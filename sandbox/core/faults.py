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
from dataclasses import dataclass, field, replace
from typing import Any

SERVICES = ("entra", "graph", "bc")
FAULT_STATUSES = frozenset({429, 500, 502, 503, 504})
INVOICE_POST_ROUTE = "POST companies({companyId})/salesInvoices"


class ConfigError(ValueError):
    """A fault configuration that cannot be applied; the message names the field."""


@dataclass(frozen=True)
class FailureRule:
    """Answer `status` instead of running the request: the next `count` times, or a `fraction`."""

    status: int
    count: int | None = None
    fraction: float | None = None
    retry_after: int | None = None
    route: str | None = None
    """Route key (`METHOD template`, as in the counters) the rule is limited to; None = any."""

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "count": self.count,
            "fraction": self.fraction,
            "retryAfter": self.retry_after,
            "route": self.route,
        }


@dataclass(frozen=True)
class BcConcurrency:
    max_running: int | None = 5
    max_connections: int | None = 100
    queue_timeout_seconds: float = 480.0
    retry_after: int | None = None


@dataclass(frozen=True)
class BcRateLimit:
    limit: int | None = 6000
    window_seconds: float = 300.0
    retry_after: int | None = None


@dataclass(frozen=True)
class GraphThrottling:
    max_concurrent_per_mailbox: int | None = 4
    retry_after: int | None = 1


@dataclass(frozen=True)
class FaultConfig:
    latency: Mapping[str, float] = field(default_factory=lambda: dict.fromkeys(SERVICES, 0.0))
    failures: Mapping[str, tuple[FailureRule, ...]] = field(default_factory=lambda: {s: () for s in SERVICES})
    bc_concurrency: BcConcurrency = BcConcurrency()
    bc_rate_limit: BcRateLimit = BcRateLimit()
    graph_throttling: GraphThrottling = GraphThrottling()
    drop_after_commit: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "latency": dict(self.latency),
            "failures": {
                service: [rule.to_json() for rule in rules] for service, rules in self.failures.items()
            },
            "bcConcurrency": {
                "maxRunning": self.bc_concurrency.max_running,
                "maxConnections": self.bc_concurrency.max_connections,
                "queueTimeoutSeconds": self.bc_concurrency.queue_timeout_seconds,
                "retryAfter": self.bc_concurrency.retry_after,
            },
            "bcRateLimit": {
                "limit": self.bc_rate_limit.limit,
                "windowSeconds": self.bc_rate_limit.window_seconds,
                "retryAfter": self.bc_rate_limit.retry_after,
            },
            "graphThrottling": {
                "maxConcurrentPerMailbox": self.graph_throttling.max_concurrent_per_mailbox,
                "retryAfter": self.graph_throttling.retry_after,
            },
            "dropAfterCommit": self.drop_after_commit,
        }

    def merged(self, patch: Mapping[str, Any]) -> FaultConfig:
        """A new config with `patch` (the JSON shape of `to_json`, any subset) applied."""
        if not isinstance(patch, Mapping):
            raise ConfigError("the fault configuration must be a JSON object")
        known = {"latency", "failures", "bcConcurrency", "bcRateLimit", "graphThrottling", "dropAfterCommit"}
        unknown = sorted(set(patch) - known)
        if unknown:
            raise ConfigError(f"unknown fault setting(s): {', '.join(unknown)}")
        config = self
        if "latency" in patch:
            latency = dict(config.latency)
            for service, value in _object(patch["latency"], "latency").items():
                _check_service(service, "latency")
                latency[service] = _number(value, f"latency.{service}", minimum=0.0)
            config = replace(config, latency=latency)
        if "failures" in patch:
            failures = dict(config.failures)
            for service, rules in _object(patch["failures"], "failures").items():
                _check_service(service, "failures")
                if not isinstance(rules, list):
                    raise ConfigError(f"failures.{service} must be a list of rules")
                failures[service] = tuple(
                    _rule(rule, f"failures.{service}[{i}]") for i, rule in enumerate(rules)
                )
            config = replace(config, failures=failures)
        if "bcConcurrency" in patch:
            data = _object(patch["bcConcurrency"], "bcConcurrency")
            current = config.bc_concurrency
            config = replace(
                config,
                bc_concurrency=BcConcurrency(
                    max_running=_optional_int(data, "maxRunning", current.max_running, "bcConcurrency", 1),
                    max_connections=_optional_int(
                        data, "maxConnections", current.max_connections, "bcConcurrency", 1
                    ),
                    queue_timeout_seconds=_number(
                        data.get("queueTimeoutSeconds", current.queue_timeout_seconds),
                        "bcConcurrency.queueTimeoutSeconds",
                        minimum=0.0,
                    ),
                    retry_after=_optional_int(data, "retryAfter", current.retry_after, "bcConcurrency", 0),
                ),
            )
        if "bcRateLimit" in patch:
            data = _object(patch["bcRateLimit"], "bcRateLimit")
            current_rate = config.bc_rate_limit
            config = replace(
                config,
                bc_rate_limit=BcRateLimit(
                    limit=_optional_int(data, "limit", current_rate.limit, "bcRateLimit", 1),
                    window_seconds=_number(
                        data.get("windowSeconds", current_rate.window_seconds),
                        "bcRateLimit.windowSeconds",
                        minimum=0.001,
                    ),
                    retry_after=_optional_int(data, "retryAfter", current_rate.retry_after, "bcRateLimit", 0),
                ),
            )
        if "graphThrottling" in patch:
            data = _object(patch["graphThrottling"], "graphThrottling")
            current_graph = config.graph_throttling
            config = replace(
                config,
                graph_throttling=GraphThrottling(
                    max_concurrent_per_mailbox=_optional_int(
                        data,
                        "maxConcurrentPerMailbox",
                        current_graph.max_concurrent_per_mailbox,
                        "graphThrottling",
                        1,
                    ),
                    retry_after=_optional_int(
                        data, "retryAfter", current_graph.retry_after, "graphThrottling", 0
                    ),
                ),
            )
        if "dropAfterCommit" in patch:
            value = patch["dropAfterCommit"]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError("dropAfterCommit must be a whole number >= 0")
            config = replace(config, drop_after_commit=value)
        return config


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


def _object(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a JSON object")
    return value


def _check_service(service: str, name: str) -> None:
    if service not in SERVICES:
        raise ConfigError(f"{name}: unknown service {service!r} (use one of {', '.join(SERVICES)})")


def _number(value: Any, name: str, *, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ConfigError(f"{name} must be a number >= {minimum}")
    return float(value)


def _optional_int(
    data: Mapping[str, Any], key: str, default: int | None, name: str, minimum: int
) -> int | None:
    if key not in data:
        return default
    value = data[key]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}.{key} must be null or a whole number >= {minimum}")
    return value


def _rule(data: Any, name: str) -> FailureRule:
    data = _object(data, name)
    unknown = sorted(set(data) - {"status", "count", "fraction", "retryAfter", "route"})
    if unknown:
        raise ConfigError(f"{name}: unknown field(s) {', '.join(unknown)}")
    status = data.get("status")
    if status not in FAULT_STATUSES:
        raise ConfigError(f"{name}.status must be one of {sorted(FAULT_STATUSES)}")
    count = _optional_int(data, "count", None, name, 0)
    fraction = data.get("fraction")
    if fraction is not None:
        fraction = _number(fraction, f"{name}.fraction", minimum=0.0)
        if fraction > 1:
            raise ConfigError(f"{name}.fraction must be between 0 and 1")
    if (count is None) == (fraction is None):
        raise ConfigError(f"{name} needs exactly one of count or fraction")
    route = data.get("route")
    if route is not None and not isinstance(route, str):
        raise ConfigError(f"{name}.route must be a string like 'POST companies({{companyId}})/salesInvoices'")
    return FailureRule(
        status=int(status),
        count=count,
        fraction=fraction,
        retry_after=_optional_int(data, "retryAfter", None, name, 0),
        route=route,
    )
