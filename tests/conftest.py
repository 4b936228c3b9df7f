"""Fixtures shared by every test: a real Azurite for tables and queues."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devhost.azurite import start_azurite
from devhost.config import HostConfig
from devhost.functions import load_app
from devhost.host import DevHost
from sandbox import ManualClock, SandboxHandle, start_sandbox
from shared import bootstrap


@pytest.fixture(scope="session")
def storage_connection_string() -> Iterator[str]:
    """Azurite's connection string: the one `make test` started, or a private one for this session."""
    given = os.environ.get("AZURITE_CONNECTION_STRING")
    if given:
        yield given
        return
    with start_azurite() as azurite:
        yield azurite.connection_string


@pytest.fixture
def unique_name() -> str:
    """A fresh lowercase name for a queue or table, so tests sharing one Azurite never collide."""
    return f"t{uuid.uuid4().hex[:20]}"


PRODUCT_ROOT = Path(__file__).resolve().parent.parent


def product_settings(storage_connection_string: str, **overrides: str) -> dict[str, str]:
    """Valid app settings pointing at Azurite; external services at placeholders unless overridden."""
    settings = {
        "AzureWebJobsStorage": storage_connection_string,
        "ENTRA_TENANT_ID": "11111111-2222-3333-4444-555555555555",
        "ENTRA_CLIENT_ID": "66666666-7777-8888-9999-000000000000",
        "ENTRA_CLIENT_SECRET": "placeholder-secret-for-tests",
        "BOOKINGS_BUSINESS_IDS": "lunch@contoso.com",
        "BC_COMPANY_ID": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        # The host resolves %SYNC_SCHEDULE% at start; once a year keeps the timer quiet in tests.
        "SYNC_SCHEDULE": "0 0 0 1 1 *",
        "RECONCILE_SCHEDULE": "0 0 0 1 1 *",
    }
    settings.update(overrides)
    return settings


@pytest.fixture
def start_product_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., DevHost]]:
    """Start the real app (`function_app`) in an in-process devhost with the given settings."""
    hosts: list[DevHost] = []

    def start(settings: dict[str, str], **host_options: object) -> DevHost:
        for name in list(os.environ):
            if name in _APP_SETTING_NAMES or name.startswith("AzureWebJobsStorage"):
                monkeypatch.delenv(name)
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        bootstrap.reset_container()
        host = DevHost(
            load_app("function_app"),
            config=HostConfig.load(PRODUCT_ROOT / "host.json"),
            settings=dict(os.environ),
            app_directory=PRODUCT_ROOT,
            state_directory=tmp_path / "devhost-state",
            port=0,
            **host_options,  # type: ignore[arg-type]
        )
        host.start()
        hosts.append(host)
        return host

    yield start
    for host in hosts:
        host.stop()
    bootstrap.reset_container()


_APP_SETTING_NAMES = {
    "ENTRA_TENANT_ID", "ENTRA_CLIENT_ID", "ENTRA_CLIENT_SECRET", "ENTRA_CLIENT_CERTIFICATE_PATH",
    "ENTRA_AUTHORITY_HOST", "GRAPH_BASE_URL", "BOOKINGS_BUSINESS_IDS", "BOOKINGS_TIME_ZONE", "BC_BASE_URL",
    "BC_ENVIRONMENT", "BC_COMPANY_ID", "SYNC_SCHEDULE", "SYNC_LOOKBACK_DAYS", "SYNC_CUSTOMERS",
    "SYNC_SERVICES", "CUSTOMER_TEMPLATE", "ITEM_TEMPLATE", "INVOICE_DATE", "MAX_SELECTION", "PRICE_SOURCE",
    "RECONCILE_SCHEDULE", "RETENTION_DAYS",
    "DEVHOST_FUNCTION_KEY", "DEVHOST_MASTER_KEY", "BC_MAX_CONCURRENCY", "BC_MAX_REQUESTS_PER_5_MIN",
    "BC_RATE_WINDOW_SECONDS", "ENTRA_MANAGED_IDENTITY_CLIENT_ID", "DEVHOST_MANAGED_IDENTITY_SOURCE",
    "IDENTITY_ENDPOINT", "IDENTITY_HEADER",
}  # fmt: skip


SANDBOX_NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
"""The sandbox clock of `fresh_sandbox`: its seed data and token times never depend on today."""


@pytest.fixture(scope="session")
def shared_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    """One sandbox (Entra ID, Graph, Business Central) for the session: its TLS setup is costly."""
    handle = start_sandbox(
        port=0, state_dir=tmp_path_factory.mktemp("shared-sandbox"), seed=1, clock=ManualClock(SANDBOX_NOW)
    )
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def fresh_sandbox(shared_sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch) -> SandboxHandle:
    """The session's sandbox with data reseeded, faults and counters reset; its CA trusted."""
    shared_sandbox.reset_to(SANDBOX_NOW)
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.setenv(name, shared_sandbox.settings[name])
    return shared_sandbox
