"""The sandbox server: one HTTPS origin that serves Entra ID, Graph and Business Central.

`SandboxApp` holds the state and runs every request through the same pipeline — count, authenticate,
apply the service's limits (Business Central concurrency and rate window, Graph mailbox
concurrency), latency, injected failures, the handler, and "commit then drop" — so every service
gets the fault switches uniformly. `start_sandbox` binds a socket (port 0 picks a free one),
serves it from a background thread and returns a `SandboxHandle`.

The socket layer is the standard library's threaded HTTP server. TLS is negotiated in each
connection's own thread (never in the accept loop, so one slow client cannot stall the others),
connections are HTTP/1.1 keep-alive so `requests` sessions reuse them, and `stop()` closes live
connections and interrupts injected delays so shutdown is prompt.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import ssl
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sandbox.admin import ADMIN_PREFIX, STATE_SECTIONS, AdminApi, SandboxAdmin
from sandbox.bc_model import CompanyStore
from sandbox.business_central import BusinessCentralService
from sandbox.clock import Clock, ManualClock, SystemClock
from sandbox.counters import Counters
from sandbox.entra import (
    API_APP_ROLES,
    AppRegistration,
    Directory,
    EntraService,
    FederatedCredential,
    ManagedIdentity,
)
from sandbox.faults import Faults, Throttled
from sandbox.graph import BookingsStore, GraphService
from sandbox.httpcore import (
    DropConnection,
    HttpError,
    MethodNotAllowed,
    Request,
    Response,
    RouteMatch,
    Service,
)
from sandbox.seed import (
    Identity,
    company_record,
    make_identity,
    seed_bookings,
    seed_company,
    seed_features,
)
from sandbox.tls import ClientCertificate, create_client_certificate, create_tls

logger = logging.getLogger("sandbox")

ENTRA_PREFIX = "/login"
GRAPH_PREFIX = "/graph/v1.0"
BC_PREFIX = "/bc/v2.0"
DEFAULT_GRAPH_PAGE_SIZE = 100
DEFAULT_BC_MAX_PAGE_SIZE = 20000
MAX_BODY_BYTES = 100 * 1024 * 1024


_PAGING_NAMES = {
    "graphPageSize": "graph_page_size",
    "bcMaxPageSize": "bc_max_page_size",
    "graphCalendarViewMaxDays": "graph_calendar_view_max_days",
}
_PAGING_MAY_BE_ZERO = frozenset({"graphCalendarViewMaxDays"})


@dataclass
class Paging:
    """Server-driven page sizes (Graph's is undocumented; BC's maximum is 20,000), and the longest
    `calendarView` range Graph accepts (0: no limit, as the Bookings page states none)."""

    graph_page_size: int = DEFAULT_GRAPH_PAGE_SIZE
    bc_max_page_size: int = DEFAULT_BC_MAX_PAGE_SIZE
    graph_calendar_view_max_days: int = 0

    def to_json(self) -> dict[str, int]:
        return {key: getattr(self, attribute) for key, attribute in _PAGING_NAMES.items()}

    def update(self, data: Mapping[str, Any]) -> None:
        unknown = set(data) - set(_PAGING_NAMES)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        for key, value in data.items():
            lowest = 0 if key in _PAGING_MAY_BE_ZERO else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
                raise ValueError(f"{key} must be a whole number >= {lowest}")
        for key, value in data.items():
            setattr(self, _PAGING_NAMES[key], value)


class SandboxApp:
    """State and request pipeline of one sandbox; independent of sockets."""

    def __init__(
        self,
        base_url: str,
        identity: Identity,
        client_certificate: ClientCertificate,
        seed: int,
        clock: Clock,
        stop_event: threading.Event,
        seed_features: Iterable[str] = (),
    ) -> None:
        self.base_url = base_url
        self.seed_features = _seed_features(seed_features)
        self.identity = identity
        self.client_certificate = client_certificate
        self.seed = seed
        self.clock = clock
        self.paging = Paging()
        self.counters = Counters()
        self.faults = Faults(seed=seed, stop_event=stop_event)
        self.directory = Directory(identity.tenant_id, clock)
        self.directory.api_client_id = identity.client_id
        self.entra = EntraService(self.directory, base_url + ENTRA_PREFIX, clock)
        self._register_product_app()
        self.bookings = BookingsStore(clock)
        self.company = CompanyStore(clock, company_record(identity, clock.now()), seed)
        self.graph = GraphService(
            self.bookings,
            self.directory,
            base_url + GRAPH_PREFIX,
            clock,
            lambda: self.paging.graph_page_size,
            lambda: self.paging.graph_calendar_view_max_days,
        )
        self.bc = BusinessCentralService(
            self.company,
            self.directory,
            base_url + BC_PREFIX,
            identity.environment,
            lambda: self.paging.bc_max_page_size,
        )
        self.admin = AdminApi(self)
        self._mounts: tuple[tuple[str, Service], ...] = (
            (ENTRA_PREFIX, self.entra),
            (GRAPH_PREFIX, self.graph),
            (BC_PREFIX, self.bc),
        )
        self.reseed()

    # -- state ----------------------------------------------------------------------------------

    def _register_product_app(self) -> None:
        """The product's app registration: it calls Graph and Business Central, exposes the API,
        and holds both of the API's app roles (so `make run` can call the API with it)."""
        for client_id in self.directory.client_ids():
            self.directory.unregister(client_id)
        self.directory.register(
            AppRegistration(
                client_id=self.identity.client_id,
                display_name="Bookings bulk invoicing (sandbox)",
                secrets=[self.identity.client_secret],
                certificates=[self.client_certificate.certificate],
                api_roles=API_APP_ROLES,
                # It trusts the Function App's managed identity, as infra/ sets it up in Azure.
                federated_credentials=[
                    FederatedCredential(
                        name="function-app-identity",
                        issuer=self.entra.v2_issuer,
                        subject=self.managed_identity.principal_id,
                    )
                ],
            )
        )
        self.directory.forget_managed_identities()
        self.directory.register_managed_identity(self.managed_identity)

    @property
    def managed_identity(self) -> ManagedIdentity:
        """The Function App's user-assigned managed identity, with ids derived from the tenant's."""
        return ManagedIdentity(
            client_id=str(
                uuid.uuid5(uuid.NAMESPACE_URL, f"{self.identity.tenant_id}/managed-identity/client")
            ),
            principal_id=str(
                uuid.uuid5(uuid.NAMESPACE_URL, f"{self.identity.tenant_id}/managed-identity/object")
            ),
            display_name="id-bookinv-sandbox",
        )

    def reseed(self) -> None:
        """Rebuild the sample data for the current seed and the clock's now."""
        seed_bookings(self.bookings, self.seed, self.clock.now(), self.seed_features)
        seed_company(self.company, self.seed)

    def reset(
        self, *, counters: bool = True, faults: bool = True, data: bool = False, config: bool = False
    ) -> list[str]:
        done = []
        if counters:
            self.counters.reset()
            done.append("counters")
        if faults:
            self.faults.reset()
            done.append("faults")
        if config:
            self.paging.update(
                {
                    "graphPageSize": DEFAULT_GRAPH_PAGE_SIZE,
                    "bcMaxPageSize": DEFAULT_BC_MAX_PAGE_SIZE,
                    "graphCalendarViewMaxDays": 0,
                }
            )
            done.append("config")
        if data:
            self.reseed()
            self._register_product_app()  # other clients and role changes of a test are forgotten
            done.append("data")
        return done

    def info(self) -> dict[str, Any]:
        identity = self.identity
        return {
            "url": self.base_url,
            "tenantId": identity.tenant_id,
            "clientId": identity.client_id,
            "companyId": identity.company_id,
            "environment": identity.environment,
            "businessIds": list(identity.business_ids),
            "timeZone": identity.time_zone,
            "customerTemplate": identity.customer_template,
            "itemTemplate": identity.item_template,
            "clientCertificatePath": str(self.client_certificate.path),
            "clientCertificateThumbprint": self.client_certificate.thumbprint_sha1,
            "managedIdentityClientId": self.managed_identity.client_id,
            "managedIdentityPrincipalId": self.managed_identity.principal_id,
            "seed": self.seed,
            "seedFeatures": sorted(self.seed_features),
        }

    def counters_snapshot(self) -> dict[str, Any]:
        snapshot: dict[str, Any] = {"services": self.counters.snapshot()}
        snapshot.update(self.faults.stats())
        return snapshot

    def dump(self, include: set[str] | None = None) -> dict[str, Any]:
        include = set(STATE_SECTIONS) if include is None else include
        result: dict[str, Any] = {"now": self.clock.now().isoformat().replace("+00:00", "Z")}
        if include & {"company", "customers", "items", "invoices"}:
            company = self.company.dump()
            for section in ("company", "customers", "items", "invoices"):
                if section in include:
                    result[section] = company[section]
        if "businesses" in include:
            result["businesses"] = self.bookings.dump()
        return result

    # -- pipeline -------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Answer one request; raises `DropConnection` when the socket must be closed unanswered."""
        path = request.path
        if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
            return self.admin.handle(request, path[len(ADMIN_PREFIX) :] or "/")
        for prefix, service in self._mounts:
            if path.startswith(prefix + "/"):
                return self._serve(service, request, path[len(prefix) :])
        return Response.json(404, {"error": {"code": "notFound", "message": f"Nothing is served at {path}."}})

    def _serve(self, service: Service, request: Request, subpath: str) -> Response:
        match: RouteMatch | None = None
        allowed: list[str] | None = None
        try:
            match = service.router.match(request.method, subpath)
        except MethodNotAllowed as exc:
            allowed = exc.allowed
        self.counters.record_request(service.name, match.route.key if match else None)
        try:
            response = self._run(service, request, match, allowed)
        except HttpError as exc:
            response = exc.response
        except DropConnection:
            self.counters.record_status(service.name, "dropped")
            raise
        except Exception:
            logger.exception(
                "sandbox %s handler failed for %s %s", service.name, request.method, request.path
            )
            response = service.internal_error(request)
        service.decorate(request, response)
        self.counters.record_status(service.name, response.status)
        return response

    def _run(
        self, service: Service, request: Request, match: RouteMatch | None, allowed: list[str] | None
    ) -> Response:
        principal = service.authenticate(request, match)
        if match is None:
            return service.method_not_allowed(request, allowed) if allowed else service.not_found(request)
        with ExitStack() as stack:
            try:
                if service is self.bc and principal is not None:
                    self.faults.bc_rate_check(principal.client_id)
                    stack.enter_context(self.faults.bc_slot(principal.client_id))
                elif service is self.graph and principal is not None:
                    mailbox = service.mailbox(match)
                    if mailbox:
                        stack.enter_context(self.faults.graph_slot(principal.client_id, mailbox))
            except Throttled as exc:
                return service.throttled(request, exc)
            self.faults.apply_latency(service.name)
            rule = self.faults.injected_failure(service.name, match.route.key)
            if rule is not None:
                return service.fault(request, rule.status, rule.retry_after)
            response = match.route.handler(request, match.params)
            if (
                service is self.bc
                and 200 <= response.status < 300
                and self.faults.take_drop_after_commit(match.route.key)
            ):
                raise DropConnection
            return response


