"""The routes of the sandbox's own admin API, under `/_sandbox` (a path no real API uses).

Tests, benchmarks and `make run` drive the sandbox through it: fault switches, paging sizes, the
clock, request counters, a dump of all state, appointment edits and bulk generation. It needs no
token, and nothing here is counted or throttled like the emulated services.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any, Protocol

from sandbox.business_central import CompanyStore
from sandbox.business_central.schema import BcError
from sandbox.core.clock import Clock, ManualClock
from sandbox.core.fault_config import ConfigError
from sandbox.core.faults import Faults
from sandbox.core.httpcore import HttpError, MethodNotAllowed, Request, Response, Router, new_guid
from sandbox.core.paging import Paging
from sandbox.core.timefmt import parse_iso_datetime
from sandbox.directory import (
    BC_RESOURCE,
    GRAPH_RESOURCE,
    AppRegistration,
    Directory,
    FederatedCredential,
    ManagedIdentity,
)
from sandbox.entra import EntraService
from sandbox.graph import AppointmentError, BookingsStore
from sandbox.seed import generate_appointments

ADMIN_PREFIX = "/_sandbox"
STATE_SECTIONS = ("company", "customers", "items", "invoices", "businesses")


class SandboxState(Protocol):
    """What the admin API drives: the state and switches of one running sandbox."""

    seed: int
    clock: Clock
    paging: Paging
    faults: Faults
    directory: Directory
    entra: EntraService
    bookings: BookingsStore
    company: CompanyStore

    def info(self) -> dict[str, Any]: ...

    def counters_snapshot(self) -> dict[str, Any]: ...

    def reset(
        self, *, counters: bool = True, faults: bool = True, data: bool = False, config: bool = False
    ) -> list[str]: ...

    def dump(self, include: set[str] | None = None) -> dict[str, Any]: ...


def _error(status: int, code: str, message: str) -> Response:
    return Response.json(status, {"error": {"code": code, "message": message}})


def _body(request: Request) -> dict[str, Any]:
    if not request.body:
        return {}
    try:
        data = request.json()
    except (ValueError, UnicodeDecodeError):
        raise HttpError(_error(400, "badJson", "The body is not JSON.")) from None
    if not isinstance(data, dict):
        raise HttpError(_error(400, "badJson", "The body must be a JSON object."))
    return data


class AdminApi:
    def __init__(self, app: SandboxState) -> None:
        self.app = app
        self.router = Router()
        add = self.router.add
        add("GET", "/health", self._health)
        add("GET", "/info", self._info)
        add("GET", "/counters", self._counters)
        add("POST", "/reset", self._reset)
        add("GET", "/faults", self._get_faults)
        add("PUT", "/faults", self._put_faults)
        add("PATCH", "/faults", self._patch_faults)
        add("GET", "/config", self._get_config)
        add("PATCH", "/config", self._patch_config)
        add("GET", "/state", self._state)
        add("GET", "/clock", self._get_clock)
        add("POST", "/clock", self._set_clock)
        add("POST", "/graph/businesses/{businessId}/appointments", self._add_appointment)
        add("PATCH", "/graph/businesses/{businessId}/appointments/{appointmentId}", self._edit_appointment)
        add("DELETE", "/graph/businesses/{businessId}/appointments/{appointmentId}", self._cancel_appointment)
        add("POST", "/graph/businesses/{businessId}/generate", self._generate)
        add("POST", "/bc/salesInvoices/{invoiceId}/post", self._post_invoice)
        add("POST", "/bc/salesInvoices/{invoiceId}/status", self._set_invoice_status)
        for action in ("release", "sendForApproval", "approve", "reopen"):
            add("POST", f"/bc/salesInvoices/{{invoiceId}}/{action}", self._move_unposted(action))
        add("PUT", "/bc/allowedPostingDates", self._set_allowed_posting_dates)
        add("POST", "/entra/apps", self._register_app)
        add("PUT", "/entra/apps/{clientId}/apiRoles", self._set_api_roles)
        add("PATCH", "/entra/apps/{clientId}", self._break_app)
        add("PATCH", "/bc/customers/{number}", self._edit_bc_record("customers"))
        add("PATCH", "/bc/items/{number}", self._edit_bc_record("items"))
        add("PUT", "/entra/apps/{clientId}/federatedCredentials/{name}", self._set_federated_credential)
        add("POST", "/entra/managedIdentities", self._create_managed_identity)
        add("POST", "/entra/managedIdentities/{clientId}/token", self._managed_identity_token)

    def handle(self, request: Request, subpath: str) -> Response:
        try:
            match = self.router.match(request.method, subpath)
        except MethodNotAllowed as exc:
            return _error(405, "methodNotAllowed", f"Use {', '.join(exc.allowed)} on {exc.template}.")
        if match is None:
            return _error(404, "notFound", f"No admin route {request.method} {subpath}.")
        try:
            return match.route.handler(request, match.params)
        except HttpError as exc:
            return exc.response

    # -- routes ---------------------------------------------------------------------------------

    def _health(self, request: Request, params: dict[str, str]) -> Response:
        return Response.json(200, {"status": "ok"})

    def _info(self, request: Request, params: dict[str, str]) -> Response:
        return Response.json(200, self.app.info())

    def _counters(self, request: Request, params: dict[str, str]) -> Response:
        return Response.json(200, self.app.counters_snapshot())

    def _reset(self, request: Request, params: dict[str, str]) -> Response:
        data = _body(request)
        unknown = set(data) - {"counters", "faults", "data", "config"}
        if unknown:
            return _error(400, "badRequest", f"Unknown reset option(s): {', '.join(sorted(unknown))}.")
        done = self.app.reset(
            counters=bool(data.get("counters", True)),
            faults=bool(data.get("faults", True)),
            data=bool(data.get("data", False)),
            config=bool(data.get("config", False)),
        )
        return Response.json(200, {"reset": done})

    def _get_faults(self, request: Request, params: dict[str, str]) -> Response:
        return Response.json(200, self.app.faults.snapshot())

    def _put_faults(self, request: Request, params: dict[str, str]) -> Response:
        return self._configure(request, replace_all=True)

    def _patch_faults(self, request: Request, params: dict[str, str]) -> Response:
        return self._configure(request, replace_all=False)

    def _configure(self, request: Request, replace_all: bool) -> Response:
        try:
            self.app.faults.configure(_body(request), replace_all=replace_all)
        except ConfigError as exc:
            return _error(400, "badFaultConfig", str(exc))
        return Response.json(200, self.app.faults.snapshot())

    def _get_config(self, request: Request, params: dict[str, str]) -> Response:
        return Response.json(200, self.app.paging.to_json())

    def _patch_config(self, request: Request, params: dict[str, str]) -> Response:
        try:
            self.app.paging.update(_body(request))
        except ValueError as exc:
            return _error(400, "badConfig", str(exc))
        return Response.json(200, self.app.paging.to_json())

    def _state(self, request: Request, params: dict[str, str]) -> Response:
        include_text = request.query_dict().get("include")
        include = set(STATE_SECTIONS)
        if include_text:
            include = {part.strip() for part in include_text.split(",") if part.strip()}
            unknown = include - set(STATE_SECTIONS)
            if unknown:
                return _error(400, "badRequest", f"Unknown state section(s): {', '.join(sorted(unknown))}.")
        return Response.json(200, self.app.dump(include))

    def _get_clock(self, request: Request, params: dict[str, str]) -> Response:
        return Response.json(200, self._clock_json())

    def _clock_json(self) -> dict[str, Any]:
        clock = self.app.clock
        return {
            "now": clock.now().isoformat().replace("+00:00", "Z"),
            "adjustable": isinstance(clock, ManualClock),
        }

    def _set_clock(self, request: Request, params: dict[str, str]) -> Response:
        clock = self.app.clock
        if not isinstance(clock, ManualClock):
            return _error(
                409, "clockNotAdjustable", "The sandbox runs on the real clock; start it with --now."
            )
        data = _body(request)
        if "now" in data:
            try:
                clock.set(parse_iso_datetime(str(data["now"])))
            except ValueError as exc:
                return _error(400, "badRequest", str(exc))
        elif "advanceSeconds" in data:
            seconds = data["advanceSeconds"]
            if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                return _error(400, "badRequest", "advanceSeconds must be a number.")
            clock.advance(timedelta(seconds=seconds))
        else:
            return _error(400, "badRequest", 'Send {"now": "<ISO 8601>"} or {"advanceSeconds": n}.')
        return Response.json(200, self._clock_json())

    def _business(self, business_id: str) -> Any:
        business = self.app.bookings.business(business_id)
        if business is None:
            raise HttpError(_error(404, "itemNotFound", f"No Bookings business {business_id!r}."))
        return business

    def _add_appointment(self, request: Request, params: dict[str, str]) -> Response:
        business = self._business(params["businessId"])
        try:
            created = self.app.bookings.create(business, _body(request), strict=False)
        except AppointmentError as exc:
            return _error(exc.status, exc.code, str(exc))
        return Response.json(201, created)

    def _edit_appointment(self, request: Request, params: dict[str, str]) -> Response:
        business = self._business(params["businessId"])
        try:
            updated = self.app.bookings.update(
                business, params["appointmentId"], _body(request), strict=False
            )
        except AppointmentError as exc:
            return _error(exc.status, exc.code, str(exc))
        return Response.json(200, updated)

    def _cancel_appointment(self, request: Request, params: dict[str, str]) -> Response:
        business = self._business(params["businessId"])
        if not self.app.bookings.cancel(business, params["appointmentId"]):
            return _error(404, "itemNotFound", "No such appointment.")
        return Response.empty(204)

    def _generate(self, request: Request, params: dict[str, str]) -> Response:
        business = self._business(params["businessId"])
        data = _body(request)
        count = data.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 1_000_000:
            return _error(400, "badRequest", "count must be a whole number between 0 and 1000000.")
        now = self.app.clock.now()
        try:
            # Default: completed appointments inside the app's default 30-day sync window.
            end = parse_iso_datetime(str(data["end"])) if "end" in data else now - timedelta(hours=1)
            start = parse_iso_datetime(str(data["start"])) if "start" in data else now - timedelta(days=29)
        except ValueError as exc:
            return _error(400, "badRequest", str(exc))
        seed = data.get("seed", self.app.seed)
        if isinstance(seed, bool) or not isinstance(seed, int):
            return _error(400, "badRequest", "seed must be a whole number.")
        try:
            created = generate_appointments(self.app.bookings, business.id, count, start, end, seed)
        except ValueError as exc:
            return _error(400, "badRequest", str(exc))
        return Response.json(200, {"created": created, "businessId": business.id})

    def _post_invoice(self, request: Request, params: dict[str, str]) -> Response:
        try:
            posted = self.app.company.post_invoice(params["invoiceId"].lower())
        except BcError as exc:
            return _error(exc.status, exc.code, exc.message)
        return Response.json(200, posted)

    def _move_unposted(self, action: str) -> Callable[[Request, dict[str, str]], Response]:
        """Release, approval and reopening of an unposted invoice, done by a person in Business Central."""

        def handle(request: Request, params: dict[str, str]) -> Response:
            try:
                moved = self.app.company.move_unposted_invoice(params["invoiceId"].lower(), action)
            except BcError as exc:
                return _error(exc.status, exc.code, exc.message)
            return Response.json(200, moved)

        return handle

    def _set_allowed_posting_dates(self, request: Request, params: dict[str, str]) -> Response:
        """General Ledger Setup's "Allow Posting From" / "Allow Posting To": `{"from", "to"}` (null =
        open), checked at posting; `"atCreation": true` also checks a sent postingDate at creation."""
        data = _body(request)
        if set(data) - {"from", "to", "atCreation"} or not isinstance(data.get("atCreation", False), bool):
            return _error(
                400,
                "badRequest",
                'Send {"from": "YYYY-MM-DD" | null, "to": ... | null, "atCreation"?: bool}.',
            )
        try:
            start, end = (date.fromisoformat(data[k]) if data.get(k) else None for k in ("from", "to"))
        except (TypeError, ValueError):
            return _error(400, "badRequest", "from and to must be dates (YYYY-MM-DD) or null.")
        at_creation = bool(data.get("atCreation", False))
        self.app.company.set_allowed_posting_dates(start, end, at_creation)
        return Response.json(200, {"from": data.get("from"), "to": data.get("to"), "atCreation": at_creation})

    def _set_invoice_status(self, request: Request, params: dict[str, str]) -> Response:
        """A posted invoice paid (a payment applied), cancelled or corrected inside Business Central."""
        data = _body(request)
        if set(data) != {"status"} or not isinstance(data["status"], str):
            return _error(400, "badRequest", 'Send {"status": "Open" | "Paid" | "Canceled" | "Corrective"}.')
        try:
            changed = self.app.company.set_invoice_status(params["invoiceId"].lower(), data["status"])
        except BcError as exc:
            return _error(exc.status, exc.code, exc.message)
        return Response.json(200, changed)

    # -- client apps ------------------------------------------------------------------------------

    def _register_app(self, request: Request, params: dict[str, str]) -> Response:
        """A client app (a script, a flow) with a secret and app roles of the product's API."""

        data = _body(request)
        unknown = set(data) - {"displayName", "apiRoles"}
        if unknown:
            return _error(400, "badRequest", f"Unknown field(s): {', '.join(sorted(unknown))}.")
        roles = data.get("apiRoles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            return _error(400, "badRequest", "apiRoles must be an array of app role names.")
        app = AppRegistration(
            client_id=new_guid(),
            display_name=str(data.get("displayName") or "test client"),
            secrets=[secrets.token_urlsafe(24)],
        )
        self.app.directory.register(app)
        try:
            self.app.directory.set_api_roles(app.client_id, roles)
        except ValueError as exc:
            self.app.directory.unregister(app.client_id)
            return _error(400, "badRequest", str(exc))
        body = {
            "clientId": app.client_id,
            "clientSecret": app.secrets[0],
            "servicePrincipalId": app.service_principal_id,
            "apiRoles": list(app.api_roles),
        }
        return Response.json(201, body)

    def _set_api_roles(self, request: Request, params: dict[str, str]) -> Response:
        data = _body(request)
        roles = data.get("roles")
        valid = isinstance(roles, list) and all(isinstance(r, str) for r in roles)
        if set(data) != {"roles"} or not valid:
            return _error(400, "badRequest", 'The body must be {"roles": [app role names]}.')
        try:
            app = self.app.directory.set_api_roles(params["clientId"], roles or [])
        except KeyError:
            return _error(404, "notFound", f"No app registration {params['clientId']}.")
        except ValueError as exc:
            return _error(400, "badRequest", str(exc))
        return Response.json(200, {"clientId": app.client_id, "apiRoles": list(app.api_roles)})

    # -- workload identity federation ------------------------------------------------------------

    def _set_federated_credential(self, request: Request, params: dict[str, str]) -> Response:
        """Create or replace a federated credential, as Graph's upsert does (by name)."""

        data = _body(request)
        audiences = data.get("audiences")
        fields_ok = set(data) <= {"issuer", "subject", "audiences"} and {"issuer", "subject"} <= set(data)
        strings = all(isinstance(data.get(k), str) and data.get(k) for k in ("issuer", "subject"))
        if not fields_ok or not strings or not (isinstance(audiences, list) and audiences):
            return _error(400, "badRequest", 'The body must be {"issuer", "subject", "audiences": [...]}.')
        credential = FederatedCredential(
            name=params["name"],
            issuer=data["issuer"],
            subject=data["subject"],
            audiences=tuple(str(a) for a in audiences),
        )
        try:
            self.app.directory.set_federated_credential(params["clientId"], credential)
        except KeyError:
            return _error(404, "notFound", f"No app registration {params['clientId']}.")
        body = {"name": credential.name, "issuer": credential.issuer, "subject": credential.subject}
        return Response.json(200, body | {"audiences": list(credential.audiences)})

    def _create_managed_identity(self, request: Request, params: dict[str, str]) -> Response:
        """A user-assigned managed identity (client id and object id), as Azure creates one."""

        data = _body(request)
        if set(data) - {"displayName"}:
            return _error(400, "badRequest", 'The body may hold "displayName" only.')
        identity = ManagedIdentity(new_guid(), new_guid(), str(data.get("displayName") or "test identity"))
        self.app.directory.register_managed_identity(identity)
        body = {"clientId": identity.client_id, "principalId": identity.principal_id}
        return Response.json(201, body | {"displayName": identity.display_name})

    def _managed_identity_token(self, request: Request, params: dict[str, str]) -> Response:
        """The platform's identity service: a token for a managed identity assigned to an app
        (devhost's identity endpoint asks it, as App Service's endpoint asks Azure's)."""
        data = _body(request)
        resource = data.get("resource")
        if set(data) != {"resource"} or not isinstance(resource, str) or not resource:
            return _error(400, "badRequest", 'The body must be {"resource": "..."}.')
        identity = self.app.directory.managed_identity(params["clientId"])
        if identity is None:
            return _error(404, "notFound", f"No managed identity with client id {params['clientId']}.")
        return Response.json(200, self.app.entra.managed_identity_token(identity, resource))

    # -- setup-check switches: break what a real tenant gets wrong ------------------------------

    def _break_app(self, request: Request, params: dict[str, str]) -> Response:
        """Per app: `consented` ({"graph"|"bc": [roles]}), `secretExpired`, `deniedBusinesses`,
        `businessCentralRegistered`. A data reset restores the product's app."""

        data = _body(request)
        unknown = set(data) - {"consented", "secretExpired", "deniedBusinesses", "businessCentralRegistered"}
        if unknown:
            return _error(400, "badRequest", f"Unknown field(s): {', '.join(sorted(unknown))}.")
        app = self.app.directory.app(params["clientId"])
        if app is None:
            return _error(404, "notFound", f"No app registration {params['clientId']}.")
        resources = {"graph": GRAPH_RESOURCE, "bc": BC_RESOURCE}
        consented = data.get("consented", {})
        if not isinstance(consented, dict) or set(consented) - set(resources):
            return _error(400, "badRequest", 'consented must be {"graph": [roles], "bc": [roles]}.')
        for name, roles in consented.items():
            if roles is None:
                app.consented.pop(resources[name], None)
            elif isinstance(roles, list) and all(isinstance(r, str) for r in roles):
                app.consented[resources[name]] = tuple(roles)
            else:
                return _error(400, "badRequest", f"consented.{name} must be a list of role names or null.")
        if "secretExpired" in data:
            app.expired_secrets = list(app.secrets) if data["secretExpired"] is True else []
        if "deniedBusinesses" in data:
            denied = data["deniedBusinesses"]
            if not isinstance(denied, list) or not all(isinstance(b, str) for b in denied):
                return _error(400, "badRequest", "deniedBusinesses must be a list of business ids.")
            app.denied_businesses = set(denied)
        if "businessCentralRegistered" in data:
            app.bc_registered = data["businessCentralRegistered"] is not False
        return Response.json(200, _app_switches(app))

    def _edit_bc_record(self, collection: str) -> Any:
        """Change a customer's or item's fields in place (`blocked`, an item's `type`), by number."""

        def handle(request: Request, params: dict[str, str]) -> Response:
            company = self.app.company
            find = company.customer_by_number if collection == "customers" else company.item_by_number
            update = company.update_customer if collection == "customers" else company.update_item
            record = find(params["number"])
            if record is None:
                return _error(404, "notFound", f"No {collection[:-1]} {params['number']!r}.")
            try:
                return Response.json(200, update(str(record.values["id"]), _body(request), "*"))
            except BcError as exc:
                return _error(exc.status, exc.code, exc.message)

        return handle


def _app_switches(app: Any) -> dict[str, Any]:
    return {
        "clientId": app.client_id,
        "consented": {resource: list(roles) for resource, roles in app.consented.items()},
        "secretExpired": bool(app.expired_secrets),
        "deniedBusinesses": sorted(app.denied_businesses),
        "businessCentralRegistered": app.bc_registered,
    }
