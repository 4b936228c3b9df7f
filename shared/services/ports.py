"""What the use cases need from the outside world, as structural types (`typing.Protocol`).

The adapters in `shared/adapters/` satisfy these without importing them; the unit tests' fakes
(`tests/unit/fakes.py`) satisfy them in memory. A use case never imports an adapter, so it can be
read, changed and tested without Azure Storage, Graph or Business Central.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol

from shared.domain.bc_records import BcCustomer, BcInvoice, BcItem, Link
from shared.domain.filters import BookingFilter
from shared.domain.invoice_lines import PricedRow
from shared.domain.listing import Cursor, IndexSlice
from shared.domain.models import Actor, Appointment, AppointmentPage, Booking, BookingStatus, InvoiceMessage
from shared.domain.reconcile_rules import InvoicePage, InvoiceState, Watermark
from shared.domain.requests import RequestHeader, RequestItem
from shared.domain.setup_checks import RunRecord, ServiceAnswer, TokenAnswer
from shared.domain.sync_decisions import SyncOutcome


class SyncWriter(Protocol):
    """Batched conditional upserts of one sync run (see `adapters/booking_upserts.py`)."""

    def stored_in_window(self, business_id: str, start: datetime, end: datetime) -> dict[str, Booking]: ...

    def upsert(
        self,
        business_id: str,
        appointments: Iterable[tuple[Appointment, datetime]],
        snapshot: dict[str, Booking],
    ) -> Counter[SyncOutcome]: ...

    def cancel_missing(
        self, business_id: str, missing: Iterable[Booking], evidence_at: datetime
    ) -> Counter[SyncOutcome]: ...


class BookingRepository(Protocol):
    """The `Bookings` table. Writes are conditional on the ETag a booking was read with."""

    max_batch: int

    def get(self, business_id: str, key: str) -> Booking | None: ...

    def index_slice(
        self, flt: BookingFilter, business_id: str, after: Cursor | None, top: int, max_round_trips: int
    ) -> IndexSlice: ...

    def iterate(self, flt: BookingFilter, business_ids: Sequence[str]) -> Iterator[Booking]: ...

    def priced_rows(self, flt: BookingFilter, business_id: str) -> Iterator[PricedRow]: ...

    def count_by_status(self, status: BookingStatus) -> int: ...

    def without_list_index(self, business_id: str) -> Iterator[Booking]: ...

    def stuck_since(self, statuses: Collection[BookingStatus], cutoff: datetime) -> Iterator[Booking]: ...

    def of_request(self, business_id: str, request_id: str) -> Iterator[Booking]: ...

    def create(self, booking: Booking) -> Booking: ...

    def save(self, booking: Booking) -> Booking: ...

    def save_batch(self, bookings: Sequence[Booking]) -> list[Booking]: ...


class InvoiceQueuePort(Protocol):
    def send(self, message: InvoiceMessage, *, delay_seconds: int | None = None) -> str: ...

    def poison_depth(self) -> int: ...


class RequestRepository(Protocol):
    """The `InvoiceRequests` table: a header per accepted request, a row per accepted booking."""

    def start(
        self,
        request_id: str,
        selection: dict[str, Any],
        traceparent: str | None,
        *,
        requested_by: Actor | None = None,
    ) -> RequestHeader: ...

    def finish(self, header: RequestHeader) -> None: ...

    def add_items(self, request_id: str, items: Sequence[RequestItem]) -> None: ...

    def remove_items(self, request_id: str, keys: Iterable[str]) -> None: ...

    def discard(self, request_id: str) -> None: ...

    def header(self, request_id: str) -> RequestHeader | None: ...

    def items(self, request_id: str) -> list[RequestItem]: ...


class SyncStateRepository(Protocol):
    def get(self, business_id: str) -> Any: ...

    def record_success(self, business_id: str, fully_read_to: datetime, counts: dict[str, int]) -> None: ...

    def record_failure(self, business_id: str, error: str) -> None: ...


class GraphBookings(Protocol):
    """`deadline`: when the invocation must be done; a `Retry-After` wait past it is not made."""

    def calendar_view_pages(
        self, business_id: str, start: datetime, end: datetime, *, deadline: datetime | None = None
    ) -> Iterator[AppointmentPage]: ...

    def get_appointment(
        self, business_id: str, appointment_id: str, *, deadline: datetime | None = None
    ) -> Appointment | None: ...


class InvoiceLookup(Protocol):
    """The app's invoice of a booking, by `externalDocumentNumber` (drafts and posted alike)."""

    def find_invoices_by_external_document_number(self, number: str) -> list[BcInvoice]: ...


