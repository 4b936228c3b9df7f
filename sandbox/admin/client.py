"""A small typed client of the sandbox admin API, for tests, benchmarks and `make run`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from sandbox.admin.routes import ADMIN_PREFIX
from sandbox.core.timefmt import parse_iso_datetime


class SandboxAdminError(RuntimeError):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"sandbox admin call failed with HTTP {status}: {body}")
        self.status = status
        self.body = body


@dataclass
class SandboxAdmin:
    """A small typed client for the admin API (works in-process and against `python -m sandbox`)."""

    url: str
    ca_path: Path | str
    timeout: float = 30.0

    def __post_init__(self) -> None:
        self._session = requests.Session()
        # Proxies and REQUESTS_CA_BUNDLE from the environment must not redirect or re-trust these calls.
        self._session.trust_env = False

    def close(self) -> None:
        self._session.close()

    def _call(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> Any:
        response = self._session.request(
            method,
            f"{self.url}{ADMIN_PREFIX}{path}",
            data=None if body is None else json.dumps(body),
            headers={"Content-Type": "application/json"} if body is not None else None,
            params=params,
            verify=str(self.ca_path),
            timeout=self.timeout,
        )
        payload = response.json() if response.content else None
        if response.status_code >= 400:
            raise SandboxAdminError(response.status_code, payload)
        return payload

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def info(self) -> dict[str, Any]:
        return self._call("GET", "/info")

    def counters(self) -> dict[str, Any]:
        return self._call("GET", "/counters")

    def reset(
        self, *, counters: bool = True, faults: bool = True, data: bool = False, config: bool = False
    ) -> None:
        self._call("POST", "/reset", {"counters": counters, "faults": faults, "data": data, "config": config})

    def faults(self) -> dict[str, Any]:
        return self._call("GET", "/faults")

    def set_faults(self, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge `patch` into the current fault switches (see `FaultConfig.to_json` for the shape)."""
        return self._call("PATCH", "/faults", patch)

    def replace_faults(self, config: dict[str, Any]) -> dict[str, Any]:
        return self._call("PUT", "/faults", config)

    def config(self) -> dict[str, Any]:
        return self._call("GET", "/config")

    def set_config(self, **values: int) -> dict[str, Any]:
        return self._call("PATCH", "/config", values)

    def state(self, include: list[str] | None = None) -> dict[str, Any]:
        params = {"include": ",".join(include)} if include else None
        return self._call("GET", "/state", params=params)

    def clock(self) -> datetime:
        return parse_iso_datetime(self._call("GET", "/clock")["now"])

    def set_clock(self, now: datetime) -> datetime:
        text = now.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return parse_iso_datetime(self._call("POST", "/clock", {"now": text})["now"])

    def advance_clock(self, seconds: float) -> datetime:
        return parse_iso_datetime(self._call("POST", "/clock", {"advanceSeconds": seconds})["now"])

    def add_appointment(self, business_id: str, appointment: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", f"/graph/businesses/{_segment(business_id)}/appointments", appointment)

    def update_appointment(
        self, business_id: str, appointment_id: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        path = f"/graph/businesses/{_segment(business_id)}/appointments/{_segment(appointment_id)}"
        return self._call("PATCH", path, patch)

    def cancel_appointment(self, business_id: str, appointment_id: str) -> None:
        self._call(
            "DELETE", f"/graph/businesses/{_segment(business_id)}/appointments/{_segment(appointment_id)}"
        )

    def generate_appointments(
        self,
        business_id: str,
        count: int,
        start: datetime | None = None,
        end: datetime | None = None,
        seed: int | None = None,
    ) -> int:
        body: dict[str, Any] = {"count": count}
        if start is not None:
            body["start"] = start.astimezone(UTC).isoformat()
        if end is not None:
            body["end"] = end.astimezone(UTC).isoformat()
        if seed is not None:
            body["seed"] = seed
        return int(self._call("POST", f"/graph/businesses/{_segment(business_id)}/generate", body)["created"])

    def post_invoice(self, invoice_id: str) -> dict[str, Any]:
        return self._call("POST", f"/bc/salesInvoices/{_segment(invoice_id)}/post")

    def set_invoice_status(self, invoice_id: str, status: str) -> dict[str, Any]:
        """`Open`, `Paid`, `Canceled` or `Corrective` for a posted invoice."""
        return self._call("POST", f"/bc/salesInvoices/{_segment(invoice_id)}/status", {"status": status})

    def move_unposted_invoice(self, invoice_id: str, action: str) -> dict[str, Any]:
        """`release`, `sendForApproval`, `approve` or `reopen` an unposted invoice."""
        return self._call("POST", f"/bc/salesInvoices/{_segment(invoice_id)}/{action}")

    def set_allowed_posting_dates(
        self, start: str | None, end: str | None, *, at_creation: bool = False
    ) -> dict[str, Any]:
        body = {"from": start, "to": end, "atCreation": at_creation}
        return self._call("PUT", "/bc/allowedPostingDates", body)

    def mark_invoice_paid(self, invoice_id: str) -> dict[str, Any]:
        return self.set_invoice_status(invoice_id, "Paid")

    def register_client(self, display_name: str, api_roles: list[str]) -> dict[str, Any]:
        """A new client app holding `api_roles` of the product's API: clientId, clientSecret, ..."""
        return self._call("POST", "/entra/apps", {"displayName": display_name, "apiRoles": api_roles})

    def set_api_roles(self, client_id: str, roles: list[str]) -> dict[str, Any]:
        return self._call("PUT", f"/entra/apps/{_segment(client_id)}/apiRoles", {"roles": roles})

    def break_app(self, client_id: str, **switches: Any) -> dict[str, Any]:
        """Setup-check switches of an app: consented={"graph": [...]}, secretExpired=True,
        deniedBusinesses=[...], businessCentralRegistered=False."""
        return self._call("PATCH", f"/entra/apps/{_segment(client_id)}", switches)

    def edit_bc_record(self, collection: str, number: str, fields: dict[str, Any]) -> dict[str, Any]:
        """PATCH a customer's or item's fields by number (`collection`: customers | items)."""
        return self._call("PATCH", f"/bc/{collection}/{_segment(number)}", fields)

    def set_federated_credential(
        self, client_id: str, name: str, *, issuer: str, subject: str, audiences: list[str]
    ) -> dict[str, Any]:
        path = f"/entra/apps/{_segment(client_id)}/federatedCredentials/{_segment(name)}"
        return self._call("PUT", path, {"issuer": issuer, "subject": subject, "audiences": audiences})

    def create_managed_identity(self, display_name: str) -> dict[str, Any]:
        """A new user-assigned managed identity: clientId, principalId."""
        return self._call("POST", "/entra/managedIdentities", {"displayName": display_name})

    def managed_identity_token(self, client_id: str, resource: str) -> dict[str, Any]:
        path = f"/entra/managedIdentities/{_segment(client_id)}/token"
        return self._call("POST", path, {"resource": resource})


def _segment(value: str) -> str:
    return quote(value, safe="")
