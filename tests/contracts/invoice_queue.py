"""`InvoiceQueuePort`: `bookings-to-invoice`, one message per booking."""

from __future__ import annotations

from shared.domain.models import InvoiceMessage
from shared.services.ports import InvoiceQueuePort


class InvoiceQueueContract:
    """Subclasses provide an `invoice_queue` fixture: an empty queue (and poison queue)."""

    def test_each_send_answers_its_own_message_id(self, invoice_queue: InvoiceQueuePort) -> None:
        message = InvoiceMessage(
            "lunch@contoso.com", "A" * 26, "req-1", traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01"
        )
        first = invoice_queue.send(message)
        second = invoice_queue.send(message, delay_seconds=5)  # a copy, later: another message
        assert first and second and first != second

    def test_an_empty_poison_queue_has_depth_zero(self, invoice_queue: InvoiceQueuePort) -> None:
        assert invoice_queue.poison_depth() == 0
