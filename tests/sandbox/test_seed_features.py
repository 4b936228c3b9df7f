"""Opt-in seed shapes: group appointments, Windows time zone names, flat customer fields.

Off by default (the default world has none of them); on, each adds its own appointments and leaves
every default appointment exactly as it was. The admin route accepts the same shapes.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest

from sandbox import ManualClock, SandboxHandle, start_sandbox
from sandbox.core.timefmt import parse_iso_duration
from sandbox.graph import BookingsStore
from sandbox.seed import SEED_FEATURES, seed_bookings, seed_features
from tests.sandbox.support import FIXED_NOW, SandboxClient

WINDOWS_ZONES = {"W. Europe Standard Time": "Europe/Berlin", "GMT Standard Time": "Europe/London"}
"""CLDR windowsZones.xml (territory 001) for the two names the seed uses."""


def _appointments(client: SandboxClient, business: str) -> list[dict[str, Any]]:
    url: str | None = (
        f"/solutions/bookingBusinesses/{business}/calendarView"
        f"?start={(FIXED_NOW - timedelta(days=60)).strftime('%Y-%m-%dT%H:%M:%SZ')}"
        f"&end={(FIXED_NOW + timedelta(days=30)).strftime('%Y-%m-%dT%H:%M:%SZ')}"
    )
    found: list[dict[str, Any]] = []
    while url:
        page = client.graph("GET", url).json()
        found.extend(page["value"])
        url = page.get("@odata.nextLink")
    return found


def _everything(client: SandboxClient) -> dict[str, dict[str, Any]]:
    return {a["id"]: a for business in client.business_ids for a in _appointments(client, business)}


def _is_group(appointment: dict[str, Any]) -> bool:
    return len(appointment["customers"]) > 1


def _is_windows(appointment: dict[str, Any]) -> bool:
    return appointment["startDateTime"]["timeZone"] in WINDOWS_ZONES


def _is_flat(appointment: dict[str, Any]) -> bool:
    return not appointment["customers"] and bool(appointment.get("customerEmailAddress"))


def _instant(value: dict[str, str]) -> datetime:
    zone = WINDOWS_ZONES.get(value["timeZone"], value["timeZone"])
    text = value["dateTime"].rstrip("Z")[:26]
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)


@pytest.fixture(scope="module")
def featured(tmp_path_factory: pytest.TempPathFactory) -> Any:
    handle = start_sandbox(
        port=0,
        state_dir=tmp_path_factory.mktemp("featured"),
        seed=7,
        clock=ManualClock(FIXED_NOW),
        seed_features=["all"],
    )
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def featured_client(featured: SandboxHandle, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(featured.ca_bundle_path))
    api = SandboxClient(featured)
    try:
        yield api
    finally:
        api.close()


def test_the_default_world_has_none_of_the_extra_shapes(client: SandboxClient) -> None:
    default = _everything(client)
    assert default
    assert not any(_is_group(a) or _is_windows(a) or _is_flat(a) for a in default.values())
    assert all(a["startDateTime"]["timeZone"] == "UTC" for a in default.values())
    assert client.handle.admin.info()["seedFeatures"] == []


def test_features_add_their_shapes_and_leave_the_default_world_unchanged(
    client: SandboxClient, featured_client: SandboxClient, featured: SandboxHandle
) -> None:
    default = _everything(client)
    extended = _everything(featured_client)
    assert featured.admin.info()["seedFeatures"] == sorted(SEED_FEATURES)
    for appointment_id, appointment in default.items():
        assert extended[appointment_id] == appointment
    extra = [a for a_id, a in extended.items() if a_id not in default]

    groups = [a for a in extra if _is_group(a)]
    assert len(groups) >= 3
    assert {len(a["customers"]) for a in groups} <= set(range(2, 9))
    assert min(len(a["customers"]) for a in groups) == 2 and max(len(a["customers"]) for a in groups) == 8
    for appointment in groups:
        assert appointment["maximumAttendeesCount"] > 1
        assert appointment["filledAttendeesCount"] == len(appointment["customers"])
        emails = [c["emailAddress"] for c in appointment["customers"]]
        assert all(emails) and len(set(emails)) == len(emails)
        assert all(c["customerId"] for c in appointment["customers"])
    assert any(_instant(a["endDateTime"]) < FIXED_NOW for a in groups)

    windows = [a for a in extra if _is_windows(a)]
    assert {a["startDateTime"]["timeZone"] for a in windows} == set(WINDOWS_ZONES)
    for appointment in windows:
        start, end = appointment["startDateTime"], appointment["endDateTime"]
        assert not start["dateTime"].endswith("Z") and "+" not in start["dateTime"]
        assert _instant(end) - _instant(start) == _duration(appointment["duration"])
    amsterdam = ZoneInfo("Europe/Amsterdam")
    assert any(
        _instant(a["startDateTime"]).astimezone(amsterdam).date()
        != _instant(a["endDateTime"]).astimezone(amsterdam).date()
        and _instant(a["endDateTime"]) < FIXED_NOW
        for a in windows
    ), "one completed Windows-zone appointment crosses local midnight"

    flat = [a for a in extra if _is_flat(a)]
    assert len(flat) >= 3
    for appointment in flat:
        assert appointment["customers"] == [] and appointment["filledAttendeesCount"] == 0
        assert appointment["customerName"] and "@" in appointment["customerEmailAddress"]
        assert _instant(appointment["endDateTime"]) < FIXED_NOW


def _duration(text: str) -> timedelta:
    return parse_iso_duration(text)


@pytest.mark.parametrize("feature", SEED_FEATURES)
def test_each_feature_alone_adds_only_its_shape(feature: str) -> None:
    def world(features: list[str]) -> dict[str, dict[str, Any]]:
        store = BookingsStore(_clock())
        seed_bookings(store, 7, FIXED_NOW, features)
        return {a["id"]: a for entry in store.dump() for a in entry["appointments"]}

    base, added = world([]), world([feature])
    extra = [a for a_id, a in added.items() if a_id not in base]
    assert extra and set(base) < set(added)
    check: dict[str, Callable[[dict[str, Any]], bool]] = {
        "group-appointments": _is_group,
        "windows-time-zones": _is_windows,
        "flat-customer-fields": _is_flat,
    }
    assert all(check[feature](a) for a in extra)
    assert not any(check[other](a) for a in extra for other in check if other != feature)


def _clock() -> ManualClock:
    return ManualClock(FIXED_NOW)


def test_unknown_feature_names_are_refused() -> None:
    assert seed_features(["all"]) == frozenset(SEED_FEATURES)
    with pytest.raises(ValueError, match="group-apointments"):
        seed_features(["group-apointments"])
    answer = subprocess.run(
        [sys.executable, "-m", "sandbox", "--port", "0", "--seed-features", "bogus"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answer.returncode == 2 and "unknown seed feature(s) bogus" in answer.stderr
    assert (
        "--seed-group-appointments"
        in subprocess.run(
            [sys.executable, "-m", "sandbox", "--help"], capture_output=True, text=True, timeout=60
        ).stdout
    )


def test_the_admin_route_accepts_the_three_shapes(sandbox: SandboxHandle, client: SandboxClient) -> None:
    business = client.business_ids[1]
    people = [
        {"customerId": f"c{n}", "name": f"Attendee {n}", "emailAddress": f"a{n}@example.org"}
        for n in range(3)
    ]
    shapes = [
        {
            "startDateTime": {"dateTime": "2026-02-20T18:00:00", "timeZone": "UTC"},
            "endDateTime": {"dateTime": "2026-02-20T18:45:00", "timeZone": "UTC"},
            "serviceName": "Group class",
            "maximumAttendeesCount": 8,
            "customers": people,
        },
        {
            "startDateTime": {
                "dateTime": "2026-02-27T23:30:00.0000000",
                "timeZone": "W. Europe Standard Time",
            },
            "endDateTime": {"dateTime": "2026-02-28T01:30:00.0000000", "timeZone": "W. Europe Standard Time"},
            "serviceName": "Night run coaching",
            "customers": [people[0]],
        },
        {
            "startDateTime": {"dateTime": "2026-02-21T10:00:00Z", "timeZone": "UTC"},
            "endDateTime": {"dateTime": "2026-02-21T11:00:00Z", "timeZone": "UTC"},
            "serviceName": "Intro session",
            "customers": [],
            "customerName": "Flat Only",
            "customerEmailAddress": "Flat.Only@Example.org",
            "customerPhone": "+31 6 0000 0000",
        },
    ]
    for body in shapes:
        created = sandbox.admin.add_appointment(business, body)
        path = f"/solutions/bookingBusinesses/{business}/appointments/{quote(created['id'], safe='')}"
        served = client.graph("GET", path).json()
        assert served["customers"] == created["customers"]
        assert len(served["customers"]) == len(body["customers"])
        assert served["startDateTime"]["timeZone"] == body["startDateTime"]["timeZone"]
        assert _instant(served["startDateTime"]) == _instant(body["startDateTime"])
        for key in ("maximumAttendeesCount", "customerName", "customerEmailAddress", "customerPhone"):
            if key in body:
                assert served[key] == body[key]
    # The Graph API itself (v1.0 CSDL) takes the flat fields too.
    services = client.graph("GET", f"/solutions/bookingBusinesses/{business}/services").json()["value"]
    strict = {
        "serviceId": services[0]["id"],
        "startDateTime": {"dateTime": "2026-03-10T10:00:00.0000000", "timeZone": "UTC"},
        "endDateTime": {"dateTime": "2026-03-10T10:30:00.0000000", "timeZone": "UTC"},
        "customerName": "Flat Api",
        "customerEmailAddress": "flat.api@example.org",
    }
    created = client.graph("POST", f"/solutions/bookingBusinesses/{business}/appointments", json=strict)
    assert created.status_code == 201, created.text
    assert created.json()["customerEmailAddress"] == "flat.api@example.org"