# -- sockets ----------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Sandbox/1.0"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this many seconds
    server: _TlsServer

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            self._send(Response.json(400, {"error": {"code": "BadRequest", "message": str(exc)}}))
            return
        target = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=target.path or "/",
            query_string=target.query,
            headers={key.lower(): value for key, value in self.headers.items()},
            body=body,
            base_url=self.server.base_url,
        )
        try:
            response = self.server.app.handle(request)
        except DropConnection:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(response)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            total = 0
            while True:
                size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
                size = int(size_line or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY_BYTES:
                    raise ValueError("The request body is too large.")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length_text = self.headers.get("Content-Length")
        if not length_text:
            return b""
        length = int(length_text)
        if length < 0 or length > MAX_BODY_BYTES:
            raise ValueError("The request body is too large.")
        return self.rfile.read(length)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        body = response.body if self.command != "HEAD" and response.status not in (204, 304) else b""
        if response.status not in (204, 304):
            self.send_header(
                "Content-Length", str(len(body) if self.command != "HEAD" else len(response.body))
            )
        if self.close_connection:
            self.send_header("Connection", "close")
        if self.request_version == "HTTP/0.9":
            self.wfile.write(body)
            return
        # One write for headers and body (one TLS record, one TCP segment for small responses).
        self._headers_buffer.append(b"\r\n" + body)
        self.flush_headers()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], ssl_context: ssl.SSLContext) -> None:
        super().__init__(address, _Handler)
        self.ssl_context = ssl_context
        self.base_url = ""
        self.app: SandboxApp
        self._connections: set[socket.socket] = set()
        self.connections_opened = 0
        """TLS connections accepted so far: shows whether clients reuse keep-alive connections."""
        self._connections_lock = threading.Condition()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Handshake here, in the connection's own thread, then serve keep-alive requests."""
        with self._connections_lock:
            self._connections.add(request)
        try:
            request.settimeout(30)
            # Headers and body leave in separate writes: without this, Nagle's algorithm and the
            # client's delayed ACK add ~40 ms to every response.
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            logger.debug("TLS handshake with %s failed: %s", client_address, exc)
            with contextlib.suppress(OSError):
                request.close()
            with self._connections_lock:
                self._connections.discard(request)
                self._connections_lock.notify_all()
            return
        with self._connections_lock:
            self._connections.discard(request)
            self._connections.add(tls)
            self.connections_opened += 1
        try:
            self.finish_request(tls, client_address)
        except Exception:
            self.handle_error(tls, client_address)
        finally:
            with contextlib.suppress(OSError):
                tls.close()
            with self._connections_lock:
                self._connections.discard(tls)
                self._connections_lock.notify_all()

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)

    def close_connections(self, timeout: float) -> None:
        with self._connections_lock:
            for connection in list(self._connections):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            self._connections_lock.wait_for(lambda: not self._connections, timeout=timeout)


