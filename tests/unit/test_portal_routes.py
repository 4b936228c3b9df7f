"""The portal answers at `/`; every API function stays under `/api` (host.json routePrefix is "")."""

from __future__ import annotations

import json
from pathlib import Path

import azure.functions as func

import function_app
from devhost.functions import discover_functions
from functions.portal import portal_response
from tests.conftest import product_settings

ROOT = Path(__file__).resolve().parents[2]


def http_routes() -> dict[str, str]:
    # Through the host's discovery: the app's metadata may be read only once per process.
    specs = discover_functions(function_app.app, product_settings("UseDevelopmentStorage=true"))
    return {spec.name: str(spec.trigger.get("route")) for spec in specs if spec.trigger_type == "httpTrigger"}


def test_every_api_function_is_under_api_and_only_the_portal_is_at_the_root() -> None:
    routes = http_routes()
    assert json.loads((ROOT / "host.json").read_text())["extensions"]["http"]["routePrefix"] == ""
    assert routes.pop("portal") == "{*path}"
    assert routes and all(route.startswith("api/") for route in routes.values()), routes


def test_the_portal_serves_its_files_only_with_a_strict_policy() -> None:
    page = portal_response("")
    assert page.status_code == 200 and page.mimetype == "text/html"
    # The policy the browser gets, read directive by directive and written out here by hand (not
    # compared with the constant the header is built from): a weakened policy fails.
    directives = dict(
        part.strip().split(" ", 1) for part in page.headers["Content-Security-Policy"].split(";")
    )
    assert directives == {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": "'self'",
        "connect-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'none'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    assert (page.headers["X-Frame-Options"], page.headers["X-Content-Type-Options"]) == ("DENY", "nosniff")
    assert portal_response("assets/portal.js").mimetype == "text/javascript"
    for path in ("assets/../portal.py", "../function_app.py", "assets/index.html", "api/nothing"):
        response: func.HttpResponse = portal_response(path)
        assert response.status_code == 404, path


def test_the_assets_load_nothing_from_another_origin() -> None:
    assets = ROOT / "functions" / "portal_assets"
    for path in assets.iterdir():
        text = path.read_text(encoding="utf-8")
        assert (
            "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in text
        )
        assert " style=" not in text and "<script>" not in text and "onclick" not in text.lower()
