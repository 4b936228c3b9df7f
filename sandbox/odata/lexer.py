"""The `$filter` tokenizer and the Edm types of entity properties.

A filter is cut into typed tokens (strings, GUIDs, dates, numbers, names); nothing is ever `eval`ed
and no regular expression is applied to the expression as a whole.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from sandbox.core.timefmt import parse_iso_datetime

# Edm types of entity properties, as the schema of each entity set declares them.
STRING, ENUM, GUID, DECIMAL, INTEGER, BOOLEAN, DATE, DATETIME = (
    "Edm.String",
    "Enum",
    "Edm.Guid",
    "Edm.Decimal",
    "Edm.Int32",
    "Edm.Boolean",
    "Edm.Date",
    "Edm.DateTimeOffset",
)
NUMERIC = {DECIMAL, INTEGER}
NULL = "null"


class ODataError(ValueError):
    """A query option the service cannot parse or apply; the message is the client-facing text."""


# -- tokenizer ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str  # string, guid, datetime, date, number, name, lparen, rparen, comma, end
    text: str
    position: int
    value: Any = None


_GUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?(?:Z|[+-]\d{2}:\d{2})")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME_CHAR = re.compile(r"[A-Za-z0-9_\-.:]")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    length = len(text)
    while position < length:
        char = text[position]
        if char in " \t\r\n":
            position += 1
            continue
        if char in "(),":
            kind = {"(": "lparen", ")": "rparen", ",": "comma"}[char]
            tokens.append(Token(kind, char, position))
            position += 1
            continue
        token = _string(text, position) if char == "'" else _literal(text, position) or _name(text, position)
        tokens.append(token)
        position += len(token.text)
    tokens.append(Token("end", "", length))
    return tokens


def _string(text: str, start: int) -> Token:
    """A quoted string from `start`; a doubled quote stands for one quote."""
    position = start + 1
    pieces: list[str] = []
    while True:
        if position >= len(text):
            raise ODataError(f"There is an unterminated string literal at position {start} in '{text}'.")
        if text[position] == "'":
            if position + 1 < len(text) and text[position + 1] == "'":
                pieces.append("'")
                position += 2
                continue
            position += 1
            break
        pieces.append(text[position])
        position += 1
    return Token("string", text[start:position], start, "".join(pieces))


def _literal(text: str, position: int) -> Token | None:
    """A GUID, date-time, date or number literal at `position`, if one is there."""
    for kind, pattern in (("guid", _GUID), ("datetime", _DATETIME), ("date", _DATE), ("number", _NUMBER)):
        match = pattern.match(text, position)
        if match and not _continues(text, match.end()):
            return Token(kind, match.group(0), position, _literal_value(kind, match.group(0), text))
    return None


def _name(text: str, position: int) -> Token:
    match = _NAME.match(text, position)
    if not match:
        raise ODataError(
            f"Syntax error: character '{text[position]}' is not valid at position {position} in '{text}'."
        )
    return Token("name", match.group(0), position, match.group(0))


def _continues(text: str, position: int) -> bool:
    """A literal glued to more name characters (`2026-01-01abc`) is not that literal."""
    return position < len(text) and bool(_NAME_CHAR.match(text[position]))


def _literal_value(kind: str, text: str, source: str) -> Any:
    try:
        if kind == "guid":
            return str(uuid.UUID(text))
        if kind == "datetime":
            return parse_iso_datetime(text)
        if kind == "date":
            return date.fromisoformat(text)
        return Decimal(text)
    except (ValueError, InvalidOperation):
        raise ODataError(f"Unrecognized literal '{text}' in '{source}'.") from None
