"""Who is calling: the minimal reader of App Service Authentication's `X-MS-CLIENT-PRINCIPAL` header.

The header is base64 of JSON `{"auth_typ", "claims": [{"typ", "val"}, ...], ...}`, set by the
platform (or by devhost playing it) after the caller signed in; clients cannot forge it because the
platform strips any copy they send. Only the object id and the display name are read here. This one
function is meant to be swapped for the full auth module (roles, 401/403) without touching callers.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from shared.domain.models import Caller

PRINCIPAL_HEADER = "x-ms-client-principal"
OBJECT_ID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
NAME_CLAIMS = ("name", "preferred_username")
MAX_HEADER_LENGTH = 16_384
MAX_VALUE_LENGTH = 256

__all__ = ["Caller", "caller_from_headers"]


def caller_from_headers(headers: Mapping[str, str]) -> Caller | None:
    """The caller the platform vouches for, or None (no header, or one that cannot be read)."""
    raw = _header(headers)
    if not raw or len(raw) > MAX_HEADER_LENGTH:
        return None
    try:
        document = json.loads(base64.b64decode(raw + "=" * (-len(raw) % 4), validate=False))
    except (binascii.Error, ValueError):
        return None
    claims = _claims(document)
    object_id = _first(claims, OBJECT_ID_CLAIMS)
    name = _first(claims, NAME_CLAIMS)
    if object_id is None and name is None:
        return None
    return Caller(object_id=object_id, name=name)


def _header(headers: Mapping[str, str]) -> str | None:
    for name, value in headers.items():
        if name.lower() == PRINCIPAL_HEADER:
            return value.strip()
    return None


def _claims(document: Any) -> dict[str, str]:
    if not isinstance(document, dict) or not isinstance(document.get("claims"), list):
        return {}
    claims: dict[str, str] = {}
    for claim in document["claims"]:
        if (
            isinstance(claim, dict)
            and isinstance(claim.get("typ"), str)
            and isinstance(claim.get("val"), str)
        ):
            claims.setdefault(claim["typ"], claim["val"])
    return claims


def _first(claims: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = claims.get(name, "").strip()
        if value:
            return value[:MAX_VALUE_LENGTH]
    return None