class BusinessCentral(Protocol):
    def find_customers_by_email(self, email: str) -> list[BcCustomer]: ...

    def get_customer(self, customer_id: str) -> BcCustomer | None: ...

    def find_by_number(self, collection: str, number: str) -> dict[str, Any] | None: ...

    def create_customer(self, body: dict[str, Any]) -> BcCustomer: ...

    def find_service_items_by_name(self, name: str) -> list[BcItem]: ...

    def get_item(self, item_id: str) -> BcItem | None: ...

    def create_item(self, body: dict[str, Any]) -> BcItem: ...

    def find_invoices_by_external_document_number(self, number: str) -> list[BcInvoice]: ...

    def create_invoice(self, body: dict[str, Any]) -> BcInvoice: ...


class LinkRepository(Protocol):
    """The links table (`adapters/link_store.py`): linked rows and creation markers."""

    def clock(self) -> datetime: ...

    def get(self, kind: str, natural_key: str) -> Any: ...

    def link_of(self, kind: str, natural_key: str) -> Link | None: ...

    def claim(self, kind: str, natural_key: str, owner: str) -> str | None: ...

    def take_over(self, row: Any, owner: str) -> str | None: ...

    def record(self, kind: str, natural_key: str, link: Link) -> None: ...

    def release(self, kind: str, natural_key: str, etag: str) -> None: ...

    def forget(self, kind: str, natural_key: str) -> None: ...


class InvoiceFeed(Protocol):
    """Reads of `salesInvoices` for reconcile_invoices (`adapters/bc_invoice_feed.py`)."""

    def changed_pages(self, since: datetime | None) -> Iterator[InvoicePage]: ...

    def unposted_pages(self, include_open: bool) -> Iterator[InvoicePage]: ...

    def get(self, invoice_id: str) -> InvoiceState | None: ...

    def find_by_external_document_number(self, number: str) -> list[InvoiceState]: ...


class WatermarkRepository(Protocol):
    def get(self, company_id: str) -> Watermark | None: ...

    def save(self, company_id: str, mark: Watermark, counts: dict[str, int]) -> None: ...


class RetentionTarget(Protocol):
    """What retention deletes: bookings (conditionally, by ETag) and their request records."""

    def ended_before(
        self, business_id: str, statuses: Collection[BookingStatus], cutoff: datetime
    ) -> Iterator[Booking]: ...

    def delete(self, booking: Booking) -> None: ...


class RequestRecords(Protocol):
    def forget_booking(self, request_id: str, key: str) -> None: ...


class SetupProbes(Protocol):
    """Read-only probes of the setup check (`services/setup_check.py`); none writes anything."""

    def probe_storage(self) -> None: ...

    def token(self, resource: str) -> TokenAnswer: ...

    def graph_business(self, business_id: str) -> ServiceAnswer: ...

    def bc_company(self) -> ServiceAnswer: ...

    def bc_companies(self) -> ServiceAnswer: ...

    def bc_record(self, collection: str, number: str) -> ServiceAnswer: ...

    def poison_depth(self) -> int: ...

    def last_syncs(self, business_ids: Sequence[str]) -> list[RunRecord]: ...

    def last_reconcile(self) -> RunRecord | None: ...
