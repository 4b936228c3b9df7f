"""Runs one function invocation the way the Python worker does, and logs it like the host.

Sync functions run in one shared thread pool of min(32, cpu + 4) threads (the worker's default);
async functions run on an event loop. Every invocation gets an id, a W3C trace context, and one log
line when it ends: function, trigger, outcome and duration.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from devhost.functions import FunctionSpec

log = logging.getLogger("devhost")

_TRACEPARENT_FIELDS = 4


@dataclass
class TraceContext:
    """W3C trace context of an invocation (what `context.trace_context` gives a function)."""

    trace_parent: str
    trace_state: str = ""
    attributes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_header(cls, traceparent: str | None, tracestate: str | None = None) -> TraceContext:
        """Continue the caller's trace (new span id), or start a new trace if there is none."""
        parts = (traceparent or "").split("-")
        valid = (
            len(parts) == _TRACEPARENT_FIELDS
            and len(parts[1]) == 32
            and len(parts[2]) == 16
            and all(c in "0123456789abcdef" for c in parts[1] + parts[2])
            and parts[1] != "0" * 32
        )
        trace_id = parts[1] if valid else secrets.token_hex(16)
        flags = parts[3] if valid and len(parts[3]) == 2 else "01"
        return cls(f"00-{trace_id}-{secrets.token_hex(8)}-{flags}", tracestate or "")


@dataclass
class RetryContext:
    retry_count: int = 0
    max_retry_count: int = 0
    exception: Any = None


@dataclass
class InvocationContext:
    """The `context` argument a function may declare (`func.Context` shape)."""

    invocation_id: str
    function_name: str
    function_directory: str
    trace_context: TraceContext
    retry_context: RetryContext = field(default_factory=RetryContext)
    thread_local_storage: threading.local = field(default_factory=threading.local)


class Invoker:
    """Submits invocations to the worker pool and keeps count of those still running."""

    def __init__(self, app_directory: str, max_workers: int | None = None) -> None:
        workers = max_workers or int(os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", 0) or 0)
        self._pool = ThreadPoolExecutor(
            max_workers=workers or min(32, (os.cpu_count() or 1) + 4), thread_name_prefix="devhost-worker"
        )
        self._app_directory = app_directory
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def submit(
        self,
        spec: FunctionSpec,
        trigger_input: Any,
        *,
        reason: str,
        trace: TraceContext | None = None,
        on_done: Callable[[Future[Any]], None] | None = None,
    ) -> Future[Any]:
        """Start one invocation; the future holds the function's return value or its exception."""
        with self._lock:
            self._in_flight += 1
        try:
            future = self._pool.submit(self._run, spec, trigger_input, reason, trace)
        except RuntimeError:
            self._finished()
            raise

        def done(finished: Future[Any]) -> None:
            # Complete the trigger (e.g. delete the message) before the invocation stops counting
            # as in flight, so a shutdown waiting for idle never cuts the completion off.
            try:
                if on_done is not None:
                    on_done(finished)
            finally:
                self._finished()

        future.add_done_callback(done)
        return future

    def _finished(self) -> None:
        with self._idle:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no invocation runs; False if some still run after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=False)

    def _run(self, spec: FunctionSpec, trigger_input: Any, reason: str, trace: TraceContext | None) -> Any:
        invocation_id = str(uuid.uuid4())
        kwargs: dict[str, Any] = {spec.trigger_arg: trigger_input}
        if spec.wants_context:
            kwargs["context"] = InvocationContext(
                invocation_id=invocation_id,
                function_name=spec.name,
                function_directory=self._app_directory,
                trace_context=trace or TraceContext.from_header(None),
            )
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            if spec.is_async:
                return asyncio.run(spec.user_function(**kwargs))
            return spec.user_function(**kwargs)
        except BaseException as exc:
            error = exc
            raise
        finally:
            duration_ms = round((time.perf_counter() - started) * 1000)
            outcome = "Succeeded" if error is None else "Failed"
            detail = "" if error is None else f", Error={type(error).__name__}: {error}"
            log.log(
                logging.INFO if error is None else logging.ERROR,
                "Executed 'Functions.%s' (%s, Trigger=%s, Reason=%s, Id=%s, Duration=%dms%s)",
                spec.name,
                outcome,
                spec.short_trigger,
                reason,
                invocation_id,
                duration_ms,
                detail,
                exc_info=error if error is not None and log.isEnabledFor(logging.DEBUG) else None,
                extra={
                    "functionName": spec.name,
                    "trigger": spec.short_trigger,
                    "outcome": outcome,
                    "invocationId": invocation_id,
                    "durationMs": duration_ms,
                },
            )
