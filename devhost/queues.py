"""Queue trigger listener that follows the Functions host's queue processor.

- fetch up to `batchSize` messages, and a new batch when `newBatchThreshold` or fewer still run;
- a fetched message stays invisible for the lock period, renewed while the function runs, so a
  crashed host's message reappears only after the lock (as in Azure);
- success: delete; failure: visible again after `visibilityTimeout`, or at `maxDequeueCount`
  copied to `<queue>-poison` and deleted, with the host's own log sentence;
- a message already over the count, or not valid base64, goes to poison without running;
- when idle, polling backs off exponentially up to `maxPollingInterval`;
- every storage call survives transient faults through the product's retry layer
  (`shared/adapters/storage_retry.py`), as the real host's own retries do; a completion that still
  fails leaves the message locked until its lock ends, never lost.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage as FunctionsQueueMessage
from azure.storage.queue import QueueClient, QueueMessage

from devhost.config import QueueOptions
from devhost.functions import FunctionSpec
from devhost.invoker import Invoker
from shared.adapters.storage import client_options
from shared.adapters.storage_retry import ResilientQueue, StorageRetry
from shared.domain.errors import StorageUnavailableError

log = logging.getLogger("devhost.queues")

_STORAGE_ERRORS = (AzureError, StorageUnavailableError)
MIN_POLLING_INTERVAL = 0.1
DEFAULT_LOCK = timedelta(minutes=10)


@dataclass
class _Running:
    """A message whose invocation is running; its pop receipt changes with every renewal."""

    message: QueueMessage
    pop_receipt: str
    renew_at: float

    def __post_init__(self) -> None:
        self.guard = threading.Lock()


class QueueListener:
    """Polls one queue for one queue-triggered function."""

    def __init__(
        self,
        spec: FunctionSpec,
        connection_string: str,
        options: QueueOptions,
        invoker: Invoker,
        *,
        lock: timedelta = DEFAULT_LOCK,
    ) -> None:
        self.spec = spec
        self.queue_name = str(spec.trigger["queueName"])
        self.poison_queue_name = f"{self.queue_name}-poison"
        self._options = options
        self._invoker = invoker
        self._lock_seconds = max(1, int(lock.total_seconds()))
        # Our retry layer retries each call (the SDK's own retries are off, so tries do not multiply).
        options: dict[str, Any] = client_options("queue")
        retry = StorageRetry()
        self._queue = ResilientQueue(
            QueueClient.from_connection_string(connection_string, self.queue_name, **options), retry
        )
        self._poison = ResilientQueue(
            QueueClient.from_connection_string(connection_string, self.poison_queue_name, **options), retry
        )
        self._stopping = threading.Event()
        self._changed = threading.Condition()
        self._running: dict[str, _Running] = {}
        self._threads: list[threading.Thread] = []
        # Finished invocations, completed (message deleted, released or poisoned) by a thread of the
        # listener, as the host does it: the worker thread is free for the next invocation at once.
        self._finished: queue.SimpleQueue[tuple[_Running, Future[Any]]] = queue.SimpleQueue()

    @property
    def running(self) -> int:
        with self._changed:
            return len(self._running)

    def start(self) -> None:
        loops = ((self._poll_loop, "poll"), (self._renew_loop, "renew"), (self._complete_loop, "complete"))
        for target, suffix in loops:
            thread = threading.Thread(
                target=target, name=f"devhost-queue-{self.spec.name}-{suffix}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop_polling(self) -> None:
        """Fetch no more messages; running ones finish and are completed as usual."""
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)

    # -- polling -----------------------------------------------------------------------------

    def _ensure_queue(self) -> bool:
        try:
            self._queue.create_queue()
        except ResourceExistsError:
            pass
        except _STORAGE_ERRORS as exc:
            # Storage may come up later: keep trying, as the host's listener does.
            log.warning("Cannot reach queue '%s' yet: %s", self.queue_name, _first_line(exc))
            return False
        return True

    def _poll_loop(self) -> None:
        interval = MIN_POLLING_INTERVAL
        max_interval = max(MIN_POLLING_INTERVAL, self._options.max_polling_interval.total_seconds())
        while not self._ensure_queue():
            if self._stopping.wait(max_interval):
                return
        while not self._stopping.is_set():
            with self._changed:
                while len(self._running) > self._options.fetch_threshold and not self._stopping.is_set():
                    self._changed.wait(1.0)
                capacity = self._options.batch_size - len(self._running)
            if self._stopping.is_set():
                break
            try:
                messages = self._receive(capacity)
            except _STORAGE_ERRORS as exc:
                log.warning("Polling queue '%s' failed: %s", self.queue_name, _first_line(exc))
                messages = []
            if messages:
                interval = MIN_POLLING_INTERVAL
                for message in messages:
                    self._dispatch(message)
                continue
            self._stopping.wait(interval)
            interval = min(interval * 2, max_interval)

    def _receive(self, count: int) -> list[QueueMessage]:
        if count <= 0:
            return []
        return self._queue.receive_messages(
            messages_per_page=count, max_messages=count, visibility_timeout=self._lock_seconds
        )

    def _dispatch(self, message: QueueMessage) -> None:
        dequeue_count = int(message.dequeue_count or 1)
        if dequeue_count > self._options.max_dequeue_count:
            self._move_to_poison(message, message.pop_receipt or "")
            return
        body = self._decode(message)
        if body is None:
            log.error(
                "Message %s on queue '%s' is not valid base64 (messageEncoding is base64). "
                "Moving message to queue '%s'.",
                message.id,
                self.queue_name,
                self.poison_queue_name,
            )
            self._move_to_poison(message, message.pop_receipt or "", log_count=False)
            return
        running = _Running(message, message.pop_receipt or "", time.monotonic() + self._lock_seconds / 2)
        with self._changed:
            self._running[message.id] = running
        trigger_input = FunctionsQueueMessage(
            id=message.id,
            body=body,
            dequeue_count=dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
        try:
            self._invoker.submit(
                self.spec,
                trigger_input,
                reason=f"New queue message detected on '{self.queue_name}'",
                on_done=lambda future: self._finished.put((running, future)),
            )
        except RuntimeError:
            # The host is shutting down: hand the message back at once.
            self._release(running, visibility_seconds=0)

    def _decode(self, message: QueueMessage) -> bytes | None:
        content: Any = message.content
        text = content if isinstance(content, str) else (content or b"").decode("utf-8", "replace")
        if self._options.message_encoding == "none":
            return text.encode("utf-8")
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return None

    # -- completion --------------------------------------------------------------------------

    def _complete_loop(self) -> None:
        while True:
            try:
                running, future = self._finished.get(timeout=0.5)
            except queue.Empty:
                with self._changed:
                    if self._stopping.is_set() and not self._running:
                        return
                continue
            self._complete(running, future)

    def _complete(self, running: _Running, future: Future[Any]) -> None:
        failed = future.exception() is not None
        message = running.message
        try:
            if not failed:
                with running.guard:
                    self._queue.delete_message(message.id, running.pop_receipt)
            elif int(message.dequeue_count or 1) >= self._options.max_dequeue_count:
                with running.guard:
                    self._move_to_poison(message, running.pop_receipt)
            else:
                self._release(running, int(self._options.visibility_timeout.total_seconds()))
        except _STORAGE_ERRORS as exc:
            # The message stays locked and reappears when its lock ends: never lost.
            log.warning(
                "Completing message %s on '%s' failed: %s", message.id, self.queue_name, _first_line(exc)
            )
        finally:
            with self._changed:
                self._running.pop(message.id, None)
                self._changed.notify_all()

    def _release(self, running: _Running, visibility_seconds: int) -> None:
        with running.guard:
            self._queue.update_message(
                running.message.id, running.pop_receipt, visibility_timeout=visibility_seconds
            )

    def _move_to_poison(self, message: QueueMessage, pop_receipt: str, *, log_count: bool = True) -> None:
        if log_count:
            log.warning(
                "Message has reached MaxDequeueCount of %d. Moving message to queue '%s'.",
                self._options.max_dequeue_count,
                self.poison_queue_name,
                extra={"queueName": self.queue_name, "messageId": message.id},
            )
        with contextlib.suppress(ResourceExistsError):
            self._poison.create_queue()
        # The raw content is copied unchanged, so the poison message decodes as the original did.
        self._poison.send_message(message.content)
        try:
            self._queue.delete_message(message.id, pop_receipt)
        except ResourceNotFoundError:
            log.warning("Message %s was already gone from '%s' after poisoning", message.id, self.queue_name)

    # -- lock renewal ------------------------------------------------------------------------

    def _renew_loop(self) -> None:
        """Keep running messages invisible: renew each lock when half of it has passed."""
        period = self._lock_seconds / 2
        while True:
            with self._changed:
                if self._stopping.is_set() and not self._running:
                    return
                now = time.monotonic()
                due = [item for item in self._running.values() if item.renew_at <= now]
                if not due:
                    next_due = min((item.renew_at for item in self._running.values()), default=now + period)
                    self._changed.wait(max(0.05, next_due - now))
                    continue
            for item in due:
                try:
                    with item.guard:
                        receipt = self._queue.update_message(
                            item.message.id, item.pop_receipt, visibility_timeout=self._lock_seconds
                        )
                        item.pop_receipt = receipt.pop_receipt or item.pop_receipt
                except _STORAGE_ERRORS as exc:
                    log.debug("Renewing lock of %s failed: %s", item.message.id, _first_line(exc))
                item.renew_at = time.monotonic() + period


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
