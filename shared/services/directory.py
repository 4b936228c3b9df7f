"""Names people know, read from Business Central and Graph once and cached: the company's name (for
web client links) and currency, and each Bookings business's display name.

Reads happen on demand (the portal's `GET /api/settings`) and are kept for `ttl` in this process,
so a page view never costs a Graph or Business Central call of its own: at most one read of each
per `ttl` per instance. A read that fails is remembered as "unknown" for `retry_after`, and the
portal falls back to what it has (the mailbox address, no currency code): a name is a convenience,
never a reason for the page to fail.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.telemetry import get_logger

log = get_logger("bookings.directory")

TTL = timedelta(hours=1)
RETRY_AFTER = timedelta(minutes=5)


@dataclass(frozen=True)
class CompanyFacts:
    """API v2.0 `companies`' `name` (what the web client's `company=` takes) and `displayName`, and
    `companyInformation`'s `currencyCode` (the General Ledger Setup's "LCY Code",
    APIV2CompanyInformation.Page.al); None where not known."""

    name: str | None = None
    display_name: str | None = None
    currency_code: str | None = None


class _Cached:
    """One value read by `read`, kept for `ttl` (a failure for `retry_after`)."""

    def __init__(self, read: Callable[[], Any], fallback: Any, what: str) -> None:
        self.read, self.fallback, self.what = read, fallback, what
        self.value: Any = None
        self.until: datetime | None = None
        self.lock = threading.Lock()

    def get(self, now: datetime, ttl: timedelta, retry_after: timedelta) -> Any:
        with self.lock:
            if self.until is not None and now < self.until:
                return self.value
            try:
                self.value, self.until = self.read(), now + ttl
            except Exception as exc:  # a name is a convenience: never fail the page for it
                log.warning("Could not read %s (%s); using a fallback for now", self.what, type(exc).__name__)
                self.value, self.until = self.fallback, now + retry_after
            return self.value


def _text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


class Directory:
    """The company's facts and the businesses' display names, cached per process."""

    def __init__(
        self,
        read_company: Callable[[], dict[str, Any]],
        read_company_information: Callable[[], dict[str, Any]],
        read_business: Callable[[str], dict[str, Any]],
        business_ids: Sequence[str],
        clock: Callable[[], datetime],
        *,
        executor: Executor | None = None,
        ttl: timedelta = TTL,
        retry_after: timedelta = RETRY_AFTER,
    ) -> None:
        self.clock, self.ttl, self.retry_after = clock, ttl, retry_after
        self.executor = executor  # reads side by side: a slow service costs one timeout, not one each
        self._company = _Cached(read_company, {}, "the Business Central company")
        self._information = _Cached(read_company_information, {}, "Business Central's company information")
        self._businesses = {
            business_id: _Cached(
                lambda b=business_id: read_business(b), {}, f"the Bookings business {business_id}"
            )
            for business_id in business_ids
        }

    def _values(self, caches: Sequence[_Cached]) -> list[Any]:
        now = self.clock()

        def get(cached: _Cached) -> Any:
            return cached.get(now, self.ttl, self.retry_after)

        if self.executor is None or len(caches) < 2:
            return [get(cached) for cached in caches]
        return list(self.executor.map(get, caches))

    def company(self) -> CompanyFacts:
        company, information = self._values([self._company, self._information])
        rows = information.get("value") if isinstance(information.get("value"), list) else [information]
        first = rows[0] if rows and isinstance(rows[0], dict) else {}
        return CompanyFacts(
            name=_text(company.get("name")),
            display_name=_text(company.get("displayName")),
            currency_code=_text(first.get("currencyCode")),
        )

    def business_names(self) -> dict[str, str]:
        """Display name by business id (Graph v1.0 `bookingBusiness.displayName`, read with
        `GET /solutions/bookingBusinesses/{id}` and the sync's `Bookings.Read.All`); a business
        whose name is unknown is left out."""
        records = self._values(list(self._businesses.values()))
        names: dict[str, str] = {}
        for business_id, record in zip(self._businesses, records, strict=True):
            name = _text(record.get("displayName"))
            if name:
                names[business_id] = name
        return names
