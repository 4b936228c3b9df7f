"""`health`: GET /api/health - settings valid and storage reachable (200), else 503."""

from __future__ import annotations

import azure.functions as func

from functions.responses import json_response
from shared import bootstrap
from shared.health import check_health

bp = func.Blueprint()


@bp.function_name("health")
@bp.route(route="health", methods=["GET"])
def health(req: func.HttpRequest) -> func.HttpResponse:
    report = check_health(bootstrap.current_settings, lambda _s: bootstrap.container().probe_storage())
    document = {
        "status": "ok" if report.ok else "unhealthy",
        "checks": {check.name: {"ok": check.ok, "detail": check.detail} for check in report.checks},
    }
    if not report.ok:
        document["failing"] = report.failing
    return json_response(document, status=200 if report.ok else 503)
