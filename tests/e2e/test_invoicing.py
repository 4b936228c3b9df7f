"""create_invoice through the whole stack: devhost runs the real app, the sandbox plays Entra ID and
Business Central over HTTPS, Azurite holds the tables and the queue. Every test asserts on the
invoices the sandbox's Business Central ends up with."""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueServiceClient

from devhost.host import DevHost
from sandbox import SandboxHandle
from shared.adapters.booking_entities import BOOKINGS_TABLE
from shared.adapters.booking_store import BookingStore
from shared.adapters.invoice_queue import InvoiceQueue
from shared.adapters.link_store import LINKS_TABLE
from shared.domain.models import Booking, BookingStatus, InvoiceMessage, PriceType, booking_key
from shared.services.recovery import recover_stuck_bookings
from tests.auth_support import bearer, client_credentials_token
from tests.conftest import product_settings
from tests.devhost_process import DevhostProcesses, HostProcess
from tests.helpers import force_state, wait_for

pytestmark = pytest.mark.e2e

NEVER = "0 0 0 1 1 *"
INVOICE_POST = "POST companies({companyId})/salesInvoices"
WINTER = datetime(2026, 1, 14, 9, 0, tzinfo=UTC)
SETTLED = frozenset({BookingStatus.INVOICED, BookingStatus.FAILED, BookingStatus.CANCELLED})

BOB = ("Bob Kelly", "Bob.Kelly@TailspinToys.com")
AIKO = ("Aiko Tanaka", "AIKO.TANAKA@fabrikam.com")
MARIE = ("Marie Dubois", "marie.dubois@wideworldimporters.com")
SIOBHAN = ("Siobhán O'Brien", "o'brien@fourthcoffee.com")
JORDAN = ("Jordan Miller", "jordanm@contoso.com")  # blocked for invoices in Business Central
BENTO = ("svc-bento", "Catered bento", PriceType.FIXED_PRICE, 10.0)


@dataclass
class World:
    """One test's world: the sandbox, the app settings and direct access to table and queue."""

    sandbox: SandboxHandle
    settings: dict[str, str]
    store: BookingStore
    queue: InvoiceQueue
    business_id: str
    start_host: Callable[..., DevHost]
    counter: int = 0
    hosts: list[DevHost] = field(default_factory=list)

    def host(self, **overrides: str) -> DevHost:
        self.settings.update(overrides)
        host = self.start_host(self.settings, clock=self.sandbox.clock.now)
        self.hosts.append(host)
        return host

    def add(
        self,
        customer: tuple[str, str | None] | None = BOB,
        service: tuple[str, str, PriceType, float] = BENTO,
        start: datetime | None = None,
        minutes: int = 30,
    ) -> Booking:
        self.counter += 1
        appointment_id = f"AAMkAD/{self.counter}+=="  # Graph ids carry / + =
        begin = start or WINTER + timedelta(hours=self.counter)
        service_id, service_name, price_type, price = service
        booking = Booking(
            key=booking_key(self.business_id, appointment_id),
            business_id=self.business_id,
            appointment_id=appointment_id,
            service_id=service_id,
            service_name=service_name,
            customer_name=customer[0] if customer else None,
            customer_email=customer[1] if customer else None,
            customer_phone=None,
            staff_member_ids=("staff-1",),
            start=begin,
            end=begin + timedelta(minutes=minutes),
            price=price,
            price_type=price_type,
            has_customer=customer is not None,
        )
        return self.store.create(booking)

    def select(self, bookings: Iterable[Booking], copies: int = 1) -> None:
        """What the selection API does: claim (Unbilled/Failed -> Queued), then one message each."""
        for booking in bookings:
            current = self.get(booking)
            force_state(
                self.store,
                current,
                BookingStatus.QUEUED,
                request_id="e2e",
                error_code=None,
                error=None,
            )
            for _ in range(copies):
                self.queue.send(InvoiceMessage(self.business_id, booking.key, "e2e"))

    def get(self, booking: Booking) -> Booking:
        found = self.store.get(self.business_id, booking.key)
        assert found is not None
        return found

    def settle(self, bookings: list[Booking], timeout: float = 90) -> list[Booking]:
        def settled() -> list[Booking] | None:
            current = [self.get(b) for b in bookings]
            return current if all(b.status in SETTLED for b in current) else None

        return wait_for(settled, timeout=timeout, interval=0.2, what="the bookings to be invoiced or failed")

    def invoices(self) -> dict[str, list[dict[str, Any]]]:
        """Sandbox invoices by externalDocumentNumber (with lines)."""
        result: dict[str, list[dict[str, Any]]] = {}
        for invoice in self.sandbox.admin.state(["invoices"])["invoices"]:
            result.setdefault(invoice["externalDocumentNumber"], []).append(invoice)
        return result

    def invoice_of(self, booking: Booking) -> dict[str, Any]:
        [invoice] = self.invoices()[f"BKG-{booking.key}"]
        return invoice

    def customers(self, email: str) -> list[dict[str, Any]]:
        state = self.sandbox.admin.state(["customers"])["customers"]
        return [c for c in state if c["email"].lower() == email.lower()]

    def posts(self) -> int:
        return self.sandbox.app.counters.route("bc", INVOICE_POST)

    def assert_exactly_one_invoice_each(self, bookings: list[Booking]) -> None:
        invoices = self.invoices()
        for booking in bookings:
            stored = self.get(booking)
            found = invoices.get(f"BKG-{booking.key}", [])
            assert len(found) == 1, f"{booking.key}: {len(found)} invoices"
            assert stored.status is BookingStatus.INVOICED
            assert (stored.invoice_id, stored.invoice_number) == (found[0]["id"], found[0]["number"])


