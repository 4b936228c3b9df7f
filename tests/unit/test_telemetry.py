"""Bound log fields and W3C trace continuation."""

from __future__ import annotations

import logging

import pytest

from shared.telemetry import TraceParent, continue_trace, current_traceparent, get_logger, log_fields

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = f"00-{TRACE}-b7ad6b7169203331-01"


def test_fields_are_bound_to_records_and_extra_wins(caplog: pytest.LogCaptureFixture) -> None:
    log = get_logger("bookings.test_telemetry")
    caplog.set_level(logging.INFO, logger="bookings.test_telemetry")
    with log_fields(businessId="lunch@contoso.com", bookingKey="K1"), log_fields(requestId="r1"):
        log.info("inside", extra={"bookingKey": "K2", "outcome": "ok"})
    log.info("outside")
    inside, outside = caplog.records
    assert (inside.businessId, inside.bookingKey, inside.requestId, inside.outcome) == (
        "lunch@contoso.com",
        "K2",
        "r1",
        "ok",
    )
    assert not hasattr(outside, "businessId")


def test_continue_trace_keeps_the_trace_id_with_a_new_span(caplog: pytest.LogCaptureFixture) -> None:
    log = get_logger("bookings.test_telemetry")
    caplog.set_level(logging.INFO, logger="bookings.test_telemetry")
    with continue_trace(PARENT, "create_invoice") as span:
        log.info("work")
        handed_on = TraceParent.parse(current_traceparent())
    assert span.trace_id == TRACE and span.span_id != "b7ad6b7169203331"
    assert caplog.records[0].traceId == TRACE and caplog.records[0].spanId == span.span_id
    assert handed_on is not None and handed_on.trace_id == TRACE


@pytest.mark.parametrize("header", [None, "", "garbage", "00-" + "0" * 32 + "-b7ad6b7169203331-01"])
def test_missing_or_invalid_parent_starts_a_new_trace(header: str | None) -> None:
    with continue_trace(header, "x") as span:
        assert len(span.trace_id) == 32 and set(span.trace_id) != {"0"}
