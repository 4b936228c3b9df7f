"""Ids and credentials of the sandbox tenant, derived from the seed, and the opt-in seed features."""

from __future__ import annotations

import random
import string
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sandbox.seed.catalogue import BUSINESSES

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


def guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def make_identity(seed: int) -> Identity:
    rng = random.Random(f"identity-{seed}")
    alphabet = string.ascii_letters + string.digits + "_.~-"
    secret = "".join(rng.choice(string.ascii_letters) for _ in range(3)) + "8Q~"
    secret += "".join(rng.choice(alphabet) for _ in range(34))
    return Identity(
        tenant_id=guid(rng),
        client_id=guid(rng),
        client_secret=secret,
        company_id=guid(rng),
        environment=ENVIRONMENT,
        business_ids=tuple(spec["id"] for spec in BUSINESSES),
        time_zone=TIME_ZONE,
        customer_template=CUSTOMER_TEMPLATE,
        item_template=ITEM_TEMPLATE,
    )


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
