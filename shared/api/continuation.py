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
from shared.domain.listing import Cursor

MAX_TOKEN_LENGTH = 8192
_TOKEN_VERSION = "b2"  # noqa: S105 - a format tag, not a secret
_TOKEN_SHAPE = re.compile(r"^b2\.[A-Za-z0-9_-]{1,8000}\.[A-Za-z0-9_-]{22}$")


class ContinuationTokens:
    """Opaque, signed continuation tokens.

    A token is `b2.<payload>.<mac>`: the payload names the query it belongs to and, per business not
    finished yet, where its list resumes;
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
        cursors = [[business, cursor.to_json() if cursor else None] for business, cursor in position.cursors]
        raw = json.dumps({"q": fingerprint, "c": cursors}, separators=(",", ":")).encode()
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
            cursors = _cursors(document["c"])
        except (ValueError, binascii.Error, KeyError, TypeError):
            raise invalid from None
        if document.get("q") != fingerprint:
            raise InvalidInput.field(
                "continuationToken",
                "belongs to a query with other filters; repeat the same filters or start without it",
            )
        return PagePosition(cursors)


def _cursors(items: object) -> tuple[tuple[str, Cursor | None], ...]:
    if not isinstance(items, list) or not items:
        raise ValueError("no cursors")
    cursors: list[tuple[str, Cursor | None]] = []
    for item in items:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            raise ValueError("not a cursor pair")
        cursors.append((item[0], Cursor.from_json(item[1]) if item[1] is not None else None))
    return tuple(cursors)


def derive_token_key(*material: str) -> bytes:
    """A per-deployment HMAC key for continuation tokens, derived from stable storage settings."""
    digest = hashlib.sha256()
    digest.update(b"bookings-api continuation tokens v1\n")
    for part in material:
        digest.update(part.encode())
        digest.update(b"\n")
    return digest.digest()
