"""Composition root: builds the app's dependencies once per process, lazily, from settings.

Functions ask `container()` for what they need; tests build a `Container` with their own settings
and clients. A bad setting is logged once, in one line naming it, and raised as `SettingsError`
to the function, never as a stack trace from deep inside a client.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from functools import cached_property

from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueServiceClient

from shared.booking_store import BOOKINGS_TABLE, BookingStore
from shared.invoice_queue import InvoiceQueue
from shared.settings import Settings, SettingsError, load_settings
from shared.storage import queue_service_client, table_service_client

log = logging.getLogger("bookings.bootstrap")


class Container:
    """Everything the use cases need, built on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def tables(self) -> TableServiceClient:
        return table_service_client(self.settings.storage)

    @cached_property
    def queues(self) -> QueueServiceClient:
        return queue_service_client(self.settings.storage)

    @cached_property
    def booking_store(self) -> BookingStore:
        store = BookingStore(self.tables.get_table_client(BOOKINGS_TABLE))
        store.ensure_table()
        return store

    @cached_property
    def invoice_queue(self) -> InvoiceQueue:
        queue = InvoiceQueue(self.queues)
        queue.ensure_queues()
        return queue

    def probe_storage(self) -> None:
        """One cheap call to each service the app depends on."""
        next(iter(self.tables.list_tables(results_per_page=1)), None)
        next(iter(self.queues.list_queues(results_per_page=1)), None)


_lock = threading.Lock()
_container: Container | None = None
_reported_error: str | None = None


def current_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Load settings, logging a settings problem once per process (not on every invocation)."""
    global _reported_error
    try:
        return load_settings(os.environ if env is None else env)
    except SettingsError as exc:
        if str(exc) != _reported_error:
            _reported_error = str(exc)
            log.error("%s", exc, extra={"setting": exc.setting, "outcome": "invalid_settings"})
        raise


def container() -> Container:
    """The process's container, built from the environment on first use."""
    global _container
    if _container is not None:
        return _container
    with _lock:
        if _container is None:
            _container = Container(current_settings())
        return _container


def reset_container() -> None:
    """Forget the built container (tests, or after settings changed)."""
    global _container
    with _lock:
        _container = None
