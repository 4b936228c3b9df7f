"""The OData v4 query options Business Central's API pages accept: `$filter`, `$orderby`,
`$select`, `$top`, `$skip`.

`$filter` is tokenized and parsed into a small typed syntax tree and evaluated against entities;
nothing is ever `eval`ed and no regular expression is applied to the expression as a whole. Like
Business Central, which turns a filter into field filters on a table, every comparison must put a
property (or `tolower`/`toupper`/`trim` of one) on one side and a literal on the other: a
tautology such as `1 eq 1` is a syntax error, so a client that forgot to double a quote
(`email eq 'x' or 1 eq 1'`) gets a 400 rather than every record.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sandbox.timefmt import parse_iso_datetime

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
_NUMERIC = {DECIMAL, INTEGER}
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
        if char == "'":
            start = position
            position += 1
            pieces: list[str] = []
            while True:
                if position >= length:
                    raise ODataError(
                        f"There is an unterminated string literal at position {start} in '{text}'."
                    )
                if text[position] == "'":
                    if position + 1 < length and text[position + 1] == "'":
                        pieces.append("'")
                        position += 2
                        continue
                    position += 1
                    break
                pieces.append(text[position])
                position += 1
            tokens.append(Token("string", text[start:position], start, "".join(pieces)))
            continue
        for kind, pattern in (("guid", _GUID), ("datetime", _DATETIME), ("date", _DATE), ("number", _NUMBER)):
            match = pattern.match(text, position)
            if match and not _continues(text, match.end()):
                tokens.append(
                    Token(kind, match.group(0), position, _literal_value(kind, match.group(0), text))
                )
                position = match.end()
                break
        else:
            match = _NAME.match(text, position)
            if not match:
                raise ODataError(
                    f"Syntax error: character '{char}' is not valid at position {position} in '{text}'."
                )
            tokens.append(Token("name", match.group(0), position, match.group(0)))
            position = match.end()
    tokens.append(Token("end", "", length))
    return tokens


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


# -- syntax tree ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    value: Any
    type: str


@dataclass(frozen=True)
class Property:
    name: str
    type: str


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Node, ...]
    type: str


@dataclass(frozen=True)
class Compare:
    op: str
    left: Node
    right: Node
    type: str = BOOLEAN


@dataclass(frozen=True)
class In:
    operand: Node
    values: tuple[Literal, ...]
    type: str = BOOLEAN


@dataclass(frozen=True)
class Logical:
    op: str
    operands: tuple[Node, ...]
    type: str = BOOLEAN


@dataclass(frozen=True)
class Not:
    operand: Node
    type: str = BOOLEAN


Node = Literal | Property | Call | Compare | In | Logical | Not

_COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}
_KEYWORDS = _COMPARISONS | {"and", "or", "not", "in", "true", "false", "null"}
DISTINCT_OR = "The 'OR' operator is not supported on distinct fields on an OData filter."
# name -> (argument types, result type); STRING arguments accept enums too.
_FUNCTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "tolower": ((STRING,), STRING),
    "toupper": ((STRING,), STRING),
    "trim": ((STRING,), STRING),
    "startswith": ((STRING, STRING), BOOLEAN),
    "endswith": ((STRING, STRING), BOOLEAN),
    "contains": ((STRING, STRING), BOOLEAN),
}


class _Parser:
    def __init__(self, text: str, schema: Mapping[str, str], entity_type: str) -> None:
        self.text = text
        self.schema = schema
        self.entity_type = entity_type
        self.tokens = tokenize(text)
        self.index = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def _advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def _is_keyword(self, word: str) -> bool:
        return self.current.kind == "name" and self.current.text == word

    def _syntax_error(self, token: Token | None = None) -> ODataError:
        token = token or self.current
        if token.kind == "end":
            return ODataError(f"Syntax error: unexpected end of expression in '{self.text}'.")
        return ODataError(f"Syntax error at position {token.position} in '{self.text}'.")

    def parse(self) -> Node:
        node = self._or()
        if self.current.kind != "end":
            raise self._syntax_error()
        if node.type != BOOLEAN:
            raise ODataError(
                f"The $filter expression must evaluate to a single boolean value: '{self.text}'."
            )
        return node

    def _or(self) -> Node:
        operands = [self._and()]
        while self._is_keyword("or"):
            self._advance()
            operands.append(self._and())
        if len(operands) == 1:
            return operands[0]
        # Business Central turns a filter into AL field filters: `a|b` works on one field only.
        if len(set().union(*(_property_names(o) for o in operands))) > 1:
            raise ODataError(DISTINCT_OR)
        return Logical("or", tuple(self._boolean(o) for o in operands))

    def _and(self) -> Node:
        operands = [self._not()]
        while self._is_keyword("and"):
            self._advance()
            operands.append(self._not())
        return (
            operands[0] if len(operands) == 1 else Logical("and", tuple(self._boolean(o) for o in operands))
        )

    def _not(self) -> Node:
        if self._is_keyword("not"):
            self._advance()
            return Not(self._boolean(self._not()))
        return self._predicate()

    def _boolean(self, node: Node) -> Node:
        if node.type != BOOLEAN:
            raise ODataError(f"A boolean expression was expected in '{self.text}'.")
        if not _has_property(node):
            raise ODataError(f"Syntax error: the expression does not refer to a property in '{self.text}'.")
        return node

    def _predicate(self) -> Node:
        if self.current.kind == "lparen":
            self._advance()
            inner = self._or()
            if self.current.kind != "rparen":
                raise self._syntax_error()
            self._advance()
            return inner
        left = self._value()
        if self._is_keyword("in"):
            self._advance()
            return self._in(left)
        if self.current.kind == "name" and self.current.text in _COMPARISONS:
            operator = self._advance().text
            right = self._value()
            return self._comparison(operator, left, right)
        return self._boolean(left)

    def _comparison(self, operator: str, left: Node, right: Node) -> Node:
        left_prop, right_prop = _has_property(left), _has_property(right)
        if left_prop == right_prop:
            raise ODataError(
                f"Syntax error: a comparison must compare a property with a literal value in '{self.text}'."
            )
        prop, literal = (left, right) if left_prop else (right, left)
        if not isinstance(literal, Literal):
            raise ODataError(f"Syntax error: a literal value was expected in '{self.text}'.")
        literal = self._coerce(prop.type, literal, operator)
        if not left_prop:
            operator = {"gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}.get(operator, operator)
        return Compare(operator, prop, literal)

    def _in(self, operand: Node) -> Node:
        """`number in ('C00010', 'C00020')` (Business Central since 2024 release wave 1)."""
        if not _has_property(operand):
            raise ODataError(f"Syntax error: 'in' must be applied to a property in '{self.text}'.")
        if self.current.kind != "lparen":
            raise self._syntax_error()
        self._advance()
        values: list[Literal] = []
        while True:
            value = self._value()
            if not isinstance(value, Literal) or value.type == NULL:
                raise ODataError(f"Syntax error: 'in' takes a list of literal values in '{self.text}'.")
            values.append(self._coerce(operand.type, value, "eq"))
            if self.current.kind == "comma":
                self._advance()
                continue
            if self.current.kind != "rparen":
                raise self._syntax_error()
            self._advance()
            return In(operand, tuple(values))

    def _coerce(self, target: str, literal: Literal, operator: str) -> Literal:
        if literal.type == NULL:
            if operator not in ("eq", "ne"):
                raise ODataError(f"The operator '{operator}' cannot be applied to null in '{self.text}'.")
            return literal
        if target in (STRING, ENUM) and literal.type == STRING:
            return literal
        if target == GUID and literal.type in (GUID, STRING):
            try:
                return Literal(str(uuid.UUID(str(literal.value))), GUID)
            except ValueError:
                raise ODataError(
                    f"Cannot convert the literal '{literal.value}' to the expected type 'Edm.Guid'."
                ) from None
        if target in _NUMERIC and literal.type == DECIMAL:
            return literal
        if target == BOOLEAN and literal.type == BOOLEAN:
            return literal
        if target == DATE and literal.type == DATE:
            return literal
        if target == DATETIME and literal.type in (DATETIME, DATE):
            value = literal.value
            if isinstance(value, date) and not isinstance(value, datetime):
                value = parse_iso_datetime(value.isoformat())
            return Literal(value, DATETIME)
        raise ODataError(
            f"A binary operator with incompatible types was detected. Found operand types '{target}' and "
            f"'{literal.type}' for operator kind '{_OPERATOR_NAMES[operator]}'."
        )

    def _value(self) -> Node:
        token = self._advance()
        if token.kind == "string":
            return Literal(token.value, STRING)
        if token.kind == "guid":
            return Literal(token.value, GUID)
        if token.kind == "datetime":
            return Literal(token.value, DATETIME)
        if token.kind == "date":
            return Literal(token.value, DATE)
        if token.kind == "number":
            return Literal(token.value, DECIMAL)
        if token.kind != "name":
            raise self._syntax_error(token)
        word = token.text
        if word in ("true", "false"):
            return Literal(word == "true", BOOLEAN)
        if word == "null":
            return Literal(None, NULL)
        if word in _KEYWORDS:
            raise self._syntax_error(token)
        if self.current.kind == "lparen":
            return self._call(token)
        if word not in self.schema:
            raise ODataError(f"Could not find a property named '{word}' on type '{self.entity_type}'.")
        return Property(word, self.schema[word])

    def _call(self, name_token: Token) -> Node:
        name = name_token.text
        if name not in _FUNCTIONS:
            raise ODataError(f"An unknown function with name '{name}' was found.")
        self._advance()  # (
        args: list[Node] = []
        if self.current.kind != "rparen":
            args.append(self._value())
            while self.current.kind == "comma":
                self._advance()
                args.append(self._value())
        if self.current.kind != "rparen":
            raise self._syntax_error()
        self._advance()
        expected, result = _FUNCTIONS[name]
        if len(args) != len(expected):
            raise ODataError(f"The function '{name}' takes {len(expected)} argument(s).")
        for arg, wanted in zip(args, expected, strict=True):
            if wanted == STRING and arg.type not in (STRING, ENUM):
                raise ODataError(
                    f"No function signature for the function with name '{name}' matches the arguments."
                )
        if result == BOOLEAN:
            if not _has_property(args[0]) or not isinstance(args[1], Literal):
                raise ODataError(
                    f"Syntax error: '{name}' must be applied to a property and a literal in '{self.text}'."
                )
        elif not _has_property(args[0]):
            raise ODataError(f"Syntax error: '{name}' must be applied to a property in '{self.text}'.")
        return Call(name, tuple(args), result)


_OPERATOR_NAMES = {
    "eq": "Equal",
    "ne": "NotEqual",
    "gt": "GreaterThan",
    "ge": "GreaterThanOrEqual",
    "lt": "LessThan",
    "le": "LessThanOrEqual",
}


def _property_names(node: Node) -> set[str]:
    if isinstance(node, Property):
        return {node.name}
    if isinstance(node, Call):
        return set().union(*(_property_names(arg) for arg in node.args))
    if isinstance(node, Compare):
        return _property_names(node.left) | _property_names(node.right)
    if isinstance(node, In):
        return _property_names(node.operand)
    if isinstance(node, Logical):
        return set().union(*(_property_names(o) for o in node.operands))
    if isinstance(node, Not):
        return _property_names(node.operand)
    return set()


def _has_property(node: Node) -> bool:
    if isinstance(node, Property):
        return True
    if isinstance(node, In):
        return _has_property(node.operand)
    if isinstance(node, Call):
        return any(_has_property(arg) for arg in node.args)
    if isinstance(node, Compare):
        return _has_property(node.left) or _has_property(node.right)
    if isinstance(node, Logical):
        return any(_has_property(o) for o in node.operands)
    if isinstance(node, Not):
        return _has_property(node.operand)
    return False


def parse_filter(text: str, schema: Mapping[str, str], entity_type: str) -> Node:
    """Parse and type-check a `$filter` against `schema` (property name -> Edm type)."""
    if not text.strip():
        raise ODataError("The $filter query option must not be empty.")
    return _Parser(text, schema, entity_type).parse()


# -- evaluation -----------------------------------------------------------------------------------

_XML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def decode_enum(value: str) -> str:
    """`Non_x002D_Inventory` -> `Non-Inventory`, `_x0020_` -> ` ` (OData's XML name escaping)."""
    return _XML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)


def _property_value(entity: Mapping[str, Any], prop: Property) -> Any:
    value = entity.get(prop.name)
    if value is None:
        return None
    if prop.type == ENUM:
        return decode_enum(str(value))
    if prop.type == GUID:
        return str(value).lower()
    if prop.type in _NUMERIC:
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
        return _property_value(entity, node)
    if isinstance(node, Call):
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
    if isinstance(node, Compare):
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


# -- other query options --------------------------------------------------------------------------


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
            value = _property_value(entity, prop)
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
