"""The other query options: `$orderby`, `$select`, `$top`/`$skip`, `Prefer: odata.maxpagesize`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sandbox.odata.evaluate import property_value
from sandbox.odata.lexer import ODataError
from sandbox.odata.syntax import Property


def parse_orderby(text: str, schema: Mapping[str, str], entity_type: str) -> list[tuple[str, bool]]:
    """`number desc, displayName` -> [(property, descending)]."""
    result: list[tuple[str, bool]] = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise ODataError(f"Syntax error in $orderby '{text}'.")
        if words[0] not in schema:
            raise ODataError(f"Could not find a property named '{words[0]}' on type '{entity_type}'.")
        result.append((words[0], len(words) == 2 and words[1].lower() == "desc"))
    return result


def sort_entities(
    entities: list[dict[str, Any]], order: list[tuple[str, bool]], schema: Mapping[str, str]
) -> list[dict[str, Any]]:
    result = list(entities)
    for name, descending in reversed(order):
        prop = Property(name, schema[name])

        def key(entity: dict[str, Any], prop: Property = prop) -> tuple[bool, Any]:
            value = property_value(entity, prop)
            return (value is not None, value if value is not None else 0)

        result.sort(key=key, reverse=descending)
    return result


def parse_select(text: str, schema: Mapping[str, str], entity_type: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ODataError("The $select query option must name at least one property.")
    for name in names:
        if name not in schema:
            raise ODataError(f"Could not find a property named '{name}' on type '{entity_type}'.")
    return names


def parse_non_negative(text: str, option: str) -> int:
    if not text.isdigit():
        raise ODataError(
            f"Invalid value '{text}' for {option} query option found. It must be a non-negative integer."
        )
    return int(text)


def parse_maxpagesize(prefer: str | None) -> int | None:
    """`Prefer: odata.maxpagesize=N` (other preferences are ignored)."""
    if not prefer:
        return None
    for part in prefer.split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "odata.maxpagesize" and value.strip().isdigit() and int(value) > 0:
            return int(value)
    return None
