"""`GET /api/settings`: what this deployment is configured to do, for the portal's settings view.

Only what an administrator needs to check a deployment: businesses, schedules, templates, time
zone, invoice date rule, limits, health. Never a secret: no client secret, no certificate, no
storage connection string or key (they are not even read here).
"""

from __future__ import annotations

from typing import Any

from shared.api.auth import Caller
from shared.services.health import HealthReport
from shared.settings import Settings

# Settings other issues add (reconcile_invoices); shown once the app has them.
_OPTIONAL = {"reconcileSchedule": "reconcile_schedule", "retentionDays": "retention_days"}


def settings_document(settings: Settings, health: HealthReport, caller: Caller) -> dict[str, Any]:
    document: dict[str, Any] = {
        "businesses": list(settings.bookings_business_ids),
        "timeZone": settings.time_zone_name,
        "syncSchedule": settings.sync_schedule,
        "syncLookbackDays": settings.sync_lookback_days,
        "syncCustomers": settings.sync_customers,
        "syncServices": settings.sync_services,
        "customerTemplate": settings.customer_template,
        "itemTemplate": settings.item_template,
        "invoiceDate": str(settings.invoice_date),
        "maxSelection": settings.max_selection,
        "businessCentral": {"environment": settings.bc_environment, "companyId": settings.bc_company_id},
        "health": {
            "status": "ok" if health.ok else "unhealthy",
            "checks": {check.name: {"ok": check.ok, "detail": check.detail} for check in health.checks},
        },
        "caller": {"id": caller.id, "name": caller.name, "roles": sorted(caller.roles)},
    }
    for name, attribute in _OPTIONAL.items():
        value = getattr(settings, attribute, None)
        if value is not None:
            document[name] = value
    return document
