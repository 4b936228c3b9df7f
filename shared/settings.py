"""The app's settings: one typed, immutable object built from the environment.

Every setting of the contract is read and validated here, once, so a bad value fails fast with one
sentence naming the setting instead of a stack trace from deep inside a client later. Secrets are
wrapped in `Secret`, which never shows its value in `repr`, `str`, logs or error messages.
"""

from __future__ import annotations

import ipaddress
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.domain.invoice_lines import InvoiceDateRule, PriceSource
from shared.ncrontab import NcrontabError, parse_ncrontab


class SettingsError(ValueError):
    """A setting is missing or malformed. The message names the setting and what is wrong."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"Setting {setting} {problem}")


class Secret:
    """A secret string that cannot leak by accident: `repr`/`str` show a mask, never the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
DEFAULT_GRAPH_BASE_URL = "https://graph.microsoft.com/v1.0"
DEFAULT_BC_BASE_URL = "https://api.businesscentral.dynamics.com/v2.0"
DEFAULT_SYNC_SCHEDULE = "0 */15 * * * *"
DEFAULT_RECONCILE_SCHEDULE = "0 5 * * * *"
RETENTION_MARGIN_DAYS = 7
"""RETENTION_DAYS must exceed SYNC_LOOKBACK_DAYS by more than this: a deleted booking is never re-read."""

_E = TypeVar("_E", bound=Enum)

# The app registration's credential: exactly one of these (the managed identity only in Azure).
_CREDENTIAL_SETTINGS = (
    "ENTRA_CLIENT_SECRET",
    "ENTRA_CLIENT_CERTIFICATE_PATH",
    "ENTRA_MANAGED_IDENTITY_CLIENT_ID",
)

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_SMTP_ADDRESS = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")
_KEY_DISALLOWED = frozenset("/\\#?")
# A template number is a Business Central Code[20]: we only need it to be a plain token.
_BC_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._\-/]{0,19}$")


@dataclass(frozen=True)
class StorageSettings:
    """How to reach the storage account: a connection string (local, Azurite) or an identity (Azure)."""

    connection_string: Secret | None = field(repr=False)
    table_service_uri: str | None = None
    queue_service_uri: str | None = None
    managed_identity_client_id: str | None = None

    @property
    def uses_identity(self) -> bool:
        return self.connection_string is None


@dataclass(frozen=True)
class Settings:
    """Validated app settings. Build with `Settings.from_env()` (or `load_settings`)."""

    storage: StorageSettings
    tenant_id: str
    client_id: str
    client_secret: Secret | None = field(repr=False)
    client_certificate_path: str | None
    authority_host: str
    graph_base_url: str
    bookings_business_ids: tuple[str, ...]
    time_zone: ZoneInfo
    bc_base_url: str
    bc_environment: str
    bc_company_id: str
    sync_schedule: str
    sync_lookback_days: int
    sync_customers: bool
    sync_services: bool
    customer_template: str | None
    item_template: str | None
    invoice_date: InvoiceDateRule
    max_selection: int
    price_source: PriceSource = PriceSource.BOOKINGS
    reconcile_schedule: str = DEFAULT_RECONCILE_SCHEDULE
    retention_days: int = 400
    bc_max_concurrency: int = 5
    """Business Central requests in flight, all instances and callers together (BC allows 5)."""
    bc_max_requests_per_5_min: int = 5400
    """Business Central requests per sliding window, all instances together (BC allows 6,000)."""
    bc_rate_window_seconds: int = 300
    """The window of that rate: Business Central's 5 minutes. Shorter only in tests and benchmarks."""
    managed_identity_client_id: str | None = None
    """Client id of the user-assigned managed identity the app registration trusts (federated
    identity credential): the app's credential in Azure, instead of a secret or certificate."""

    @property
    def authority(self) -> str:
        """The MSAL authority URL of the tenant."""
        return f"{self.authority_host}/{self.tenant_id}"

    @property
    def time_zone_name(self) -> str:
        return self.time_zone.key

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        return load_settings(os.environ if env is None else env)


