"""Composition root: builds the app's dependencies once per process, lazily, from settings.

Functions ask `container()` for what they need; tests build a `Container` with their own settings
and, through `Ports`, their own stand-ins for the adapters: the use cases are then wired exactly as
in production, only on other ports. A bad setting is logged once, in one line naming it, and
raised as `SettingsError` to the function, never as a stack trace from deep inside a client.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from datetime import datetime
from functools import cached_property
from typing import Any

from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueServiceClient

from shared.adapters.bc_budget import BUDGET_TABLE, StorageBudget
from shared.adapters.bc_invoice_feed import InvoiceFeed
from shared.adapters.booking_entities import BOOKINGS_TABLE
from shared.adapters.booking_store import BookingStore
from shared.adapters.business_central import BusinessCentralClient
from shared.adapters.graph_bookings import GraphBookingsClient
from shared.adapters.invoice_queue import InvoiceQueue
from shared.adapters.invoice_requests import INVOICE_REQUESTS_TABLE, InvoiceRequestStore
from shared.adapters.link_store import LINKS_TABLE, LinkStore
from shared.adapters.reconcile_state import RECONCILE_STATE_TABLE, ReconcileStateStore
from shared.adapters.setup_probes import ONE_ATTEMPT, PROBE_TIMEOUT, SetupProbes
from shared.adapters.storage import queue_service_client, table_service_client
from shared.adapters.storage_retry import ResilientTable, StorageRetry, resilient_table
from shared.adapters.sync_state import SYNC_STATE_TABLE, SyncStateStore
from shared.adapters.token_provider import TokenProvider
from shared.api.auth import platform_problem, running_in_azure
from shared.api.continuation import ContinuationTokens, derive_token_key
from shared.domain.bc_budget import BudgetLimits
from shared.domain.bc_web_client import InvoiceLinks, environment_url
from shared.domain.moments import utc_now
from shared.services.booking_queries import BookingQueries
from shared.services.booking_sync import BookingSync
from shared.services.booking_updates import BookingUpdates
from shared.services.directory import Directory
from shared.services.invoice_booking import InvoiceBooking
from shared.services.links import CustomerLinks, ItemLinks
from shared.services.ports import (
    BookingRepository,
    BusinessCentral,
    GraphBookings,
    InvoiceQueuePort,
    LinkRepository,
    RequestRepository,
    SyncStateRepository,
)
from shared.services.reconcile import InvoiceReconciler
from shared.services.reconcile_run import ReconcileTimerRun
from shared.services.request_status import RequestStatusReader
from shared.services.retention import Retention
from shared.services.selection import SelectionService
from shared.services.setup_check import AppAuthentication, SetupCheck, SetupConfig
from shared.services.timer_run import SyncTimerRun
from shared.settings import Settings, SettingsError, load_settings
from shared.telemetry import get_logger

log = get_logger("bookings.bootstrap")

# Threads the HTTP API fans out on (each storage client pools 10 connections per host).
API_FANOUT = 10


@dataclass(frozen=True)
class Ports:
    """Stand-ins for the adapters, by the container attribute they replace (None: the real one).

    The unit tests pass the in-memory fakes of `tests/unit/fakes.py`; every use case is then built
    by the same code as in production. A new port is one field here with the attribute's name.
    """

    booking_store: BookingRepository | None = None
    invoice_queue: InvoiceQueuePort | None = None
    invoice_requests: RequestRepository | None = None
    link_store: LinkRepository | None = None
    sync_state: SyncStateRepository | None = None
    business_central: BusinessCentral | None = None
    graph_bookings: GraphBookings | None = None


class Container:
    """Everything the use cases need, built on first use."""

    def __init__(self, settings: Settings, ports: Ports | None = None) -> None:
        self.settings = settings
        # A port given replaces its `cached_property` before first use (an instance attribute wins).
        for port in fields(Ports):
            given = getattr(ports, port.name) if ports is not None else None
            if given is not None:
                self.__dict__[port.name] = given
        # The app's one idea of "now": what counts as completed, status-change stamps, recovery
        # ages. Tests may swap it before first use; clients built here call `now()`, so a swap
        # reaches them too.
        self.clock: Callable[[], datetime] = utc_now

    def now(self) -> datetime:
        return self.clock()

    @cached_property
    def tables(self) -> TableServiceClient:
        return table_service_client(self.settings.storage)

    @cached_property
    def storage_retry(self) -> StorageRetry:
        """One retry for every storage call of this process (`adapters/storage_retry.py`): an outage
        one call ran into makes the others fail fast too, until storage answers again."""
        return StorageRetry()

    def table(self, name: str) -> ResilientTable:
        return resilient_table(self.tables.get_table_client(name), self.storage_retry)

    @cached_property
    def queues(self) -> QueueServiceClient:
        return queue_service_client(self.settings.storage)

    @cached_property
    def booking_store(self) -> BookingStore:
        store = BookingStore(self.table(BOOKINGS_TABLE), clock=self.now)
        store.ensure_table()
        return store

    @cached_property
    def invoice_queue(self) -> InvoiceQueue:
        queue = InvoiceQueue(self.queues, retry=self.storage_retry)
        queue.ensure_queues()
        return queue

    @cached_property
    def token_provider(self) -> TokenProvider:
        return TokenProvider(self.settings)

    @cached_property
    def bc_budget(self) -> StorageBudget:
        """The Business Central budget every instance shares (its own storage client: fail fast,
        the budget waits and retries by itself)."""
        settings = self.settings
        tables = table_service_client(settings.storage, connection_timeout=5, read_timeout=10)
        limits = BudgetLimits(
            concurrency=settings.bc_max_concurrency,
            limit=settings.bc_max_requests_per_5_min,
            window=float(settings.bc_rate_window_seconds),
        )
        return StorageBudget(tables.get_table_client(BUDGET_TABLE), limits)

    @cached_property
    def business_central(self) -> BusinessCentralClient:
        return self._business_central_client()

    def _business_central_client(self, **options: Any) -> BusinessCentralClient:
        """The company's client inside the shared budget; `options` tune retries and timeouts."""
        settings = self.settings
        return BusinessCentralClient(
            base_url=settings.bc_base_url,
            tenant_id=settings.tenant_id,
            environment=settings.bc_environment,
            company_id=settings.bc_company_id,
            token=self.token_provider.business_central_token,
            budget=self.bc_budget,
            **options,
        )

    @cached_property
    def link_store(self) -> LinkStore:
        store = LinkStore(self.table(LINKS_TABLE), clock=self.now)
        store.ensure_table()
        return store

    @cached_property
    def customer_links(self) -> CustomerLinks:
        return CustomerLinks(
            self.link_store,
            self.business_central,
            template=self.settings.customer_template,
            create=self.settings.sync_customers,
        )

    @cached_property
    def item_links(self) -> ItemLinks:
        return ItemLinks(
            self.link_store,
            self.business_central,
            template=self.settings.item_template,
            create=self.settings.sync_services,
        )

    @cached_property
    def invoice_booking(self) -> InvoiceBooking:
        return InvoiceBooking(
            self.booking_store,
            self.business_central,
            self.customer_links,
            self.item_links,
            self.invoice_queue,
            time_zone=self.settings.time_zone,
            invoice_date=self.settings.invoice_date,
            price_source=self.settings.price_source,
            clock=self.now,
        )

    # -- sync (timer sync_bookings) ------------------------------------------------------------

    @cached_property
    def graph_bookings(self) -> GraphBookingsClient:
        return GraphBookingsClient(
            self.settings.graph_base_url, self.token_provider.graph_token, clock=self.now
        )

    @cached_property
    def sync_state(self) -> SyncStateStore:
        store = SyncStateStore(self.table(SYNC_STATE_TABLE), clock=self.now)
        store.ensure_table()
        return store

    @cached_property
    def booking_sync(self) -> BookingSync:
        return BookingSync(
            self.graph_bookings,
            self.booking_store.sync_writer(),
            self.sync_state,
            self.settings.bookings_business_ids,
            self.settings.sync_lookback_days,
            retention_days=self.settings.retention_days,
            clock=self.now,
        )

    @cached_property
    def sync_timer_run(self) -> SyncTimerRun:
        return SyncTimerRun(
            self.booking_sync, self.booking_store, self.invoice_queue, self.now, index_markers=self.sync_state
        )

    # -- reconcile_invoices (timer) ----------------------------------------------------------

    @cached_property
    def reconcile_state(self) -> ReconcileStateStore:
        store = ReconcileStateStore(self.table(RECONCILE_STATE_TABLE), clock=self.now)
        store.ensure_table()
        return store

    @cached_property
    def reconcile_timer_run(self) -> ReconcileTimerRun:
        settings = self.settings
        reconciler = InvoiceReconciler(
            self.booking_store,
            InvoiceFeed(self.business_central),
            self.reconcile_state,
            business_ids=settings.bookings_business_ids,
            company_id=settings.bc_company_id,
            clock=self.now,
        )
        retention = Retention(
            self.booking_store,
            self.invoice_requests,
            business_ids=settings.bookings_business_ids,
            retention_days=settings.retention_days,
            clock=self.now,
        )
        company_id = settings.bc_company_id
        return ReconcileTimerRun(
            reconciler,
            retention,
            record_run=lambda outcome, error: self.reconcile_state.record_run(company_id, outcome, error),
        )

    # -- HTTP API (list, select, request status) ------------------------------------------------

    @property
    def api_executor(self) -> ThreadPoolExecutor:
        """Bounded fan-out for claims, sends and point reads; sized to the storage clients' pools.

        One pool per process, shared by every container (tests build many), so threads never pile up.
        """
        global _api_executor
        with _lock:
            if _api_executor is None:
                _api_executor = ThreadPoolExecutor(max_workers=API_FANOUT, thread_name_prefix="bookings-api")
            return _api_executor

    @cached_property
    def continuation_tokens(self) -> ContinuationTokens:
        storage = self.settings.storage
        material = (
            storage.connection_string.reveal()
            if storage.connection_string is not None
            else f"{storage.table_service_uri}\n{self.settings.client_id}"
        )
        return ContinuationTokens(derive_token_key(material))

    @cached_property
    def booking_queries(self) -> BookingQueries:
        return BookingQueries(
            self.booking_store,
            self.settings.bookings_business_ids,
            executor=self.api_executor,
            clock=self.now,
        )

    @cached_property
    def invoice_requests(self) -> InvoiceRequestStore:
        store = InvoiceRequestStore(
            self.table(INVOICE_REQUESTS_TABLE), executor=self.api_executor, clock=self.now
        )
        store.ensure_table()
        return store

    @cached_property
    def selection(self) -> SelectionService:
        return SelectionService(
            self.booking_store,
            self.booking_queries,
            self.invoice_queue,
            self.invoice_requests,
            max_selection=self.settings.max_selection,
            executor=self.api_executor,
            clock=self.now,
        )

    @cached_property
    def booking_updates(self) -> BookingUpdates:
        return BookingUpdates(
            self.booking_store,
            self.booking_queries,
            executor=self.api_executor,
            clock=self.now,
            invoices=self.business_central,
        )

    @cached_property
    def request_status(self) -> RequestStatusReader:
        return RequestStatusReader(self.invoice_requests, self.booking_store, executor=self.api_executor)

    # -- setup check (GET /api/setup-check, make check) ---------------------------------------

    host_kind = "devhost"
    """Where the app runs when not in Azure: "devhost" (a local host playing the platform) or
    "terminal" (`make check`, which cannot see a function app's platform settings)."""

    def app_authentication(self) -> AppAuthentication:
        """App Service Authentication as `shared/api/auth.py` sees it (the check every request makes)."""
        if running_in_azure(os.environ):
            return AppAuthentication("azure", platform_problem(os.environ))
        return AppAuthentication(self.host_kind, None)

    @cached_property
    def probe_graph(self) -> GraphBookingsClient:
        """A Graph client that tries once and gives up quickly: for the setup check and names."""
        return GraphBookingsClient(
            self.settings.graph_base_url,
            self.token_provider.graph_token,
            retry_policy=ONE_ATTEMPT,
            timeout=PROBE_TIMEOUT,
            clock=self.now,
        )

    @cached_property
    def probe_business_central(self) -> BusinessCentralClient:
        """A Business Central client that tries once and gives up quickly (inside the budget)."""
        return self._business_central_client(retry=ONE_ATTEMPT, timeout=PROBE_TIMEOUT)

    @cached_property
    def directory(self) -> Directory:
        bc = self.probe_business_central
        return Directory(
            bc.get_company,
            lambda: bc.read("companyInformation"),
            self.probe_graph.get_business,
            self.settings.bookings_business_ids,
            self.now,
            executor=self.api_executor,
        )

    def invoice_links(self) -> InvoiceLinks:
        """Invoice links with the company's name as last read (`directory` caches it)."""
        settings = self.settings
        url = environment_url(settings.bc_base_url, settings.tenant_id, settings.bc_environment)
        return InvoiceLinks(url, self.directory.company().name)

    @cached_property
    def setup_probes(self) -> SetupProbes:
        settings = self.settings
        graph, business_central = self.probe_graph, self.probe_business_central
        return SetupProbes(
            self.token_provider,
            graph,
            business_central,
            queue=lambda: self.invoice_queue,
            sync_state=lambda: self.sync_state,
            reconcile_state=lambda: self.reconcile_state,
            probe_storage=self.probe_storage,
            company_id=settings.bc_company_id,
        )

    @cached_property
    def setup_check(self) -> SetupCheck:
        settings = self.settings
        config = SetupConfig(
            business_ids=tuple(settings.bookings_business_ids),
            environment=settings.bc_environment,
            company_id=settings.bc_company_id,
            customer_template=settings.customer_template,
            item_template=settings.item_template,
            sync_customers=settings.sync_customers,
            sync_services=settings.sync_services,
            sync_schedule=settings.sync_schedule,
            reconcile_schedule=settings.reconcile_schedule,
            price_source=str(settings.price_source),
        )
        return SetupCheck(self.setup_probes, config, self.app_authentication, self.now)

    def probe_storage(self) -> None:
        """One cheap call to each storage service, failing fast: a health answer must not hang."""
        fail_fast = {"retry_total": 0, "connection_timeout": 5, "read_timeout": 10}
        tables = table_service_client(self.settings.storage, **fail_fast)
        queues = queue_service_client(self.settings.storage, **fail_fast)
        next(iter(tables.list_tables(results_per_page=1)), None)
        next(iter(queues.list_queues(results_per_page=1)), None)


_lock = threading.Lock()
_container: Container | None = None
_api_executor: ThreadPoolExecutor | None = None
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
