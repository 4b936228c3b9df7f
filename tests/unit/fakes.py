"""In-memory fakes of the ports in `shared/services/ports.py` (no Azure, no HTTP, no wall clock).

Each fake mimics the adapter it stands for where the use cases depend on it: the booking store
honours ETags exactly like `shared/adapters/booking_store.py` (conditional create/save, atomic
batches, a new ETag on every write, `updated_at` stamped with the store's clock). Failures are
scripted explicitly, so a test says what goes wrong and when.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain.bc_records import BcCustomer, BcInvoice, BcItem, Link
from shared.domain.errors import BusinessCentralError, ConcurrentChangeError
from shared.domain.filters import BookingFilter
from shared.domain.listing import Cursor, IndexSlice
from shared.domain.models import (
    Actor,
    Appointment,
    AppointmentPage,
    Booking,
    BookingStatus,
    InvoiceMessage,
    is_booking_key,
)
from shared.domain.requests import RequestHeader, RequestItem
from shared.domain.sync_decisions import SyncOutcome, apply, decide, decide_missing

T0 = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
"""The moment every manual clock starts at unless told otherwise."""


class ManualClock:
    """A clock that moves only when told to. Callable, so it fits every `clock=` parameter."""

    def __init__(self, start: datetime = T0) -> None:
        if start.tzinfo is None:
            raise ValueError("a manual clock needs an aware start")
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | None = None, **parts: float) -> datetime:
        step = delta if delta is not None else timedelta(**parts)
        with self._lock:
            self._now += step
            return self._now

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._now = moment


# -- the Bookings table ------------------------------------------------------------------------------

WriteHook = Callable[[str, Sequence[Booking]], None]
"""Called with ("create" | "save" | "save_batch", bookings) before a write is checked: it may raise
(storage trouble) or change the table (a concurrent writer) to script a race."""


class FakeBookingStore:
    """The `Bookings` table in a dict keyed by (business id, key), with ETags like Table storage."""

    max_batch = 33  # as the real store: a booking and its list index rows are 3 of 100 operations

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.clock = clock or ManualClock()
        self._rows: dict[tuple[str, str], Booking] = {}
        self._etags = itertools.count(1)
        self._lock = threading.RLock()
        self.before_write: WriteHook | None = None
        self.writes: Counter[str] = Counter()  # successful write calls by kind

    # -- test helpers ----------------------------------------------------------------------------

    def _new_etag(self) -> str:
        return f"W/\"datetime'{next(self._etags)}'\""

    def put(self, booking: Booking) -> Booking:
        """Seed a row as given (no stamping): the returned copy carries its ETag."""
        with self._lock:
            stored = replace(booking, etag=self._new_etag())
            self._rows[(booking.business_id, booking.key)] = stored
            return replace(stored)

    def put_all(self, bookings: Iterable[Booking]) -> list[Booking]:
        return [self.put(booking) for booking in bookings]

    def touch(self, business_id: str, key: str, **changes: Any) -> Booking:
        """A concurrent writer: change the stored row (new ETag) behind the back of any reader."""
        with self._lock:
            current = self._rows[(business_id, key)]
            return self.put(replace(current, **changes))

    def delete(self, business_id: str, key: str) -> None:
        with self._lock:
            del self._rows[(business_id, key)]

    def all(self) -> list[Booking]:
        with self._lock:
            return [replace(b) for _, b in sorted(self._rows.items())]

    def status_of(self, business_id: str, key: str) -> BookingStatus | None:
        booking = self.get(business_id, key)
        return booking.status if booking is not None else None

    # -- reads -----------------------------------------------------------------------------------

    def get(self, business_id: str, key: str) -> Booking | None:
        if not is_booking_key(key):
            return None
        with self._lock:
            stored = self._rows.get((business_id, key))
            return replace(stored) if stored is not None else None

    def find(self, key: str) -> Booking | None:
        with self._lock:
            for (_, row_key), booking in sorted(self._rows.items()):
                if row_key == key:
                    return replace(booking)
        return None

    def _partition(self, business_id: str) -> list[Booking]:
        with self._lock:
            return [replace(b) for (pk, _), b in sorted(self._rows.items()) if pk == business_id]

    def index_slice(
        self, flt: BookingFilter, business_id: str, after: Cursor | None, top: int, max_round_trips: int
    ) -> IndexSlice:
        """Newest appointment first, as the store's list index orders them (round trips unmodelled)."""
        rows = sorted((_list_key(b), b) for b in self._partition(business_id) if _matches(flt, b))
        if after is not None:
            rows = [(k, b) for k, b in rows if k > after.key]
        return IndexSlice(rows[:top], Cursor(rows[top - 1][0]) if len(rows) > top else None)

    def iterate(self, flt: BookingFilter, business_ids: Sequence[str]) -> Iterator[Booking]:
        for business_id in business_ids:
            yield from (b for b in self._partition(business_id) if _matches(flt, b))

    def priced_rows(self, flt: BookingFilter, business_id: str) -> Iterator[Booking]:
        """A whole booking carries the four columns the store projects."""
        return self.iterate(flt, (business_id,))

    def of_business(self, business_id: str) -> Iterator[Booking]:
        yield from self._partition(business_id)

    def without_list_index(self, business_id: str) -> Iterator[Booking]:
        """The fake keeps no list index rows: every booking is listed, none needs a backfill."""
        return iter(())

    def count_by_status(self, status: BookingStatus) -> int:
        with self._lock:
            return sum(1 for b in self._rows.values() if b.status == status)

    def stuck_since(self, statuses: Collection[BookingStatus], cutoff: datetime) -> Iterator[Booking]:
        # Like the table filter, a row without StatusChangedAt never matches `lt @cutoff`.
        for booking in self.all():
            changed = booking.status_changed_at
            if booking.status in statuses and changed is not None and changed < cutoff:
                yield booking

    def of_request(self, business_id: str, request_id: str) -> Iterator[Booking]:
        yield from (b for b in self._partition(business_id) if b.request_id == request_id)

    # -- writes ----------------------------------------------------------------------------------

    def _hook(self, kind: str, bookings: Sequence[Booking]) -> None:
        if self.before_write is not None:
            self.before_write(kind, bookings)

    def create(self, booking: Booking) -> Booking:
        self._hook("create", [booking])
        with self._lock:
            if (booking.business_id, booking.key) in self._rows:
                raise ConcurrentChangeError(f"booking {booking.key} already exists")
            now = self.clock()
            stamped = replace(
                booking,
                updated_at=now,
                status_changed_at=booking.status_changed_at or now,
                etag=self._new_etag(),
            )
            self._rows[(booking.business_id, booking.key)] = stamped
            self.writes["create"] += 1
            return replace(stamped)

    def _check(self, booking: Booking) -> None:
        stored = self._rows.get((booking.business_id, booking.key))
        if stored is None or stored.etag != booking.etag:
            raise ConcurrentChangeError(f"booking {booking.key} changed meanwhile")

    def _write(self, booking: Booking, now: datetime) -> Booking:
        stamped = replace(booking, updated_at=now, etag=self._new_etag())
        self._rows[(booking.business_id, booking.key)] = stamped
        return replace(stamped)

    def save(self, booking: Booking) -> Booking:
        if booking.etag is None:
            raise ValueError("save() needs a booking read from the store (it carries the ETag)")
        self._hook("save", [booking])
        with self._lock:
            self._check(booking)
            saved = self._write(booking, self.clock())
            self.writes["save"] += 1
            return saved

    def save_batch(self, bookings: Sequence[Booking]) -> list[Booking]:
        if not bookings:
            return []
        if len(bookings) > self.max_batch:
            raise ValueError(f"a transaction holds at most {self.max_batch} bookings")
        if len({b.business_id for b in bookings}) != 1 or len({b.key for b in bookings}) != len(bookings):
            raise ValueError("a transaction holds distinct bookings of one business")
        if any(b.etag is None for b in bookings):
            raise ValueError("save_batch() needs bookings read from the store (with ETags)")
        self._hook("save_batch", bookings)
        with self._lock:
            for booking in bookings:  # all or nothing: check every ETag before writing any
                self._check(booking)
            now = self.clock()
            saved = [self._write(booking, now) for booking in bookings]
            self.writes["save_batch"] += 1
            return saved

    def sync_writer(self) -> FakeSyncWriter:
        return FakeSyncWriter(self)


