"""Trace context and structured log fields that follow the work, not the call stack.

- `log_fields(**fields)` binds fields (businessId, bookingKey, requestId, ...) to every record of a
  `get_logger()` logger written inside the block, so each line carries them without `extra=`.
- `continue_trace(traceparent)` makes a W3C trace context current: the HTTP selection passes its
  `traceparent` in each queue message, and `create_invoice` continues it, so one selection and all
  its invoices form one end-to-end trace. When OpenTelemetry is configured (the Functions worker
  does it in Azure with `telemetryMode` OpenTelemetry), a span is started under that parent too;
  locally the ids still appear as `traceId`/`spanId` fields in the console.

Fields given with `extra=` become `customDimensions` in Application Insights.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_fields: ContextVar[dict[str, Any] | None] = ContextVar("bookings_log_fields", default=None)


@dataclass(frozen=True)
class TraceParent:
    """A W3C `traceparent`: version 00, trace id, parent span id, flags."""

    trace_id: str
    span_id: str
    flags: str = "01"

    @classmethod
    def parse(cls, header: str | None) -> TraceParent | None:
        match = _TRACEPARENT.match((header or "").strip().lower())
        if not match or set(match.group(1)) == {"0"} or set(match.group(2)) == {"0"}:
            return None
        return cls(match.group(1), match.group(2), match.group(3))

    @classmethod
    def new_root(cls) -> TraceParent:
        return cls(secrets.token_hex(16), secrets.token_hex(8))

    def child(self) -> TraceParent:
        """A new span in the same trace."""
        return TraceParent(self.trace_id, secrets.token_hex(8), self.flags)

    @property
    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


def current_fields() -> dict[str, Any]:
    return dict(_fields.get() or {})


@contextlib.contextmanager
def log_fields(**fields: Any) -> Iterator[None]:
    """Add fields to every log record written inside the block (nested blocks add to them)."""
    merged = {**(_fields.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    token = _fields.set(merged)
    try:
        yield
    finally:
        _fields.reset(token)


def current_traceparent() -> str | None:
    """The `traceparent` of the current span, to hand on (e.g. in a queue message)."""
    try:
        from opentelemetry import trace

        span = trace.get_current_span()
        span_context = span.get_span_context()
        if span.is_recording() and span_context.is_valid:
            flags = int(span_context.trace_flags)
            return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{flags:02x}"
    except ImportError:  # pragma: no cover - opentelemetry-api is a pinned dependency
        pass
    fields = _fields.get() or {}
    if "traceId" in fields and "spanId" in fields:
        return f"00-{fields['traceId']}-{fields['spanId']}-01"
    return None


@contextlib.contextmanager
def continue_trace(
    traceparent: str | None, name: str, tracestate: str | None = None
) -> Iterator[TraceParent]:
    """Run the block as a new span of the given trace (a new trace if there is none)."""
    parent = TraceParent.parse(traceparent)
    with contextlib.ExitStack() as stack:
        span_ids: TraceParent | None = None
        try:
            from opentelemetry import trace
            from opentelemetry.propagate import extract

            carrier = {"traceparent": parent.header} if parent else {}
            if tracestate and parent:
                carrier["tracestate"] = tracestate
            span = stack.enter_context(
                trace.get_tracer("bookings").start_as_current_span(name, context=extract(carrier))
            )
            span_context = span.get_span_context()
            if span.is_recording() and span_context.is_valid:  # an SDK is configured: use its ids
                span_ids = TraceParent(f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}")
        except ImportError:  # pragma: no cover
            pass
        if span_ids is None:
            span_ids = (parent or TraceParent.new_root()).child()
        stack.enter_context(log_fields(traceId=span_ids.trace_id, spanId=span_ids.span_id))
        yield span_ids


class ContextFieldsFilter(logging.Filter):
    """Adds the bound fields to each record of the logger it is attached to.

    A filter (not a record factory) so that fields given with `extra=` are applied first and win,
    instead of colliding with bound ones.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_fields.get() or {}).items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


_FILTER = ContextFieldsFilter()


def get_logger(name: str) -> logging.Logger:
    """A logger whose records carry the fields bound with `log_fields` / `continue_trace`."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
