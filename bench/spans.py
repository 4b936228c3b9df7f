"""Timing spans for the invoicing benchmarks: where an invoice's time goes, measured, not guessed.

`Spans.install()` wraps a fixed list of the app's methods (the queue listener's receive and
completion, the booking store, the link store, the Business Central client and its budget) so each
call records (name, thread, start, end). `report()` then says, for the `create_invoice`
invocations, how much of their wall time each kind of call took (exclusive of the calls nested in
it), and how busy Business Central's slots were: the mean number of requests in flight over the
run, beside the limit. Only the benchmarks install it; the app never imports this module.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Span:
    name: str
    thread: int
    start: float
    end: float


def _targets() -> list[tuple[Any, str, str]]:
    """(owner, attribute, span name) of every call timed; imported late so the app loads first."""
    from devhost.queues import QueueListener
    from shared.adapters import bc_budget, booking_store, business_central, link_store
    from shared.services.invoice_booking import InvoiceBooking

    return [
        (InvoiceBooking, "__call__", "invocation"),
        (booking_store.BookingStore, "get", "booking read"),
        (booking_store.BookingStore, "save", "booking write (conditional)"),
        (link_store.LinkStore, "get", "link read"),
        (business_central.BusinessCentralClient, "_request", "BC call incl. retry waits"),
        (business_central.BusinessCentralClient, "_send_once", "BC send (token, slot, HTTP)"),
        (bc_budget.StorageBudget, "_acquire", "budget: waiting for a slot"),
        (bc_budget.StorageBudget, "_finish", "budget: giving a slot back"),
        (bc_budget.StorageBudget, "_read", "budget: storage read"),
        (bc_budget.StorageBudget, "_write", "budget: storage write"),
        (QueueListener, "_receive", "queue receive"),
        (QueueListener, "_complete", "queue delete/complete"),
    ]


HTTP = "BC HTTP request"


class Spans:
    """Records spans of the wrapped calls in this process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.spans: list[Span] = []
        self._undo: list[Callable[[], None]] = []
        self._cpu_at = time.process_time()

    def record(self, name: str, start: float, end: float) -> None:
        with self._lock:
            self.spans.append(Span(name, threading.get_ident(), start, end))

    def _wrap(self, func: Callable[..., Any], name: str) -> Callable[..., Any]:
        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self.record(name, start, time.perf_counter())

        return timed

    def install(self) -> Spans:
        from shared.adapters import business_central

        for owner, attribute, name in _targets():
            original = owner.__dict__[attribute]
            setattr(owner, attribute, self._wrap(original, name))
            self._undo.append(lambda o=owner, a=attribute, f=original: setattr(o, a, f))
        pooled = business_central._pooled_session

        def session() -> Any:
            made = pooled()
            made.request = self._wrap(made.request, HTTP)  # type: ignore[method-assign]
            return made

        business_central._pooled_session = session  # type: ignore[assignment]
        self._undo.append(lambda: setattr(business_central, "_pooled_session", pooled))
        return self

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    def clear(self) -> None:
        with self._lock:
            self.spans.clear()
            self._cpu_at = time.process_time()

    # -- analysis ------------------------------------------------------------------------------

    def breakdown(self) -> dict[str, Any]:
        """Per invocation: mean ms of each kind of call (exclusive of nested calls), the rest
        ("own work") and what happens outside invocations; BC slot use over the run."""
        with self._lock:
            spans = sorted(self.spans, key=lambda s: (s.thread, s.start, -s.end))
        invocations = [s for s in spans if s.name == "invocation"]
        exclusive: dict[str, float] = defaultdict(float)
        by_thread: dict[int, list[Span]] = defaultdict(list)
        for span in spans:
            by_thread[span.thread].append(span)
        for thread_spans in by_thread.values():
            for span, children in _nest(thread_spans):
                inner = sum(child.end - child.start for child in children)
                exclusive[span.name] += (span.end - span.start) - inner
        count = max(len(invocations), 1)
        per_invoice = {name: round(total * 1000 / count, 2) for name, total in exclusive.items()}
        http = [s for s in spans if s.name == HTTP]
        first = min((s.start for s in spans), default=0.0)
        last = max((s.end for s in spans), default=0.0)
        busy = sum(s.end - s.start for s in http)
        return {
            "cpuMsPerInvoice": round((time.process_time() - self._cpu_at) * 1000 / count, 2),
            "cpuShare": round((time.process_time() - self._cpu_at) / max(last - first, 1e-9), 2),
            "invocations": len(invocations),
            "invocationMs": round(sum(s.end - s.start for s in invocations) * 1000 / count, 2),
            "exclusiveMsPerInvoice": dict(sorted(per_invoice.items(), key=lambda kv: -kv[1])),
            "meanInFlight": round(busy / max(last - first, 1e-9), 2),
            "httpMs": round(busy * 1000 / max(len(http), 1), 2),
        }


def _nest(spans: list[Span]) -> Iterator[tuple[Span, list[Span]]]:
    """Each span with its direct children (spans of one thread, sorted by start, outer first)."""
    stack: list[tuple[Span, list[Span]]] = []
    for span in spans:
        while stack and stack[-1][0].end <= span.start:
            yield stack.pop()
        if stack and span.end <= stack[-1][0].end:
            stack[-1][1].append(span)
        stack.append((span, []))
    while stack:
        yield stack.pop()


def print_breakdown(title: str, figures: dict[str, Any], limit: int) -> None:
    print(f"\nWhere an invoice's time goes: {title}")
    print(
        f"  {figures['invocations']} invocations, {figures['invocationMs']:.1f} ms each on average; "
        f"BC requests in flight on average {figures['meanInFlight']:.2f} of {limit} "
        f"({figures['httpMs']:.1f} ms per HTTP request); this process's CPU "
        f"{figures['cpuMsPerInvoice']:.1f} ms per invoice, {figures['cpuShare']:.0%} of one core"
    )
    for name, ms in figures["exclusiveMsPerInvoice"].items():
        print(f"  {name:<34} {ms:>9.2f} ms per invoice")
