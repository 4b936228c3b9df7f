"""Graph Bookings stand-in: calendarView semantics and paging, ids, shapes, errors, seed data."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from sandbox import ManualClock, SandboxHandle
from sandbox.graph import BookingsStore
from sandbox.seed import seed_bookings
from tests.sandbox.support import FIXED_NOW, SandboxClient

GRAPH_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}Z$")


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _calendar(client: SandboxClient, business: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Read a whole calendarView by following @odata.nextLink verbatim."""
    url: str | None = client.graph_url(
        f"/solutions/bookingBusinesses/{business}/calendarView?start={_iso(start)}&end={_iso(end)}"
    )
    items: list[dict[str, Any]] = []
    pages = 0
    while url:
        response = client.graph("GET", url)
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["value"])
        url = body.get("@odata.nextLink")
        pages += 1
        assert pages < 1000
    return items


def _parse(value: dict[str, str]) -> datetime:
    return datetime.fromisoformat(value["dateTime"][:26] + "+00:00")


def test_calendar_view_pages_with_absolute_next_links(sandbox: SandboxHandle, client: SandboxClient) -> None:
    sandbox.admin.set_config(graphPageSize=17)
    business = client.business_ids[0]
    start, end = FIXED_NOW - timedelta(days=30), FIXED_NOW
    first = client.graph(
        "GET",
        f"/solutions/bookingBusinesses/{business}/calendarView",
        params={"start": _iso(start), "end": _iso(end)},
    ).json()
    assert len(first["value"]) == 17
    assert first["@odata.nextLink"].startswith(sandbox.url + "/graph/v1.0/solutions/bookingBusinesses/")
    assert "%40" in first["@odata.context"] and "@" not in first["@odata.context"].split("#", 1)[1]
    items = _calendar(client, business, start, end)
    ids = [item["id"] for item in items]
    assert len(ids) == len(set(ids))
    expected = {
        a["id"]
        for b in sandbox.admin.state(["businesses"])["businesses"]
        if b["id"] == business
        for a in b["appointments"]
        if _parse(a["startDateTime"]) < end and _parse(a["endDateTime"]) > start
    }
    assert set(ids) == expected
    assert len(ids) > 50
    assert [_parse(i["startDateTime"]) for i in items] == sorted(_parse(i["startDateTime"]) for i in items)


def test_calendar_view_uses_overlap_semantics(sandbox: SandboxHandle, client: SandboxClient) -> None:
    business = client.business_ids[1]
    window_start = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    window_end = window_start + timedelta(hours=2)

    def add(start: datetime, minutes: int) -> str:
        appointment = sandbox.admin.add_appointment(
            business,
            {
                "startDateTime": {"dateTime": _iso(start), "timeZone": "UTC"},
                "endDateTime": {"dateTime": _iso(start + timedelta(minutes=minutes)), "timeZone": "UTC"},
                "serviceName": "Edge case",
            },
        )
        return str(appointment["id"])

    crossing_start = add(window_start - timedelta(minutes=30), 60)
    crossing_end = add(window_end - timedelta(minutes=15), 60)
    inside = add(window_start + timedelta(minutes=30), 30)
    ends_at_start = add(window_start - timedelta(hours=1), 60)
    starts_at_end = add(window_end, 30)
    far_outside = add(window_start - timedelta(days=2), 60)
    returned = {item["id"] for item in _calendar(client, business, window_start, window_end)}
    assert {crossing_start, crossing_end, inside} <= returned
    assert not {ends_at_start, starts_at_end, far_outside} & returned


def test_calendar_view_rejects_what_graph_rejects(client: SandboxClient) -> None:
    business = client.business_ids[0]
    path = f"/solutions/bookingBusinesses/{business}/calendarView"
    cases = [
        {"end": "2026-03-01T00:00:00Z"},
        {"start": "2026-03-01T00:00:00Z"},
        {"start": "yesterday", "end": "2026-03-01T00:00:00Z"},
        {"start": "2026-02-01T00:00:00Z", "end": "2026-03-01T00:00:00Z", "$filter": "price gt 0"},
        {"start": "2026-02-01T00:00:00Z", "end": "2026-03-01T00:00:00Z", "$top": "5"},
    ]
    for params in cases:
        response = client.graph("GET", path, params=params)
        assert response.status_code == 400, params
        error = response.json()["error"]
        assert error["code"] and error["message"] and "request-id" in error["innerError"]
    offsets = client.graph(
        "GET", path, params={"start": "2026-02-01T01:00:00+01:00", "end": "2026-03-01T00:00:00Z"}
    )
    assert offsets.status_code == 200


