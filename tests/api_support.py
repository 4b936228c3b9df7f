"""Helpers for the HTTP API tests: seeding bookings, a host running only the API, reading the queue.

The API host runs the real `functions.http_triggers` blueprint in a FunctionApp of its own, so no queue
function consumes the messages a test wants to count (the invoicing tests run `create_invoice`).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
import requests
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from devhost.config import HostConfig
from devhost.host import DevHost
from shared import bootstrap
from shared.adapters.booking_entities import BOOKINGS_TABLE
from shared.adapters.booking_store import CREATES_PER_TRANSACTION, BookingStore, creation_operations
from shared.adapters.invoice_queue import INVOICE_QUEUE
from shared.domain.models import Booking, BookingStatus, PriceType, booking_key
from tests.auth_support import sign_in
from tests.conftest import _APP_SETTING_NAMES, PRODUCT_ROOT, product_settings

BASE_START = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)


def new_business() -> str:
    """A business id no other test uses: the API only sees configured businesses."""
    return f"b{uuid.uuid4().hex[:12]}@contoso.com"


def make_booking(
    business: str,
    number: int,
    *,
    status: BookingStatus = BookingStatus.UNBILLED,
    email: str | None = None,
    start: datetime | None = None,
) -> Booking:
    begin = start or BASE_START + timedelta(hours=number)
    appointment = f"AAMk{number:06d}/x+Y="
    return Booking(
        key=booking_key(business, appointment),
        business_id=business,
        appointment_id=appointment,
        service_id="svc-1",
        service_name="Catered bento",
        customer_name=f"Customer {number % 7}",
        customer_email=email or f"customer{number % 7}@example.com",
        customer_phone=None,
        staff_member_ids=("staff-1",),
        start=begin,
        end=begin + timedelta(minutes=30),
        price=10.0,
        price_type=PriceType.FIXED_PRICE,
        status=status,
        updated_at=BASE_START,
        status_changed_at=BASE_START,
    )


def seed(connection: str, bookings: Iterable[Booking]) -> list[Booking]:
    """Insert bookings (with their list index rows) in batch transactions per business."""
    table = TableServiceClient.from_connection_string(connection).get_table_client(BOOKINGS_TABLE)
    with contextlib.suppress(ResourceExistsError):
        table.create_table()
    items = list(bookings)
    batches: list[list[Any]] = []
    by_business: dict[str, list[Booking]] = {}
    for booking in items:
        by_business.setdefault(booking.business_id, []).append(booking)
    for group in by_business.values():
        for i in range(0, len(group), CREATES_PER_TRANSACTION):
            chunk = group[i : i + CREATES_PER_TRANSACTION]
            batches.append([operation for b in chunk for operation in creation_operations(b)])
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(table.submit_transaction, batches))
    return items


def booking_store(connection: str) -> BookingStore:
    return BookingStore(
        TableServiceClient.from_connection_string(connection).get_table_client(BOOKINGS_TABLE)
    )


def invoice_queue(connection: str, name: str = INVOICE_QUEUE) -> QueueClient:
    client = QueueClient.from_connection_string(
        connection,
        name,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    return client


def drain(queue: QueueClient) -> list[dict[str, Any]]:
    """Every message on the queue, decoded (base64 -> JSON), removed as it is read."""
    messages: list[dict[str, Any]] = []
    while True:
        batch = list(queue.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=60))
        if not batch:
            return messages
        for message in batch:
            messages.append(json.loads(message.content))
            queue.delete_message(message)


_API_APP: func.FunctionApp | None = None


def api_app() -> func.FunctionApp:
    """A FunctionApp with only the HTTP API blueprints (discovery is cached per app object)."""
    global _API_APP
    if _API_APP is None:
        from functions.http_triggers import bp
        from functions.portal_api import bp as portal_api_bp

        _API_APP = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
        _API_APP.register_functions(bp)
        _API_APP.register_functions(portal_api_bp)
    return _API_APP


@dataclass
class ApiWorld:
    """One test's view: its storage, its businesses and a running API host."""

    connection: str
    businesses: list[str]
    host: DevHost
    settings: dict[str, str]
    cookies: dict[str, str] = field(default_factory=dict)
    """devhost's session cookie of a caller signed in with both app roles (see `request`)."""

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """An HTTP request as the signed-in caller (thread-safe: no shared session)."""
        kwargs.setdefault("timeout", 60)
        return requests.request(method, url, cookies=self.cookies, **kwargs)  # noqa: S113 - set above

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", url, **kwargs)

    @property
    def url(self) -> str:
        return f"{self.host.url}/api"

    @property
    def business(self) -> str:
        return self.businesses[0]

    def store(self) -> BookingStore:
        return booking_store(self.connection)

    def queue(self) -> QueueClient:
        return invoice_queue(self.connection)


def start_api_host(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    settings: dict[str, str],
    app: Any = None,
    clock: Callable[[], datetime] | None = None,
) -> DevHost:
    """Run `app` (default: the API-only app) in an in-process devhost with `settings` as environment."""
    for name in list(os.environ):
        if name in _APP_SETTING_NAMES or name.startswith("AzureWebJobsStorage"):
            monkeypatch.delenv(name)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    bootstrap.reset_container()
    host = DevHost(
        app or api_app(),
        config=HostConfig.load(PRODUCT_ROOT / "host.json"),
        settings=dict(os.environ),
        app_directory=PRODUCT_ROOT,
        state_directory=tmp_path / "devhost-state",
        port=0,
        clock=clock,
    )
    host.start()
    return host


@contextlib.contextmanager
def api_world(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    connection: str,
    businesses: int = 1,
    clock: Callable[[], datetime] | None = None,
    **overrides: str,
) -> Iterator[ApiWorld]:
    """An API host for one test; `clock` is what devhost checks token expiry against. Its
    businesses are `businesses` new ones, or those a `BOOKINGS_BUSINESS_IDS` override names."""
    given = overrides.pop("BOOKINGS_BUSINESS_IDS", "")
    ids = given.split(",") if given else [new_business() for _ in range(businesses)]
    settings = product_settings(connection, BOOKINGS_BUSINESS_IDS=",".join(ids), **overrides)
    host = start_api_host(monkeypatch, tmp_path, settings, clock=clock)
    try:
        cookies = sign_in(host.url).cookies.get_dict()
        yield ApiWorld(connection, ids, host, settings, cookies)
    finally:
        host.stop()
        bootstrap.reset_container()


def with_status(booking: Booking, status: BookingStatus, **changes: Any) -> Booking:
    return replace(booking, status=status, **changes)
