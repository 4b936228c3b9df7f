"""A storage outage that outlasted the retries is a 503 problem with `Retry-After`, never a 500."""

from __future__ import annotations

import json

import pytest

from functions import http_triggers
from shared.domain.errors import StorageUnavailableError


def test_storage_unavailable_is_a_503_problem_with_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_triggers.bootstrap, "container", lambda: object())

    def handler(_container: object) -> object:
        raise StorageUnavailableError("transaction on table Bookings", 6, "ServiceResponseError")

    response = http_triggers._answer("submit_invoice_requests", handler)  # type: ignore[arg-type]

    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert int(response.headers["Retry-After"]) > 0
    document = json.loads(response.get_body())
    assert document["status"] == 503 and document["title"] == "Storage unavailable"
    assert "incidentId" not in document
