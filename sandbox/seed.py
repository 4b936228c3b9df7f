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
import string
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sandbox.bc_model import CompanyStore
from sandbox.graph import Appointment, BookingsStore, Business, exchange_id
from sandbox.timefmt import graph_datetime, parse_iso_duration, zone_named

TIME_ZONE = "Europe/Amsterdam"
GROUP_APPOINTMENTS = "group-appointments"
WINDOWS_TIME_ZONES = "windows-time-zones"
FLAT_CUSTOMER_FIELDS = "flat-customer-fields"
SEED_FEATURES = (GROUP_APPOINTMENTS, WINDOWS_TIME_ZONES, FLAT_CUSTOMER_FIELDS)


def seed_features(names: Iterable[str]) -> frozenset[str]:
    """Validate feature names (`all` means every one); raises `ValueError` naming the unknown."""
    chosen = {name.strip() for name in names if name.strip()}
    if "all" in chosen:
        return frozenset(SEED_FEATURES)
    unknown = sorted(chosen - set(SEED_FEATURES))
    if unknown:
        raise ValueError(f"unknown seed feature(s) {', '.join(unknown)}; known: {', '.join(SEED_FEATURES)}")
    return frozenset(chosen)


ENVIRONMENT = "Sandbox"
CUSTOMER_TEMPLATE = "CT-BOOKINGS"
ITEM_TEMPLATE = "IT-BOOKINGS"


@dataclass(frozen=True)
class Identity:
    """Ids and credentials of the sandbox tenant; derived from the seed."""

    tenant_id: str
    client_id: str
    client_secret: str
    company_id: str
    environment: str
    business_ids: tuple[str, ...]
    time_zone: str
    customer_template: str
    item_template: str


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def make_identity(seed: int) -> Identity:
    rng = random.Random(f"identity-{seed}")
    alphabet = string.ascii_letters + string.digits + "_.~-"
    secret = "".join(rng.choice(string.ascii_letters) for _ in range(3)) + "8Q~"
    secret += "".join(rng.choice(alphabet) for _ in range(34))
    return Identity(
        tenant_id=_guid(rng),
        client_id=_guid(rng),
        client_secret=secret,
        company_id=_guid(rng),
        environment=ENVIRONMENT,
        business_ids=tuple(spec["id"] for spec in BUSINESSES),
        time_zone=TIME_ZONE,
        customer_template=CUSTOMER_TEMPLATE,
        item_template=ITEM_TEMPLATE,
    )


# -- Bookings catalogue ---------------------------------------------------------------------------

# (displayName, priceType, price, duration, weight)
_LUNCH_SERVICES = (
    ("Catered bento", "fixedPrice", 10.0, "PT30M", 10),
    ("Private chef evening", "hourly", 45.0, "PT3H", 3),
    ("Menu tasting", "free", 0.0, "PT30M", 3),
    ("Event catering", "startingAt", 250.0, "PT4H", 2),
    ("Custom cake consultation", "callUs", 0.0, "PT45M", 2),
    ("Wine pairing", "priceVaries", 0.0, "PT1H", 2),
    ("Kitchen tour", "notSet", 0.0, "PT1H", 1),
)
_FITNESS_SERVICES = (
    ("Personal training", "hourly", 60.0, "PT1H", 10),
    ("Group class", "fixedPrice", 15.0, "PT45M", 8),
    ("Intro session", "free", 0.0, "PT30M", 3),
    ("Nutrition plan", "startingAt", 80.0, "PT1H", 2),
    ("Physio assessment", "callUs", 0.0, "PT1H", 2),
    ("Sports massage", "priceVaries", 0.0, "PT1H", 2),
    ("Night run coaching", "fixedPrice", 25.0, "PT2H", 1),
)

BUSINESSES: tuple[dict[str, Any], ...] = (
    {
        "id": "ContosoLunchDelivery@contoso.onmicrosoft.com",
        "displayName": "Contoso Lunch Delivery",
        "businessType": "Catering",
        "phone": "+31 20 555 0100",
        "webSiteUrl": "https://lunch.contoso.example",
        "services": _LUNCH_SERVICES,
        "midnight_service": "Private chef evening",
        "midnight_start": time(22, 0),
    },
    {
        "id": "FabrikamFitness@contoso.onmicrosoft.com",
        "displayName": "Fabrikam Fitness",
        "businessType": "Fitness",
        "phone": "+31 20 555 0200",
        "webSiteUrl": "https://fitness.fabrikam.example",
        "services": _FITNESS_SERVICES,
        "midnight_service": "Night run coaching",
        "midnight_start": time(23, 30),
    },
)

