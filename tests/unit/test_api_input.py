"""API input parsing without a host: bodies, fields, list queries, selections, continuation tokens.

The integration tier covers the common refusals through HTTP and Azurite; these are the rules on
their own, plus what that tier does not reach (paging through signed tokens over a fake store).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from shared.api.continuation import MAX_TOKEN_LENGTH, ContinuationTokens, derive_token_key
from shared.api.input import (
    InvalidInput,
    parse_business_id,
    parse_email,
    parse_json_object,
    parse_moment,
    parse_status,
    reject_unknown,
)
from shared.api.list_query import ListQuery, parse_list_query, read_page
from shared.api.selection_input import MAX_REPORTED_KEY_ERRORS, parse_selection
from shared.api.views import field_error_view
from shared.domain.filters import BookingFilter, PagePosition
from shared.domain.listing import Cursor
from shared.domain.models import BookingStatus
from shared.services.booking_queries import BookingQueries
from tests.unit.builders import DINNER, LUNCH, make_booking
from tests.unit.fakes import FakeBookingStore

ZONE = ZoneInfo("Europe/Amsterdam")
TOKENS = ContinuationTokens(derive_token_key("unit test key material"))
KEY = "A" * 26

# -- bodies -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["application/json", "Application/JSON; charset=utf-8", "application/merge+json"]
)
def test_a_json_object_is_read(content_type: str) -> None:
    assert parse_json_object(b'{"all": true, "n": 1.5}', content_type) == {"all": True, "n": 1.5}


@pytest.mark.parametrize(
    ("body", "content_type", "says"),
    [
        (b'{"all": true}', "text/plain", "got text/plain"),
        (b'{"all": true}', None, "got none"),
        (b"", "application/json", "empty"),
        (b"   \n", "application/json", "empty"),
        (b"\xff\xfe{}", "application/json", "UTF-8"),
        (b'{"all": tru}', "application/json", "not valid JSON"),
        (b'{"n": NaN}', "application/json", "not valid JSON"),
        (b'{"n": Infinity}', "application/json", "not valid JSON"),
        (b'{"all": true, "all": false}', "application/json", "'all' twice"),
        (b"[1, 2]", "application/json", "not an array"),
        (b'"text"', "application/json", "not a string"),
        (b"null", "application/json", "not null"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", "nested too deeply"),
    ],
)
def test_bodies_that_are_not_a_json_object_are_refused(
    body: bytes, content_type: str | None, says: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_json_object(body, content_type)
    assert says in caught.value.detail


def test_a_body_over_the_limit_is_refused_before_it_is_parsed() -> None:
    body = json.dumps({"bookingKeys": [KEY] * 10}).encode()
    assert parse_json_object(body, "application/json", max_bytes=len(body))["bookingKeys"] == [KEY] * 10
    with pytest.raises(InvalidInput, match="Send fewer booking keys"):
        parse_json_object(body, "application/json", max_bytes=len(body) - 1)


def test_unknown_members_are_each_named_with_the_allowed_ones() -> None:
    reject_unknown({"a": 1}, ["a", "b"])
    with pytest.raises(InvalidInput) as caught:
        reject_unknown({"a": 1, "x": 2, "y": 3}, ["a", "b"], where="filter")
    assert [e.field for e in caught.value.errors] == ["filter.x", "filter.y"]
    assert "allowed: filter.a, filter.b" in caught.value.detail
    assert field_error_view(caught.value.errors[0]) == {"field": "filter.x", "detail": "is not a known field"}


# -- fields -----------------------------------------------------------------------------------------


def test_status_is_matched_case_insensitively() -> None:
    assert parse_status(" invoiced ") is BookingStatus.INVOICED
    with pytest.raises(InvalidInput, match="Unbilled, Queued"):
        parse_status("Paid")
    with pytest.raises(InvalidInput, match="not a number"):
        parse_status(3)


def test_business_ids_come_back_as_configured() -> None:
    assert parse_business_id(" LUNCH@Contoso.com", ["Lunch@contoso.com"]) == "Lunch@contoso.com"
    for bad in ("x' or 1 eq 1", "a@b", "lunch@contoso.com,dinner@contoso.com", "x" * 320 + "@a.com"):
        with pytest.raises(InvalidInput, match="SMTP address"):
            parse_business_id(bad, [LUNCH])
    with pytest.raises(InvalidInput, match="BOOKINGS_BUSINESS_IDS"):
        parse_business_id(DINNER, [LUNCH])


def test_emails_are_trimmed_and_lower_cased() -> None:
    assert parse_email("  O'Brien@Example.COM ") == "o'brien@example.com"
    for bad in ("no-at-sign", "a@b", "a b@c.com", "x" * 320 + "@example.com"):
        with pytest.raises(InvalidInput, match="not an email address"):
            parse_email(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-07-01", datetime(2026, 6, 30, 22, 0, tzinfo=UTC)),  # midnight in Amsterdam (summer)
        ("2026-01-31", datetime(2026, 1, 30, 23, 0, tzinfo=UTC)),  # midnight in Amsterdam (winter)
        ("2026-01-31T09:00:00Z", datetime(2026, 1, 31, 9, 0, tzinfo=UTC)),
        ("2026-01-31t09:00:00z", datetime(2026, 1, 31, 9, 0, tzinfo=UTC)),
        ("2026-01-31T10:00:00+01:00", datetime(2026, 1, 31, 9, 0, tzinfo=UTC)),
    ],
)
def test_moments_are_dates_or_date_times_with_a_zone(text: str, expected: datetime) -> None:
    assert parse_moment(text, ZONE, "from") == expected


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("2026-02-30", "not a calendar date"),
        ("2026-01-31T09:00:00", "has no time zone"),
        ("31/01/2026", "not an ISO 8601"),
        ("1899-12-31", "between the years"),
        ("3000-01-01T00:00:00Z", "between the years"),
        (20260131, "must be a string"),
    ],
)
def test_unusable_moments_are_refused_naming_the_field(value: object, says: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_moment(value, ZONE, "filter.to")
    assert says in caught.value.detail
    assert caught.value.errors[0].field == "filter.to"


# -- list queries -----------------------------------------------------------------------------------


def test_empty_parameters_are_ignored_and_the_host_key_is_allowed() -> None:
    query = parse_list_query(
        {"status": "", "top": "", "code": "key", "continuationToken": "abc"}, [LUNCH], ZONE
    )
    assert query == ListQuery(BookingFilter(), 100, "abc")


def test_list_query_names_are_case_sensitive() -> None:
    with pytest.raises(InvalidInput, match="'Status'"):
        parse_list_query({"Status": "Failed"}, [LUNCH], ZONE)


def test_pages_follow_signed_tokens_across_businesses_to_the_end() -> None:
    store = FakeBookingStore()
    store.put_all(make_booking(LUNCH, n) for n in range(5))
    store.put_all(make_booking(DINNER, n) for n in range(3))
    store.put(make_booking(LUNCH, 9, status=BookingStatus.FAILED))
    queries = BookingQueries(store, [LUNCH, DINNER])
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        items, token = read_page(queries, TOKENS, ListQuery(BookingFilter(), 3, token))
        seen.extend(b.key for b in items)
        pages += 1
        if token is None:
            break
        assert token.startswith("b2.")
    assert pages == 3
    assert len(seen) == len(set(seen)) == 8
    starts = [b.start for b in queries.get_many(seen).values()]
    assert len(starts) == 8


def test_a_token_naming_a_business_no_longer_configured_is_refused() -> None:
    flt = BookingFilter()
    token = TOKENS.encode(flt.fingerprint(), PagePosition((("gone@contoso.com", None),)))
    queries = BookingQueries(FakeBookingStore(), [LUNCH])
    with pytest.raises(InvalidInput, match="no longer configured"):
        read_page(queries, TOKENS, ListQuery(flt, 10, token))


# -- selections -------------------------------------------------------------------------------------


def _parse(document: dict[str, Any], max_selection: int = 10) -> Any:
    return parse_selection(document, max_selection=max_selection, business_ids=[LUNCH], zone=ZONE)


def test_an_all_selection_with_a_null_filter_and_a_range() -> None:
    assert _parse({"all": True, "filter": None}).filter == BookingFilter()
    ranged = _parse({"all": True, "filter": {"from": "2026-01-01", "to": "2026-02-01"}})
    assert ranged.filter.start_from == datetime(2025, 12, 31, 23, 0, tzinfo=UTC)
    assert ranged.filter.start_before - ranged.filter.start_from == timedelta(days=31)
    assert ranged.summary() == {
        "mode": "all",
        "filter": {"from": "2025-12-31T23:00:00Z", "to": "2026-01-31T23:00:00Z"},
    }
    with pytest.raises(InvalidInput, match=r"filter\.to: must be later than filter\.from"):
        _parse({"all": True, "filter": {"from": "2026-02-01", "to": "2026-01-01"}})


def test_many_malformed_keys_are_reported_up_to_the_cap() -> None:
    with pytest.raises(InvalidInput) as caught:
        _parse({"bookingKeys": ["bad"] * 30}, max_selection=100)
    assert len(caught.value.errors) == MAX_REPORTED_KEY_ERRORS
    assert caught.value.detail.startswith("30 of the 30 booking keys are malformed")
    assert f"The first {MAX_REPORTED_KEY_ERRORS} are listed." in caught.value.detail


# -- continuation tokens ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cursors",
    [
        ((DINNER, None),),
        (
            (LUNCH, Cursor("~ix1|Failed|8231089599999|" + "K" * 26)),
            (DINNER, Cursor("~ix1|F", ("~ix1|Failed|", (("PartitionKey", "cA=="), ("RowKey", "fml=="))))),
        ),
    ],
)
def test_tokens_round_trip(cursors: tuple[tuple[str, Cursor | None], ...]) -> None:
    fingerprint = BookingFilter(status=BookingStatus.FAILED).fingerprint()
    token = TOKENS.encode(fingerprint, PagePosition(cursors))
    assert TOKENS.decode(token, fingerprint) == PagePosition(cursors)


def test_tampered_foreign_and_oversized_tokens_are_refused() -> None:
    fingerprint = BookingFilter().fingerprint()
    token = TOKENS.encode(fingerprint, PagePosition(((LUNCH, Cursor("B" * 26)),)))
    version, payload, mac = token.split(".")
    forged_payload = TOKENS.encode(fingerprint, PagePosition(((DINNER, None),))).split(".")[1]
    bad_tokens = [
        f"{version}.{forged_payload}.{mac}",  # another position under this token's signature
        f"b1.{payload}.{mac}",  # the previous format
        token.replace(".", "", 1),
        "b2." + "A" * (MAX_TOKEN_LENGTH + 1) + "." + mac,
    ]
    for bad in bad_tokens:
        with pytest.raises(InvalidInput, match="not a token this API issued"):
            TOKENS.decode(bad, fingerprint)
    with pytest.raises(InvalidInput, match="other filters"):
        TOKENS.decode(token, BookingFilter(business_id=LUNCH).fingerprint())


def test_token_keys_must_be_long_enough_and_are_derived_per_deployment() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        ContinuationTokens(b"short")
    assert derive_token_key("account-a") != derive_token_key("account-b")
    assert derive_token_key("a", "bc") != derive_token_key("ab", "c")
    assert len(derive_token_key("x")) == 32
