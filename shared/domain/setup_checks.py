"""The setup check's rules: what each answer of Entra, Graph and Business Central means, and the fix.

Pure functions from what a service answered (`TokenAnswer`, `ServiceAnswer`, `RunRecord`) to a
`Check`: a name, a status, a detail and a `fix` sentence an administrator can act on. The names,
statuses and fix sentences are public interface (`GET /api/setup-check`, `make check`).

Sources for the answers modelled here (see also `sandbox/FIDELITY.md`, "Setup check"):
- Entra error codes: Learn "Microsoft Entra authentication and authorization error codes"
  (AADSTS700016 unknown application, AADSTS7000215 invalid secret, AADSTS7000222 expired secret,
  AADSTS65001 consent, AADSTS90002 tenant not found, AADSTS500011 resource not in the tenant,
  AADSTS700027 certificate not registered). With client credentials and no admin consent Entra
  usually *issues* the token, only without a `roles` claim, and the resource answers 401/403:
  both shapes are handled (a token without the needed role fails `graph-token`/`bc-token`).
- Graph: `GET /solutions/bookingBusinesses/{id}` needs the application permission
  `Bookings.Read.All` (or `BookingsAppointment.ReadWrite.All`); 403 when the app may not read the
  business, 404 `itemNotFound` when there is no such business.
- Business Central: Learn "Using service-to-service authentication": the app is added on the page
  "Microsoft Entra Applications" (State Enabled, permission sets, Grant Consent) and holds the
  application permission `API.ReadWrite.All`; otherwise BC answers 401
  `Authentication_InvalidCredentials`, and 403 when the permission sets do not allow a read.
- Items: API v2.0 `type` is `Inventory` | `Service` | `Non-Inventory` (JSON `Non_x002D_Inventory`),
  `blocked` a boolean; customers' `blocked` is blank (`_x0020_`) | `Ship` | `Invoice` | `All`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

OK = "ok"
WARNING = "warning"
FAILED = "failed"
SKIPPED = "skipped"
STATUS_ORDER = {FAILED: 0, WARNING: 1, SKIPPED: 2, OK: 3}

# The application permissions `GET /solutions/bookingBusinesses/{id}` (and calendarView) accept
# (Graph docs, bookingbusiness-get-permissions.md); Bookings.ReadWrite.All alone is not enough.
GRAPH_ROLES = frozenset({"Bookings.Read.All", "BookingsAppointment.ReadWrite.All"})
BC_ROLES = frozenset({"API.ReadWrite.All"})
BC_PERMISSION_SETS = (
    "that let it read and create customers, items and sales invoices in the company (D365 BASIC, "
    "D365 CUSTOMER, EDIT, D365 ITEM, EDIT and D365 SALES DOC, EDIT, or D365 BUS FULL ACCESS)"
)

_CONSENT = (
    "In the Microsoft Entra admin center open App registrations > the app (ENTRA_CLIENT_ID) > "
    "API permissions, add the application permission {permission} of {api} and choose "
    "'Grant admin consent' (a Global Administrator or Privileged Role Administrator must do it)."
)
_BC_ENTRA_APPS = (
    "In Business Central open the page 'Microsoft Entra Applications', add the app's client id "
    "(ENTRA_CLIENT_ID), set State to Enabled, assign permission sets "
    + BC_PERMISSION_SETS
    + " and choose 'Grant Consent'; the app registration also needs the application permission "
    "API.ReadWrite.All of Dynamics 365 Business Central with admin consent."
)


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class TokenAnswer:
    """What Entra answered to a client-credentials request (never the token or the secret)."""

    error: str = ""  # MSAL's error ("invalid_client", ...); empty when a token was issued
    description: str = ""
    roles: tuple[str, ...] = ()
    transient: bool = False

    @property
    def issued(self) -> bool:
        return not self.error


@dataclass(frozen=True)
class ServiceAnswer:
    """What one read against Graph or Business Central answered. `status` None: no answer."""

    status: int | None
    code: str = ""
    message: str = ""
    record: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class RunRecord:
    """How a timer's last run ended, from its stored run state."""

    ran_at: datetime | None
    outcome: str | None  # "succeeded" | "failed"
    error: str = ""
    scope: str = ""  # which business (sync) or company (reconcile)


def aadsts_code(description: str) -> int | None:
    match = re.search(r"AADSTS(\d+)", description or "")
    return int(match.group(1)) if match else None