def load_settings(env: Mapping[str, str]) -> Settings:
    """Read and validate every setting. Raises `SettingsError` naming the first bad setting."""
    reader = _Reader(env)
    secret, cert_path, managed_identity = reader.client_credential()
    return Settings(
        storage=reader.storage(),
        tenant_id=reader.tenant("ENTRA_TENANT_ID"),
        client_id=reader.guid("ENTRA_CLIENT_ID"),
        client_secret=Secret(secret) if secret else None,
        client_certificate_path=cert_path,
        managed_identity_client_id=managed_identity,
        authority_host=reader.url("ENTRA_AUTHORITY_HOST", DEFAULT_AUTHORITY_HOST),
        graph_base_url=reader.url("GRAPH_BASE_URL", DEFAULT_GRAPH_BASE_URL),
        bookings_business_ids=reader.business_ids("BOOKINGS_BUSINESS_IDS"),
        time_zone=reader.time_zone("BOOKINGS_TIME_ZONE", "UTC"),
        bc_base_url=reader.url("BC_BASE_URL", DEFAULT_BC_BASE_URL),
        bc_environment=reader.bc_environment("BC_ENVIRONMENT", "Production"),
        bc_company_id=reader.guid("BC_COMPANY_ID"),
        sync_schedule=reader.ncrontab("SYNC_SCHEDULE", DEFAULT_SYNC_SCHEDULE),
        sync_lookback_days=reader.integer("SYNC_LOOKBACK_DAYS", 30, minimum=1, maximum=365),
        sync_customers=reader.boolean("SYNC_CUSTOMERS", True),
        sync_services=reader.boolean("SYNC_SERVICES", True),
        customer_template=reader.bc_code("CUSTOMER_TEMPLATE"),
        item_template=reader.bc_code("ITEM_TEMPLATE"),
        invoice_date=reader.choice("INVOICE_DATE", InvoiceDateRule, InvoiceDateRule.APPOINTMENT),
        max_selection=reader.integer("MAX_SELECTION", 10000, minimum=1, maximum=100000),
        price_source=reader.choice("PRICE_SOURCE", PriceSource, PriceSource.BOOKINGS),
        reconcile_schedule=reader.ncrontab("RECONCILE_SCHEDULE", DEFAULT_RECONCILE_SCHEDULE),
        retention_days=reader.retention_days(
            "RETENTION_DAYS", 400, reader.integer("SYNC_LOOKBACK_DAYS", 30, minimum=1, maximum=365)
        ),
        **_bc_budget_settings(reader),
    )


def _bc_budget_settings(reader: _Reader) -> dict[str, int]:
    """The Business Central budget all instances share (`adapters/bc_budget.py`)."""
    return {
        "bc_max_concurrency": reader.integer(
            "BC_MAX_CONCURRENCY", 5, minimum=1, maximum=5, why="Business Central runs 5 per app registration"
        ),
        "bc_max_requests_per_5_min": reader.integer(
            "BC_MAX_REQUESTS_PER_5_MIN",
            5400,
            minimum=1,
            maximum=6000,
            why="Business Central allows 6,000 per 5 minutes per app registration",
        ),
        "bc_rate_window_seconds": reader.integer(
            "BC_RATE_WINDOW_SECONDS",
            300,
            minimum=1,
            maximum=300,
            why="only tests shorten Business Central's window",
        ),
    }


