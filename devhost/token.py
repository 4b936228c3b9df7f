"""`python -m devhost.token`: print an access token for the app's own API, for `curl`.

The same client code a script uses in Azure: MSAL client credentials with the scope
`api://{ENTRA_CLIENT_ID}/.default`, against `ENTRA_AUTHORITY_HOST` (the sandbox under `make run`).
Settings come from the environment, else from `.sandbox/settings.json` (written by `make run`),
else from `local.settings.json`. The token goes to stdout only; errors name what failed, never
the secret:

    curl -H "Authorization: Bearer $(.venv/bin/python -m devhost.token)" http://127.0.0.1:7071/api/bookings
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import msal

ROOT = Path(__file__).resolve().parent.parent
NEEDED = ("ENTRA_TENANT_ID", "ENTRA_CLIENT_ID", "ENTRA_CLIENT_SECRET")
CA_SETTINGS = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


def load_settings(environ: Mapping[str, str], root: Path = ROOT) -> dict[str, str]:
    if all(environ.get(name) for name in NEEDED):
        return dict(environ)
    for path in (root / ".sandbox" / "settings.json", root / "local.settings.json"):
        if path.exists():
            document = json.loads(path.read_text(encoding="utf-8"))
            values = document.get("Values", document) if isinstance(document, dict) else {}
            merged = {**{k: str(v) for k, v in values.items()}, **environ}
            # The sandbox's CA bundle (its test CA plus the system's) must win over the machine's.
            for name in CA_SETTINGS:
                if values.get(name):
                    merged[name] = str(values[name])
            return merged
    return dict(environ)


def api_token(settings: Mapping[str, str]) -> str:
    missing = [name for name in NEEDED if not settings.get(name)]
    if missing:
        raise RuntimeError(f"missing setting(s) {', '.join(missing)} (start `make run` first)")
    host = settings.get("ENTRA_AUTHORITY_HOST", "https://login.microsoftonline.com").rstrip("/")
    known = (urlsplit(host).hostname or "").endswith(
        ("microsoftonline.com", "microsoftonline.us", "chinacloudapi.cn")
    )
    app = msal.ConfidentialClientApplication(
        settings["ENTRA_CLIENT_ID"],
        client_credential=settings["ENTRA_CLIENT_SECRET"],
        authority=f"{host}/{settings['ENTRA_TENANT_ID']}",
        instance_discovery=known,
    )
    result = app.acquire_token_for_client(scopes=[f"api://{settings['ENTRA_CLIENT_ID']}/.default"])
    if "access_token" not in result:
        description = str(result.get("error_description", "")).splitlines()[0:1]
        raise RuntimeError(f"{result.get('error', 'no token')}: {' '.join(description)}")
    return str(result["access_token"])


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m devhost.token", description=__doc__.splitlines()[0]).parse_args(
        argv
    )
    settings = load_settings(os.environ)
    # The sandbox's test CA: requests (inside MSAL) must trust it.
    for name in CA_SETTINGS:
        if settings.get(name):
            os.environ[name] = settings[name]
    try:
        token = api_token(settings)
    except Exception as exc:  # one clear line, never a stack trace or the secret
        secret = settings.get("ENTRA_CLIENT_SECRET") or ""
        message = str(exc).replace(secret, "***") if secret else str(exc)
        print(f"devhost.token: no token: {message}", file=sys.stderr)
        return 1
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
