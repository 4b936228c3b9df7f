"""`start_sandbox`: binds a socket (port 0 picks a free one), serves the sandbox from a background
thread and returns a `SandboxHandle`; the TLS material and the settings a client needs are
written to the state directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sandbox.admin import ADMIN_PREFIX, SandboxAdmin
from sandbox.core.clock import Clock, ManualClock, SystemClock
from sandbox.core.paging import DEFAULT_BC_MAX_PAGE_SIZE, DEFAULT_GRAPH_PAGE_SIZE
from sandbox.core.tls import ClientCertificate, TlsMaterial, create_client_certificate, create_tls
from sandbox.seed import (
    Identity,
    make_identity,
)
from sandbox.server.app import BC_PREFIX, ENTRA_PREFIX, GRAPH_PREFIX, SandboxApp, seed_feature_names
from sandbox.server.sockets import TlsServer


@dataclass
class SandboxHandle:
    """A running sandbox. Use `stop()` (or `with`) to shut it down."""

    url: str
    settings: dict[str, str]
    admin: SandboxAdmin
    app: SandboxApp
    state_dir: Path
    ca_path: Path
    ca_bundle_path: Path
    client_certificate: ClientCertificate
    identity: Identity
    clock: Clock
    _server: TlsServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _stop_event: threading.Event = field(repr=False)
    _owned_dir: bool = field(default=False, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def connections_opened(self) -> int:
        """TLS connections accepted since start (keep-alive clients reuse one)."""
        return self._server.connections_opened

    def reset_to(self, now: datetime) -> ManualClock:
        """Back to the seeded data, no faults, fresh counters and default config, the clock at `now`.

        What a test starts from when it reuses one running sandbox; needs the manual clock.
        """
        if not isinstance(self.clock, ManualClock):
            raise TypeError("reset_to() needs a sandbox started with a ManualClock")
        self.clock.set(now)
        self.app.reset(counters=True, faults=True, data=True, config=True)
        return self.clock

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._stop_event.set()
        self.app.faults.interrupt()
        self._server.shutdown()  # the accept loop ends
        self._server.close_connections(timeout=5)  # idle keep-alive and in-flight connections end
        self._server.server_close()  # closes the listening socket and joins the connection threads
        self._thread.join(timeout=5)
        self.admin.close()
        if self._owned_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> SandboxHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_sandbox(
    port: int = 0,
    state_dir: Path | str | None = None,
    seed: int = 1,
    clock: Clock | None = None,
    *,
    host: str = "127.0.0.1",
    settings_out: Path | str | None = None,
    faults: Mapping[str, Any] | None = None,
    graph_page_size: int = DEFAULT_GRAPH_PAGE_SIZE,
    bc_max_page_size: int = DEFAULT_BC_MAX_PAGE_SIZE,
    env: Mapping[str, str] | None = None,
    seed_features: Iterable[str] = (),
) -> SandboxHandle:
    """Start a sandbox serving HTTPS on `host:port` (0 = a free port) in a background thread.

    `state_dir` receives `ca.pem`, `ca-bundle.pem`, `client-cert.pem` and `sandbox.json`; without
    one a temporary directory is used and removed on `stop()`. `env` is where the system CA bundle
    is looked up (default: `os.environ`). `seed_features` turns on extra appointment shapes
    (`sandbox.seed.SEED_FEATURES`: group appointments, Windows zone names, flat customer fields).
    """
    directory = _state_directory(state_dir)
    tls = create_tls(directory, env)
    certificate = create_client_certificate(directory / "client-cert.pem", "bookings-invoicing-sandbox")
    server = TlsServer((host, port), tls.server_context)
    url = f"https://{host}:{server.server_address[1]}"
    stop_event = threading.Event()
    features = seed_feature_names(seed_features)
    try:
        app = SandboxApp(
            url, make_identity(seed), certificate, seed, clock or SystemClock(), stop_event, features
        )
        app.paging.update({"graphPageSize": graph_page_size, "bcMaxPageSize": bc_max_page_size})
        if faults:
            app.faults.configure(faults)
    except Exception:
        server.server_close()
        raise
    thread = _serve_in_background(server, url, app)
    settings = build_settings(url, app.identity, tls.bundle_path)
    if settings_out is not None:
        _write_private_json(Path(settings_out), settings)
    _write_private_json(directory / "sandbox.json", app.info() | {"settings": settings})
    return _handle(app, tls, settings, directory, server, thread, stop_event, state_dir is None)


def _handle(
    app: SandboxApp,
    tls: TlsMaterial,
    settings: dict[str, str],
    directory: Path,
    server: TlsServer,
    thread: threading.Thread,
    stop_event: threading.Event,
    owned_dir: bool,
) -> SandboxHandle:
    return SandboxHandle(
        url=app.base_url,
        settings=settings,
        admin=SandboxAdmin(app.base_url, tls.ca_path),
        app=app,
        state_dir=directory,
        ca_path=tls.ca_path,
        ca_bundle_path=tls.bundle_path,
        client_certificate=app.client_certificate,
        identity=app.identity,
        clock=app.clock,
        _server=server,
        _thread=thread,
        _stop_event=stop_event,
        _owned_dir=owned_dir,
    )


def _state_directory(state_dir: Path | str | None) -> Path:
    """The given directory, created if missing, or a new temporary one."""
    directory = Path(tempfile.mkdtemp(prefix="sandbox-")) if state_dir is None else Path(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _serve_in_background(server: TlsServer, url: str, app: SandboxApp) -> threading.Thread:
    server.base_url = url
    server.app = app
    port = int(server.server_address[1])
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=f"sandbox-{port}", daemon=True
    )
    thread.start()
    return thread


def build_settings(url: str, identity: Identity, bundle_path: Path) -> dict[str, str]:
    """The app settings a client of this sandbox needs."""
    bundle = str(bundle_path.resolve())
    return {
        "ENTRA_AUTHORITY_HOST": url + ENTRA_PREFIX,
        "ENTRA_TENANT_ID": identity.tenant_id,
        "ENTRA_CLIENT_ID": identity.client_id,
        "ENTRA_CLIENT_SECRET": identity.client_secret,
        "GRAPH_BASE_URL": url + GRAPH_PREFIX,
        "BOOKINGS_BUSINESS_IDS": ",".join(identity.business_ids),
        "BC_BASE_URL": url + BC_PREFIX,
        "BC_ENVIRONMENT": identity.environment,
        "BC_COMPANY_ID": identity.company_id,
        "REQUESTS_CA_BUNDLE": bundle,
        "SSL_CERT_FILE": bundle,
        # Where devhost's managed identity endpoint gets tokens (App Service's identity service).
        "DEVHOST_MANAGED_IDENTITY_SOURCE": f"{url}{ADMIN_PREFIX}/entra/managedIdentities",
    }


def _write_private_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON readable by the owner only (it carries the client secret)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    os.replace(temporary, path)


@contextlib.contextmanager
def running_sandbox(**kwargs: Any) -> Iterator[SandboxHandle]:
    """`with running_sandbox(seed=3) as sandbox: ...` — starts and always stops."""
    handle = start_sandbox(**kwargs)
    try:
        yield handle
    finally:
        handle.stop()
