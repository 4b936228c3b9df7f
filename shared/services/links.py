"""Links from Bookings customers and services to Business Central customers and items.

A link, once known, is kept in the `BusinessCentralLinks` table, so the next booking of the same
customer or service costs no Business Central request at all.

Creating a missing customer or item must happen once, even when many workers (threads, processes,
instances) invoice bookings of the same new customer at the same moment. The rule:

1. a worker claims the creation by inserting a "creating" marker row (an insert fails if the row
   exists, so exactly one worker wins);
2. the winner looks Business Central up once more (someone may have created it meanwhile), creates
   the record if it is still missing, and replaces the marker by the link;
3. the others wait (bounded) for the link to appear; when the wait runs out they fail transiently
   and the queue retries them later;
4. a marker older than `stale_after` belongs to a crashed worker: one worker takes it over with a
   conditional write on its ETag, looks Business Central up first (the crashed worker may have
   created the record) and only then creates it.

A creation whose outcome is unknown (connection lost, timeout) keeps its marker, so nobody creates
a second record until the lookup after `stale_after` has had its chance.

Links read from the table are kept in the process for `cache_seconds` (60 s): in the steady state
every booking names a customer and a service linked long ago, and reading both rows for every
invoice was a quarter of an invoice's storage round trips. A cached link can only be stale if its
record was deleted, blocked or relinked meanwhile; Business Central then refuses the invoice, the
refusal path reads the linked records and `forget`s what is wrong (which also drops it from this
cache), so a stale cache costs one refused request, never a wrong invoice.

Among the records that match, blocked ones are passed over (`shared/domain/record_choice.py`);
when every match is blocked nothing is linked or created and the caller gets
`CustomerBlockedError` / `ItemBlockedError`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from shared.domain.bc_records import BLANK_GUID, Link
from shared.domain.errors import BusinessCentralError, LinkBusyError, LinkNotFoundError
from shared.domain.record_choice import choose_customer, choose_item
from shared.services.ports import BusinessCentral, LinkRepository
from shared.telemetry import get_logger

log = get_logger("bookings.links")

CUSTOMER = "customer"
ITEM = "item"

DEFAULT_STALE_AFTER = timedelta(minutes=10)
DEFAULT_WAIT = 45.0
DEFAULT_POLL = 0.2
DEFAULT_CACHE_SECONDS = 60.0
CACHE_ENTRIES = 10_000

# Customer fields copied from CUSTOMER_TEMPLATE (API v2.0 has no templates to apply).
CUSTOMER_TEMPLATE_FIELDS = (
    "currencyCode",
    "paymentTermsId",
    "shipmentMethodId",
    "paymentMethodId",
    "taxLiable",
    "taxAreaId",
)
# Item (id field, code field) pairs copied from ITEM_TEMPLATE: the id wins when set.
ITEM_TEMPLATE_FIELDS = (
    ("baseUnitOfMeasureId", "baseUnitOfMeasureCode"),
    ("taxGroupId", "taxGroupCode"),
    ("generalProductPostingGroupId", "generalProductPostingGroupCode"),
    ("itemCategoryId", "itemCategoryCode"),
)
ITEM_TEMPLATE_FLAGS = ("priceIncludesTax",)


def mask_email(email: str) -> str:
    """An email fit for logs: enough to recognise it, not enough to be personal data in bulk."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


