"""Realistic, deterministic sample data: the same `seed` and "now" always give the same world.

`identity` derives the tenant's ids and credentials, `catalogue` holds the world as data,
`bookings` seeds Graph Bookings (and generates bulk appointments), `company` Business Central.
"""

from sandbox.seed.bookings import generate_appointments, seed_bookings
from sandbox.seed.company import seed_company
from sandbox.seed.identity import (
    CUSTOMER_TEMPLATE,
    ENVIRONMENT,
    FLAT_CUSTOMER_FIELDS,
    GROUP_APPOINTMENTS,
    ITEM_TEMPLATE,
    SEED_FEATURES,
    TIME_ZONE,
    WINDOWS_TIME_ZONES,
    Identity,
    company_record,
    make_identity,
    seed_features,
)

__all__ = [
    "CUSTOMER_TEMPLATE",
    "ENVIRONMENT",
    "FLAT_CUSTOMER_FIELDS",
    "GROUP_APPOINTMENTS",
    "ITEM_TEMPLATE",
    "SEED_FEATURES",
    "TIME_ZONE",
    "WINDOWS_TIME_ZONES",
    "Identity",
    "company_record",
    "generate_appointments",
    "make_identity",
    "seed_bookings",
    "seed_company",
    "seed_features",
]
