"""Errors the use cases decide on, raised by the adapters (so services need no adapter import)."""

from __future__ import annotations


class ConcurrentChangeError(Exception):
    """The record changed since it was read (ETag mismatch) or vanished: re-read and decide again."""


class SelectionTooLargeError(ValueError):
    """A filter matches more bookings than one request may select (`MAX_SELECTION`)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"the filter matches more than {limit:,} bookings")


class BusinessCentralError(Exception):
    """A request to Business Central failed.

    `transient`: worth retrying later (throttling, outage, auth); otherwise Business Central
    refused the request itself and would refuse it again. `may_have_committed`: a POST whose
    outcome is unknown (connection lost, timeout, 5xx): look the record up before sending it again.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        transient: bool,
        may_have_committed: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.transient = transient
        self.may_have_committed = may_have_committed


class LinkNotFoundError(Exception):
    """No Business Central record matches and creating one is switched off."""


class LinkBusyError(Exception):
    """Another worker is creating the record and has not finished within the wait: retry later."""


class CustomerBlockedError(Exception):
    """Every Business Central customer with the booking's email is blocked for invoices."""

    def __init__(self, numbers: list[str]) -> None:
        self.numbers = numbers
        super().__init__(
            f"every Business Central customer with the customer's email is blocked for invoices: "
            f"{', '.join(numbers)}"
        )


class ItemBlockedError(Exception):
    """The service's Business Central item is blocked (a linked one, or every one matching by name)."""

    def __init__(self, numbers: list[str]) -> None:
        self.numbers = numbers
        super().__init__(f"the service's Business Central item is blocked: {', '.join(numbers)}")


class StorageUnavailableError(Exception):
    """Azure Storage kept failing transiently (connection resets, timeouts, 500/503) after the
    retries of `shared/adapters/storage_retry.py`: the caller undoes what it can and answers
    "try again later" (the HTTP API: 503 with `Retry-After`), never a 500."""

    def __init__(self, what: str, attempts: int, cause: str) -> None:
        self.what = what
        self.attempts = attempts
        self.cause = cause
        super().__init__(f"storage unavailable: {what} failed {attempts} time(s), last with {cause}")
