"""The whole product running locally: sandbox (Entra, Graph, Business Central) + devhost + Azurite.

`Stack` is what an end-to-end test holds: the sandbox handle and its admin client, the devhost
running the real `function_app` with settings pointing at the sandbox, the `Bookings` store, and
helpers to run a timer/queue function through the admin endpoint and wait until it has finished.
The product and the sandbox share one manual clock, so tests never depend on today's date.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueServiceClient

from devhost.host import DevHost
from sandbox import ManualClock, SandboxAdmin, SandboxHandle
from shared import bootstrap
from shared.adapters.booking_entities import BOOKINGS_TABLE
from shared.adapters.booking_store import BookingStore
from shared.adapters.invoice_queue import INVOICE_QUEUE, POISON_QUEUE
from shared.domain.models import Booking
from tests.auth_support import bearer, client_credentials_token
from tests.conftest import SANDBOX_NOW, product_settings
from tests.helpers import wait_for

# The instant the sandbox and the product both believe it is (a Monday morning in Amsterdam).
E2E_NOW = SANDBOX_NOW
NEVER = "0 0 0 1 1 *"  # timers stay quiet unless a test runs them through the admin endpoint
_UNIQUE_TEST_TABLE = re.compile(r"^t[0-9a-f]{20}$")  # tests' own tables (conftest.unique_name)


def reset_sandbox(sandbox: SandboxHandle) -> ManualClock:
    """Back to seeded data, no faults, fresh counters, default page sizes, the clock at `E2E_NOW`."""
    return sandbox.reset_to(E2E_NOW)


def clear_product_storage(connection_string: str) -> None:
    """Forget every product table and message, so a test starts from an empty storage account."""
    tables = TableServiceClient.from_connection_string(connection_string)
    for table in list(tables.list_tables()):
        if not _UNIQUE_TEST_TABLE.match(table.name):
            with contextlib.suppress(ResourceNotFoundError):
                tables.delete_table(table.name)
    queues = QueueServiceClient.from_connection_string(connection_string)
    for name in (INVOICE_QUEUE, POISON_QUEUE):
        with contextlib.suppress(ResourceNotFoundError):
            queues.get_queue_client(name).clear_messages()


class LogCapture(logging.Handler):
    """Keeps the product's and the host's log records (INFO and up) for assertions."""

    LOGGERS = ("bookings", "devhost")

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []
        self._lock_records = threading.Lock()
        self._levels: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock_records:
            self.records.append(record)

    def install(self) -> None:
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            if logger.getEffectiveLevel() > logging.INFO:
                logger.setLevel(logging.INFO)
            logger.addHandler(self)

    def remove(self) -> None:
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            logger.removeHandler(self)
            logger.setLevel(self._levels.get(name, logging.NOTSET))

    def where(self, logger: str | None = None, **fields: Any) -> list[logging.LogRecord]:
        """Records of a logger (prefix) whose structured fields have the given values."""
        with self._lock_records:
            records = list(self.records)
        return [
            record
            for record in records
            if (logger is None or record.name == logger or record.name.startswith(logger + "."))
            and all(getattr(record, name, None) == value for name, value in fields.items())
        ]

    def text(self) -> str:
        with self._lock_records:
            return "\n".join(record.getMessage() for record in self.records)


@dataclass
class Stack:
    """One running product against one sandbox (see module docstring)."""

    sandbox: SandboxHandle
    host: DevHost
    settings: dict[str, str]
    connection_string: str
    clock: ManualClock
    logs: LogCapture
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def admin(self) -> SandboxAdmin:
        return self.sandbox.admin

    @property
    def url(self) -> str:
        return self.host.url

    @property
    def container(self) -> bootstrap.Container:
        return bootstrap.container()

    @property
    def business_ids(self) -> list[str]:
        return [part.strip() for part in self.settings["BOOKINGS_BUSINESS_IDS"].split(",") if part.strip()]

    @property
    def tables(self) -> TableServiceClient:
        return TableServiceClient.from_connection_string(self.connection_string)

    @property
    def store(self) -> BookingStore:
        store = BookingStore(self.tables.get_table_client(BOOKINGS_TABLE), clock=self.clock.now)
        store.ensure_table()
        return store

    def restart_product(self) -> None:
        """Forget the product's in-process state (clients, token cache), as a new worker would."""
        bootstrap.reset_container()
        bootstrap.container().clock = self.clock.now

    # -- running functions -----------------------------------------------------------------------

    def executions(self, function: str) -> list[logging.LogRecord]:
        """The host's "Executed 'Functions.<name>'" records, oldest first."""
        return self.logs.where("devhost", functionName=function)

    def start_function(self, function: str, value: str = "") -> None:
        """POST /admin/functions/{name}, as one would with Core Tools (202, runs in the background)."""
        response = self.session.post(
            f"{self.url}/admin/functions/{function}", json={"input": value}, timeout=30
        )
        assert response.status_code == 202, (response.status_code, response.text)

    def run_function(
        self, function: str, value: str = "", *, runs: int = 1, timeout: float = 120
    ) -> list[str]:
        """Start `runs` invocations at once and wait until all have finished; their outcomes."""
        before = len(self.executions(function))
        for _ in range(runs):
            self.start_function(function, value)
        wait_for(
            lambda: len(self.executions(function)) >= before + runs,
            timeout=timeout,
            what=f"{runs} run(s) of {function} to finish",
        )
        return [str(record.outcome) for record in self.executions(function)[before : before + runs]]

    # -- reading ---------------------------------------------------------------------------------

    def bookings(self, business_id: str | None = None) -> list[Booking]:
        businesses = [business_id] if business_id else self.business_ids
        return [booking for business in businesses for booking in self.store.of_business(business)]

    def token(self, **options: str) -> str:
        """An access token for the product's API from the sandbox's Entra ID (client credentials);
        by default the app's own registration, which holds both app roles."""
        return client_credentials_token(self.settings, verify=str(self.sandbox.ca_bundle_path), **options)

    def api(self, method: str, path: str, *, authenticated: bool = True, **kwargs: Any) -> requests.Response:
        """Call the product's HTTP API (`/api/...`), with a fresh token unless told otherwise."""
        kwargs.setdefault("timeout", 30)
        if authenticated:
            kwargs["headers"] = {**bearer(self.token()), **(kwargs.get("headers") or {})}
        return self.session.request(method, f"{self.url}/api/{path.lstrip('/')}", **kwargs)

    def graph_appointments(self, business_id: str) -> list[dict[str, Any]]:
        """What the sandbox's Graph holds for a business right now (admin view, not the product's)."""
        for business in self.admin.state(["businesses"])["businesses"]:
            if business["id"].lower() == business_id.lower():
                return list(business["appointments"])
        raise KeyError(business_id)

    def close(self) -> None:
        self.session.close()


