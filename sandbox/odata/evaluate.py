"""Evaluation of a parsed `$filter` against an entity."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from sandbox.core.timefmt import parse_iso_datetime
from sandbox.odata.lexer import DATE, DATETIME, ENUM, GUID, NUMERIC
from sandbox.odata.syntax import Call, Compare, In, Literal, Logical, Node, Property, parse_filter

_XML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def decode_enum(value: str) -> str:
    """`Non_x002D_Inventory` -> `Non-Inventory`, `_x0020_` -> ` ` (OData's XML name escaping)."""
    return _XML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)


def property_value(entity: Mapping[str, Any], prop: Property) -> Any:
    value = entity.get(prop.name)
    if value is None:
        return None
    if prop.type == ENUM:
        return decode_enum(str(value))
    if prop.type == GUID:
        return str(value).lower()
    if prop.type in NUMERIC:
        return Decimal(str(value))
    if prop.type == DATE:
        return date.fromisoformat(str(value))
    if prop.type == DATETIME:
        return parse_iso_datetime(str(value))
    return value


def _evaluate(node: Node, entity: Mapping[str, Any]) -> Any:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Property):
        return property_value(entity, node)
    if isinstance(node, Call):
        return _call(node, entity)
    if isinstance(node, Compare):
        return _compare(node, entity)
    if isinstance(node, In):
        value = _evaluate(node.operand, entity)
        enum = _involves_enum(node.operand)
        wanted = [decode_enum(v.value) if enum and isinstance(v.value, str) else v.value for v in node.values]
        return value is not None and value in wanted
    if isinstance(node, Logical):
        if node.op == "and":
            return all(_evaluate(o, entity) is True for o in node.operands)
        return any(_evaluate(o, entity) is True for o in node.operands)
    return _evaluate(node.operand, entity) is not True


def _call(node: Call, entity: Mapping[str, Any]) -> Any:
    args = [_evaluate(arg, entity) for arg in node.args]
    if any(arg is None for arg in args):
        return None
    if node.name == "tolower":
        return str(args[0]).lower()
    if node.name == "toupper":
        return str(args[0]).upper()
    if node.name == "trim":
        return str(args[0]).strip()
    if node.name == "startswith":
        return str(args[0]).startswith(str(args[1]))
    if node.name == "endswith":
        return str(args[0]).endswith(str(args[1]))
    return str(args[1]) in str(args[0])


def _compare(node: Compare, entity: Mapping[str, Any]) -> Any:
    left = _evaluate(node.left, entity)
    right = _evaluate(node.right, entity)
    if isinstance(right, str) and _involves_enum(node.left):
        right = decode_enum(right)
    if node.op == "eq":
        return left == right
    if node.op == "ne":
        return left != right
    if left is None or right is None:
        return False
    try:
        return {
            "gt": left > right,
            "ge": left >= right,
            "lt": left < right,
            "le": left <= right,
        }[node.op]
    except TypeError:
        return False


def _involves_enum(node: Node) -> bool:
    if isinstance(node, Property):
        return node.type == ENUM
    if isinstance(node, Call):
        return any(_involves_enum(arg) for arg in node.args)
    return False


def compile_filter(
    text: str, schema: Mapping[str, str], entity_type: str
) -> Callable[[Mapping[str, Any]], bool]:
    tree = parse_filter(text, schema, entity_type)
    return lambda entity: _evaluate(tree, entity) is True
