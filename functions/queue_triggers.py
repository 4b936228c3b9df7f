"""`create_invoice`: queue trigger on `bookings-to-invoice`, one draft invoice per booking.

The function parses the message and hands it to the use case. It raises to make the host retry
(transient errors); on the last allowed try the use case first marks the booking Failed, so no
booking stays Queued/Invoicing once its message reaches the poison queue.

A message that is not an invoice request (not JSON, missing ids, a malformed key) can never
succeed: it is logged as an error and raised, so it ends in `bookings-to-invoice-poison` where the
poison alert surfaces it and the message stays available for inspection. Its retries cost no
Business Central request.

A try waits at most `BUDGET_WAIT_SECONDS` for a slot of the Business Central budget all instances
share; one that got none does not raise (that would burn one of the message's tries): the use case
puts a fresh copy of the message back on the queue and hands the claim to it (outcome `requeued`,
`shared/services/budget_requeue.py`); this message then completes.
"""

from __future__ import annotations

import azure.functions as func

from shared import bootstrap
from shared.adapters.bc_budget import budget_wait_limit
from shared.adapters.invoice_queue import INVOICE_QUEUE
from shared.domain.models import InvalidMessageError, InvoiceMessage
from shared.telemetry import continue_trace, get_logger, log_fields

log = get_logger("bookings.functions.queue_triggers")

MAX_DEQUEUE_COUNT = 5
"""host.json `extensions.queues.maxDequeueCount`: the try with this count is the last one."""

BUDGET_WAIT_SECONDS = 60.0
"""Longest a try waits, in total, for Business Central slots before its message is requeued."""

bp = func.Blueprint()


@bp.function_name("create_invoice")
@bp.queue_trigger(arg_name="msg", queue_name=INVOICE_QUEUE, connection="AzureWebJobsStorage")
def create_invoice(msg: func.QueueMessage, context: func.Context) -> None:
    dequeue_count = int(getattr(msg, "dequeue_count", None) or 1)
    try:
        message = InvoiceMessage.from_json(msg.get_body().decode("utf-8"))
    except (InvalidMessageError, UnicodeDecodeError) as exc:
        log.error(
            "Message %s on '%s' is not an invoice request (%s); it goes to the poison queue",
            msg.id,
            INVOICE_QUEUE,
            exc,
            extra={"outcome": "invalid_message", "dequeueCount": dequeue_count},
        )
        raise
    # Continue the selection's trace, so one selection and all its invoices form one trace, and
    # bind the booking's ids to every log line of this invocation.
    with (
        continue_trace(message.traceparent, "create_invoice", message.tracestate),
        log_fields(
            businessId=message.business_id, bookingKey=message.booking_key, requestId=message.request_id
        ),
    ):
        container = bootstrap.container()
        delivery_id = getattr(msg, "id", None) or None
        with budget_wait_limit(BUDGET_WAIT_SECONDS):
            container.invoice_booking(
                message,
                dequeue_count=dequeue_count,
                last_attempt=dequeue_count >= MAX_DEQUEUE_COUNT,
                delivery_id=delivery_id,
            )
