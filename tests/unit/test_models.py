"""Booking keys and invoice messages."""

from __future__ import annotations

import base64
import hashlib

import pytest

from shared.domain.models import (
    InvalidMessageError,
    InvoiceMessage,
    booking_key,
    external_document_number,
    is_booking_key,
)


def test_booking_key_is_the_contracts_base32_of_sha256() -> None:
    business, appointment = "Lunch@contoso.com", "AAMkADKoAAA/x+Yz="
    expected = base64.b32encode(hashlib.sha256(b"Lunch@contoso.com\nAAMkADKoAAA/x+Yz=").digest()).decode()[
        :26
    ]
    key = booking_key(business, appointment)
    assert key == expected
    assert is_booking_key(key)
    assert len(external_document_number(key)) <= 35
    assert booking_key(business, appointment + "A") != key
    assert booking_key("other@contoso.com", appointment) != key


@pytest.mark.parametrize(
    "value",
    [
        "",
        "x' or 1 eq 1",
        "../" * 9,
        "abcdefghijklmnopqrstuvwxyz",
        "A" * 25,
        "A" * 27,
        "ABCDEFGHIJKLMNOPQRSTUVWXY1",
        None,
        7,
    ],
)
def test_malformed_keys_are_rejected(value: object) -> None:
    assert not is_booking_key(value)


def test_invoice_message_round_trip_and_validation() -> None:
    key = booking_key("a@b.com", "x")
    message = InvoiceMessage("a@b.com", key, "req-1", traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01")
    assert InvoiceMessage.from_json(message.to_json()) == message
    for bad in ("not json", "[]", '{"businessId": "a@b.com", "bookingKey": "nope", "requestId": "r"}', "{}"):
        with pytest.raises(InvalidMessageError):
            InvoiceMessage.from_json(bad)