# (name, Bookings email or None, phone, BC email or None if not a BC customer, BC blocked)
_PEOPLE = (
    ("Bob Kelly", "Bob.Kelly@TailspinToys.com", "213-555-0108", "bob.kelly@tailspintoys.com", "_x0020_"),
    ("Siobhán O'Brien", "o'brien@fourthcoffee.com", "+353 1 555 0134", "O'Brien@FourthCoffee.com", "_x0020_"),
    ("Aiko Tanaka", "AIKO.TANAKA@fabrikam.com", "+81 3 5550 1234", "aiko.tanaka@fabrikam.com", "_x0020_"),
    (
        "Marie Dubois",
        "marie.dubois@wideworldimporters.com",
        "+33 1 55 50 12 12",
        "marie.dubois@wideworldimporters.com",
        "_x0020_",
    ),
    (
        "Priya Sharma",
        "priya.sharma@adventure-works.com",
        "+91 22 5550 1010",
        "Priya.Sharma@Adventure-Works.com",
        "_x0020_",
    ),
    (
        "Emma Schmidt",
        "Emma.Schmidt@proseware.com",
        "+49 30 5550 1313",
        "emma.schmidt@proseware.com",
        "_x0020_",
    ),
    (
        "Fatima Zahra",
        "fatima@lucernepublishing.com",
        "+212 5 5550 1414",
        "fatima@lucernepublishing.com",
        "_x0020_",
    ),
    ("Jordan Miller", "jordanm@contoso.com", "425-555-0177", "jordanm@contoso.com", "Invoice"),
    ("Lars Jensen", "lars.jensen@northwindtraders.com", "+45 33 55 50 10", None, None),
    ("Pieter de Vries", "Pieter@DeVries.nl", "+31 6 5550 1234", None, None),
    ("Chen Wei", "chen.wei@litware.com", "+86 10 5550 1515", None, None),
    ("Carlos Gómez", "carlos.gomez@relecloud.com", "+34 91 555 0116", None, None),
    ("Walk-in guest", None, "", None, None),
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
    fields = {
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
    business = Business(id=spec["id"], fields=fields)
    for index in range(3):
        staff_id = _guid(rng)
        business.staff[staff_id] = {
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
    for name, price_type, price, duration, _weight in spec["services"]:
        service_id = _guid(rng)
        business.services[service_id] = {
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
            "staffMemberIds": list(business.staff),
            "customQuestions": [],
            "webUrl": f"https://outlook.office365.com/owa/calendar/{spec['id']}/bookings/s/{service_id}",
            "createdDateTime": stamp,
            "lastUpdatedDateTime": stamp,
        }
    for name, email, phone, _bc_email, _blocked in _PEOPLE:
        customer_id = _guid(rng)
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
            "serviceLocation": {
                "displayName": business.fields["displayName"],
                "locationEmailAddress": None,
                "locationUri": "",
                "locationType": None,
                "uniqueId": None,
                "uniqueIdType": None,
                "address": dict(business.fields["address"]),
                "coordinates": {"altitude": "NaN", "latitude": "NaN", "longitude": "NaN", "accuracy": "NaN"},
            },
            "reminders": [],
            "customers": [_customer_information(customer)] if customer else [],
        },
    )


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


# -- Business Central -----------------------------------------------------------------------------

_ITEMS = (
    # number, displayName, type, unitPrice, unit of measure, tax group, category
    ("SVC-0001", "Catered bento", "Service", 10.0, "PCS", "REDUCED", "CATERING"),
    ("SVC-0002", "Personal Training", "Service", 55.0, "HOUR", "STANDARD", "FITNESS"),
    ("SVC-0003", "group class", "Service", 15.0, "SESSION", "STANDARD", "FITNESS"),
    ("SVC-0004", "Event catering", "Service", 250.0, "DAY", "REDUCED", "CATERING"),
    ("SVC-0005", "Menu tasting", "Service", 0.0, "SESSION", "REDUCED", "CATERING"),
    ("SVC-0006", "Sports massage", "Service", 70.0, "HOUR", "STANDARD", "FITNESS"),
    ("1000", "Wine pairing", "Inventory", 18.5, "PCS", "STANDARD", "MERCH"),
    ("1001", "Protein bar", "Inventory", 2.95, "PCS", "REDUCED", "MERCH"),
    ("1002", "Gift card", "Non_x002D_Inventory", 25.0, "PCS", "ZERO", "MERCH"),
)


def seed_company(store: CompanyStore, seed: int) -> None:
    """Setup tables, a template customer and item, and the customers and items already in BC."""
    store.clear(seed)
    add = store.add_reference
    add("currencies", "USD", "US dollar", symbol="$", amountDecimalPlaces="2:2")
    add("currencies", "GBP", "British pound", symbol="£", amountDecimalPlaces="2:2")
    add(
        "paymentTerms",
        "14 DAYS",
        "Net 14 days",
        dueDateCalculation="14D",
        discountDateCalculation="",
        discountPercent=0,
    )
    add(
        "paymentTerms",
        "30 DAYS",
        "Net 30 days",
        dueDateCalculation="30D",
        discountDateCalculation="",
        discountPercent=0,
    )
    add(
        "paymentTerms",
        "CM",
        "Current month",
        dueDateCalculation="CM",
        discountDateCalculation="",
        discountPercent=0,
    )
    add(
        "paymentTerms",
        "COD",
        "Cash on delivery",
        dueDateCalculation="0D",
        discountDateCalculation="",
        discountPercent=0,
    )
    for code, name in (("BANK", "Bank transfer"), ("CARD", "Card payment"), ("CASH", "Cash")):
        add("paymentMethods", code, name)
    for code, name in (("PICKUP", "Pickup at location"), ("DELIVERY", "Delivered")):
        add("shipmentMethods", code, name)
    add("taxAreas", "NL-DOM", "Domestic (NL)", taxType="VAT")
    add("taxAreas", "EU", "EU customers", taxType="VAT")
    for code, name, rate in (
        ("STANDARD", "Standard VAT", 21),
        ("REDUCED", "Reduced VAT", 9),
        ("ZERO", "Zero VAT", 0),
    ):
        add("taxGroups", code, name, taxType="VAT")
        store.tax_rates[code] = Decimal(rate)
    for code, name, iso in (
        ("HOUR", "Hour", "HUR"),
        ("PCS", "Piece", "EA"),
        ("SESSION", "Session", "E48"),
        ("DAY", "Day", "DAY"),
    ):
        add("unitsOfMeasure", code, name, internationalStandardCode=iso, symbol=code.lower())
    for code, name in (
        ("SERVICES", "Services"),
        ("CATERING", "Catering"),
        ("FITNESS", "Fitness"),
        ("MERCH", "Merchandise"),
    ):
        add("itemCategories", code, name)
    for code, name in (("SERVICES", "Services"), ("RETAIL", "Retail")):
        add("generalProductPostingGroups", code, name)
    add("inventoryPostingGroups", "RESALE", "Resale items")

    terms = store.reference_by_code("paymentTerms", "14 DAYS")
    bank = store.reference_by_code("paymentMethods", "BANK")
    domestic = store.reference_by_code("taxAreas", "NL-DOM")
    assert terms and bank and domestic
    store.create_customer(
        {
            "number": CUSTOMER_TEMPLATE,
            "displayName": "TEMPLATE - Bookings customers (do not invoice)",
            "type": "Person",
            "country": "NL",
            "currencyCode": "",
            "paymentTermsId": terms["id"],
            "paymentMethodId": bank["id"],
            "taxLiable": True,
            "taxAreaId": domestic["id"],
            "blocked": "All",
        }
    )
    store.create_item(
        {
            "number": ITEM_TEMPLATE,
            "displayName": "TEMPLATE - Bookings services (do not sell)",
            "type": "Service",
            "blocked": True,
            "unitPrice": 0,
            "baseUnitOfMeasureCode": "HOUR",
            "taxGroupCode": "STANDARD",
            "generalProductPostingGroupCode": "SERVICES",
            "itemCategoryCode": "SERVICES",
        }
    )
    for name, _email, phone, bc_email, blocked in _PEOPLE:
        if bc_email is None:
            continue
        store.create_customer(
            {
                "displayName": name,
                "type": "Person",
                "email": bc_email,
                "phoneNumber": phone,
                "addressLine1": "Keizersgracht 1",
                "city": "Amsterdam",
                "country": "NL",
                "postalCode": "1015 CJ",
                "paymentTermsId": terms["id"],
                "paymentMethodId": bank["id"],
                "taxLiable": True,
                "taxAreaId": domestic["id"],
                "blocked": blocked,
            }
        )
    for name, type_, email in (
        ("Adatum Corporation", "Company", "accounts@adatum.com"),
        ("Trey Research", "Company", "ap@treyresearch.net"),
    ):
        store.create_customer(
            {"displayName": name, "type": type_, "email": email, "taxLiable": True, "country": "NL"}
        )
    for number, name, type_, price, unit, tax_group, category in _ITEMS:
        body: dict[str, Any] = {
            "number": number,
            "displayName": name,
            "type": type_,
            "unitPrice": price,
            "baseUnitOfMeasureCode": unit,
            "taxGroupCode": tax_group,
            "itemCategoryCode": category,
            "generalProductPostingGroupCode": "SERVICES" if type_ == "Service" else "RETAIL",
        }
        if type_ == "Inventory":
            body["inventoryPostingGroupCode"] = "RESALE"
        store.create_item(body)


def company_record(identity: Identity, now: datetime) -> dict[str, Any]:
    created = (now - timedelta(days=730)).replace(microsecond=0)
    return {
        "id": identity.company_id,
        "systemVersion": "27.0.38460.40100",
        "timestamp": 1000,
        "name": "CRONUS Sandbox",
        "displayName": "CRONUS Sandbox B.V.",
        "businessProfileId": "",
        "systemCreatedAt": created.isoformat().replace("+00:00", "Z"),
        "systemCreatedBy": "00000000-0000-0000-0000-000000000001",
        "systemModifiedAt": created.isoformat().replace("+00:00", "Z"),
        "systemModifiedBy": "00000000-0000-0000-0000-000000000001",
    }
