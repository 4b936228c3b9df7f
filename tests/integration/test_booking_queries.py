"""Listing and paging bookings against Azurite; query parsing and continuation tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from azure.data.tables import TableServiceClient

from shared.adapters.booking_entities import BOOKINGS_TABLE
from shared.adapters.booking_store import BookingStore
from shared.api.continuation import ContinuationTokens, derive_token_key
from shared.api.input import InvalidInput
from shared.api.list_query import ListQuery, parse_list_query, read_page
from shared.domain.filters import BookingFilter
from shared.domain.filters import PagePosition as ListPosition
from shared.domain.listing import Cursor
from shared.domain.models import Booking, BookingStatus
from shared.services.booking_queries import BookingQueries
from tests.api_support import make_booking, new_business, seed

ZONE = ZoneInfo("Europe/Amsterdam")
TOKENS = ContinuationTokens(derive_token_key("test key material"))


@dataclass
class TokenPage:
    items: list[Booking]
    continuation_token: str | None


class TokenPaging:
    """Pages as the API serves them: the queries use case behind signed continuation tokens."""

    def __init__(self, queries: BookingQueries) -> None:
        self.queries = queries

    def page(self, flt: BookingFilter, top: int, token: str | None = None) -> TokenPage:
        return TokenPage(*read_page(self.queries, TOKENS, ListQuery(flt, top, token)))

    def __getattr__(self, name: str) -> object:
        return getattr(self.queries, name)


def queries_for(connection: str, businesses: list[str], **options: int) -> TokenPaging:
    table = TableServiceClient.from_connection_string(connection).get_table_client(BOOKINGS_TABLE)
    return TokenPaging(BookingQueries(BookingStore(table), businesses, **options))


def test_list_query_defaults_and_parsing() -> None:
    business = "Lunch@Contoso.com"
    query = parse_list_query({"code": "function-key"}, [business], ZONE)
    assert query.filter == BookingFilter(status=BookingStatus.UNBILLED)
    assert query.top == 100 and query.continuation_token is None

    query = parse_list_query(
        {
            "status": "failed",
            "businessId": "lunch@contoso.com",
            "customerEmail": " Bob@X.com ",
            "from": "2026-01-31",
            "to": "2026-02-01T08:00:00Z",
            "top": "1000",
        },
        [business],
        ZONE,
    )
    assert query.filter.status is BookingStatus.FAILED
    assert query.filter.business_id == business  # the configured spelling: PartitionKey is case-sensitive
    assert query.filter.customer_email == "bob@x.com"
    # A date is midnight in the business time zone (23:00 UTC the day before in winter).
    assert query.filter.start_from == datetime(2026, 1, 30, 23, 0, tzinfo=UTC)
    assert query.top == 1000


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"stat": "Unbilled"}, "stat"),
        ({"status": "Paid"}, "status"),
        ({"top": "0"}, "top"),
        ({"top": "1001"}, "top"),
        ({"top": "ten"}, "top"),
        ({"businessId": "other@contoso.com"}, "BOOKINGS_BUSINESS_IDS"),
        ({"businessId": "x' or 1 eq 1"}, "businessId"),
        ({"customerEmail": "not-an-email"}, "customerEmail"),
        ({"from": "2026-02-30"}, "from"),
        ({"from": "2026-01-31T10:00:00"}, "time zone"),
        ({"from": "0001-01-01T00:00:00Z"}, "between the years"),
        ({"from": "2026-02-01", "to": "2026-02-01"}, "later than"),
    ],
)
def test_bad_list_queries_name_the_parameter(params: dict[str, str], names: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_list_query(params, ["lunch@contoso.com"], ZONE)
    assert names in caught.value.detail


def test_tokens_are_bound_to_their_query_and_refuse_tampering() -> None:
    flt = BookingFilter(customer_email="bob@x.com")
    position = ListPosition((("lunch@contoso.com", Cursor("~ix1|Unbilled|1")),))
    token = TOKENS.encode(flt.fingerprint(), position)
    assert TOKENS.decode(token, flt.fingerprint()) == position
    version, payload, mac = token.split(".")
    flipped = payload[:-1] + ("A" if payload[-1] != "A" else "B")
    for bad in (f"{version}.{flipped}.{mac}", token[:-2], "x' or 1 eq 1", "../../etc", token + "=", ""):
        with pytest.raises(InvalidInput, match="not a token this API issued"):
            TOKENS.decode(bad, flt.fingerprint())
    with pytest.raises(InvalidInput, match="other filters"):
        TOKENS.decode(token, BookingFilter(customer_email="eve@x.com").fingerprint())
    other_deployment = ContinuationTokens(derive_token_key("another storage account"))
    with pytest.raises(InvalidInput, match="not a token this API issued"):
        other_deployment.decode(token, flt.fingerprint())


def test_pages_cover_every_match_once_across_businesses(storage_connection_string: str) -> None:
    first, second = new_business(), new_business()
    seed(
        storage_connection_string,
        [make_booking(first, i) for i in range(130)]
        + [make_booking(second, i) for i in range(95)]
        + [make_booking(first, 1000 + i, status=BookingStatus.INVOICED) for i in range(40)],
    )
    queries = queries_for(storage_connection_string, [first, second])
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        page = queries.page(BookingFilter(), 50, token)
        assert len(page.items) <= 50
        assert all(b.status is BookingStatus.UNBILLED for b in page.items)
        seen += [b.key for b in page.items]
        pages += 1
        token = page.continuation_token
        if token is None:
            break
    assert len(seen) == len(set(seen)) == 225
    assert pages >= 5
    starts = [b.start for b in queries.get_many(seen).values()]
    assert len(starts) == 225

    invoiced = queries.page(BookingFilter(status=BookingStatus.INVOICED), 100)
    assert len(invoiced.items) == 40 and {b.business_id for b in invoiced.items} == {first}


def test_filters_narrow_by_customer_and_start(storage_connection_string: str) -> None:
    business = new_business()
    start = datetime(2026, 2, 10, 22, 30, tzinfo=UTC)  # 23:30 in Amsterdam: still Feb 10 there
    seed(
        storage_connection_string,
        [make_booking(business, i, email="Bob@X.com", start=start + timedelta(hours=i)) for i in range(4)]
        + [make_booking(business, 10 + i, email="eve@x.com", start=start) for i in range(3)],
    )
    queries = queries_for(storage_connection_string, [business])
    query = parse_list_query(
        {"customerEmail": "BOB@x.com", "from": "2026-02-10", "to": "2026-02-11"}, [business], ZONE
    )
    page = queries.page(query.filter, 100)
    # Only the 22:30 UTC booking starts on Feb 10 in Amsterdam; the next one is Feb 11 00:30 local.
    assert [b.start for b in page.items] == [start]
    assert page.continuation_token is None


def test_lists_are_newest_first_across_businesses_page_after_page(storage_connection_string: str) -> None:
    first, second = new_business(), new_business()
    seed(
        storage_connection_string,
        [make_booking(first, i) for i in range(0, 60, 2)]
        + [make_booking(second, i) for i in range(1, 60, 2)],
    )
    queries = queries_for(storage_connection_string, [first, second])
    starts, token = [], None
    while True:
        page = queries.page(BookingFilter(), 7, token)
        starts += [(b.start, b.business_id) for b in page.items]
        token = page.continuation_token
        if token is None:
            break
    assert [start for start, _ in starts] == sorted((start for start, _ in starts), reverse=True)
    assert len(starts) == 60 and {business for _, business in starts} == {first, second}


def test_a_customer_filter_pages_through_sparse_matches_in_order(storage_connection_string: str) -> None:
    business = new_business()
    seed(
        storage_connection_string,
        [make_booking(business, i, email="bob@x.com" if i % 10 == 0 else None) for i in range(100)],
    )
    queries = queries_for(storage_connection_string, [business], max_round_trips=1)
    seen, token = [], None
    for _ in range(50):
        page = queries.page(BookingFilter(customer_email="bob@x.com"), 3, token)
        seen += page.items
        token = page.continuation_token
        if token is None:
            break
    assert [b.start for b in seen] == sorted((b.start for b in seen), reverse=True)
    assert len(seen) == 10 and all(b.customer_email == "bob@x.com" for b in seen)


def test_get_reads_points_in_configured_businesses_only(storage_connection_string: str) -> None:
    mine, foreign = new_business(), new_business()
    booking, other = seed(storage_connection_string, [make_booking(mine, 1), make_booking(foreign, 2)])
    queries = queries_for(storage_connection_string, [new_business(), mine])
    assert queries.get(booking.key).key == booking.key  # type: ignore[union-attr]
    assert queries.get(other.key) is None
    assert queries.get("x' or 1 eq 1") is None
    assert set(queries.get_many([booking.key, other.key, booking.key])) == {booking.key}
