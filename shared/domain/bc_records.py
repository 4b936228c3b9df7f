"""Business Central records as the use cases see them (the adapter maps API v2.0 JSON to these)."""

from __future__ import annotations

from dataclasses import dataclass

BLANK_GUID = "00000000-0000-0000-0000-000000000000"
"""What Business Central puts in an unset GUID field."""


@dataclass(frozen=True)
class BcCustomer:
    id: str
    number: str
    display_name: str
    email: str
    blocked: str = ""  # `_x0020_` (blank) | `Ship` | `Invoice` | `All`; see `record_choice.py`


@dataclass(frozen=True)
class BcItem:
    id: str
    number: str
    display_name: str
    type: str
    blocked: bool = False


@dataclass(frozen=True)
class BcInvoice:
    id: str
    number: str
    external_document_number: str
    status: str


@dataclass(frozen=True)
class Link:
    """A Business Central record a Bookings customer or service stands for."""

    id: str
    number: str
