"""What the local host reads before it starts: host.json and local.settings.json.

Defaults are the Functions host's own (see the queue trigger and HTTP docs), so a host.json that
leaves a value out behaves here as it does in Azure.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path


class HostConfigError(ValueError):
    """host.json or local.settings.json cannot be used; the message says which value and why."""


_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))?$")


def parse_timespan(value: str, name: str) -> timedelta:
    """Parse a .NET TimeSpan as host.json writes it: `[d.]hh:mm:ss[.fffffff]`."""
    match = _TIMESPAN.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise HostConfigError(f"host.json {name} is not a time span like 00:00:30: {value!r}")
    days, hours, minutes, seconds, fraction = match.groups()
    return timedelta(
        days=int(days or 0),
        hours=int(hours),
        minutes=int(minutes),
        seconds=int(seconds),
        microseconds=int((fraction or "0").ljust(7, "0")[:6]),
    )


@dataclass(frozen=True)
class QueueOptions:
    """`extensions.queues` of host.json, with the host's defaults."""

    batch_size: int = 16
    new_batch_threshold: int | None = None
    max_dequeue_count: int = 5
    visibility_timeout: timedelta = timedelta(0)
    max_polling_interval: timedelta = timedelta(seconds=2)
    message_encoding: str = "base64"

    @property
    def fetch_threshold(self) -> int:
        """Fetch a new batch when this many or fewer messages are still running."""
        if self.new_batch_threshold is not None:
            return self.new_batch_threshold
        return self.batch_size // 2


@dataclass(frozen=True)
class HostConfig:
    """The parts of host.json that shape how functions are triggered."""

    route_prefix: str = "api"
    queues: QueueOptions = QueueOptions()
    function_timeout: timedelta | None = None

    @classmethod
    def load(cls, path: Path) -> HostConfig:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise HostConfigError(f"host.json not found at {path}") from None
        except json.JSONDecodeError as exc:
            raise HostConfigError(f"host.json is not valid JSON: {exc}") from None
        return cls.from_document(document)

    @classmethod
    def from_document(cls, document: Mapping[str, object]) -> HostConfig:
        if document.get("version") != "2.0":
            raise HostConfigError('host.json must have "version": "2.0"')
        extensions = _mapping(document.get("extensions"), "extensions")
        http = _mapping(extensions.get("http"), "extensions.http")
        queues = _mapping(extensions.get("queues"), "extensions.queues")
        route_prefix = http.get("routePrefix", "api")
        if not isinstance(route_prefix, str):
            raise HostConfigError("host.json extensions.http.routePrefix must be a string")
        timeout = document.get("functionTimeout")
        return cls(
            route_prefix=route_prefix.strip("/"),
            queues=_queue_options(queues),
            function_timeout=parse_timespan(timeout, "functionTimeout") if isinstance(timeout, str) else None,
        )


def _mapping(value: object, name: str) -> Mapping[str, object]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise HostConfigError(f"host.json {name} must be an object")
    return value


def _int(queues: Mapping[str, object], key: str, default: int, low: int, high: int) -> int:
    value = queues.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise HostConfigError(f"host.json extensions.queues.{key} must be a whole number {low}..{high}")
    return value


def _queue_options(queues: Mapping[str, object]) -> QueueOptions:
    defaults = QueueOptions()
    batch_size = _int(queues, "batchSize", defaults.batch_size, 1, 32)
    threshold = queues.get("newBatchThreshold")
    encoding = queues.get("messageEncoding", "base64")
    if not isinstance(encoding, str) or encoding.lower() not in ("base64", "none"):
        raise HostConfigError('host.json extensions.queues.messageEncoding must be "base64" or "none"')

    def span(key: str, default: timedelta) -> timedelta:
        value = queues.get(key)
        return default if value is None else parse_timespan(str(value), f"extensions.queues.{key}")

    return QueueOptions(
        batch_size=batch_size,
        new_batch_threshold=None if threshold is None else _int(queues, "newBatchThreshold", 0, 0, 1000),
        max_dequeue_count=_int(queues, "maxDequeueCount", defaults.max_dequeue_count, 1, 1000),
        visibility_timeout=span("visibilityTimeout", defaults.visibility_timeout),
        max_polling_interval=span("maxPollingInterval", defaults.max_polling_interval),
        message_encoding=encoding.lower(),
    )


def load_local_settings(path: Path, environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Copy `Values` of local.settings.json into the environment; variables already set win.

    Returns the names that were taken from the file. A missing file is fine (everything may come
    from the environment); a malformed one is an error naming the file.
    """
    target = os.environ if environ is None else environ
    if not path.exists():
        return []
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise HostConfigError(f"{path.name} is not valid JSON: {exc}") from None
    values = document.get("Values", {}) if isinstance(document, Mapping) else None
    if not isinstance(values, Mapping):
        raise HostConfigError(f'{path.name} must be an object with a "Values" object')
    taken = []
    for name, value in values.items():
        if not isinstance(value, str | int | float | bool):
            raise HostConfigError(f"{path.name} Values.{name} must be a string")
        if name not in target:
            target[name] = str(value).lower() if isinstance(value, bool) else str(value)
            taken.append(name)
    return taken


_SETTING_REFERENCE = re.compile(r"%([^%]+)%")


def resolve_setting_references(value: str, settings: Mapping[str, str], where: str) -> str:
    """Replace `%NAME%` by the setting's value, as the host does for binding expressions."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in settings:
            raise HostConfigError(f"{where} refers to %{name}%, but the setting {name} is not set")
        return settings[name]

    return _SETTING_REFERENCE.sub(substitute, value)
