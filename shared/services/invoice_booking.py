"""The `create_invoice` use case: exactly one draft sales invoice per booking.

The booking's state in the `Bookings` table is the lock, and every change of it is a conditional
write (ETag):

- **Claim**: Queued -> Invoicing. Only one worker wins; the others re-read and see it taken.
- **Crash safety**: a booking found in Invoicing may already have its invoice in Business Central
  (a worker died after the POST, or its answer was lost). Such a booking is first looked up by
  `externalDocumentNumber` `BKG-<key>` and the invoice found is adopted. The normal path skips the
  lookup: one Business Central request per invoice.
- **Live claims**: the claim records which queue message holds it. A redelivery of that same
  message means its previous try is over, so it takes the claim over at once; any other message
  (a duplicate, a recovery re-enqueue, a manual run) leaves a claim younger than `claim_lease`
  alone, so two workers never POST the same invoice at once.
- **Record**: Invoicing -> Invoiced with id and number. If that write fails, the next try finds the
  invoice through the lookup above.
- **Budget**: a try that got no Business Central slot in time puts a fresh copy of its message
  back on the queue, hands the claim to it and completes (`REQUEUED`, `budget_requeue.py`): waiting
  is not a failure, so it must not burn one of the message's tries.
- **Errors**: transient ones (throttling, outages, a busy customer creation) are raised so the
  queue retries the message; on its last allowed try the booking is first marked Failed with
  `BC_UNAVAILABLE`, so none stays in Invoicing. Permanent ones mark it Failed with their code.
- **Stale links**: when Business Central refuses the invoice, the linked customer and item are
  read; what was deleted (or, for the customer, blocked) is forgotten, linked afresh and the
  invoice sent once more (`stale_links.py`). A refused POST created nothing, so this is safe.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from shared.domain import lifecycle
from shared.domain.bc_budget import BudgetTimeoutError
from shared.domain.bc_records import BcInvoice, Link
from shared.domain.errors import (
    BusinessCentralError,
    ConcurrentChangeError,
    CustomerBlockedError,
    ItemBlockedError,
    LinkNotFoundError,
)
from shared.domain.invoice_lines import InvoiceDateRule, PriceSource, invoice_body, quantity_and_price
from shared.domain.models import Booking, BookingStatus, ErrorCode, InvoiceMessage, external_document_number
from shared.domain.moments import utc_now
from shared.services.budget_requeue import requeue_for_budget
from shared.services.links import CustomerLinks, ItemLinks
from shared.services.ports import BookingRepository, BusinessCentral, InvoiceQueuePort
from shared.services.stale_links import check_links
from shared.telemetry import get_logger

log = get_logger("bookings.invoicing")

CLAIM_LEASE = timedelta(minutes=10)
"""How long an Invoicing claim counts as held by a live worker for a *different* message."""

POST_ROUNDS = 3
"""POSTs of one invoice within one try when each ended ambiguously and the lookup found nothing."""

CLAIM_ROUNDS = 5
"""Re-reads after losing a conditional write, before giving the message back to the queue."""

ERROR_LENGTH = 1000


class InvoiceOutcome(StrEnum):
    INVOICED = "invoiced"
    ADOPTED = "adopted"
    FAILED = "failed"
    SKIPPED = "skipped"
    REQUEUED = "requeued"


@dataclass(frozen=True)
class InvoiceResult:
    outcome: InvoiceOutcome
    status: BookingStatus | None
    invoice_number: str | None = None
    error_code: str | None = None
    detail: str = ""


class InvoicingRetryError(Exception):
    """This try could not finish; the queue should retry the message later."""


class _Permanent(Exception):
    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def _log_result(message: InvoiceMessage, result: InvoiceResult, fields: dict[str, object], ms: int) -> None:
    log.log(
        logging.WARNING if result.outcome is InvoiceOutcome.FAILED else logging.INFO,
        "Booking %s: %s%s",
        message.booking_key,
        result.outcome,
        f" ({result.detail})" if result.detail else "",
        extra={
            **fields,
            "outcome": str(result.outcome),
            "invoiceNumber": result.invoice_number,
            "errorCode": result.error_code,
            "durationMs": ms,
        },
    )


def describe(exc: BaseException) -> str:
    """One line for `error`: what failed, never a stack trace (and never a secret: none is in it)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, BusinessCentralError | InvoicingRetryError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class InvoiceBooking:
    """Creates the invoice of one booking named by a queue message."""

    def __init__(
        self,
        store: BookingRepository,
        bc: BusinessCentral,
        customers: CustomerLinks,
        items: ItemLinks,
        queue: InvoiceQueuePort,
        *,
        time_zone: ZoneInfo,
        invoice_date: InvoiceDateRule,
        price_source: PriceSource = PriceSource.BOOKINGS,
        clock: Callable[[], datetime] = utc_now,
        claim_lease: timedelta = CLAIM_LEASE,
    ) -> None:
        self.store = store
        self.bc = bc
        self.customers = customers
        self.items = items
        self.queue = queue
        self.time_zone = time_zone
        self.invoice_date = invoice_date
        self.price_source = price_source
        self.clock = clock
        self.claim_lease = claim_lease

    def __call__(
        self,
        message: InvoiceMessage,
        *,
        dequeue_count: int = 1,
        last_attempt: bool = False,
        delivery_id: str | None = None,
    ) -> InvoiceResult:
        """Invoice one booking. `delivery_id` is the queue message's id (stable across redeliveries)."""
        started = time.perf_counter()
        fields = {
            "businessId": message.business_id,
            "bookingKey": message.booking_key,
            "requestId": message.request_id,
            "dequeueCount": dequeue_count,
        }
        try:
            result = self._attempt(message, delivery_id)
        except Exception as exc:
            self._did_not_finish(message, exc, fields, last_attempt=last_attempt, started=started)
            raise
        _log_result(message, result, fields, round((time.perf_counter() - started) * 1000))
        return result

    def _attempt(self, message: InvoiceMessage, delivery_id: str | None) -> InvoiceResult:
        try:
            return self._run(message, delivery_id)
        except BudgetTimeoutError as exc:  # waiting is not failing: back on the queue, not Failed
            return self._requeue(message, delivery_id, exc)

    def _requeue(
        self, message: InvoiceMessage, delivery_id: str | None, exc: BudgetTimeoutError
    ) -> InvoiceResult:
        """No Business Central slot in time: a fresh copy of the message goes back on the queue and
        this try completes, so waiting never burns one of the message's tries (`budget_requeue.py`)."""
        requeued = requeue_for_budget(
            self.store, self.queue, message, delivery_id=delivery_id, retry_in=exc.retry_in
        )
        if requeued.copy_id is None:
            return InvoiceResult(
                InvoiceOutcome.SKIPPED,
                requeued.status,
                detail="waited for a Business Central slot; "
                "another message holds the booking or it is settled",
            )
        return InvoiceResult(
            InvoiceOutcome.REQUEUED,
            requeued.status,
            detail=f"{describe(exc)}; back on the queue in {requeued.delay}s",
        )

    def _did_not_finish(
        self,
        message: InvoiceMessage,
        exc: Exception,
        fields: dict[str, object],
        *,
        last_attempt: bool,
        started: float,
    ) -> None:
        """Log a try that raises (the queue retries it); the last allowed try marks it Failed first."""
        detail = describe(exc)
        if last_attempt:
            self._fail_after_last_try(message, detail)
        log.warning(
            "Invoicing booking %s did not finish (try %s%s): %s",
            message.booking_key,
            fields["dequeueCount"],
            ", the last: marked Failed" if last_attempt else ", will be retried",
            detail,
            extra={
                **fields,
                "outcome": "failed" if last_attempt else "retry",
                "durationMs": round((time.perf_counter() - started) * 1000),
                "errorCode": str(ErrorCode.BC_UNAVAILABLE) if last_attempt else None,
            },
        )

    # -- state machine -----------------------------------------------------------------------

    def _run(self, message: InvoiceMessage, delivery_id: str | None) -> InvoiceResult:
        for _ in range(CLAIM_ROUNDS):
            booking = self.store.get(message.business_id, message.booking_key)
            if booking is None:
                return InvoiceResult(InvoiceOutcome.SKIPPED, None, detail="no such booking")
            if not lifecycle.may_start_invoicing(booking.status):
                return InvoiceResult(
                    InvoiceOutcome.SKIPPED,
                    booking.status,
                    booking.invoice_number,
                    detail=f"already {booking.status}",
                )
            if booking.status is BookingStatus.QUEUED and not lifecycle.has_ended(booking, self.clock()):
                try:
                    return self._postpone(booking)
                except ConcurrentChangeError:
                    continue
            # Any earlier claim (a crash, a lost response, a re-selection after a failure, a recovery
            # re-enqueue) may have left an invoice in Business Central: look it up before creating.
            lookup_first = booking.status is BookingStatus.INVOICING or booking.invoice_attempts > 0
            if booking.status is BookingStatus.INVOICING and not lifecycle.may_take_over(
                booking, delivery_id, self.clock(), self.claim_lease
            ):
                return InvoiceResult(
                    InvoiceOutcome.SKIPPED, booking.status, detail="claimed by another worker moments ago"
                )
            try:
                booking = self.store.save(lifecycle.start_invoicing(booking, delivery_id, self.clock()))
            except ConcurrentChangeError:
                continue
            return self._invoice(booking, lookup_first=lookup_first)
        raise InvoicingRetryError(f"booking {message.booking_key} kept changing while being claimed")

    def _postpone(self, booking: Booking) -> InvoiceResult:
        """A claimed booking whose appointment has not ended (moved into the future after it was
        claimed) is not invoiced: it goes back to Unbilled, with a note, and no Business Central
        request is made. It is on the Unbilled list again once the appointment has ended."""
        saved = self.store.save(lifecycle.postpone(booking, self.clock()))
        return InvoiceResult(
            InvoiceOutcome.SKIPPED, saved.status, detail="the appointment has not ended yet (postponed)"
        )

    def _invoice(self, booking: Booking, *, lookup_first: bool) -> InvoiceResult:
        number = external_document_number(booking.key)
        try:
            if lookup_first:
                found = self._find(number)
                if found is not None:
                    return self._record(booking, found, adopted=True)
            invoice, adopted = self._create(booking, number)
        except _Permanent as failure:
            return self._fail(booking, failure.code, failure.detail)
        return self._record(booking, invoice, adopted=adopted)

    def _find(self, number: str) -> BcInvoice | None:
        found = self.bc.find_invoices_by_external_document_number(number)
        if len(found) > 1:
            log.error(
                "%d invoices in Business Central carry %s; adopting %s",
                len(found),
                number,
                found[0].number,
                extra={"outcome": "duplicate_found", "invoiceNumber": found[0].number},
            )
        return found[0] if found else None

    def _create(self, booking: Booking, number: str) -> tuple[BcInvoice, bool]:
        """POST the invoice; after an ambiguous failure look it up before POSTing again."""
        customer, item = self._links(booking)
        relinked = False
        for _ in range(POST_ROUNDS):
            body = invoice_body(
                booking,
                customer_id=customer.id,
                item_id=item.id,
                zone=self.time_zone,
                rule=self.invoice_date,
                now=self.clock(),
                price_source=self.price_source,
            )
            try:
                return self.bc.create_invoice(body), False
            except BusinessCentralError as exc:
                if not exc.transient:
                    if relinked:
                        raise _Permanent(ErrorCode.BC_REJECTED, exc.message[:ERROR_LENGTH]) from None
                    self._drop_stale_links(booking, customer, item, exc)
                    customer, item = self._links(booking)
                    relinked = True
                    continue
                if not exc.may_have_committed:
                    raise
                log.warning(
                    "Invoice POST for booking %s ended without an answer (%s); looking it up",
                    booking.key,
                    exc.message,
                    extra={"bookingKey": booking.key, "outcome": "ambiguous_post"},
                )
                found = self._find(number)
                if found is not None:
                    return found, True
        raise InvoicingRetryError(f"the invoice POST for {number} kept failing without an answer")

    def _links(self, booking: Booking) -> tuple[Link, Link]:
        if not booking.has_customer:
            raise _Permanent(ErrorCode.NO_CUSTOMER, "the appointment has no customer")
        if not booking.customer_email or not booking.customer_email.strip():
            raise _Permanent(ErrorCode.NO_CUSTOMER_EMAIL, "the appointment's customer has no email")
        try:
            customer = self.customers.resolve(
                booking.customer_email, booking.customer_name, booking.customer_phone
            )
        except CustomerBlockedError as exc:
            raise _Permanent(ErrorCode.CUSTOMER_BLOCKED, str(exc)) from None
        except LinkNotFoundError:
            raise _Permanent(
                ErrorCode.CUSTOMER_NOT_FOUND,
                "no Business Central customer has the customer's email and SYNC_CUSTOMERS is off",
            ) from None
        except BusinessCentralError as exc:
            if exc.transient:
                raise
            raise _Permanent(ErrorCode.BC_REJECTED, exc.message[:ERROR_LENGTH]) from None
        _, price = quantity_and_price(booking)
        try:
            item = self.items.resolve(booking.service_id, booking.service_name, price)
        except ItemBlockedError as exc:
            raise _Permanent(ErrorCode.ITEM_BLOCKED, str(exc)) from None
        except LinkNotFoundError:
            raise _Permanent(
                ErrorCode.SERVICE_NOT_MAPPED,
                f"no Business Central Service item is linked to or named {booking.service_name!r} "
                "and SYNC_SERVICES is off",
            ) from None
        except BusinessCentralError as exc:
            if exc.transient:
                raise
            raise _Permanent(ErrorCode.BC_REJECTED, exc.message[:ERROR_LENGTH]) from None
        return customer, item

    def _drop_stale_links(
        self, booking: Booking, customer: Link, item: Link, refused: BusinessCentralError
    ) -> None:
        """Forget the links that point at deleted (or invoice-blocked) records, or fail the booking."""
        rejection = refused.message[:ERROR_LENGTH]
        try:
            check = check_links(self.bc, customer, item)
        except BusinessCentralError as exc:
            if exc.transient:
                raise
            raise _Permanent(ErrorCode.BC_REJECTED, rejection) from None
        if check.customer_stale and booking.customer_email:
            self.customers.forget(booking.customer_email)
        if check.item_gone:
            self.items.forget(booking.service_id, booking.service_name)
        if check.any_stale or check.item_blocked:
            log.warning(
                "Invoice for booking %s refused: %s",
                booking.key,
                check.describe(customer, item),
                extra={"bookingKey": booking.key, "outcome": "stale_link"},
            )
        if check.item_blocked:
            raise _Permanent(
                ErrorCode.ITEM_BLOCKED, f"the service's Business Central item {item.number} is blocked"
            )
        if not check.any_stale:
            raise _Permanent(ErrorCode.BC_REJECTED, rejection)

    # -- recording ---------------------------------------------------------------------------

    def _record(self, booking: Booking, invoice: BcInvoice, *, adopted: bool) -> InvoiceResult:
        try:
            self.store.save(
                lifecycle.record_invoice(booking, invoice.id, invoice.number, self.clock(), invoice.status)
            )
        except ConcurrentChangeError:
            current = self.store.get(booking.business_id, booking.key)
            if current is None or current.invoice_id != invoice.id:
                raise InvoicingRetryError(
                    f"invoice {invoice.number} exists but booking {booking.key} changed meanwhile; "
                    "the next try adopts it"
                ) from None
        return InvoiceResult(
            InvoiceOutcome.ADOPTED if adopted else InvoiceOutcome.INVOICED,
            BookingStatus.INVOICED,
            invoice.number,
        )

    def _fail(self, booking: Booking, code: ErrorCode, detail: str) -> InvoiceResult:
        try:
            self.store.save(lifecycle.fail(booking, str(code), detail, self.clock()))
        except ConcurrentChangeError:
            raise InvoicingRetryError(
                f"booking {booking.key} changed before it could be marked Failed"
            ) from None
        return InvoiceResult(InvoiceOutcome.FAILED, BookingStatus.FAILED, error_code=str(code), detail=detail)

    def _fail_after_last_try(self, message: InvoiceMessage, detail: str) -> None:
        """Best effort: a booking must not stay Queued/Invoicing once its message goes to poison."""
        for _ in range(CLAIM_ROUNDS):
            try:
                booking = self.store.get(message.business_id, message.booking_key)
                if booking is None or not lifecycle.allows("fail", booking.status):
                    return
                error = f"still failing after the last try: {detail}"[:ERROR_LENGTH]
                self.store.save(lifecycle.fail(booking, str(ErrorCode.BC_UNAVAILABLE), error, self.clock()))
                return
            except ConcurrentChangeError:
                continue
            except Exception as exc:
                log.error(
                    "Could not mark booking %s Failed after its last try: %s",
                    message.booking_key,
                    describe(exc),
                    extra={"bookingKey": message.booking_key, "outcome": "record_failed"},
                )
                return
