"""The fault switches as a value: their JSON shape (`GET /_sandbox/faults`), defaults (the real
services' limits on, injected faults off), and the validation of a patch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
        unknown = sorted(set(patch) - {key for key, _ in _SECTIONS})
        if unknown:
            raise ConfigError(f"unknown fault setting(s): {', '.join(unknown)}")
        config = self
        for key, merge in _SECTIONS:
            if key in patch:
                config = merge(config, patch[key])
        return config


def _merge_latency(config: FaultConfig, value: Any) -> FaultConfig:
    latency = dict(config.latency)
    for service, seconds in _object(value, "latency").items():
        _check_service(service, "latency")
        latency[service] = _number(seconds, f"latency.{service}", minimum=0.0)
    return replace(config, latency=latency)


def _merge_failures(config: FaultConfig, value: Any) -> FaultConfig:
    failures = dict(config.failures)
    for service, rules in _object(value, "failures").items():
        _check_service(service, "failures")
        if not isinstance(rules, list):
            raise ConfigError(f"failures.{service} must be a list of rules")
        failures[service] = tuple(_rule(rule, f"failures.{service}[{i}]") for i, rule in enumerate(rules))
    return replace(config, failures=failures)


def _merge_bc_concurrency(config: FaultConfig, value: Any) -> FaultConfig:
    data = _object(value, "bcConcurrency")
    current = config.bc_concurrency
    return replace(
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


def _merge_bc_rate_limit(config: FaultConfig, value: Any) -> FaultConfig:
    data = _object(value, "bcRateLimit")
    current = config.bc_rate_limit
    return replace(
        config,
        bc_rate_limit=BcRateLimit(
            limit=_optional_int(data, "limit", current.limit, "bcRateLimit", 1),
            window_seconds=_number(
                data.get("windowSeconds", current.window_seconds), "bcRateLimit.windowSeconds", minimum=0.001
            ),
            retry_after=_optional_int(data, "retryAfter", current.retry_after, "bcRateLimit", 0),
        ),
    )


def _merge_graph_throttling(config: FaultConfig, value: Any) -> FaultConfig:
    data = _object(value, "graphThrottling")
    current = config.graph_throttling
    most = _optional_int(
        data, "maxConcurrentPerMailbox", current.max_concurrent_per_mailbox, "graphThrottling", 1
    )
    retry_after = _optional_int(data, "retryAfter", current.retry_after, "graphThrottling", 0)
    return replace(
        config, graph_throttling=GraphThrottling(max_concurrent_per_mailbox=most, retry_after=retry_after)
    )


def _merge_drop_after_commit(config: FaultConfig, value: Any) -> FaultConfig:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError("dropAfterCommit must be a whole number >= 0")
    return replace(config, drop_after_commit=value)


# Applied in this order, whatever the order of the patch's keys.
_SECTIONS: tuple[tuple[str, Callable[[FaultConfig, Any], FaultConfig]], ...] = (
    ("latency", _merge_latency),
    ("failures", _merge_failures),
    ("bcConcurrency", _merge_bc_concurrency),
    ("bcRateLimit", _merge_bc_rate_limit),
    ("graphThrottling", _merge_graph_throttling),
    ("dropAfterCommit", _merge_drop_after_commit),
)


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
