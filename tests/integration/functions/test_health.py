"""`health` through the local host and Azurite: 200 when usable, 503 naming the failing check."""

from __future__ import annotations

import requests

from devhost.azurite import dev_connection_string, free_port
from tests.conftest import product_settings


def test_healthy_when_settings_are_valid_and_storage_answers(start_product_host, storage_connection_string):
    host = start_product_host(product_settings(storage_connection_string))
    response = requests.get(f"{host.url}/api/health", timeout=30)
    assert response.status_code == 200
    document = response.json()
    assert document["status"] == "ok"
    assert document["checks"]["settings"]["ok"] and document["checks"]["storage"]["ok"]


def test_bad_setting_is_named_and_secrets_stay_hidden(start_product_host, storage_connection_string):
    settings = product_settings(storage_connection_string, BC_COMPANY_ID="not-a-guid")
    host = start_product_host(settings)
    response = requests.get(f"{host.url}/api/health", timeout=30)
    assert response.status_code == 503
    document = response.json()
    assert document["failing"] == ["settings", "storage"]
    assert "BC_COMPANY_ID" in document["checks"]["settings"]["detail"]
    assert settings["ENTRA_CLIENT_SECRET"] not in response.text
    assert "AccountKey" not in response.text


def test_unreachable_storage_is_a_503(start_product_host, storage_connection_string):
    port = free_port()
    closed = dev_connection_string("127.0.0.1", port, port, port)
    host = start_product_host(product_settings(storage_connection_string, AzureWebJobsStorage=closed))
    response = requests.get(f"{host.url}/api/health", timeout=120)
    assert response.status_code == 503
    assert response.json()["failing"] == ["storage"]
    assert "AccountKey" not in response.text
