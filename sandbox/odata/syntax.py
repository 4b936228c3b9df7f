"""The typed syntax tree of a `$filter` and its parser.

Like Business Central, which turns a filter into field filters on a table, every comparison must
put a property (or `tolower`/`toupper`/`trim` of one) on one side and a literal on the other: a
tautology such as `1 eq 1` is a syntax error, so a client that forgot to double a quote
(`email eq 'x' or 1 eq 1'`) gets a 400 rather than every record.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sandbox.core.timefmt import parse_iso_datetime
from sandbox.odata.lexer import (
    BOOLEAN,
    DATE,
    DATETIME,
    DECIMAL,
    ENUM,
    GUID,
    NULL,
    NUMERIC,
    STRING,
    ODataError,
    Token,
    tokenize,
)

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
        if target in NUMERIC and literal.type == DECIMAL:
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
