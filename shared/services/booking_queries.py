"""Reading bookings for the API: filters, paging with opaque continuation tokens, lookups by key.

Every query is scoped to one partition (one configured Bookings business) at a time and walks the
configured businesses in order, so listing never scans the whole table across partitions and a
bookings table of another deployment's businesses can never leak into this one's lists. Filters
are fixed fragments with `@parameters`; caller text only ever travels as a parameter value.

A page is capped both by `top` and by a number of storage round trips: when matches are sparse
(say 100 Unbilled among 100,000 Invoiced), a call returns fewer items (possibly none) with a
continuation token instead of scanning for minutes. Clients follow the token until it is null.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from azure.data.tables import TableClient

from shared.adapters.booking_store import BookingStore, entity_to_booking
from shared.api.input import InvalidInput, parse_business_id, parse_email, parse_moment, parse_status
from shared.domain.models import Booking, BookingStatus, is_booking_key, iso_utc

DEFAULT_TOP = 100
MAX_TOP = 1000
# Storage round trips one list call may make before it hands back a continuation token.
DEFAULT_MAX_ROUND_TRIPS = 10
MAX_TOKEN_LENGTH = 2048
LIST_PARAMETERS = ("status", "businessId", "customerEmail", "from", "to", "top", "continuationToken")
# `code` carries the function key when it is not sent as the x-functions-key header.
_HOST_PARAMETERS = ("code",)
_TOKEN_VERSION = "b1"  # noqa: S105 - a format tag, not a secret
_TOKEN_SHAPE = re.compile(r"^b1\.[A-Za-z0-9_-]{1,1900}\.[A-Za-z0-9_-]{22}$")


@dataclass(frozen=True)
class BookingFilter:
    """Which bookings a list or an `all` selection means. Values are already validated."""

    status: BookingStatus = BookingStatus.UNBILLED
    business_id: str | None = None
    customer_email: str | None = None  # lower-cased
    start_from: datetime | None = None  # inclusive, on the appointment's start
    start_before: datetime | None = None  # exclusive

    def table_filter(self, business_id: str) -> tuple[str, dict[str, Any]]:
        """The parameterised filter for one partition: constant text, values as parameters."""
        clauses = ["PartitionKey eq @pk", "Status eq @status"]
        parameters: dict[str, Any] = {"pk": business_id, "status": str(self.status)}
        if self.customer_email is not None:
            clauses.append("CustomerEmailLower eq @email")
            parameters["email"] = self.customer_email
        if self.start_from is not None:
            clauses.append("Start ge @from")
            parameters["from"] = self.start_from
        if self.start_before is not None:
            clauses.append("Start lt @to")
            parameters["to"] = self.start_before
        return " and ".join(clauses), parameters

    def to_json(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "businessId": self.business_id,
            "customerEmail": self.customer_email,
            "from": iso_utc(self.start_from),
            "to": iso_utc(self.start_before),
        }

    def fingerprint(self) -> str:
        """Identifies the query, so a token from another query is refused instead of misused."""
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def parse_filter_fields(
    values: Mapping[str, object], business_ids: Sequence[str], zone: ZoneInfo, *, where: str = ""
) -> dict[str, Any]:
    """`businessId`, `customerEmail`, `from`, `to` (shared by the list query and `all` selections)."""
    prefix = f"{where}." if where else ""
    fields: dict[str, Any] = {}
    if values.get("businessId") is not None:
        fields["business_id"] = parse_business_id(values["businessId"], business_ids, f"{prefix}businessId")
    if values.get("customerEmail") is not None:
        fields["customer_email"] = parse_email(values["customerEmail"], f"{prefix}customerEmail")
    if values.get("from") is not None:
        fields["start_from"] = parse_moment(values["from"], zone, f"{prefix}from")
    if values.get("to") is not None:
        fields["start_before"] = parse_moment(values["to"], zone, f"{prefix}to")
    start_from, start_before = fields.get("start_from"), fields.get("start_before")
    if start_from is not None and start_before is not None and start_from >= start_before:
        raise InvalidInput.field(f"{prefix}to", f"must be later than {prefix}from (to is exclusive)")
    return fields


@dataclass(frozen=True)
class ListQuery:
    filter: BookingFilter
    top: int
    continuation_token: str | None


def parse_list_query(params: Mapping[str, str], business_ids: Sequence[str], zone: ZoneInfo) -> ListQuery:
    """The query string of `GET /api/bookings`; unknown names are refused (a typo must not widen a list)."""
    unknown = [name for name in params if name not in LIST_PARAMETERS and name not in _HOST_PARAMETERS]
    if unknown:
        raise InvalidInput(
            f"Unknown query parameter(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(LIST_PARAMETERS)} (names are case-sensitive)."
        )
    values = {name: value for name, value in params.items() if value != ""}
    status = parse_status(values["status"]) if "status" in values else BookingStatus.UNBILLED
    fields = parse_filter_fields(values, business_ids, zone)
    top = DEFAULT_TOP
    if "top" in values:
        text = values["top"].strip()
        if not re.fullmatch(r"\d{1,7}", text) or not 1 <= int(text) <= MAX_TOP:
            raise InvalidInput.field("top", f"must be a whole number from 1 to {MAX_TOP}, got {text[:20]!r}")
        top = int(text)
    token = values.get("continuationToken")
    return ListQuery(BookingFilter(status=status, **fields), top, token)


@dataclass(frozen=True)
class ListPosition:
    """Where the next page starts: a business (partition) and the table's own continuation marker."""

    business_id: str
    marker: dict[str, str] | None


