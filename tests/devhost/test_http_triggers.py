"""HTTP triggers through the local host: routes, methods, keys, responses, the admin endpoint."""

from __future__ import annotations

import logging

import requests

from tests.helpers import wait_for

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_request_reaches_the_function_and_the_response_comes_back(start_host, caplog) -> None:
    caplog.set_level(logging.INFO, logger="devhost")
    host = start_host()
    response = requests.post(
        f"{host.url}/api/hello/world?x=1&y=two",
        data="payload ✓".encode(),
        headers={"x-test-header": "seen", "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"},
        timeout=10,
    )
    assert response.status_code == 201
    assert response.headers["X-Echo"] == "yes"
    assert response.headers["Content-Type"].startswith("application/json")
    document = response.json()
    assert document["method"] == "POST"
    assert document["name"] == "world"
    assert document["params"] == {"x": "1", "y": "two"}
    assert document["body"] == "payload ✓"
    assert document["header"] == "seen"
    assert document["url"].endswith("/api/hello/world?x=1&y=two")
    # The caller's trace continues in the function (same trace id, new span).
    assert document["traceparent"].split("-")[1] == TRACE_ID
    assert document["traceparent"].split("-")[2] != "00f067aa0ba902b7"
    lines = [r.getMessage() for r in caplog.records if r.name == "devhost"]
    assert any(line.startswith("Executed 'Functions.hello' (Succeeded, Trigger=http") for line in lines)


def test_routes_methods_and_templates(start_host) -> None:
    host = start_host()
    assert requests.get(f"{host.url}/api/items/special", timeout=10).text == "special"
    assert requests.get(f"{host.url}/api/items/42", timeout=10).text == "item 42"
    assert requests.get(f"{host.url}/api/items/abc", timeout=10).status_code == 404
    assert requests.delete(f"{host.url}/api/hello/world", timeout=10).status_code == 404
    assert requests.get(f"{host.url}/api/nothing-here", timeout=10).status_code == 404
    assert requests.get(f"{host.url}/hello/world", timeout=10).status_code == 404  # no route prefix
    # An encoded slash stays inside the route value; dot segments are resolved first.
    assert requests.get(f"{host.url}/api/hello/a%2Fb", timeout=10).json()["name"] == "a%2Fb"
    assert requests.get(f"{host.url}/api/hello/x/../../public", timeout=10).text == "open"


def test_unhandled_exception_is_a_bare_500(start_host, caplog) -> None:
    caplog.set_level(logging.INFO, logger="devhost")
    host = start_host()
    response = requests.get(f"{host.url}/api/boom", timeout=10)
    assert response.status_code == 500
    assert "secret internals" not in response.text
    failed = [r for r in caplog.records if r.getMessage().startswith("Executed 'Functions.boom' (Failed")]
    assert len(failed) == 1 and failed[0].levelno == logging.ERROR


def test_function_key_is_enforced_when_configured(start_host) -> None:
    host = start_host(DEVHOST_FUNCTION_KEY="fkey-123", DEVHOST_MASTER_KEY="mkey-456")
    url = f"{host.url}/api/hello/k"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, params={"code": "wrong"}, timeout=10).status_code == 401
    assert requests.get(url, params={"code": "fkey-123"}, timeout=10).status_code == 201
    assert requests.get(url, headers={"x-functions-key": "fkey-123"}, timeout=10).status_code == 201
    assert requests.get(url, headers={"x-functions-key": "mkey-456"}, timeout=10).status_code == 201
    assert requests.get(f"{host.url}/api/public", timeout=10).text == "open"


def test_keys_are_not_checked_when_unset(start_host) -> None:
    host = start_host()
    assert requests.get(f"{host.url}/api/hello/k", timeout=10).status_code == 201


def test_admin_endpoint_runs_non_http_functions(start_host, world) -> None:
    host = start_host(DEVHOST_MASTER_KEY="mkey-456")
    admin = f"{host.url}/admin/functions"
    assert requests.post(f"{admin}/tick", json={"input": ""}, timeout=10).status_code == 401
    response = requests.post(
        f"{admin}/tick", json={"input": ""}, headers={"x-functions-key": "mkey-456"}, timeout=10
    )
    assert response.status_code == 202
    assert wait_for(lambda: world.records("tick"), what="the timer run")[0]["past_due"] is False

    response = requests.post(
        f"{admin}/work", json={"input": '{"id": "manual"}'}, params={"code": "mkey-456"}, timeout=10
    )
    assert response.status_code == 202
    run = wait_for(lambda: world.records("work_done"), what="the queue function run")[0]
    assert run["body"] == '{"id": "manual"}' and run["dequeue_count"] == 1

    headers = {"x-functions-key": "mkey-456"}
    assert requests.post(f"{admin}/nope", json={"input": ""}, headers=headers, timeout=10).status_code == 404
    assert requests.post(f"{admin}/hello", json={"input": ""}, headers=headers, timeout=10).status_code == 400
    assert requests.post(f"{admin}/tick", data="not json", headers=headers, timeout=10).status_code == 400
    status = requests.get(f"{host.url}/admin/host/status", headers=headers, timeout=10).json()
    assert status["state"] == "Running"
    assert {f["name"] for f in status["functions"]} >= {"hello", "tick", "work"}