def _clear_queue(service: QueueServiceClient, name: str) -> None:
    client = service.get_queue_client(name)
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    client.clear_messages()


@pytest.fixture
def world(
    fresh_sandbox: SandboxHandle,
    storage_connection_string: str,
    unique_name: str,
    start_product_host: Callable[..., DevHost],
) -> World:
    tables = TableServiceClient.from_connection_string(storage_connection_string)
    queues = QueueServiceClient.from_connection_string(storage_connection_string)
    # The sandbox's Business Central was reseeded: links cached by earlier tests point nowhere.
    with contextlib.suppress(ResourceNotFoundError):
        links = tables.get_table_client(LINKS_TABLE)
        for entity in list(links.list_entities(select=["PartitionKey", "RowKey"])):
            links.delete_entity(entity["PartitionKey"], entity["RowKey"])
    queue = InvoiceQueue(queues)
    for name in (queue.queue.queue_name, queue.poison.queue_name):
        _clear_queue(queues, name)
    store = BookingStore(tables.get_table_client(BOOKINGS_TABLE))
    store.ensure_table()
    business_id = f"{unique_name}@contoso.com"  # its own partition: no other test's bookings
    settings = product_settings(
        storage_connection_string,
        **{
            **fresh_sandbox.settings,
            "BOOKINGS_BUSINESS_IDS": business_id,
            "BOOKINGS_TIME_ZONE": "Europe/Amsterdam",
            "CUSTOMER_TEMPLATE": "CT-BOOKINGS",
            "ITEM_TEMPLATE": "IT-BOOKINGS",
            "SYNC_SCHEDULE": NEVER,
            "RECONCILE_SCHEDULE": NEVER,
        },
    )
    return World(fresh_sandbox, settings, store, queue, business_id, start_product_host)


# -- the normal path ------------------------------------------------------------------------------