def _list_key(booking: Booking) -> str:
    milliseconds = int(booking.start.timestamp() * 1000)
    return f"{10**13 - 1 - milliseconds:013d}|{booking.key}"


def _matches(flt: BookingFilter, booking: Booking) -> bool:
    if booking.status != flt.status:
        return False
    if flt.business_id is not None and booking.business_id != flt.business_id:
        return False
    if flt.customer_email is not None and (booking.customer_email or "").lower() != flt.customer_email:
        return False
    if flt.customer_name and not (booking.customer_name or "").lower().startswith(flt.customer_name.lower()):
        return False
    if flt.start_from is not None and booking.start < flt.start_from:
        return False
    if flt.invoice_status is not None and booking.invoice_status != flt.invoice_status:
        return False
    if flt.ended_before is not None and booking.end >= flt.ended_before:
        return False
    return not (flt.start_before is not None and booking.start >= flt.start_before)


class FakeSyncWriter:
    """The sync's writer over a `FakeBookingStore`: the domain's decisions, one conditional write each.

    Simpler than `adapters/booking_upserts.py` (no transactions) but with its contract: keys found
    in the snapshot are removed from it; a lost conditional write is re-read and decided again with
    the evidence's age checked.
    """

    attempts = 4

    def __init__(self, store: FakeBookingStore) -> None:
        self.store = store
        self.windows: list[tuple[str, datetime, datetime]] = []

    def stored_in_window(self, business_id: str, start: datetime, end: datetime) -> dict[str, Booking]:
        self.windows.append((business_id, start, end))
        return {b.key: b for b in self.store.of_business(business_id) if b.end > start and b.start < end}

    def upsert(
        self,
        business_id: str,
        appointments: Iterable[tuple[Appointment, datetime]],
        snapshot: dict[str, Booking],
    ) -> Counter[SyncOutcome]:
        outcomes: Counter[SyncOutcome] = Counter()
        for appointment, evidence_at in appointments:
            if appointment.business_id != business_id:
                raise ValueError("appointments of one business per call")
            stored = snapshot.pop(appointment.key, None)
            outcomes[self._settle(appointment, stored, evidence_at)] += 1
        return outcomes

    def _settle(self, appointment: Appointment, stored: Booking | None, evidence_at: datetime) -> SyncOutcome:
        check_age = False
        for _ in range(self.attempts):
            decision = decide(appointment, stored, evidence_at, check_age=check_age)
            if decision.write is None:
                return decision.outcome
            booking = apply(decision, appointment, stored, self.store.clock())
            try:
                if stored is None:
                    self.store.create(booking)
                else:
                    self.store.save(booking)
            except ConcurrentChangeError:
                stored = self.store.get(appointment.business_id, appointment.key)
                check_age = True
                continue
            return decision.outcome
        return SyncOutcome.CONFLICT

    def cancel_missing(
        self, business_id: str, missing: Iterable[Booking], evidence_at: datetime
    ) -> Counter[SyncOutcome]:
        outcomes: Counter[SyncOutcome] = Counter()
        for stored in missing:
            decision = decide_missing(stored, evidence_at)
            if decision.write is None:
                if decision.outcome != SyncOutcome.UNCHANGED:
                    outcomes[decision.outcome] += 1
                continue
            try:
                self.store.save(apply(decision, None, stored, self.store.clock()))
            except ConcurrentChangeError:
                outcomes[SyncOutcome.CONFLICT] += 1
                continue
            outcomes[decision.outcome] += 1
        return outcomes