class _Resolver:
    """The link-or-create algorithm shared by customers and items."""

    kind = ""

    template_setting = ""  # the setting naming the template record (for error messages)
    template_collection = ""  # its Business Central collection ("customers" | "items")

    def __init__(
        self,
        store: LinkRepository,
        bc: BusinessCentral,
        *,
        create: bool,
        template: str | None = None,
        stale_after: timedelta = DEFAULT_STALE_AFTER,
        wait_seconds: float = DEFAULT_WAIT,
        poll_seconds: float = DEFAULT_POLL,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
    ) -> None:
        self.store = store
        self.bc = bc
        self.create_missing = create
        self.template_number = template
        self._template: dict[str, Any] | None = None
        self._template_lock = threading.Lock()
        self.stale_after = stale_after
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds
        self._sleep = sleep
        self._monotonic = monotonic
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[Link, float]] = {}
        self._cache_lock = threading.Lock()

    def _cached(self, natural_key: str) -> Link | None:
        with self._cache_lock:
            entry = self._cache.get(natural_key)
            if entry is None:
                return None
            if self._monotonic() - entry[1] >= self.cache_seconds:
                del self._cache[natural_key]
                return None
            return entry[0]

    def _remember(self, natural_key: str, link: Link) -> Link:
        if self.cache_seconds > 0:
            with self._cache_lock:
                if len(self._cache) >= CACHE_ENTRIES:
                    self._cache.pop(next(iter(self._cache)))  # the oldest entry
                self._cache[natural_key] = (link, self._monotonic())
        return link

    def _drop(self, natural_key: str) -> None:
        """Forget a link here and in the table (it turned out wrong)."""
        with self._cache_lock:
            self._cache.pop(natural_key, None)
        self.store.forget(self.kind, natural_key)

    def _template_values(self) -> dict[str, Any]:
        """The fields new records copy from the template record, read once per process."""
        if not self.template_number:
            return {}
        with self._template_lock:
            if self._template is None:
                record = self.bc.find_by_number(self.template_collection, self.template_number)
                if record is None:
                    raise BusinessCentralError(
                        f"{self.template_setting} {self.template_number!r} names no "
                        f"{self.template_collection[:-1]} in Business Central",
                        transient=False,
                    )
                self._template = self._copied_from_template(record)
            return self._template

    def _copied_from_template(self, record: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _resolve(
        self,
        natural_key: str,
        label: str,
        lookup: Callable[[], Link | None],
        create: Callable[[], Link],
    ) -> Link:
        cached = self._cached(natural_key)
        if cached is not None:
            return cached
        stored = self.store.link_of(self.kind, natural_key)
        if stored is not None:
            return self._remember(natural_key, stored)
        found = lookup()
        if found is not None:
            self.store.record(self.kind, natural_key, found)
            log.info("Linked %s to %s", label, found.number, extra={"outcome": "linked"})
            return self._remember(natural_key, found)
        if not self.create_missing:
            raise LinkNotFoundError(label)
        owner = uuid.uuid4().hex
        deadline = self._monotonic() + self.wait_seconds
        while True:
            etag = self.store.claim(self.kind, natural_key, owner)
            if etag is None:
                row = self.store.get(self.kind, natural_key)
                if row is None:
                    continue  # the marker was released just now: claim again
                if row.link is not None:
                    return self._remember(natural_key, row.link)
                claimed_at = row.claimed_at
                if claimed_at is None or self.store.clock() - claimed_at > self.stale_after:
                    etag = self.store.take_over(row, owner)
                    if etag is not None:
                        log.warning(
                            "Taking over the creation of %s from a worker that stopped",
                            label,
                            extra={"outcome": "takeover"},
                        )
            if etag is not None:
                return self._remember(
                    natural_key, self._create_as_owner(natural_key, label, etag, lookup, create)
                )
            if self._monotonic() >= deadline:
                raise LinkBusyError(
                    f"another worker is still creating {label} in Business Central; retry later"
                )
            self._sleep(self.poll_seconds)

    def _create_as_owner(
        self,
        natural_key: str,
        label: str,
        etag: str,
        lookup: Callable[[], Link | None],
        create: Callable[[], Link],
    ) -> Link:
        try:
            link = lookup()
            created = link is None
            if link is None:
                link = create()
        except BusinessCentralError as exc:
            if exc.may_have_committed:
                # It may exist now: keep the marker; after `stale_after` a lookup settles it.
                raise
            self.store.release(self.kind, natural_key, etag)
            raise
        except BaseException:
            self.store.release(self.kind, natural_key, etag)
            raise
        self.store.record(self.kind, natural_key, link)
        if created:
            log.info(
                "Created %s in Business Central as %s",
                label,
                link.number,
                extra={"outcome": "created"},
            )
        return link


class CustomerLinks(_Resolver):
    """Bookings customer (by email, case-insensitive) -> Business Central customer."""

    kind = CUSTOMER
    template_setting = "CUSTOMER_TEMPLATE"
    template_collection = "customers"

    def resolve(self, email: str, name: str | None, phone: str | None) -> Link:
        address = email.strip().lower()

        def lookup() -> Link | None:
            matches = self.bc.find_customers_by_email(address)
            chosen = choose_customer(matches)  # unblocked first; CustomerBlockedError if none is
            if chosen is not None and len(matches) > 1:
                log.warning(
                    "%d Business Central customers share the email of a Bookings customer; using %s",
                    len(matches),
                    chosen.number,
                    extra={"outcome": "ambiguous_customer"},
                )
            return Link(chosen.id, chosen.number) if chosen else None

        def create() -> Link:
            created = self.bc.create_customer(self.new_customer_body(email.strip(), name, phone))
            return Link(created.id, created.number)

        return self._resolve(address, f"customer {mask_email(address)}", lookup, create)

    def forget(self, email: str) -> None:
        self._drop(email.strip().lower())

    def new_customer_body(self, email: str, name: str | None, phone: str | None) -> dict[str, Any]:
        """A Person with the template's payment terms, currency, tax and posting setup."""
        body: dict[str, Any] = dict(self._template_values())
        body.update(
            {
                "displayName": (" ".join((name or "").split()) or email)[:100],
                "type": "Person",
                "email": email,
            }
        )
        if phone and phone.strip():
            body["phoneNumber"] = phone.strip()[:30]
        return body

    def _copied_from_template(self, record: dict[str, Any]) -> dict[str, Any]:
        return {field: record[field] for field in CUSTOMER_TEMPLATE_FIELDS if _is_set(record.get(field))}


class ItemLinks(_Resolver):
    """Bookings service (by id, then by name) -> Business Central item of type Service."""

    kind = ITEM
    template_setting = "ITEM_TEMPLATE"
    template_collection = "items"

    def resolve(self, service_id: str, service_name: str, unit_price: Decimal | None = None) -> Link:
        name = " ".join(service_name.split())[:100]
        if not name:
            raise LinkNotFoundError("the service has no name")

        def lookup() -> Link | None:
            chosen = choose_item(self.bc.find_service_items_by_name(name))  # ItemBlockedError if all are
            return Link(chosen.id, chosen.number) if chosen else None

        def create() -> Link:
            created = self.bc.create_item(self.new_item_body(name, unit_price))
            return Link(created.id, created.number)

        return self._resolve(self.link_key(service_id, name), f"service {name!r}", lookup, create)

    @staticmethod
    def link_key(service_id: str, service_name: str) -> str:
        """What an item link is stored under: the service id, or its name when it has none."""
        name = " ".join(service_name.split())[:100]
        return service_id or f"name:{name.lower()}"

    def forget(self, service_id: str, service_name: str) -> None:
        self._drop(self.link_key(service_id, service_name))

    def new_item_body(self, name: str, unit_price: Decimal | None) -> dict[str, Any]:
        body: dict[str, Any] = dict(self._template_values())
        body.update({"displayName": name, "type": "Service"})
        if unit_price is not None and unit_price > 0:
            body["unitPrice"] = float(unit_price)
        return body

    def _copied_from_template(self, record: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for id_field, code_field in ITEM_TEMPLATE_FIELDS:
            if _is_set(record.get(id_field)):
                values[id_field] = record[id_field]
            elif _is_set(record.get(code_field)):
                values[code_field] = record[code_field]
        for flag in ITEM_TEMPLATE_FLAGS:
            if isinstance(record.get(flag), bool):
                values[flag] = record[flag]
        return values


def _is_set(value: Any) -> bool:
    """A template field worth copying: booleans always; blank strings and blank GUIDs never."""
    if isinstance(value, bool):
        return True
    return isinstance(value, str) and value.strip() not in ("", BLANK_GUID)