def test_one_booking_selected_through_the_api_gets_one_invoice(world: World) -> None:
    booking = world.add(BOB, BENTO, start=datetime(2026, 1, 15, 12, 0, tzinfo=UTC))
    host = world.host()
    answer = requests.post(
        f"{host.url}/api/invoice-requests",
        json={"bookingKeys": [booking.key]},
        headers=bearer(client_credentials_token(world.settings)),
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["accepted"] == 1
    [done] = world.settle([booking])
    invoice = world.invoice_of(booking)
    assert (done.status, done.invoice_number) == (BookingStatus.INVOICED, invoice["number"])
    assert invoice["status"] == "Draft" and invoice["customerName"] == "Bob Kelly"
    assert invoice["invoiceDate"] == "2026-01-15"
    item, comment = invoice["salesInvoiceLines"]
    assert item["lineObjectNumber"] == "SVC-0001" and item["description"] == "Catered bento 2026-01-15 13:00"
    assert (item["quantity"], item["unitPrice"]) == (1, 10)
    assert comment["lineType"] == "Comment" and "Bob Kelly" in comment["description"]
    assert world.posts() == 1


def test_every_price_type(world: World) -> None:
    cases = {
        "fixed": (("s1", "Catered bento", PriceType.FIXED_PRICE, 10.0), 30, (1, 10)),
        "starting": (("s2", "Event catering", PriceType.STARTING_AT, 250.0), 240, (1, 250)),
        "hourly": (("s3", "Personal training", PriceType.HOURLY, 60.0), 90, (1.5, 60)),
        "free": (("s4", "Menu tasting", PriceType.FREE, 0.0), 30, (1, 0)),
        # No usable price: Business Central applies the item's own price (SVC-0006 costs 70).
        "varies": (("s5", "Sports massage", PriceType.PRICE_VARIES, 0.0), 60, (1, 70)),
        "call": (("s6", "Sports massage", PriceType.CALL_US, 0.0), 60, (1, 70)),
        "not set": (("s7", "Sports massage", PriceType.NOT_SET, 0.0), 60, (1, 70)),
        "undefined": (("s8", "Sports massage", PriceType.UNDEFINED, 0.0), 60, (1, 70)),
    }
    bookings = {
        name: world.add(AIKO, service, minutes=minutes) for name, (service, minutes, _) in cases.items()
    }
    world.select(bookings.values())
    world.host()
    world.settle(list(bookings.values()))
    world.assert_exactly_one_invoice_each(list(bookings.values()))
    for name, (_, _, expected) in cases.items():
        line = world.invoice_of(bookings[name])["salesInvoiceLines"][0]
        assert (line["quantity"], line["unitPrice"]) == expected, name


def test_a_booking_crossing_midnight_in_amsterdam(world: World) -> None:
    # 23:30 -> 01:30 in Amsterdam (UTC+1 in winter) is 22:30 -> 00:30 UTC: the UTC dates differ.
    late = world.add(MARIE, BENTO, start=datetime(2026, 1, 20, 22, 30, tzinfo=UTC), minutes=120)
    # 00:15 in Amsterdam on the 22nd is still the 21st in UTC.
    early = world.add(MARIE, BENTO, start=datetime(2026, 1, 21, 23, 15, tzinfo=UTC))
    world.select([late, early])
    world.host()
    world.settle([late, early])
    late_invoice, early_invoice = world.invoice_of(late), world.invoice_of(early)
    assert late_invoice["salesInvoiceLines"][0]["description"] == "Catered bento 2026-01-20 23:30"
    assert late_invoice["invoiceDate"] == "2026-01-21"  # the appointment ends on the 21st, locally
    assert early_invoice["salesInvoiceLines"][0]["description"] == "Catered bento 2026-01-22 00:15"
    assert early_invoice["invoiceDate"] == "2026-01-22"


def test_a_customer_email_with_an_apostrophe_matches_its_customer(world: World) -> None:
    booking = world.add(SIOBHAN, BENTO)
    world.select([booking])
    world.host()
    world.settle([booking])
    [customer] = world.customers("o'brien@fourthcoffee.com")  # matched, not created again
    assert world.invoice_of(booking)["customerId"] == customer["id"]


def test_concurrent_bookings_of_one_new_customer_create_one_customer(world: World) -> None:
    world.sandbox.admin.set_faults({"latency": {"bc": 0.05}})
    newcomer = ("Noor Haddad", "Noor.Haddad@example.org")
    bookings = [world.add(newcomer, BENTO) for _ in range(8)]
    world.select(bookings)
    world.host()
    world.settle(bookings)
    world.assert_exactly_one_invoice_each(bookings)
    [customer] = world.customers("noor.haddad@example.org")
    assert customer["type"] == "Person" and customer["displayName"] == "Noor Haddad"
    assert {world.invoice_of(b)["customerId"] for b in bookings} == {customer["id"]}


# -- failures -------------------------------------------------------------------------------------


def test_permanent_rejection_fails_that_booking_while_the_others_succeed(world: World) -> None:
    good = [world.add(BOB, BENTO), world.add(AIKO, BENTO), world.add(MARIE, BENTO)]
    blocked = world.add(JORDAN, BENTO)
    nobody = world.add(None, BENTO)
    world.select([*good, blocked, nobody])
    world.host()
    world.settle([*good, blocked, nobody])
    world.assert_exactly_one_invoice_each(good)
    rejected = world.get(blocked)
    # Jordan's only Business Central customer is blocked for invoices: never sent, never created anew.
    assert (rejected.status, rejected.error_code) == (BookingStatus.FAILED, "CUSTOMER_BLOCKED")
    [jordan] = world.customers(JORDAN[1])
    assert "blocked" in (rejected.error or "") and jordan["number"] in (rejected.error or "")
    assert (world.get(nobody).status, world.get(nobody).error_code) == (BookingStatus.FAILED, "NO_CUSTOMER")
    assert f"BKG-{blocked.key}" not in world.invoices()


def test_a_booking_reselected_after_failure_is_invoiced_once(world: World) -> None:
    stranger = ("Lars Jensen", "lars.jensen@northwindtraders.com")  # not a customer in BC
    booking = world.add(stranger, BENTO)
    world.select([booking])
    host = world.host(SYNC_CUSTOMERS="false")
    [failed] = world.settle([booking])
    assert (failed.status, failed.error_code) == (BookingStatus.FAILED, "CUSTOMER_NOT_FOUND")
    assert f"BKG-{booking.key}" not in world.invoices()
    # The bookkeeper creates the customer in Business Central and selects the booking again.
    admin_client = world.sandbox.app.company
    admin_client.create_customer({"displayName": "Lars Jensen", "type": "Person", "email": stranger[1]})
    answer = requests.post(
        f"{host.url}/api/invoice-requests",
        json={"bookingKeys": [booking.key]},
        headers=bearer(client_credentials_token(world.settings)),
        timeout=30,
    )
    assert answer.status_code == 202 and answer.json()["accepted"] == 1, answer.text
    wait_for(lambda: world.get(booking).status is BookingStatus.INVOICED, timeout=60, what="re-invoicing")
    world.assert_exactly_one_invoice_each([booking])


def test_fifty_bookings_with_throttling_and_latency(world: World) -> None:
    world.sandbox.admin.set_faults(
        {"latency": {"bc": 0.05}, "failures": {"bc": [{"status": 429, "fraction": 0.3}]}}
    )
    people = [BOB, AIKO, MARIE, SIOBHAN]
    bookings = [world.add(people[i % 4], BENTO) for i in range(50)]
    world.select(bookings)
    world.host()
    world.settle(bookings, timeout=120)
    world.assert_exactly_one_invoice_each(bookings)
    statuses = world.sandbox.app.counters.snapshot()["bc"]["statuses"]
    assert int(statuses.get("429", 0)) > 0  # the throttling did happen
    assert world.sandbox.app.faults.stats()["concurrency"]["bc"]["maxQueued"] == 0


def test_commit_then_drop_on_three_posts_gives_one_invoice_each(world: World) -> None:
    world.sandbox.admin.set_faults({"dropAfterCommit": 3})
    bookings = [world.add(BOB, BENTO) for _ in range(5)]
    world.select(bookings)
    world.host()
    world.settle(bookings)
    world.assert_exactly_one_invoice_each(bookings)
    assert world.sandbox.app.faults.snapshot()["dropAfterCommit"] == 0  # all three drops happened
    assert world.posts() == 5  # the dropped ones were looked up and adopted, never POSTed again


# -- crashes, recovery, competing hosts -----------------------------------------------------------


@pytest.fixture
def spawn_host(tmp_path: Path) -> Iterator[Callable[..., HostProcess]]:
    """`python -m devhost` running the real app as its own process (so it can be killed)."""
    with DevhostProcesses(tmp_path) as processes:

        def spawn(settings: dict[str, str], *args: str) -> HostProcess:
            return processes.spawn(
                settings,
                "--settings",
                str(tmp_path / "none.json"),
                *args,
                drop_env_prefixes=("AzureWebJobsStorage", "ENTRA_", "BC_"),
            )

        yield spawn


def test_a_worker_killed_mid_invoice_is_taken_over_without_a_second_invoice(
    world: World, spawn_host: Callable[..., HostProcess]
) -> None:
    booking = world.add(BOB, BENTO)
    world.select([booking])
    # Business Central holds the POST long enough to kill the worker while it waits for it.
    world.sandbox.admin.set_faults({"latency": {"bc": 1.5}})
    worker = spawn_host(world.settings, "--queue-lock-seconds", "2", "--drain-seconds", "0")
    wait_for(lambda: world.posts() >= 1, timeout=60, what="the invoice POST to be in flight")
    worker.process.send_signal(signal.SIGKILL)
    worker.process.wait(10)
    assert world.get(booking).status is BookingStatus.INVOICING  # stuck: the worker is gone
    wait_for(lambda: f"BKG-{booking.key}" in world.invoices(), timeout=30, what="BC to commit it anyway")
    world.sandbox.admin.set_faults({"latency": {"bc": 0.0}})
    world.host()  # the message reappears after its lock; this host takes the booking over
    world.settle([booking])
    world.assert_exactly_one_invoice_each([booking])
    assert world.posts() == 1  # adopted through the lookup, not POSTed again


def test_recovery_reenqueues_bookings_whose_message_was_lost(world: World) -> None:
    stuck_queued = world.add(BOB, BENTO)
    stuck_invoicing = world.add(AIKO, BENTO)
    world.select([stuck_queued, stuck_invoicing])
    world.queue.queue.clear_messages()  # the messages are lost (poisoned, deleted by hand, ...)
    # A worker claimed one and created its invoice in BC, then died before recording it, 40 min ago.
    claimed = world.get(stuck_invoicing)
    force_state(
        world.store,
        claimed,
        BookingStatus.INVOICING,
    )
    for booking in (stuck_queued, stuck_invoicing):
        current = world.get(booking)
        world.store.save(replace(current, status_changed_at=datetime.now(UTC) - timedelta(minutes=40)))
    customer = world.customers("aiko.tanaka@fabrikam.com")[0]
    orphan = world.sandbox.app.company.create_invoice(
        {
            "customerId": customer["id"],
            "externalDocumentNumber": f"BKG-{stuck_invoicing.key}",
            "salesInvoiceLines": [{"lineType": "Item", "lineObjectNumber": "SVC-0001", "quantity": 1}],
        }
    )
    assert world.queue.depth() == 0
    world.host()
    recovered = recover_stuck_bookings(world.store, world.queue, lambda: datetime.now(UTC))
    assert recovered >= 2  # the pass scans every business: other tests' leftovers may come along
    world.settle([stuck_queued, stuck_invoicing])
    world.assert_exactly_one_invoice_each([stuck_queued, stuck_invoicing])
    assert world.get(stuck_invoicing).invoice_id == orphan["id"]  # adopted, not created again


def test_two_hosts_consuming_the_same_queue_with_duplicate_messages(
    world: World, spawn_host: Callable[..., HostProcess], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="devhost")
    world.sandbox.admin.set_faults({"latency": {"bc": 0.02}})
    people = [BOB, AIKO, MARIE]
    bookings = [world.add(people[i % 3], BENTO) for i in range(24)]
    other = spawn_host(world.settings)
    world.host()
    world.select(bookings, copies=2)  # every booking twice on the queue: the claims must hold
    world.settle(bookings)
    wait_for(lambda: world.queue.depth() == 0, timeout=60, what="the duplicates to be consumed")
    world.assert_exactly_one_invoice_each(bookings)
    assert world.posts() == len(bookings)
    in_process = caplog.text.count("Executed 'Functions.create_invoice'")
    assert in_process >= 1 and other.log().count("Executed 'Functions.create_invoice'") >= 1


def _fail_deliveries(world: World, times: int) -> None:
    """Receive the queue's message `times` times without completing it: earlier tries that failed."""
    for _ in range(times):
        message = next(iter(world.queue.queue.receive_messages(max_messages=1, visibility_timeout=30)))
        world.queue.queue.update_message(message, visibility_timeout=0)


def test_the_last_try_marks_the_booking_failed_before_the_message_is_poisoned(world: World) -> None:
    booking = world.add(BOB, BENTO)
    world.select([booking])
    _fail_deliveries(world, 4)  # the host's delivery is the 5th: maxDequeueCount
    secret = "a-wrong-secret-that-must-not-leak"
    world.host(ENTRA_CLIENT_SECRET=secret)  # every Business Central call now fails (no token)
    wait_for(lambda: world.queue.poison_depth() == 1, timeout=60, what="the message to be poisoned")
    failed = world.get(booking)
    assert (failed.status, failed.error_code) == (BookingStatus.FAILED, "BC_UNAVAILABLE")
    assert "invalid_client" in (failed.error or "") and secret not in (failed.error or "")
    assert f"BKG-{booking.key}" not in world.invoices()


def test_a_malformed_message_ends_in_the_poison_queue_without_touching_business_central(
    world: World,
) -> None:
    world.queue.queue.send_message('{"businessId": "x", "bookingKey": "not a key"}')
    _fail_deliveries(world, 4)
    world.host()
    wait_for(lambda: world.queue.poison_depth() == 1, timeout=60, what="the message to be poisoned")
    assert world.sandbox.app.counters.total("bc") == 0