def is_loopback_host(host: str) -> bool:
    """True for localhost and loopback addresses: the only hosts allowed over plain http (tests)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Reader:
    """Reads one setting at a time and turns each problem into a `SettingsError`."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def optional(self, name: str) -> str | None:
        value = self._env.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def required(self, name: str) -> str:
        value = self.optional(name)
        if value is None:
            raise SettingsError(name, "is missing (required)")
        return value

    def client_credential(self) -> tuple[str | None, str | None, str | None]:
        """Exactly one credential of the app registration: (secret, certificate path, managed identity)."""
        given = {name: self.optional(name) for name in _CREDENTIAL_SETTINGS}
        chosen = [name for name, value in given.items() if value]
        if not chosen:
            raise SettingsError(
                "ENTRA_CLIENT_SECRET",
                "is missing: set one of ENTRA_CLIENT_SECRET, ENTRA_CLIENT_CERTIFICATE_PATH or "
                "ENTRA_MANAGED_IDENTITY_CLIENT_ID (the app registration's secret, certificate, or in Azure "
                "the managed identity it trusts)",
            )
        if len(chosen) > 1:
            raise SettingsError(
                chosen[1],
                f"is set together with {chosen[0]}: set exactly one credential of the app registration",
            )
        secret, cert_path, managed_identity = given.values()
        if cert_path and not os.path.isfile(cert_path):
            raise SettingsError(
                "ENTRA_CLIENT_CERTIFICATE_PATH", f"names a file that does not exist: {cert_path}"
            )
        if managed_identity:
            managed_identity = self.guid("ENTRA_MANAGED_IDENTITY_CLIENT_ID")
        return secret, cert_path, managed_identity

    def storage(self) -> StorageSettings:
        name = "AzureWebJobsStorage"
        value = self.optional(name)
        if value is not None:
            if value != "UseDevelopmentStorage=true" and "=" not in value:
                raise SettingsError(name, "is not a storage connection string (expected key=value pairs)")
            return StorageSettings(connection_string=Secret(value))
        account = self.optional(f"{name}__accountName")
        table_uri = self.optional(f"{name}__tableServiceUri")
        queue_uri = self.optional(f"{name}__queueServiceUri")
        if account:
            table_uri = table_uri or f"https://{account}.table.core.windows.net"
            queue_uri = queue_uri or f"https://{account}.queue.core.windows.net"
        if not table_uri or not queue_uri:
            raise SettingsError(
                name,
                "is missing (required): a storage connection string, or AzureWebJobsStorage__accountName "
                "(or __tableServiceUri and __queueServiceUri) for an identity-based connection",
            )
        for setting, uri in (
            (f"{name}__tableServiceUri", table_uri),
            (f"{name}__queueServiceUri", queue_uri),
        ):
            if urlsplit(uri).scheme != "https":
                raise SettingsError(setting, f"must be an https URL: {uri!r}")
        return StorageSettings(
            connection_string=None,
            table_service_uri=table_uri.rstrip("/"),
            queue_service_uri=queue_uri.rstrip("/"),
            managed_identity_client_id=self.optional(f"{name}__clientId"),
        )

    def guid(self, name: str) -> str:
        value = self.required(name)
        try:
            return str(uuid.UUID(value.strip("{}")))
        except ValueError:
            raise SettingsError(name, f"is not a GUID: {value!r}") from None

    def tenant(self, name: str) -> str:
        """A tenant id is a GUID, or a verified domain such as contoso.onmicrosoft.com."""
        value = self.required(name)
        try:
            return str(uuid.UUID(value.strip("{}")))
        except ValueError:
            if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9\-]*(\.[A-Za-z0-9\-]+)+", value):
                return value.lower()
            raise SettingsError(name, f"is neither a GUID nor a domain name: {value!r}") from None

    def url(self, name: str, default: str) -> str:
        value = self.optional(name) or default
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise SettingsError(name, f"is not an absolute URL: {value!r}")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            raise SettingsError(name, f"must use https (plain http is allowed only for loopback): {value!r}")
        if parts.query or parts.fragment:
            raise SettingsError(name, f"must not carry a query string or fragment: {value!r}")
        return value.rstrip("/")

    def business_ids(self, name: str) -> tuple[str, ...]:
        value = self.required(name)
        ids = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
        if not ids:
            raise SettingsError(name, "is missing (required): comma-separated Bookings business ids")
        for business_id in ids:
            if not _SMTP_ADDRESS.match(business_id):
                raise SettingsError(
                    name, f"holds {business_id!r}, which is not a Bookings business id (an SMTP address)"
                )
            # The id is the Bookings table's PartitionKey, which may not contain / \\ # ? (Learn,
            # "Understanding the Table service data model", "Characters disallowed in key fields").
            if _KEY_DISALLOWED & set(business_id):
                raise SettingsError(
                    name,
                    f"holds {business_id!r}: a business id is a table PartitionKey, which may not "
                    "contain / \\ # or ?",
                )
        return ids

    def time_zone(self, name: str, default: str) -> ZoneInfo:
        value = self.optional(name) or default
        try:
            return ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError(
                name, f"is not an IANA time zone: {value!r} (for example Europe/Amsterdam)"
            ) from None

    def bc_environment(self, name: str, default: str) -> str:
        value = self.optional(name) or default
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,29}", value):
            raise SettingsError(name, f"is not a Business Central environment name: {value!r}")
        return value

    def ncrontab(self, name: str, default: str) -> str:
        value = self.optional(name) or default
        try:
            parse_ncrontab(value)
        except NcrontabError as exc:
            raise SettingsError(name, f"is not a valid NCRONTAB expression ({exc}): {value!r}") from None
        return value

    def integer(self, name: str, default: int, *, minimum: int, maximum: int, why: str = "") -> int:
        value = self.optional(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise SettingsError(name, f"is not a whole number: {value!r}") from None
        if not minimum <= number <= maximum:
            reason = f" ({why})" if why else ""
            raise SettingsError(name, f"must be between {minimum} and {maximum}{reason}, got {number}")
        return number

    def retention_days(self, name: str, default: int, lookback_days: int) -> int:
        days = self.integer(name, default, minimum=1, maximum=36500)
        if days <= lookback_days + RETENTION_MARGIN_DAYS:
            raise SettingsError(
                name,
                f"must exceed SYNC_LOOKBACK_DAYS + {RETENTION_MARGIN_DAYS} "
                f"({lookback_days} + {RETENTION_MARGIN_DAYS} = {lookback_days + RETENTION_MARGIN_DAYS}), "
                f"got {days}: the sync would re-read, and bring back as Unbilled, bookings retention deleted",
            )
        return days

    def boolean(self, name: str, default: bool) -> bool:
        value = self.optional(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise SettingsError(name, f"is not a boolean (use true or false): {value!r}")

    def bc_code(self, name: str) -> str | None:
        value = self.optional(name)
        if value is not None and not _BC_CODE.match(value):
            raise SettingsError(name, f"is not a Business Central number (Code[20]): {value!r}")
        return value

    def choice(self, name: str, enum: type[_E], default: _E) -> _E:
        value = self.optional(name)
        if value is None:
            return default
        for member in enum:  # case-insensitive: "businesscentral" is "businessCentral"
            if str(member.value).lower() == value.lower():
                return member
        allowed = ", ".join(str(member.value) for member in enum)
        raise SettingsError(name, f"must be one of {allowed}, got {value!r}")