# -- public entry point -----------------------------------------------------------------------------


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
    _server: _TlsServer = field(repr=False)
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
    features = _seed_features(seed_features)
    owned = state_dir is None
    directory = Path(tempfile.mkdtemp(prefix="sandbox-")) if state_dir is None else Path(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    clock = clock or SystemClock()
    tls = create_tls(directory, env)
    identity = make_identity(seed)
    certificate = create_client_certificate(directory / "client-cert.pem", "bookings-invoicing-sandbox")
    server = _TlsServer((host, port), tls.server_context)
    actual_port = int(server.server_address[1])
    url = f"https://{host}:{actual_port}"
    stop_event = threading.Event()
    try:
        app = SandboxApp(url, identity, certificate, seed, clock, stop_event, features)
        app.paging.update({"graphPageSize": graph_page_size, "bcMaxPageSize": bc_max_page_size})
        if faults:
            app.faults.configure(faults)
    except Exception:
        server.server_close()
        raise
    server.base_url = url
    server.app = app
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=f"sandbox-{actual_port}", daemon=True
    )
    thread.start()
    settings = build_settings(url, identity, tls.bundle_path)
    if settings_out is not None:
        _write_private_json(Path(settings_out), settings)
    _write_private_json(directory / "sandbox.json", app.info() | {"settings": settings})
    handle = SandboxHandle(
        url=url,
        settings=settings,
        admin=SandboxAdmin(url, tls.ca_path),
        app=app,
        state_dir=directory,
        ca_path=tls.ca_path,
        ca_bundle_path=tls.bundle_path,
        client_certificate=certificate,
        identity=identity,
        clock=clock,
        _server=server,
        _thread=thread,
        _stop_event=stop_event,
        _owned_dir=owned,
    )
    return handle


def _seed_features(names: Iterable[str]) -> frozenset[str]:
    if isinstance(names, str):
        names = names.split(",")
    return seed_features(names)


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