# -- the queue, the request rows, the sync state -----------------------------------------------------


class QueueDownError(ConnectionError):
    """What a fake queue raises for a send it was told to refuse."""


class FakeQueue:
    """`bookings-to-invoice` as a list. `refuse_keys` / `down` script failed sends."""

    def __init__(self, *, refuse_keys: Collection[str] = (), down: bool = False) -> None:
        self.sent: list[InvoiceMessage] = []
        self.delays: list[int | None] = []
        self.poison: list[InvoiceMessage] = []
        self.refuse_keys = set(refuse_keys)
        self.down = down
        self.attempts = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def send(self, message: InvoiceMessage, *, delay_seconds: int | None = None) -> str:
        with self._lock:
            self.attempts += 1
            if self.down or message.booking_key in self.refuse_keys:
                raise QueueDownError("queue unreachable")
            # What goes on the wire is JSON; keep what a receiver would decode.
            self.sent.append(InvoiceMessage.from_json(message.to_json()))
            self.delays.append(delay_seconds)
            return f"msg-{next(self._ids)}"

    def poison_depth(self) -> int:
        return len(self.poison)

    @property
    def sent_keys(self) -> list[str]:
        return [message.booking_key for message in self.sent]


class FakeRequestStore:
    """The `InvoiceRequests` table: a header per request and its item rows in key order."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.clock = clock or ManualClock()
        self.headers: dict[str, RequestHeader] = {}
        self._items: dict[str, dict[str, RequestItem]] = {}
        self.fail_add_items: Exception | None = None
        self._lock = threading.Lock()

    def start(
        self,
        request_id: str,
        selection: dict[str, Any],
        traceparent: str | None,
        *,
        requested_by: Actor | None = None,
    ) -> RequestHeader:
        with self._lock:
            if request_id in self.headers:
                raise ConcurrentChangeError(f"request {request_id} exists")
            header = RequestHeader(
                request_id, self.clock(), dict(selection), traceparent=traceparent, requested_by=requested_by
            )
            self.headers[request_id] = replace(header)
            return header

    def finish(self, header: RequestHeader) -> None:
        header.state = "Accepted"
        header.completed_at = self.clock()
        with self._lock:
            self.headers[header.request_id] = replace(header)

    def add_items(self, request_id: str, items: Sequence[RequestItem]) -> None:
        if self.fail_add_items is not None:
            raise self.fail_add_items
        with self._lock:
            rows = self._items.setdefault(request_id, {})
            for item in items:
                rows[item.key] = item

    def remove_items(self, request_id: str, keys: Iterable[str]) -> None:
        with self._lock:
            rows = self._items.get(request_id, {})
            for key in keys:
                rows.pop(key, None)

    def discard(self, request_id: str) -> None:
        with self._lock:
            self.headers.pop(request_id, None)
            self._items.pop(request_id, None)

    def header(self, request_id: str) -> RequestHeader | None:
        with self._lock:
            header = self.headers.get(request_id)
            return replace(header) if header is not None else None

    def items(self, request_id: str) -> list[RequestItem]:
        with self._lock:
            rows = self._items.get(request_id, {})
            return [rows[key] for key in sorted(rows)]


@dataclass
class FakeSyncStatus:
    business_id: str
    fully_read_to: datetime | None = None
    last_outcome: str | None = None
    last_error: str | None = None
    last_counts: dict[str, int] = field(default_factory=dict)


class FakeSyncState:
    """`SyncState`: the per-business watermark, which only moves forward."""

    def __init__(self) -> None:
        self.rows: dict[str, FakeSyncStatus] = {}
        self._lock = threading.Lock()

    def get(self, business_id: str) -> FakeSyncStatus:
        with self._lock:
            return replace(self.rows.get(business_id) or FakeSyncStatus(business_id))

    def set_watermark(self, business_id: str, fully_read_to: datetime) -> None:
        self.rows[business_id] = FakeSyncStatus(business_id, fully_read_to)

    def record_success(self, business_id: str, fully_read_to: datetime, counts: dict[str, int]) -> None:
        with self._lock:
            row = self.rows.setdefault(business_id, FakeSyncStatus(business_id))
            if row.fully_read_to is None or fully_read_to > row.fully_read_to:
                row.fully_read_to = fully_read_to
            row.last_outcome, row.last_error, row.last_counts = "succeeded", None, dict(counts)

    def record_failure(self, business_id: str, error: str) -> None:
        with self._lock:
            row = self.rows.setdefault(business_id, FakeSyncStatus(business_id))
            row.last_outcome, row.last_error = "failed", error


# -- Graph -------------------------------------------------------------------------------------------


class FakeGraph:
    """Bookings' `calendarView` over appointments held in memory, `page_size` per page."""

    def __init__(self, clock: Callable[[], datetime] | None = None, *, page_size: int = 2) -> None:
        self.clock = clock or ManualClock()
        self.page_size = page_size
        self.appointments: dict[str, dict[str, Appointment]] = {}
        self.invalid: dict[str, list[tuple[str | None, str]]] = {}
        self.failures: dict[str, Exception] = {}  # business id -> raised after the first page
        self.views: list[tuple[str, datetime, datetime]] = []
        self.point_reads: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def add(self, *appointments: Appointment) -> None:
        for appointment in appointments:
            self.appointments.setdefault(appointment.business_id, {})[appointment.id] = appointment

    def remove(self, business_id: str, appointment_id: str) -> None:
        del self.appointments[business_id][appointment_id]

    def add_invalid(self, business_id: str, appointment_id: str | None, reason: str) -> None:
        self.invalid.setdefault(business_id, []).append((appointment_id, reason))

    def calendar_view_pages(
        self, business_id: str, start: datetime, end: datetime, *, deadline: datetime | None = None
    ) -> Iterator[AppointmentPage]:
        with self._lock:
            self.views.append((business_id, start, end))
        overlapping = sorted(
            (a for a in self.appointments.get(business_id, {}).values() if a.end > start and a.start < end),
            key=lambda a: (a.start, a.id),
        )
        invalid = tuple(self.invalid.get(business_id, ()))
        chunks = [
            tuple(overlapping[i : i + self.page_size]) for i in range(0, len(overlapping), self.page_size)
        ] or [()]
        for index, chunk in enumerate(chunks):
            yield AppointmentPage(chunk, invalid if index == 0 else (), self.clock())
            if business_id in self.failures:  # the connection drops after the first page
                raise self.failures[business_id]

    def get_appointment(
        self, business_id: str, appointment_id: str, *, deadline: datetime | None = None
    ) -> Appointment | None:
        with self._lock:
            self.point_reads.append((business_id, appointment_id))
        return self.appointments.get(business_id, {}).get(appointment_id)


