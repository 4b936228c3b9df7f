"""`GET /api/settings`: what this deployment is configured to do, for the portal's settings view.

Only what an administrator needs to check a deployment: businesses, schedules, templates, time
zone, invoice date rule, limits, health; and the booking states and what `{"all": true}` selects,
which the portal reads instead of hard-coding them. Never a secret: no client secret, no certificate, no
storage connection string or key (they are not even read here).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.api.auth import Caller
from shared.api.selection_input import FILTER_FIELDS
from shared.domain import lifecycle
from shared.domain.bc_web_client import environment_url
from shared.domain.models import BookingStatus
from shared.services.directory import CompanyFacts
from shared.services.health import HealthReport
from shared.settings import Settings


def _list_order(status: BookingStatus) -> tuple[bool, bool, bool, int]:
    """What can be selected first, then what is being invoiced, then the rest."""
    return (
        not lifecycle.selectable_by_filter(status),
        not lifecycle.selectable_by_key(status),
        status not in lifecycle.IN_FLIGHT,
        list(BookingStatus).index(status),
    )


def lifecycle_document() -> dict[str, Any]:
    """The states and what `{"all": true}` selects, from the lifecycle: the portal's status list,
    its progress counts and its "Invoice all" button follow the rules instead of copying them."""
    return {
        "states": [str(status) for status in sorted(BookingStatus, key=_list_order)],
        "inFlightStates": [str(status) for status in BookingStatus if status in lifecycle.IN_FLIGHT],
        "selectAll": {"status": str(lifecycle.FILTER_SELECTABLE), "filters": list(FILTER_FIELDS)},
    }


def business_central_document(settings: Settings, company: CompanyFacts) -> dict[str, Any]:
    """The company as people know it: its name, currency and web client (for invoice links)."""
    return {
        "environment": settings.bc_environment,
        "companyId": settings.bc_company_id,
        "companyName": company.name,
        "companyDisplayName": company.display_name,
        "currencyCode": company.currency_code,
        "webClientUrl": environment_url(settings.bc_base_url, settings.tenant_id, settings.bc_environment),
    }


def settings_document(
    settings: Settings,
    health: HealthReport,
    caller: Caller,
    business_names: Mapping[str, str] | None = None,
    company: CompanyFacts | None = None,
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "businesses": list(settings.bookings_business_ids),
        "businessNames": dict(business_names or {}),
        "timeZone": settings.time_zone_name,
        "syncSchedule": settings.sync_schedule,
        "syncLookbackDays": settings.sync_lookback_days,
        "syncCustomers": settings.sync_customers,
        "syncServices": settings.sync_services,
        "customerTemplate": settings.customer_template,
        "itemTemplate": settings.item_template,
        "invoiceDate": str(settings.invoice_date),
        "maxSelection": settings.max_selection,
        "priceSource": str(settings.price_source),
        "reconcileSchedule": settings.reconcile_schedule,
        "retentionDays": settings.retention_days,
        "businessCentral": business_central_document(settings, company or CompanyFacts()),
        "health": {
            "status": "ok" if health.ok else "unhealthy",
            "checks": {check.name: {"ok": check.ok, "detail": check.detail} for check in health.checks},
        },
        "caller": {"id": caller.id, "name": caller.name, "roles": sorted(caller.roles)},
        **lifecycle_document(),
    }
    return document
