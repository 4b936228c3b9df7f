"""The `bookings-to-invoice` queue: one base64 message per booking to invoice.

Senders must use `TextBase64EncodePolicy`: the Functions host decodes base64 by default and sends
anything else straight to the poison queue.
"""

from __future__ import annotations

import contextlib

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import (
    QueueServiceClient,
    TextBase64DecodePolicy,
    TextBase64EncodePolicy,
)

from shared.adapters.storage_retry import ResilientQueue, StorageRetry, resilient_queue
from shared.domain.models import InvoiceMessage

INVOICE_QUEUE = "bookings-to-invoice"
POISON_QUEUE = f"{INVOICE_QUEUE}-poison"


def _client(service: QueueServiceClient, name: str, retry: StorageRetry | None) -> ResilientQueue:
    # The policies must be passed in: assigning them after construction has no effect.
    client = service.get_queue_client(
        name, message_encode_policy=TextBase64EncodePolicy(), message_decode_policy=TextBase64DecodePolicy()
    )
    return resilient_queue(client, retry)


class InvoiceQueue:
    """Sends invoice requests; reads the poison queue's depth for operations.

    Every call survives transient storage faults (`storage_retry.py`): a send repeated after a lost
    answer may leave a duplicate message, which invoicing, being idempotent, turns into a no-op.
    """

    def __init__(
        self, service: QueueServiceClient, name: str = INVOICE_QUEUE, *, retry: StorageRetry | None = None
    ) -> None:
        self.queue = _client(service, name, retry)
        self.poison = _client(service, f"{name}-poison", retry)

    def ensure_queues(self) -> None:
        for client in (self.queue, self.poison):
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()

    def send(self, message: InvoiceMessage, *, delay_seconds: int | None = None) -> str:
        """Enqueue one message; returns its queue message id."""
        sent = self.queue.send_message(message.to_json(), visibility_timeout=delay_seconds)
        return str(sent.id)

    def depth(self) -> int:
        return self._count(self.queue)

    def poison_depth(self) -> int:
        return self._count(self.poison)

    @staticmethod
    def _count(client: ResilientQueue) -> int:
        try:
            return int(client.get_queue_properties().approximate_message_count or 0)
        except ResourceNotFoundError:
            return 0