def _first_sentence(text: str, limit: int = 300) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line[:limit]


_AADSTS_FIXES: dict[int, tuple[str, str]] = {
    700016: (
        "the application ENTRA_CLIENT_ID is unknown in tenant ENTRA_TENANT_ID (AADSTS700016)",
        "Compare ENTRA_CLIENT_ID and ENTRA_TENANT_ID with the 'Application (client) ID' and "
        "'Directory (tenant) ID' on the app registration's Overview page in the Microsoft Entra "
        "admin center; the app must be registered in that tenant.",
    ),
    7000215: (
        "the client secret is not a valid secret of the app (AADSTS7000215)",
        "Set ENTRA_CLIENT_SECRET to the secret's Value (not its Secret ID): in the Microsoft Entra admin "
        "center open App registrations > the app > Certificates & secrets and create a new client secret "
        "if the value is lost.",
    ),
    7000222: (
        "the client secret has expired (AADSTS7000222)",
        "Create a new client secret (Microsoft Entra admin center > App registrations > the app > "
        "Certificates & secrets), put its Value into ENTRA_CLIENT_SECRET (or the Key Vault secret it "
        "references) and restart the app; consider a certificate instead.",
    ),
    65001: (
        "the app has no admin consent (AADSTS65001)",
        "",  # filled per resource: which permission of which API
    ),
    90002: (
        "the tenant ENTRA_TENANT_ID does not exist (AADSTS90002)",
        "Set ENTRA_TENANT_ID to the 'Directory (tenant) ID' (a GUID) from the Microsoft Entra admin center.",
    ),
    900023: (
        "ENTRA_TENANT_ID is not a valid tenant id (AADSTS900023)",
        "Set ENTRA_TENANT_ID to the 'Directory (tenant) ID' (a GUID) from the Microsoft Entra admin center.",
    ),
    700027: (
        "the certificate is not registered on the app, or its signature failed (AADSTS700027)",
        "Upload the public certificate of ENTRA_CLIENT_CERTIFICATE_PATH under App registrations > the app > "
        "Certificates & secrets, or point the setting at the certificate registered there.",
    ),
    700024: (
        "the client assertion is outside its valid time range (AADSTS700024)",
        "Check the clock of the machine running the app, then try again.",
    ),
    7000218: (
        "no credential was sent (AADSTS7000218)",
        "Set ENTRA_CLIENT_SECRET or ENTRA_CLIENT_CERTIFICATE_PATH.",
    ),
}


def token_check(name: str, api: str, permission: str, answer: TokenAnswer, needed: frozenset[str]) -> Check:
    """`graph-token` / `bc-token`: could the app get a token, and does it carry the permission?"""
    consent_fix = _CONSENT.format(permission=permission, api=api)
    if answer.issued:
        held = sorted(set(answer.roles) & needed)
        if held:
            return Check(name, OK, f"token issued with {', '.join(held)}")
        roles = ", ".join(sorted(answer.roles)) or "none"
        return Check(
            name,
            FAILED,
            f"a token was issued but without the application permission {permission} (roles: {roles}): "
            "admin consent is missing, so every request will be refused",
            consent_fix,
        )
    code = aadsts_code(answer.description)
    if code in _AADSTS_FIXES:
        detail, fix = _AADSTS_FIXES[code]
        return Check(name, FAILED, f"Entra refused the token: {detail}", fix or consent_fix)
    if code == 500011:
        return Check(
            name,
            FAILED,
            f"Entra refused the token: {api} is not available in tenant ENTRA_TENANT_ID (AADSTS500011)",
            f"Check ENTRA_TENANT_ID; the tenant must have {api} (for Business Central: an environment in "
            "that tenant). " + consent_fix,
        )
    if answer.transient:
        return Check(
            name,
            WARNING,
            f"Entra did not answer: {_first_sentence(answer.description) or answer.error}",
            "Check ENTRA_AUTHORITY_HOST and the app's outbound network, then check again.",
        )
    detail = f"Entra refused the token: {answer.error}: {_first_sentence(answer.description)}"
    return Check(
        name,
        FAILED,
        detail,
        "Compare ENTRA_TENANT_ID, ENTRA_CLIENT_ID and the credential with the app registration in the "
        "Microsoft Entra admin center.",
    )


def skipped(name: str, why: str) -> Check:
    return Check(name, SKIPPED, why)