class ContinuationTokens:
    """Opaque, signed continuation tokens.

    A token is `b1.<payload>.<mac>`: the payload names the query it belongs to and where to resume;
    the HMAC (keyed per deployment) makes a tampered or foreign token a clean 400 rather than a
    storage error or a page of some other query. Tokens are not encrypted; they hold no secrets.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the token key must be at least 16 bytes")
        self._key = key

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self._key, f"{_TOKEN_VERSION}.{payload}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()

    def encode(self, fingerprint: str, position: ListPosition) -> str:
        document = {"q": fingerprint, "b": position.business_id, "m": position.marker}
        raw = json.dumps(document, separators=(",", ":")).encode()
        payload = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return f"{_TOKEN_VERSION}.{payload}.{self._mac(payload)}"

    def decode(self, token: str, fingerprint: str) -> ListPosition:
        invalid = InvalidInput.field(
            "continuationToken",
            "is not a token this API issued (it was changed or cut); start again without it",
        )
        if len(token) > MAX_TOKEN_LENGTH or not _TOKEN_SHAPE.match(token):
            raise invalid
        _, payload, mac = token.split(".")
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise invalid
        try:
            document = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (ValueError, binascii.Error):
            raise invalid from None
        marker = document.get("m") if isinstance(document, dict) else None
        if (
            not isinstance(document, dict)
            or not isinstance(document.get("b"), str)
            or not (
                marker is None
                or (isinstance(marker, dict) and all(isinstance(v, str) for v in marker.values()))
            )
        ):
            raise invalid
        if document.get("q") != fingerprint:
            raise InvalidInput.field(
                "continuationToken",
                "belongs to a query with other filters; repeat the same filters or start without it",
            )
        return ListPosition(document["b"], marker)


@dataclass(frozen=True)
class BookingPage:
    items: list[Booking]
    continuation_token: str | None


class BookingQueries:
    """List, iterate and look up bookings of the configured businesses."""

    def __init__(
        self,
        store: BookingStore,
        business_ids: Sequence[str],
        tokens: ContinuationTokens,
        *,
        executor: Executor | None = None,
        max_round_trips: int = DEFAULT_MAX_ROUND_TRIPS,
    ) -> None:
        self.store = store
        self.business_ids = tuple(business_ids)
        self.tokens = tokens
        self.executor = executor
        self.max_round_trips = max_round_trips

    @property
    def table(self) -> TableClient:
        return self.store.table

    def scope(self, flt: BookingFilter) -> tuple[str, ...]:
        return (flt.business_id,) if flt.business_id else self.business_ids

    def page(self, flt: BookingFilter, top: int, continuation_token: str | None = None) -> BookingPage:
        """One page of at most `top` bookings and the token of the next, or None at the end."""
        if not 1 <= top <= MAX_TOP:
            raise ValueError(f"top must be 1..{MAX_TOP}")
        fingerprint = flt.fingerprint()
        scope = self.scope(flt)
        index, marker = 0, None
        if continuation_token:
            position = self.tokens.decode(continuation_token, fingerprint)
            if position.business_id not in scope:
                raise InvalidInput.field(
                    "continuationToken",
                    "names a business that is no longer configured; start again without it",
                )
            index, marker = scope.index(position.business_id), position.marker
        items: list[Booking] = []
        round_trips = 0
        while index < len(scope) and len(items) < top and round_trips < self.max_round_trips:
            text, parameters = flt.table_filter(scope[index])
            pages = self.table.query_entities(
                text, parameters=parameters, results_per_page=min(top - len(items), MAX_TOP)
            ).by_page(continuation_token=marker)
            items.extend(entity_to_booking(entity) for entity in next(pages, []))
            round_trips += 1
            marker = pages.continuation_token
            if not marker:
                index, marker = index + 1, None
        token = None
        if index < len(scope):
            token = self.tokens.encode(fingerprint, ListPosition(scope[index], marker))
        return BookingPage(items, token)

    def iterate(self, flt: BookingFilter) -> Iterator[Booking]:
        """Every matching booking (for `all` selections), partition by partition."""
        for business_id in self.scope(flt):
            text, parameters = flt.table_filter(business_id)
            for entity in self.table.query_entities(text, parameters=parameters, results_per_page=MAX_TOP):
                yield entity_to_booking(entity)

    def get(self, key: str) -> Booking | None:
        """A booking by key: point reads in the configured businesses (never a cross-partition scan)."""
        if not is_booking_key(key):
            return None
        for business_id in self.business_ids:
            booking = self.store.get(business_id, key)
            if booking is not None:
                return booking
        return None

    def get_many(self, keys: Iterable[str]) -> dict[str, Booking]:
        """Many bookings by key, read with bounded concurrency; unknown keys are left out."""
        found = _map(self.executor, self.get, list(keys))
        return {booking.key: booking for booking in found if booking is not None}


def _map(executor: Executor | None, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    if executor is None or len(items) < 2:
        return [fn(item) for item in items]
    return list(executor.map(fn, items))


def derive_token_key(*material: str) -> bytes:
    """A per-deployment HMAC key for continuation tokens, derived from stable storage settings."""
    digest = hashlib.sha256()
    digest.update(b"bookings-api continuation tokens v1\n")
    for part in material:
        digest.update(part.encode())
        digest.update(b"\n")
    return digest.digest()