# -- Business Central --------------------------------------------------------------------------------


@dataclass
class _Scripted:
    error: BusinessCentralError
    after_commit: bool  # do the work, then raise (the answer was lost)


class FakeBusinessCentral:
    """Customers, items and sales invoices in dicts; errors scripted per method, in order."""

    def __init__(self) -> None:
        self.customers: dict[str, BcCustomer] = {}
        self.items: dict[str, BcItem] = {}
        self.invoices: dict[str, BcInvoice] = {}
        self.invoice_bodies: dict[str, dict[str, Any]] = {}
        self.records: dict[tuple[str, str], dict[str, Any]] = {}  # (collection, number) -> raw JSON
        self.calls: list[tuple[str, str]] = []
        self._script: dict[str, list[_Scripted]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # -- scripting -------------------------------------------------------------------------------

    def fail(
        self, method: str, error: BusinessCentralError, *, after_commit: bool = False, times: int = 1
    ) -> None:
        """The next `times` calls of `method` raise `error` (after doing the work if `after_commit`)."""
        if not hasattr(self, method):
            raise AttributeError(method)
        self._script.setdefault(method, []).extend(_Scripted(error, after_commit) for _ in range(times))

    def _call(self, method: str, argument: str, work: Callable[[], Any]) -> Any:
        with self._lock:
            self.calls.append((method, argument))
            scripted = self._script.get(method, [])
            step = scripted.pop(0) if scripted else None
            if step is not None and not step.after_commit:
                raise step.error
            result = work()
            if step is not None:
                raise step.error
            return result

    def count(self, method: str) -> int:
        return sum(1 for name, _ in self.calls if name == method)

    def _next_id(self) -> str:
        return f"00000000-0000-0000-0000-{next(self._ids):012d}"

    # -- seeding ---------------------------------------------------------------------------------

    def add_customer(
        self, email: str, number: str = "C00010", name: str = "Customer", blocked: str = "_x0020_"
    ) -> BcCustomer:
        customer = BcCustomer(self._next_id(), number, name, email, blocked)
        self.customers[customer.id] = customer
        return customer

    def add_item(
        self, name: str, number: str = "SVC-0001", kind: str = "Service", blocked: bool = False
    ) -> BcItem:
        item = BcItem(self._next_id(), number, name, kind, blocked)
        self.items[item.id] = item
        return item

    def add_invoice(self, external_document_number: str, number: str = "S-INV-0999") -> BcInvoice:
        invoice = BcInvoice(self._next_id(), number, external_document_number, "Draft")
        self.invoices[invoice.id] = invoice
        return invoice

    # -- the port --------------------------------------------------------------------------------

    def find_customers_by_email(self, email: str) -> list[BcCustomer]:
        wanted = email.strip().lower()
        return self._call(
            "find_customers_by_email",
            wanted,
            lambda: sorted(
                (c for c in self.customers.values() if c.email.lower() == wanted), key=lambda c: c.number
            ),
        )

    def get_customer(self, customer_id: str) -> BcCustomer | None:
        return self._call("get_customer", customer_id, lambda: self.customers.get(customer_id))

    def get_item(self, item_id: str) -> BcItem | None:
        return self._call("get_item", item_id, lambda: self.items.get(item_id))

    def find_by_number(self, collection: str, number: str) -> dict[str, Any] | None:
        return self._call("find_by_number", number, lambda: self.records.get((collection, number)))

    def create_customer(self, body: dict[str, Any]) -> BcCustomer:
        def work() -> BcCustomer:
            number = f"C{len(self.customers) + 1:05d}"
            customer = BcCustomer(self._next_id(), number, str(body["displayName"]), str(body["email"]))
            self.customers[customer.id] = customer
            return customer

        return self._call("create_customer", str(body.get("email")), work)

    def find_service_items_by_name(self, name: str) -> list[BcItem]:
        wanted = name.strip().lower()
        return self._call(
            "find_service_items_by_name",
            wanted,
            lambda: sorted(
                (i for i in self.items.values() if i.display_name.lower() == wanted and i.type == "Service"),
                key=lambda i: i.number,
            ),
        )

    def create_item(self, body: dict[str, Any]) -> BcItem:
        def work() -> BcItem:
            item = BcItem(
                self._next_id(), f"SVC-{len(self.items) + 1:04d}", str(body["displayName"]), "Service"
            )
            self.items[item.id] = item
            return item

        return self._call("create_item", str(body.get("displayName")), work)

    def find_invoices_by_external_document_number(self, number: str) -> list[BcInvoice]:
        wanted = number.upper()
        return self._call(
            "find_invoices_by_external_document_number",
            wanted,
            lambda: sorted(
                (i for i in self.invoices.values() if i.external_document_number == wanted),
                key=lambda i: i.number,
            ),
        )

    def create_invoice(self, body: dict[str, Any]) -> BcInvoice:
        def work() -> BcInvoice:
            invoice = BcInvoice(
                self._next_id(),
                f"S-INV-{1001 + len(self.invoices)}",
                str(body["externalDocumentNumber"]),
                "Draft",
            )
            self.invoices[invoice.id] = invoice
            self.invoice_bodies[invoice.id] = body
            return invoice

        return self._call("create_invoice", str(body.get("externalDocumentNumber")), work)


# -- the links table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkRow:
    """As `shared/adapters/link_store.py` has it: a link, or a creation marker (`link` None)."""

    kind: str
    natural_key: str
    link: Link | None
    owner: str | None
    claimed_at: datetime | None
    etag: str


class FakeLinkStore:
    """`BusinessCentralLinks`: conditional inserts and replaces by ETag, like the real store."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.clock = clock or ManualClock()
        self.rows: dict[tuple[str, str], LinkRow] = {}
        self._etags = itertools.count(1)
        self._lock = threading.Lock()

    def _etag(self) -> str:
        return f'W/"link{next(self._etags)}"'

    def get(self, kind: str, natural_key: str) -> LinkRow | None:
        with self._lock:
            return self.rows.get((kind, natural_key))

    def link_of(self, kind: str, natural_key: str) -> Link | None:
        row = self.get(kind, natural_key)
        return row.link if row is not None else None

    def _marker(self, kind: str, natural_key: str, owner: str) -> LinkRow:
        return LinkRow(kind, natural_key, None, owner, self.clock(), self._etag())

    def claim(self, kind: str, natural_key: str, owner: str) -> str | None:
        with self._lock:
            if (kind, natural_key) in self.rows:
                return None
            row = self.rows[(kind, natural_key)] = self._marker(kind, natural_key, owner)
            return row.etag

    def take_over(self, row: LinkRow, owner: str) -> str | None:
        with self._lock:
            current = self.rows.get((row.kind, row.natural_key))
            if current is None or current.etag != row.etag:
                return None
            new = self.rows[(row.kind, row.natural_key)] = self._marker(row.kind, row.natural_key, owner)
            return new.etag

    def record(self, kind: str, natural_key: str, link: Link) -> None:
        with self._lock:
            self.rows[(kind, natural_key)] = LinkRow(kind, natural_key, link, None, None, self._etag())

    def release(self, kind: str, natural_key: str, etag: str) -> None:
        with self._lock:
            current = self.rows.get((kind, natural_key))
            if current is not None and current.etag == etag:
                del self.rows[(kind, natural_key)]

    def forget(self, kind: str, natural_key: str) -> None:
        with self._lock:
            self.rows.pop((kind, natural_key), None)