def stack_settings(sandbox: SandboxHandle, connection_string: str, **overrides: str) -> dict[str, str]:
    """App settings of the product pointed at the sandbox (its CA trusted through the environment)."""
    info = sandbox.identity
    settings = product_settings(
        connection_string,
        **sandbox.settings,
        BOOKINGS_TIME_ZONE=info.time_zone,
        CUSTOMER_TEMPLATE=info.customer_template,
        ITEM_TEMPLATE=info.item_template,
        SYNC_SCHEDULE=NEVER,
        RECONCILE_SCHEDULE=NEVER,
    )
    settings.update(overrides)
    return settings


def make_stack_factory(
    sandbox: SandboxHandle,
    connection_string: str,
    start_product_host: Callable[..., DevHost],
) -> tuple[Callable[..., Stack], Callable[[], None]]:
    """A `make(**setting_overrides) -> Stack` for one test, and the cleanup to run after it."""
    made: list[Stack] = []

    def make(**overrides: str) -> Stack:
        clock = reset_sandbox(sandbox)
        clear_product_storage(connection_string)
        settings = stack_settings(sandbox, connection_string, **overrides)
        logs = LogCapture()
        logs.install()
        try:
            # devhost checks token expiry on the sandbox's clock, which issued the tokens.
            host = start_product_host(settings, clock=clock.now)
        except BaseException:
            logs.remove()
            raise
        # The product in this process reads the sandbox's clock (what "completed" means).
        bootstrap.container().clock = clock.now
        stack = Stack(sandbox, host, settings, connection_string, clock, logs)
        made.append(stack)
        return stack

    def cleanup() -> None:
        for stack in made:
            stack.logs.remove()
            stack.close()

    return make, cleanup


def iter_business_appointments(state: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for business in state["businesses"]:
        for appointment in business["appointments"]:
            yield business["id"], appointment
