"""Realistic, deterministic sample data: the same `seed` and "now" always give the same world.

What it contains is chosen to exercise what goes wrong in real bulk invoicing: every Bookings
`priceType`, customers whose emails differ in case between Bookings and Business Central, an
apostrophe in a name and an email local part (OData quoting), a customer without email, an
appointment without customers, appointments crossing local midnight in Europe/Amsterdam (the
invoice date differs from the UTC date), Business Central items that match services by display name
in another case, one that matches by name but is not a Service, services with no item at all,
a blocked customer, and template records (themselves blocked, as templates usually are) whose
payment, currency, tax and posting fields new records copy.

Three further shapes the real Graph serves are opt-in `SEED_FEATURES` (off by default, each adds
its own appointments and leaves the rest of the world exactly as without it):
`group-appointments` (classes with 2 to 8 attendees in `customers`), `windows-time-zones`
(`dateTimeTimeZone` with a Windows zone name and a local time without offset) and
`flat-customer-fields` (only `customerName`/`customerEmailAddress`/`customerPhone`, `customers`
empty).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sandbox.core.timefmt import graph_datetime, parse_iso_duration, zone_named
from sandbox.graph import Appointment, BookingsStore, Business, exchange_id
from sandbox.seed.catalogue import BUSINESSES, PEOPLE
from sandbox.seed.identity import (
    FLAT_CUSTOMER_FIELDS,
    GROUP_APPOINTMENTS,
    TIME_ZONE,
    WINDOWS_TIME_ZONES,
    guid,
    seed_features,
)


def seed_bookings(
    store: BookingsStore, seed: int, now: datetime, features: Iterable[str] = frozenset()
) -> None:
    """Two businesses with services, customers, staff and a few hundred appointments around `now`.

    `features` (see `SEED_FEATURES`) add group, Windows-zone and flat-customer appointments.
    """
    chosen = seed_features(features)
    rng = random.Random(f"bookings-{seed}")
    zone = ZoneInfo(TIME_ZONE)
    created = now - timedelta(days=400)
    with store.lock:
        store.clear()
        for spec in BUSINESSES:
            business = _business(spec, rng, created)
            store.add_business(business)
            _seed_appointments(business, spec, rng, now, zone)
        for spec in BUSINESSES:
            # A generator of its own: the default world is identical with or without features.
            extra = random.Random(f"bookings-features-{seed}-{spec['id']}")
            business = store.business(spec["id"])
            assert business is not None
            if GROUP_APPOINTMENTS in chosen:
                _seed_group_appointments(business, extra, now, zone)
            if WINDOWS_TIME_ZONES in chosen:
                _seed_windows_zone_appointments(business, spec, extra, now, zone)
            if FLAT_CUSTOMER_FIELDS in chosen:
                _seed_flat_customer_appointments(business, extra, now, zone)


# (days from today, local start, attendees): classes of 2 to 8, one still to come.
_CLASSES = (
    (-2, time(18, 0), 5),
    (-5, time(7, 30), 2),
    (-9, time(18, 0), 8),
    (-16, time(12, 15), 3),
    (2, time(18, 0), 6),
)
# (days from today, local start, Windows zone name): one crossing local midnight, one in another zone.
_WINDOWS_ZONE_SLOTS = (
    (-4, time(22, 30), "W. Europe Standard Time"),
    (-6, time(12, 0), "W. Europe Standard Time"),
    (-8, time(9, 0), "GMT Standard Time"),
    (3, time(11, 0), "W. Europe Standard Time"),
)
_FLAT_CUSTOMER_DAYS = (-3, -7, -11)


def _seed_group_appointments(business: Business, rng: random.Random, now: datetime, zone: ZoneInfo) -> None:
    """Classes of a group service (`maximumAttendeesCount` > 1), one attendee per `customers` entry."""
    groups = [s for s in business.services.values() if s["maximumAttendeesCount"] > 1]
    if not groups:
        return
    service = groups[0]
    people = [c for c in business.customers.values() if c["emailAddress"]]
    today = now.astimezone(zone).date()
    for offset, start, size in _CLASSES:
        start_local = datetime.combine(today + timedelta(days=offset), start, zone)
        appointment = _appointment(business, service, None, start_local, rng, now)
        attendees = rng.sample(people, min(size, len(people)))
        appointment.fields["customers"] = [_customer_information(person) for person in attendees]
        business.add(appointment)


def _seed_windows_zone_appointments(
    business: Business, spec: dict[str, Any], rng: random.Random, now: datetime, zone: ZoneInfo
) -> None:
    """Appointments served with a Windows zone name and a local `dateTime` without offset."""
    services = {s["displayName"]: s for s in business.services.values()}
    people = [c for c in business.customers.values() if c["emailAddress"]][:8]
    today = now.astimezone(zone).date()
    for offset, start, zone_name in _WINDOWS_ZONE_SLOTS:
        local_zone = zone_named(zone_name)
        service = (
            services[spec["midnight_service"]] if start.hour >= 22 else rng.choice(list(services.values()))
        )
        start_local = datetime.combine(today + timedelta(days=offset), start, local_zone)
        appointment = _appointment(business, service, rng.choice(people), start_local, rng, now)
        appointment.time_zone = zone_name
        business.add(appointment)


def _seed_flat_customer_appointments(
    business: Business, rng: random.Random, now: datetime, zone: ZoneInfo
) -> None:
    """Appointments whose customer is only in the flat v1.0 fields; `customers` is empty."""
    services = [s for s in business.services.values() if s["maximumAttendeesCount"] == 1]
    people = [c for c in business.customers.values() if c["emailAddress"]]
    today = now.astimezone(zone).date()
    for offset in _FLAT_CUSTOMER_DAYS:
        start_local = datetime.combine(today + timedelta(days=offset), time(rng.randint(9, 17), 0), zone)
        person = rng.choice(people)
        appointment = _appointment(business, rng.choice(services), None, start_local, rng, now)
        phones = person.get("phones") or []
        appointment.fields.update(
            {
                "customers": [],
                "customerName": person["displayName"],
                "customerEmailAddress": person["emailAddress"],
                "customerPhone": phones[0]["number"] if phones else None,
            }
        )
        business.add(appointment)


def _business(spec: dict[str, Any], rng: random.Random, created: datetime) -> Business:
    stamp = graph_datetime(created)
    business = Business(id=spec["id"], fields=_business_fields(spec, stamp))
    for index in range(3):
        staff_id = guid(rng)
        business.staff[staff_id] = _staff_member(spec, staff_id, index, stamp)
    for offer in spec["services"]:
        service_id = guid(rng)
        business.services[service_id] = _service(spec, service_id, offer, list(business.staff), stamp)
    for name, email, phone, _bc_email, _blocked in PEOPLE:
        customer_id = guid(rng)
        business.customers[customer_id] = {
            "@odata.type": "#microsoft.graph.bookingCustomer",
            "id": customer_id,
            "displayName": name,
            "emailAddress": email or "",
            "addresses": [],
            "phones": [{"number": phone, "type": "mobile"}] if phone else [],
            "createdDateTime": stamp,
            "lastUpdatedDateTime": stamp,
        }
    return business


def _business_fields(spec: dict[str, Any], stamp: str) -> dict[str, Any]:
    return {
        "id": spec["id"],
        "displayName": spec["displayName"],
        "businessType": spec["businessType"],
        "phone": spec["phone"],
        "email": spec["id"],
        "webSiteUrl": spec["webSiteUrl"],
        "defaultCurrencyIso": "EUR",
        "isPublished": True,
        "publicUrl": f"https://outlook.office365.com/owa/calendar/{spec['id']}/bookings/",
        "languageTag": "en-US",
        "address": {
            "street": "Herengracht 100",
            "city": "Amsterdam",
            "state": "NH",
            "countryOrRegion": "NL",
            "postalCode": "1015 BS",
        },
        "businessHours": [],
        "schedulingPolicy": {
            "timeSlotInterval": "PT15M",
            "minimumLeadTime": "PT1H",
            "maximumAdvance": "P90D",
            "sendConfirmationsToOwner": True,
            "allowStaffSelection": True,
        },
        "createdDateTime": stamp,
        "lastUpdatedDateTime": stamp,
    }


def _staff_member(spec: dict[str, Any], staff_id: str, index: int, stamp: str) -> dict[str, Any]:
    return {
        "id": staff_id,
        "displayName": f"{spec['displayName'].split()[0]} staff {index + 1}",
        "emailAddress": f"staff{index + 1}@{spec['id'].split('@')[1]}",
        "role": "administrator" if index == 0 else "member",
        "timeZone": TIME_ZONE,
        "useBusinessHours": True,
        "isEmailNotificationEnabled": False,
        "availabilityIsAffectedByPersonalCalendar": False,
        "membershipStatus": "active",
        "workingHours": [],
        "createdDateTime": stamp,
        "lastUpdatedDateTime": stamp,
    }


def _service(
    spec: dict[str, Any], service_id: str, offer: tuple[Any, ...], staff_ids: list[str], stamp: str
) -> dict[str, Any]:
    """A bookingService; `offer` is (displayName, priceType, price, duration, weight)."""
    name, price_type, price, duration, _weight = offer
    return {
        "id": service_id,
        "displayName": name,
        "description": f"{name} by {spec['displayName']}",
        "additionalInformation": "",
        "defaultDuration": duration,
        "defaultPrice": price,
        "defaultPriceType": price_type,
        "defaultLocation": None,
        "defaultReminders": [],
        "isHiddenFromCustomers": False,
        "isLocationOnline": False,
        "isAnonymousJoinEnabled": False,
        "isCustomerAllowedToManageBooking": True,
        "languageTag": "en-US",
        "maximumAttendeesCount": 10 if "class" in name.lower() else 1,
        "notes": "",
        "preBuffer": "PT0S",
        "postBuffer": "PT10M" if price_type == "fixedPrice" else "PT0S",
        "smsNotificationsEnabled": False,
        "staffMemberIds": staff_ids,
        "customQuestions": [],
        "webUrl": f"https://outlook.office365.com/owa/calendar/{spec['id']}/bookings/s/{service_id}",
        "createdDateTime": stamp,
        "lastUpdatedDateTime": stamp,
    }


def _seed_appointments(
    business: Business, spec: dict[str, Any], rng: random.Random, now: datetime, zone: ZoneInfo
) -> None:
    services = list(business.services.values())
    weights = [entry[4] for entry in spec["services"]]
    customers = list(business.customers.values())
    today = now.astimezone(zone).date()
    by_name = {service["displayName"]: service for service in services}
    first_past: Appointment | None = None
    for offset in range(-42, 15):
        day = today + timedelta(days=offset)
        count = rng.randint(2, 5) if offset < 0 else rng.randint(0, 2)
        for _ in range(count):
            service = rng.choices(services, weights=weights)[0]
            start_local = datetime.combine(day, time(rng.randint(8, 18), rng.choice((0, 15, 30, 45))), zone)
            appointment = _appointment(business, service, rng.choice(customers), start_local, rng, now)
            business.add(appointment)
            if first_past is None and offset == -3:
                first_past = appointment
        if offset % 7 == 0:
            # A weekly late appointment that crosses local midnight (and often the UTC date).
            service = by_name[spec["midnight_service"]]
            start_local = datetime.combine(day, spec["midnight_start"], zone)
            business.add(_appointment(business, service, rng.choice(customers[:8]), start_local, rng, now))
        if offset % 10 == 3:
            # Just after local midnight: still the previous day in UTC.
            service = rng.choices(services, weights=weights)[0]
            start_local = datetime.combine(day, time(0, 15), zone)
            business.add(_appointment(business, service, rng.choice(customers[:8]), start_local, rng, now))
    if first_past is not None:
        first_past.fields["customers"] = []


def _appointment(
    business: Business,
    service: dict[str, Any],
    customer: dict[str, Any] | None,
    start_local: datetime,
    rng: random.Random,
    now: datetime,
) -> Appointment:
    duration = parse_iso_duration(service["defaultDuration"])
    if service["defaultPriceType"] == "hourly":
        duration = timedelta(minutes=rng.choice((60, 90, 120, 150, 180)))
    start = start_local.astimezone(UTC)
    end = start + duration
    created = min(start - timedelta(days=rng.randint(1, 20), minutes=rng.randint(0, 600)), now)
    return Appointment(
        id=exchange_id(rng),
        start=start,
        end=end,
        fields={
            "selfServiceAppointmentId": f"{rng.getrandbits(48):012X}",
            "additionalInformation": "",
            "isLocationOnline": False,
            "joinWebUrl": None,
            "anonymousJoinWebUrl": None,
            "appointmentLabel": "",
            "customerTimeZone": TIME_ZONE,
            "serviceId": service["id"],
            "serviceName": service["displayName"],
            "serviceNotes": None,
            "preBuffer": service["preBuffer"],
            "postBuffer": service["postBuffer"],
            "priceType": service["defaultPriceType"],
            "price": service["defaultPrice"],
            "optOutOfCustomerEmail": False,
            "smsNotificationsEnabled": False,
            "isCustomerAllowedToManageBooking": True,
            "maximumAttendeesCount": service["maximumAttendeesCount"],
            "staffMemberIds": [rng.choice(list(business.staff))],
            "createdDateTime": graph_datetime(created),
            "lastUpdatedDateTime": graph_datetime(created),
            "serviceLocation": _service_location(business),
            "reminders": [],
            "customers": [_customer_information(customer)] if customer else [],
        },
    )


def _service_location(business: Business) -> dict[str, Any]:
    return {
        "displayName": business.fields["displayName"],
        "locationEmailAddress": None,
        "locationUri": "",
        "locationType": None,
        "uniqueId": None,
        "uniqueIdType": None,
        "address": dict(business.fields["address"]),
        "coordinates": {"altitude": "NaN", "latitude": "NaN", "longitude": "NaN", "accuracy": "NaN"},
    }


def _customer_information(customer: dict[str, Any]) -> dict[str, Any]:
    phones = customer.get("phones") or []
    return {
        "@odata.type": "#microsoft.graph.bookingCustomerInformation",
        "customerId": customer["id"],
        "name": customer["displayName"],
        "emailAddress": customer["emailAddress"] or None,
        "phone": phones[0]["number"] if phones else None,
        "notes": None,
        "location": None,
        "timeZone": TIME_ZONE,
        "customQuestionAnswers": [],
    }


def generate_appointments(
    store: BookingsStore,
    business_id: str,
    count: int,
    start: datetime,
    end: datetime,
    seed: int,
) -> int:
    """Add `count` appointments spread evenly over [start, end): bulk data for benchmarks."""
    if count < 0 or end <= start:
        raise ValueError("count must be >= 0 and end after start")
    rng = random.Random(f"generate-{seed}-{business_id}-{count}")
    with store.lock:
        business = store.business(business_id)
        if business is None:
            raise KeyError(business_id)
        services = list(business.services.values())
        customers = [c for c in business.customers.values() if c["emailAddress"]]
        span = (end - start).total_seconds()
        now = store.clock.now()
        for index in range(count):
            offset = span * index / max(count, 1)
            slot_start = start + timedelta(seconds=int(offset // 900) * 900)
            service = services[index % len(services)]
            appointment = _appointment(business, service, rng.choice(customers), slot_start, rng, now)
            business.add(appointment)
    return count
