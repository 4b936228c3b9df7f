"""Signing in to the API in tests: Entra tokens from the sandbox, and devhost's mock sign-in.

Tests that run a sandbox call the API as scripts do in Azure: a client-credentials token for
`api://{ENTRA_CLIENT_ID}/.default` in `Authorization: Bearer`. Tests without a sandbox sign in
through devhost's mock `/.auth/login/aad` form, as a person does in the browser.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from shared.api.auth import APP_ROLES

DEFAULT_USER = "office@contoso.com"


def api_scope(settings: Mapping[str, str]) -> str:
    return f"api://{settings['ENTRA_CLIENT_ID']}/.default"


def client_credentials_token(
    settings: Mapping[str, str],
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
    scope: str | None = None,
    verify: str | bool = True,
) -> str:
    """A token from the (sandbox's) token endpoint; by default the app's own, for its own API.

    A plain form POST rather than MSAL: MSAL caches a token by wall-clock time, while the sandbox
    issues tokens on its own (manual) clock, so a test that moves that clock needs a fresh one.
    """
    url = f"{settings['ENTRA_AUTHORITY_HOST'].rstrip('/')}/{settings['ENTRA_TENANT_ID']}/oauth2/v2.0/token"
    response = requests.post(
        url,
        data={
            "grant_type": "client_credentials",
            "client_id": client_id or settings["ENTRA_CLIENT_ID"],
            "client_secret": client_secret or settings["ENTRA_CLIENT_SECRET"],
            "scope": scope or api_scope(settings),
        },
        timeout=30,
        verify=verify,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sign_in(
    base_url: str,
    *,
    user: str = DEFAULT_USER,
    roles: Sequence[str] = APP_ROLES,
    session: requests.Session | None = None,
    user_id: str | None = None,
) -> requests.Session:
    """A session signed in through devhost's mock `/.auth/login/aad` form (`base_url`: the host)."""
    session = session or requests.Session()
    form = {"userDetails": user, "userRoles": "\n".join(roles), "post_login_redirect_uri": "/"}
    if user_id:
        form["userId"] = user_id
    response = session.post(
        f"{base_url}/.auth/login/aad",
        data=form,
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 302, response.text
    return session


def forged_principal(user_id: str, name: str, roles: Sequence[str]) -> str:
    """An `X-MS-CLIENT-PRINCIPAL` value as the platform would write it (for forgery attempts)."""
    document: dict[str, Any] = {
        "auth_typ": "aad",
        "name_typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
        "role_typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
        "claims": [
            {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": user_id},
            {"typ": "name", "val": name},
            *({"typ": "roles", "val": role} for role in roles),
        ],
    }
    return base64.b64encode(json.dumps(document).encode()).decode()