def test_a_calendar_view_range_limit_can_be_switched_on(
    sandbox: SandboxHandle, client: SandboxClient
) -> None:
    business = client.business_ids[0]
    path = f"/solutions/bookingBusinesses/{business}/calendarView"
    long_range = {"start": _iso(FIXED_NOW - timedelta(days=400)), "end": _iso(FIXED_NOW)}
    assert client.graph("GET", path, params=long_range).status_code == 200  # no limit by default

    sandbox.admin.set_config(graphCalendarViewMaxDays=31)
    refused = client.graph("GET", path, params=long_range)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalidRequest"
    within = {"start": _iso(FIXED_NOW - timedelta(days=31)), "end": _iso(FIXED_NOW)}
    assert client.graph("GET", path, params=within).status_code == 200


def test_unknown_business_and_appointment_are_item_not_found(client: SandboxClient) -> None:
    missing = client.graph("GET", "/solutions/bookingBusinesses/nobody@contoso.onmicrosoft.com/appointments")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "itemNotFound"
    business = client.business_ids[0]
    unknown = client.graph(
        "GET", f"/solutions/bookingBusinesses/{business}/appointments/{quote('AAMk+/=', safe='')}"
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "itemNotFound"


def test_ids_have_base64_characters_and_percent_encoded_get_and_cancel_work(client: SandboxClient) -> None:
    business = client.business_ids[0]
    items = _calendar(client, business, FIXED_NOW - timedelta(days=10), FIXED_NOW)
    appointment = next(item for item in items if {"/", "+", "="} <= set(item["id"]))
    path = f"/solutions/bookingBusinesses/{business}/appointments/{quote(appointment['id'], safe='')}"
    fetched = client.graph("GET", path)
    assert fetched.status_code == 200
    assert fetched.json()["id"] == appointment["id"]
    assert fetched.json()["@odata.context"].endswith("/appointments/$entity")
    cancelled = client.graph("POST", path + "/cancel", json={"cancellationMessage": "Sorry"})
    assert cancelled.status_code == 204
    assert client.graph("GET", path).status_code == 404
    remaining = {
        item["id"] for item in _calendar(client, business, FIXED_NOW - timedelta(days=10), FIXED_NOW)
    }
    assert appointment["id"] not in remaining


def test_appointment_shapes_follow_v1(client: SandboxClient) -> None:
    business = client.business_ids[0]
    items = _calendar(client, business, FIXED_NOW - timedelta(days=42), FIXED_NOW + timedelta(days=14))
    for item in items:
        assert GRAPH_TIME.match(item["startDateTime"]["dateTime"])
        assert item["startDateTime"]["timeZone"] == "UTC"
        assert re.fullmatch(r"P(\d+D)?(T(\d+H)?(\d+M)?(\d+S)?)?", item["duration"])
        for customer in item["customers"]:
            assert customer["@odata.type"] == "#microsoft.graph.bookingCustomerInformation"
    assert any(_parse(item["startDateTime"]) > FIXED_NOW for item in items)


def test_seed_covers_the_awkward_cases(sandbox: SandboxHandle, client: SandboxClient) -> None:
    businesses = sandbox.admin.state(["businesses"])["businesses"]
    assert len(businesses) == 2
    price_types = {s["defaultPriceType"] for b in businesses for s in b["services"]}
    assert {"fixedPrice", "hourly", "free", "startingAt", "callUs", "priceVaries", "notSet"} <= price_types
    appointments = [a for b in businesses for a in b["appointments"]]
    completed = [a for a in appointments if _parse(a["endDateTime"]) < FIXED_NOW]
    assert 200 <= len(completed) <= 800
    assert any(a["customers"] == [] for a in completed)
    emails = [c["emailAddress"] for a in appointments for c in a["customers"]]
    assert any(e and "'" in e.split("@")[0] for e in emails)
    assert any(e is None for e in emails)
    assert any(e and e != e.lower() for e in emails)
    amsterdam = ZoneInfo("Europe/Amsterdam")
    crossing = [
        a
        for a in completed
        if _parse(a["startDateTime"]).astimezone(amsterdam).date()
        != _parse(a["endDateTime"]).astimezone(amsterdam).date()
    ]
    assert crossing
    services = client.graph("GET", f"/solutions/bookingBusinesses/{businesses[0]['id']}/services").json()[
        "value"
    ]
    assert {"id", "displayName", "defaultPrice", "defaultPriceType", "defaultDuration"} <= set(services[0])
    customers = client.graph("GET", f"/solutions/bookingBusinesses/{businesses[0]['id']}/customers").json()[
        "value"
    ]
    assert any(c["displayName"] == "Siobhán O'Brien" for c in customers)


def test_seed_is_deterministic_for_a_seed_and_now() -> None:
    def dump(seed: int, now: datetime) -> list[dict[str, Any]]:
        store = BookingsStore(ManualClock(now))
        seed_bookings(store, seed, now)
        return store.dump()

    assert dump(3, FIXED_NOW) == dump(3, FIXED_NOW)
    assert dump(3, FIXED_NOW) != dump(4, FIXED_NOW)


def test_admin_edits_and_bulk_generation(sandbox: SandboxHandle, client: SandboxClient) -> None:
    business = client.business_ids[1]
    created = sandbox.admin.add_appointment(
        business,
        {
            "startDateTime": {"dateTime": "2026-02-27T22:30:00", "timeZone": "W. Europe Standard Time"},
            "endDateTime": {"dateTime": "2026-02-28T00:30:00", "timeZone": "W. Europe Standard Time"},
            "serviceName": "Night run coaching",
            "priceType": "fixedPrice",
            "price": 25.0,
            "customers": [],
        },
    )
    # Served as given: the Windows zone name and the local time without offset.
    assert created["startDateTime"] == {
        "dateTime": "2026-02-27T22:30:00.0000000",
        "timeZone": "W. Europe Standard Time",
    }
    assert created["endDateTime"]["dateTime"] == "2026-02-28T00:30:00.0000000"
    instant = sandbox.app.bookings.business(business).appointments[created["id"]].start  # type: ignore[union-attr]
    assert instant == datetime(2026, 2, 27, 21, 30, tzinfo=UTC)
    updated = sandbox.admin.update_appointment(business, created["id"], {"price": 30.0})
    assert updated["price"] == 30.0
    assert updated["startDateTime"]["timeZone"] == "W. Europe Standard Time"
    sandbox.admin.cancel_appointment(business, created["id"])
    path = f"/solutions/bookingBusinesses/{business}/appointments/{quote(created['id'], safe='')}"
    assert client.graph("GET", path).status_code == 404

    store = sandbox.app.bookings
    before = len(store.business(business).appointments)  # type: ignore[union-attr]
    assert sandbox.admin.generate_appointments(business, 10_000) == 10_000
    assert len(store.business(business).appointments) == before + 10_000  # type: ignore[union-attr]
    sandbox.admin.set_config(graphPageSize=2000)
    generated = _calendar(client, business, FIXED_NOW - timedelta(days=31), FIXED_NOW)
    assert len(generated) >= 10_000
    assert len({item["id"] for item in generated}) == len(generated)


def test_graph_create_and_patch_through_the_api(client: SandboxClient) -> None:
    business = client.business_ids[0]
    services = client.graph("GET", f"/solutions/bookingBusinesses/{business}/services").json()["value"]
    body = {
        "serviceId": services[0]["id"],
        "startDateTime": {"dateTime": "2026-03-10T10:00:00.0000000", "timeZone": "UTC"},
        "endDateTime": {"dateTime": "2026-03-10T10:30:00.0000000", "timeZone": "UTC"},
        "customers": [{"name": "Bob Kelly", "emailAddress": "Bob.Kelly@TailspinToys.com"}],
    }
    created = client.graph("POST", f"/solutions/bookingBusinesses/{business}/appointments", json=body)
    assert created.status_code == 201, created.text
    appointment = created.json()
    assert appointment["serviceName"] == services[0]["displayName"]
    assert appointment["priceType"] == services[0]["defaultPriceType"]
    path = f"/solutions/bookingBusinesses/{business}/appointments/{quote(appointment['id'], safe='')}"
    assert client.graph("PATCH", path, json={"additionalInformation": "window seat"}).status_code == 204
    assert client.graph("GET", path).json()["additionalInformation"] == "window seat"
    bad = client.graph("PATCH", path, json={"status": "cancelled"})
    assert bad.status_code == 400
