"""OData `$filter` parsing: literals, quoting, functions, and injection attempts."""

from __future__ import annotations

import pytest

from sandbox.business_central.schema import CUSTOMER, ITEM
from sandbox.odata import ODataError, compile_filter, parse_filter, parse_maxpagesize, tokenize
from tests.sandbox.support import SandboxClient

PEOPLE = [
    {
        "number": "C00010",
        "displayName": "Siobhán O'Brien",
        "email": "O'Brien@FourthCoffee.com",
        "type": "Person",
        "blocked": "_x0020_",
        "creditLimit": 100,
        "taxLiable": True,
        "id": "5d115c9c-44e3-ea11-bb43-000d3a2feca1",
    },
    {
        "number": "C00020",
        "displayName": "Bob Kelly",
        "email": "bob.kelly@tailspintoys.com",
        "type": "Person",
        "blocked": "Invoice",
        "creditLimit": 0,
        "taxLiable": False,
        "id": "6d115c9c-44e3-ea11-bb43-000d3a2feca1",
    },
    {
        "number": "C00030",
        "displayName": "Adatum",
        "email": "x",
        "type": "Company",
        "blocked": "_x0020_",
        "creditLimit": 5000.5,
        "taxLiable": True,
        "id": "7d115c9c-44e3-ea11-bb43-000d3a2feca1",
    },
]


def _matches(expression: str) -> list[str]:
    predicate = compile_filter(expression, CUSTOMER.schema, CUSTOMER.name)
    return [person["number"] for person in PEOPLE if predicate(person)]


def test_string_literals_double_their_quotes() -> None:
    tokens = tokenize("email eq 'o''brien@fourthcoffee.com'")
    assert [t.kind for t in tokens] == ["name", "name", "string", "end"]
    assert tokens[2].value == "o'brien@fourthcoffee.com"
    assert _matches("tolower(email) eq 'o''brien@fourthcoffee.com'") == ["C00010"]
    assert _matches("email eq 'o''brien@fourthcoffee.com'") == []  # eq is case-sensitive


@pytest.mark.parametrize(
    "expression",
    [
        "email eq 'x' or 1 eq 1'",  # the classic: a quote that was not doubled
        "email eq 'x' or 1 eq 1",  # a tautology: no property on either side
        "1 eq 1",
        "'a' eq 'a'",
        "email eq 'x' or true",
        "email eq 'x'; delete",
        "email eq x",  # a bare word is a property, and x is not one
        "email eq 'x' or displayName",  # a string property is not a predicate
        "email eq",
        "(email eq 'x'",
        "email eq 'x')",
        "tolower(email) eq tolower(displayName)",  # property vs property
        "startswith('abc', email)",
        "email eq 'x' and",
        "__import__('os') eq 'x'",
    ],
)
def test_malformed_or_injected_filters_are_errors(expression: str) -> None:
    with pytest.raises(ODataError):
        parse_filter(expression, CUSTOMER.schema, CUSTOMER.name)


def test_escaped_injection_matches_nothing() -> None:
    assert _matches("email eq 'x'' or 1 eq 1'") == []
    assert _matches("email eq 'x'' or ''1'' eq ''1'") == []


def test_functions_and_logic() -> None:
    assert _matches("startswith(displayName,'Bob')") == ["C00020"]
    assert _matches("startswith(tolower(email), 'o''brien')") == ["C00010"]
    assert _matches("endswith(email,'.com') and type eq 'Person'") == ["C00010", "C00020"]
    assert _matches("contains(toupper(displayName), 'KELLY') or contains(displayName, 'Adatum')") == [
        "C00020",
        "C00030",
    ]
    assert _matches("not (type eq 'Person')") == ["C00030"]
    assert _matches("email ne 'x'") == ["C00010", "C00020"]


def test_typed_literals() -> None:
    assert _matches("creditLimit gt 50") == ["C00010", "C00030"]
    assert _matches("creditLimit ge 5000.5 and taxLiable eq true") == ["C00030"]
    assert _matches("id eq 6d115c9c-44e3-ea11-bb43-000d3a2feca1") == ["C00020"]
    assert _matches("blocked eq ' '") == ["C00010", "C00030"]
    assert _matches("blocked eq '_x0020_'") == ["C00010", "C00030"]
    items = [{"type": "Non_x002D_Inventory"}, {"type": "Service"}]
    predicate = compile_filter("type eq 'Non-Inventory'", ITEM.schema, ITEM.name)
    assert [predicate(i) for i in items] == [True, False]


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("nickname eq 'x'", "Could not find a property named 'nickname'"),
        ("creditLimit eq 'ten'", "incompatible types"),
        ("soundex(email) eq 'x'", "unknown function"),
        ("email eq 'unterminated", "unterminated string literal"),
    ],
)
def test_error_messages_name_the_problem(expression: str, fragment: str) -> None:
    with pytest.raises(ODataError, match=fragment):
        parse_filter(expression, CUSTOMER.schema, CUSTOMER.name)


def test_prefer_header() -> None:
    assert parse_maxpagesize("odata.maxpagesize=50") == 50
    assert parse_maxpagesize('return=minimal, odata.maxpagesize="x"') is None
    assert parse_maxpagesize(None) is None


def test_filters_over_http(client: SandboxClient) -> None:
    found = client.bc(
        "GET", "/customers", params={"$filter": "tolower(email) eq 'o''brien@fourthcoffee.com'"}
    )
    assert found.status_code == 200
    assert [c["displayName"] for c in found.json()["value"]] == ["Siobhán O'Brien"]

    injected = client.bc("GET", "/customers", params={"$filter": "email eq 'x' or 1 eq 1'"})
    assert injected.status_code == 400
    assert injected.json()["error"]["code"] == "BadRequest"
    assert "  CorrelationId:  " in injected.json()["error"]["message"]

    escaped = client.bc("GET", "/customers", params={"$filter": "email eq 'x'' or 1 eq 1'"})
    assert escaped.status_code == 200
    assert escaped.json()["value"] == []

    services = client.bc(
        "GET", "/items", params={"$filter": "type eq 'Service' and startswith(number,'SVC-')"}
    )
    assert {i["type"] for i in services.json()["value"]} == {"Service"}
