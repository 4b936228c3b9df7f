"""The sandbox's state and request pipeline, independent of sockets.

`SandboxApp` holds the state and runs every request through the same pipeline — count, authenticate,
apply the service's limits (Business Central concurrency and rate window, Graph mailbox
concurrency), latency, injected failures, the handler, and "commit then drop" — so every service
gets the fault switches uniformly.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable
from contextlib import ExitStack
from typing import Any

from sandbox.admin import ADMIN_PREFIX, STATE_SECTIONS, AdminApi
from sandbox.business_central import BusinessCentralService
from sandbox.business_central.company import CompanyStore
from sandbox.core.clock import Clock
from sandbox.core.counters import Counters
from sandbox.core.faults import Faults, Throttled
from sandbox.core.httpcore import (
    DropConnection,
    HttpError,
    MethodNotAllowed,
    Request,
    Response,
    RouteMatch,
    Service,
)
from sandbox.core.paging import DEFAULT_BC_MAX_PAGE_SIZE, DEFAULT_GRAPH_PAGE_SIZE, Paging
from sandbox.core.tls import ClientCertificate
from sandbox.directory import API_APP_ROLES, AppRegistration, Directory, FederatedCredential, ManagedIdentity
from sandbox.entra import EntraService
from sandbox.graph import BookingsStore, GraphService
from sandbox.seed import (
    Identity,
    company_record,
    seed_bookings,
    seed_company,
    seed_features,
)

logger = logging.getLogger("sandbox")

ENTRA_PREFIX = "/login"
GRAPH_PREFIX = "/graph/v1.0"
BC_PREFIX = "/bc/v2.0"


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
        self.seed_features = seed_feature_names(seed_features)
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


def seed_feature_names(names: Iterable[str]) -> frozenset[str]:
    """Feature names given as a list or as one comma-separated string."""
    if isinstance(names, str):
        names = names.split(",")
    return seed_features(names)
