"""The sample world as data: the Bookings businesses and their services, the people who book
(and which of them are already Business Central customers), and the items in Business Central.
"""

from __future__ import annotations

from datetime import time
from typing import Any

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
PEOPLE = (
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


# -- Business Central -----------------------------------------------------------------------------

ITEMS = (
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
