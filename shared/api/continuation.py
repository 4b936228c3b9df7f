"""Opaque, signed continuation tokens for `GET /api/bookings` pages."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re

from shared.api.input import InvalidInput
from shared.domain.filters import PagePosition

MAX_TOKEN_LENGTH = 2048
_TOKEN_VERSION = "b1"  # noqa: S105 - a format tag, not a secret
_TOKEN_SHAPE = re.compile(r"^b1\.[A-Za-z0-9_-]{1,1900}\.[A-Za-z0-9_-]{22}$")


class ContinuationTokens:
    """Opaque, signed continuation tokens.

    A token is `b1.<payload>.<mac>`: the payload names the query it belongs to and where to resume;
    the HMAC (keyed per deployment) makes a tampered or foreign token a clean 400 rather than a
    storage error or a page of some other query. Tokens are not encrypted; they hold no secrets.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the token key must be at least 16 bytes")
        self._key = key

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self._key, f"{_TOKEN_VERSION}.{payload}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()

    def encode(self, fingerprint: str, position: PagePosition) -> str:
        document = {"q": fingerprint, "b": position.business_id, "m": position.marker}
        raw = json.dumps(document, separators=(",", ":")).encode()
        payload = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return f"{_TOKEN_VERSION}.{payload}.{self._mac(payload)}"

    def decode(self, token: str, fingerprint: str) -> PagePosition:
        invalid = InvalidInput.field(
            "continuationToken",
            "is not a token this API issued (it was changed or cut); start again without it",
        )
        if len(token) > MAX_TOKEN_LENGTH or not _TOKEN_SHAPE.match(token):
            raise invalid
        _, payload, mac = token.split(".")
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise invalid
        try:
            document = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (ValueError, binascii.Error):
            raise invalid from None
        marker = document.get("m") if isinstance(document, dict) else None
        if (
            not isinstance(document, dict)
            or not isinstance(document.get("b"), str)
            or not (
                marker is None
                or (isinstance(marker, dict) and all(isinstance(v, str) for v in marker.values()))
            )
        ):
            raise invalid
        if document.get("q") != fingerprint:
            raise InvalidInput.field(
                "continuationToken",
                "belongs to a query with other filters; repeat the same filters or start without it",
            )
        return PagePosition(document["b"], marker)


def derive_token_key(*material: str) -> bytes:
    """A per-deployment HMAC key for continuation tokens, derived from stable storage settings."""
    digest = hashlib.sha256()
    digest.update(b"bookings-api continuation tokens v1\n")
    for part in material:
        digest.update(part.encode())
        digest.update(b"\n")
    return digest.digest()