def _unanswered(name: str, service: str, answer: ServiceAnswer) -> Check:
    if answer.status is None:
        what = answer.message or "no answer"
        return Check(name, WARNING, f"{service} did not answer: {what}", "Check again in a minute.")
    return Check(
        name,
        WARNING,
        f"{service} answered {answer.status} {answer.code}: {_first_sentence(answer.message)}",
        "A temporary problem of the service: check again in a minute.",
    )


def graph_business_check(business_id: str, answer: ServiceAnswer) -> Check:
    """`graph-business:<id>`: may the app read this Bookings business?"""
    name = f"graph-business:{business_id}"
    if answer.status == 200:
        shown = str((answer.record or {}).get("displayName") or business_id)
        return Check(name, OK, f"readable: {shown}")
    if answer.status in (401, 403):
        return Check(
            name,
            FAILED,
            f"Graph refused to read the business ({answer.status} {answer.code}): the app lacks the "
            "application permission Bookings.Read.All, or an Exchange application access policy "
            "excludes this mailbox",
            _CONSENT.format(permission="Bookings.Read.All", api="Microsoft Graph")
            + " If consent is granted, ask the Exchange administrator whether an application access "
            "policy (or RBAC for Applications) limits the app to other mailboxes.",
        )
    if answer.status == 404:
        return Check(
            name,
            FAILED,
            f"Graph has no Bookings business {business_id!r} ({answer.code or 'itemNotFound'})",
            "BOOKINGS_BUSINESS_IDS takes each business's id, which is its mailbox address, like "
            "contosolunch@contoso.onmicrosoft.com (Bookings web app > the business > Business "
            "information, or the address in its booking page URL); separate several with commas.",
        )
    return _unanswered(name, "Graph", answer)


def bc_company_check(
    answer: ServiceAnswer, companies: ServiceAnswer | None, environment: str, company_id: str
) -> Check:
    """`bc-company`: the environment and company answer. `companies` is the list read after a 404."""
    name = "bc-company"
    if answer.status == 200:
        record = answer.record or {}
        shown = record.get("displayName") or record.get("name") or company_id
        return Check(name, OK, f"company {shown!s} in environment {environment} answers")
    if _names_missing_environment(answer.code):  # whatever its status (404, 400, ...)
        return _wrong_environment(answer, environment)
    if answer.status in (401, 403):
        what = "does not know the app" if answer.status == 401 else "does not let the app read the company"
        return Check(
            name,
            FAILED,
            f"Business Central {what} "
            f"({answer.status} {answer.code}: {_first_sentence(answer.message, 160)})",
            _BC_ENTRA_APPS,
        )
    if answer.status == 404:
        if companies is not None and companies.status == 200:
            rows = (companies.record or {}).get("value") or []
            listed = "; ".join(
                f"{row.get('name') or row.get('displayName')}: {row.get('id')}"
                for row in rows[:10]
                if isinstance(row, Mapping)
            )
            return Check(
                name,
                FAILED,
                f"environment {environment} has no company {company_id}",
                "Set BC_COMPANY_ID to the id of the company to invoice in"
                + (f" (this environment has {listed})" if listed else "")
                + "; GET /api/v2.0/companies lists them.",
            )
        return _wrong_environment(answer, environment)
    return _unanswered(name, "Business Central", answer)


def _names_missing_environment(code: str) -> bool:
    """Codes Business Central uses for an unknown tenant or environment (e.g. `Internal_TenantNotFound`);
    its documentation does not list them all, so any such name counts."""
    lowered = (code or "").lower()
    return "tenantnotfound" in lowered or "environmentnotfound" in lowered or "noenvironment" in lowered


def _wrong_environment(answer: ServiceAnswer, environment: str) -> Check:
    return Check(
        "bc-company",
        FAILED,
        f"Business Central has no environment {environment!r} in tenant ENTRA_TENANT_ID "
        f"({answer.status} {answer.code}: {_first_sentence(answer.message, 160)})",
        "Set BC_ENVIRONMENT to the environment's name exactly as the Business Central admin center "
        "lists it (for example Production), and check ENTRA_TENANT_ID.",
    )


