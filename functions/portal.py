"""The portal: `GET /` (the "Bookings Not Invoiced" page) and its assets, served by the app itself.

Plain files from `functions/portal_assets/` (no build step), each with a strict
Content-Security-Policy (everything from this origin only, no inline script or style, no framing)
and the usual hardening headers. The page needs no role: it signs in through App Service
Authentication (`/.auth/login/aad`) and every datum it shows comes from the API, which checks roles.
"""

from __future__ import annotations

from pathlib import Path

import azure.functions as func

bp = func.Blueprint()

ASSETS = Path(__file__).with_name("portal_assets")
_TYPES = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
}
# Only these files are served, read once: a path is a key in this table, never a file path.
_FILES: dict[str, tuple[bytes, str]] = {
    f"assets/{path.name}": (path.read_bytes(), _TYPES[path.suffix])
    for path in sorted(ASSETS.iterdir())
    if path.suffix in _TYPES and path.name != "index.html"
}
_INDEX = (ASSETS / "index.html").read_bytes()

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


def portal_response(path: str) -> func.HttpResponse:
    """The page for `/`, an asset for `/assets/<name>`, 404 for anything else."""
    path = path.strip("/")
    if path in ("", "index.html"):
        body, mimetype = _INDEX, "text/html"
    elif path in _FILES:
        body, mimetype = _FILES[path]
    else:
        return func.HttpResponse(
            "Not found", status_code=404, mimetype="text/plain", charset="utf-8", headers=SECURITY_HEADERS
        )
    return func.HttpResponse(
        body, status_code=200, mimetype=mimetype, charset="utf-8", headers=dict(SECURITY_HEADERS)
    )


@bp.function_name("portal")
@bp.route(route="{*path}", methods=["GET"])
def portal(req: func.HttpRequest) -> func.HttpResponse:
    return portal_response(req.route_params.get("path") or "")
