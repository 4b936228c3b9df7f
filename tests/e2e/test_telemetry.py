"""Telemetry on the whole stack: structured fields on the lines that matter, and one trace from
the HTTP selection through the queue into every `create_invoice` it caused."""

from __future__ import annotations

import logging

import pytest

from devhost.logs import StructuredFormatter
from shared.domain.models import BookingStatus
from tests.e2e.stack import Stack
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


def test_one_selection_and_its_invoices_form_one_trace_with_structured_fields(stack: Stack) -> None:
    assert stack.run_function("sync_bookings") == ["Succeeded"]
    candidates = [b for b in stack.bookings() if b.status is BookingStatus.UNBILLED and b.customer_email]
    keys = sorted(b.key for b in candidates)[:3]
    response = stack.api(
        "POST",
        "invoice-requests",
        json={"bookingKeys": keys},
        headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"},
    )
    assert response.status_code == 202, response.text
    request_id = response.json()["requestId"]

    def settled() -> bool:
        status = stack.api("GET", f"invoice-requests/{request_id}").json()
        return sum(status["counts"].get(state, 0) for state in ("Invoiced", "Failed")) == len(keys)

    wait_for(settled, timeout=120, what="the three invoices")
    # Every one invoiced: a run where all failed must not pass (their lines carry no invoice).
    counts = stack.api("GET", f"invoice-requests/{request_id}").json()["counts"]
    assert counts["Invoiced"] == len(keys), counts

    # The selection logged its summary inside the caller's trace.
    (summary,) = stack.logs.where("bookings.selection", requestId=request_id, outcome="accepted")
    assert summary.traceId == TRACE_ID and summary.spanId != CALLER_SPAN

    for key in keys:
        results = [
            r
            for r in stack.logs.where("bookings.invoicing", bookingKey=key, requestId=request_id)
            if getattr(r, "outcome", None) in ("invoiced", "adopted", "failed")
        ]
        assert len(results) == 1, [r.getMessage() for r in results]
        record = results[0]
        # Same trace as the selection; each invoice its own span under it.
        assert record.traceId == TRACE_ID
        assert record.spanId not in (CALLER_SPAN, summary.spanId)
        assert record.businessId in stack.business_ids
        assert isinstance(record.durationMs, int)
        assert record.outcome in ("invoiced", "adopted") and record.invoiceNumber
        # Locally the same fields are printed on the console line.
        line = StructuredFormatter("%(message)s").format(record)
        assert (
            f"traceId={TRACE_ID}" in line
            and f"bookingKey={key}" in line
            and f"requestId={request_id}" in line
        )

    spans = {r.spanId for r in stack.logs.where("bookings.invoicing", requestId=request_id)}
    assert len(spans) >= len(keys)  # one span per invocation


def test_timer_logs_backlog_per_state_and_poison_depth(stack: Stack) -> None:
    assert stack.run_function("sync_bookings") == ["Succeeded"]
    backlog = [r for r in stack.logs.where("bookings") if hasattr(r, "poisonDepth")]
    assert backlog, "the timer did not log its backlog line"
    latest = backlog[-1]
    unbilled = sum(1 for b in stack.bookings() if b.status is BookingStatus.UNBILLED)
    assert latest.poisonDepth == 0
    assert getattr(latest, "unbilled", None) == unbilled, logging.Formatter().format(latest)