def customer_template_check(number: str, answer: ServiceAnswer) -> Check:
    name = "bc-customer-template"
    if answer.status != 200:
        return _unanswered(name, "Business Central", answer)
    record = answer.record
    if record is None:
        return Check(
            name,
            FAILED,
            f"CUSTOMER_TEMPLATE {number!r} is no customer of the company",
            "Set CUSTOMER_TEMPLATE to the No. of an existing customer whose payment terms, currency, tax "
            "and posting setup new customers should copy, or create that customer in Business Central.",
        )
    blocked = str(record.get("blocked") or "").replace("_x0020_", " ").strip()
    note = (
        f"; it is blocked ({blocked}), as a template should be (new customers do not copy Blocked)"
        if blocked
        else ""
    )
    return Check(name, OK, f"customer {number} exists{note}")


def item_template_check(number: str, answer: ServiceAnswer) -> Check:
    name = "bc-item-template"
    if answer.status != 200:
        return _unanswered(name, "Business Central", answer)
    record = answer.record
    if record is None:
        return Check(
            name,
            FAILED,
            f"ITEM_TEMPLATE {number!r} is no item of the company",
            "Set ITEM_TEMPLATE to the No. of an existing item of type Service whose unit of measure, tax "
            "group and posting groups new items should copy, or create that item in Business Central.",
        )
    kind = str(record.get("type") or "").replace("_x002D_", "-")
    if kind != "Service":
        return Check(
            name,
            FAILED,
            f"ITEM_TEMPLATE {number!r} is of type {kind or 'unknown'}, not Service; the items the app "
            "creates are Services and would copy the wrong unit of measure and posting groups",
            "Set ITEM_TEMPLATE to an item of type Service, or change the item's Type to Service in "
            "Business Central.",
        )
    note = (
        ", blocked, as a template should be (new items do not copy Blocked)"
        if record.get("blocked") is True
        else ""
    )
    return Check(name, OK, f"item {number} exists, type Service{note}")


def poison_check(depth: int) -> Check:
    if depth <= 0:
        return Check("poison-queue", OK, "no poison messages")
    return Check(
        "poison-queue",
        WARNING,
        f"{depth} message(s) on bookings-to-invoice-poison: their bookings failed five times",
        "Open the portal's list with status Failed to see each booking's reason, fix the cause (often a "
        "failed check above), and select them again; docs/operations.md, 'Poison messages', explains "
        "how to clear the queue.",
    )


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "never"


def sync_check(records: Sequence[RunRecord], schedule: str) -> Check:
    name = "last-sync"
    ran = [r for r in records if r.ran_at is not None]
    if not ran:
        return Check(
            name,
            WARNING,
            f"no sync has run yet (SYNC_SCHEDULE {schedule})",
            "Wait for the next scheduled run, or run sync_bookings now "
            "(POST /admin/functions/sync_bookings).",
        )
    failed = [r for r in ran if r.outcome == "failed"]
    latest = max(r.ran_at for r in ran if r.ran_at is not None)
    if failed:
        first = failed[0]
        return Check(
            name,
            FAILED,
            f"the last sync of {first.scope} failed at {_when(first.ran_at)}: {_first_sentence(first.error)}",
            "Fix the failed check above that names the cause (token, permission or business id); the next "
            "run catches up on everything missed.",
        )
    never = [r.scope for r in records if r.ran_at is None]
    if never:
        return Check(
            name,
            WARNING,
            f"last sync {_when(latest)}; not yet synced: {', '.join(never)}",
            "The next scheduled run reads the new business(es); run sync_bookings now to see them at once.",
        )
    return Check(name, OK, f"last sync {_when(latest)}, succeeded for {len(ran)} business(es)")


def reconcile_check(record: RunRecord | None, schedule: str) -> Check:
    name = "last-reconcile"
    if record is None or record.ran_at is None:
        return Check(
            name,
            WARNING,
            f"reconcile_invoices has not run yet (RECONCILE_SCHEDULE {schedule})",
            "Wait for the next scheduled run, or run reconcile_invoices now "
            "(POST /admin/functions/reconcile_invoices).",
        )
    if record.outcome == "failed":
        return Check(
            name,
            FAILED,
            f"the last reconcile failed at {_when(record.ran_at)}: {_first_sentence(record.error)}",
            "Fix the failed Business Central check above; the next run catches up from its watermark.",
        )
    return Check(name, OK, f"last reconcile {_when(record.ran_at)}, succeeded")


def ordered(checks: Sequence[Check]) -> list[Check]:
    """Failed first, then warnings, skipped, ok; stable within a status."""
    return sorted(checks, key=lambda check: STATUS_ORDER.get(check.status, 9))
