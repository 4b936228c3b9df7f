"""Fault switches and throttling models: each does what it says, checked through the server's own
records (counters, concurrency maxima, recorded delays) instead of wall-clock thresholds."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
import requests

from sandbox import SandboxAdminError, SandboxHandle
from sandbox.__main__ import build_parser, fault_patch
from sandbox.core.fault_config import FaultConfig
from tests.sandbox.support import BC_SCOPE, GRAPH_SCOPE, SandboxClient, wait_for

INVOICE = {
    "customerNumber": "C00010",
    "externalDocumentNumber": "BKG-DROPPED",
    "salesInvoiceLines": [{"lineType": "Item", "lineObjectNumber": "SVC-0001", "quantity": 1}],
}


def _bc_stats(sandbox: SandboxHandle) -> dict[str, Any]:
    return sandbox.app.faults.stats()["concurrency"]["bc"]


def _running(sandbox: SandboxHandle) -> tuple[int, int]:
    clients = _bc_stats(sandbox)["clients"].values()
    return sum(c["running"] for c in clients), sum(c["queued"] for c in clients)


@contextmanager
def _parallel(workers: int) -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _fresh_get(client: SandboxClient, url: str, token: str, **kwargs: Any) -> requests.Response:
    """A request on its own connection, as concurrent clients make them."""
    with requests.Session() as session:
        return session.get(
            url, headers={"Authorization": f"Bearer {token}"}, verify=client.verify, timeout=60, **kwargs
        )


def test_latency_is_applied_and_recorded(sandbox: SandboxHandle, client: SandboxClient) -> None:
    sandbox.admin.set_faults({"latency": {"bc": 0.05}})
    assert client.bc("GET", "/customers", params={"$top": "1"}).status_code == 200
    assert client.bc("GET", "/items", params={"$top": "1"}).status_code == 200
    latency = sandbox.admin.counters()["latency"]
    assert latency["bc"]["count"] == 2
    assert latency["bc"]["configuredSeconds"] == pytest.approx(0.1)
    assert "graph" not in latency


def test_a_slow_request_does_not_block_others(sandbox: SandboxHandle, client: SandboxClient) -> None:
    bc_token, graph_token = client.token(BC_SCOPE), client.token(GRAPH_SCOPE)
    sandbox.admin.set_faults({"latency": {"bc": 60}})
    with _parallel(1) as pool:
        slow: Future[requests.Response] = pool.submit(
            _fresh_get, client, client.company_url + "/items", bc_token
        )
        wait_for(lambda: _running(sandbox)[0] == 1, what="the slow request running")
        business = client.business_ids[0]
        fast = client.graph("GET", f"/solutions/bookingBusinesses/{business}", token=graph_token)
        assert fast.status_code == 200
        assert not slow.done()  # ordering, not timing: the fast one finished while the slow one runs
        sandbox.admin.reset()  # ends the injected delay
        assert slow.result(timeout=30).status_code == 200


def test_business_central_runs_five_per_client_and_queues_the_rest(
    sandbox: SandboxHandle, client: SandboxClient
) -> None:
    token = client.token(BC_SCOPE)
    sandbox.admin.set_faults({"latency": {"bc": 60}})
    with _parallel(8) as pool:
        futures = [
            pool.submit(_fresh_get, client, client.company_url + "/customers", token) for _ in range(8)
        ]
        wait_for(lambda: _running(sandbox) == (5, 3), what="5 running and 3 queued")
        stats = _bc_stats(sandbox)
        assert stats["maxRunning"] == 5
        assert stats["maxQueued"] == 3
        sandbox.admin.set_faults({"latency": {"bc": 0}})
        sandbox.app.faults.interrupt()  # end the delays in flight; the queued three then run
        assert [f.result(timeout=30).status_code for f in futures] == [200] * 8
    assert _bc_stats(sandbox)["maxRunning"] == 5  # the queued three ran afterwards, still five at most
    assert sandbox.admin.counters()["events"]["bc.queued"] == 3


def test_business_central_429_when_running_plus_queued_exceeds_max_connections(
    sandbox: SandboxHandle, client: SandboxClient
) -> None:
    token = client.token(BC_SCOPE)
    sandbox.admin.set_faults(
        {"latency": {"bc": 60}, "bcConcurrency": {"maxRunning": 1, "maxConnections": 2, "retryAfter": 4}}
    )
    with _parallel(2) as pool:
        held = [pool.submit(_fresh_get, client, client.company_url + "/items", token) for _ in range(2)]
        wait_for(lambda: _running(sandbox) == (1, 1), what="1 running and 1 queued")
        refused = client.bc("GET", "/customers")
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "4"
        assert refused.json()["error"]["code"] == "Application_TooManyRequests"
        sandbox.admin.reset()
        assert [f.result(timeout=30).status_code for f in held] == [200, 200]


def test_business_central_503_after_the_queue_timeout(sandbox: SandboxHandle, client: SandboxClient) -> None:
    token = client.token(BC_SCOPE)
    sandbox.admin.set_faults(
        {"latency": {"bc": 60}, "bcConcurrency": {"maxRunning": 1, "queueTimeoutSeconds": 0.2}}
    )
    with _parallel(1) as pool:
        held = pool.submit(_fresh_get, client, client.company_url + "/items", token)
        wait_for(lambda: _running(sandbox)[0] == 1, what="the first request running")
        timed_out = client.bc("GET", "/customers")
        assert timed_out.status_code == 503
        assert sandbox.admin.counters()["events"]["bc.queueTimeout"] == 1
        sandbox.admin.reset()
        assert held.result(timeout=30).status_code == 200


def test_business_central_rate_window(sandbox: SandboxHandle, client: SandboxClient) -> None:
    sandbox.admin.set_faults({"bcRateLimit": {"limit": 3, "windowSeconds": 300, "retryAfter": 7}})
    statuses = [client.bc("GET", "/customers", params={"$top": "1"}).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    limited = client.bc("GET", "/customers", params={"$top": "1"})
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "7"
    assert limited.json()["error"]["code"] == "Application_TooManyRequests"
    sandbox.admin.set_faults({"bcRateLimit": {"retryAfter": None}})
    assert "Retry-After" not in client.bc("GET", "/customers").headers


def test_injected_failures_per_service(sandbox: SandboxHandle, client: SandboxClient) -> None:
    client.token(GRAPH_SCOPE), client.token(BC_SCOPE)
    sandbox.admin.set_faults(
        {
            "failures": {
                "bc": [{"status": 429, "count": 2, "retryAfter": 3}],
                "graph": [{"status": 503, "fraction": 1.0, "retryAfter": 2}],
                "entra": [{"status": 429, "count": 1, "retryAfter": 1}],
            }
        }
    )
    responses = [client.bc("GET", "/customers", params={"$top": "1"}) for _ in range(3)]
    assert [r.status_code for r in responses] == [429, 429, 200]
    assert responses[0].headers["Retry-After"] == "3"
    assert responses[0].json()["error"]["code"] == "Application_TooManyRequests"
    business = client.business_ids[0]
    graph = client.graph("GET", f"/solutions/bookingBusinesses/{business}")
    assert graph.status_code == 503
    assert graph.headers["Retry-After"] == "2"
    assert graph.json()["error"]["code"] == "serviceNotAvailable"
    token = client.request_token(GRAPH_SCOPE)
    assert token.status_code == 429
    assert token.json()["error"] == "temporarily_unavailable"
    assert client.request_token(GRAPH_SCOPE).status_code == 200
    sandbox.admin.set_faults({"failures": {"graph": [{"status": 504, "fraction": 0.0}]}})
    assert client.graph("GET", f"/solutions/bookingBusinesses/{business}").status_code == 200
    events = sandbox.admin.counters()["events"]
    assert events["bc.injected.429"] == 2 and events["graph.injected.503"] == 1


def test_route_scoped_failure_happens_before_the_handler(
    sandbox: SandboxHandle, client: SandboxClient
) -> None:
    route = "POST companies({companyId})/salesInvoices"
    sandbox.admin.set_faults({"failures": {"bc": [{"status": 504, "count": 1, "route": route}]}})
    assert client.bc("GET", "/customers", params={"$top": "1"}).status_code == 200
    assert client.bc("POST", "/salesInvoices", json=INVOICE).status_code == 504
    assert sandbox.admin.state(["invoices"])["invoices"] == []
    assert client.bc("POST", "/salesInvoices", json=INVOICE).status_code == 201
    assert sandbox.admin.counters()["services"]["bc"]["routes"][route] == 2


def test_commit_then_drop_the_connection(sandbox: SandboxHandle, client: SandboxClient) -> None:
    sandbox.admin.set_faults({"dropAfterCommit": 1})
    with pytest.raises(requests.ConnectionError):
        client.bc("POST", "/salesInvoices", json=INVOICE)
    invoices = sandbox.admin.state(["invoices"])["invoices"]
    assert [i["externalDocumentNumber"] for i in invoices] == ["BKG-DROPPED"]
    assert invoices[0]["salesInvoiceLines"][0]["lineObjectNumber"] == "SVC-0001"
    again = client.bc("POST", "/salesInvoices", json={**INVOICE, "externalDocumentNumber": "BKG-SECOND"})
    assert again.status_code == 201
    counters = sandbox.admin.counters()
    assert counters["services"]["bc"]["statuses"]["dropped"] == 1
    assert counters["events"]["bc.droppedAfterCommit"] == 1
    assert sandbox.admin.faults()["dropAfterCommit"] == 0


def test_graph_four_concurrent_requests_per_mailbox(sandbox: SandboxHandle, client: SandboxClient) -> None:
    token = client.token(GRAPH_SCOPE)
    first, second = client.business_ids
    sandbox.admin.set_faults({"latency": {"graph": 60}})
    url = client.graph_url(f"/solutions/bookingBusinesses/{first}/services")

    def graph_running() -> int:
        mailboxes = sandbox.app.faults.stats()["concurrency"]["graph"]["mailboxes"].values()
        return sum(m["running"] for m in mailboxes)

    with _parallel(5) as pool:
        held = [pool.submit(_fresh_get, client, url, token) for _ in range(4)]
        wait_for(lambda: graph_running() == 4, what="4 Graph requests running")
        throttled = client.graph("GET", url, token=token)
        assert throttled.status_code == 429
        assert throttled.headers["Retry-After"] == "1"
        assert throttled.json()["error"]["code"] == "TooManyRequests"
        other = pool.submit(
            _fresh_get, client, client.graph_url(f"/solutions/bookingBusinesses/{second}"), token
        )
        wait_for(lambda: graph_running() == 5, what="another mailbox's request running")
        sandbox.admin.reset()
        assert [f.result(timeout=30).status_code for f in held] == [200] * 4
        assert other.result(timeout=30).status_code == 200
    assert sandbox.app.faults.stats()["concurrency"]["graph"]["maxRunning"] <= 4


def test_fault_configuration_is_validated_and_reset(sandbox: SandboxHandle) -> None:
    with pytest.raises(SandboxAdminError) as bad:
        sandbox.admin.set_faults({"failures": {"bc": [{"status": 418, "count": 1}]}})
    assert bad.value.status == 400
    with pytest.raises(SandboxAdminError):
        sandbox.admin.set_faults({"latency": {"smtp": 1}})
    with pytest.raises(SandboxAdminError):
        sandbox.admin.set_faults({"failures": {"bc": [{"status": 503}]}})
    sandbox.admin.set_faults(
        {"latency": {"bc": 1}, "dropAfterCommit": 2, "bcConcurrency": {"maxRunning": None}}
    )
    sandbox.admin.reset()
    assert sandbox.admin.faults() == FaultConfig().to_json()
    assert sandbox.admin.counters()["services"] == {}


def test_cli_flags_build_the_same_switches() -> None:
    args = build_parser().parse_args(
        [
            "--latency",
            "bc=0.5",
            "--fail",
            "bc=429:3:2",
            "--fail",
            "graph=503:0.25",
            "--bc-max-running",
            "3",
            "--bc-max-connections",
            "0",
            "--bc-rate-limit",
            "100",
            "--bc-rate-retry-after",
            "9",
            "--graph-mailbox-concurrency",
            "2",
            "--drop-after-commit",
            "1",
        ]
    )
    config = FaultConfig().merged(fault_patch(args)).to_json()
    assert config["latency"]["bc"] == 0.5
    assert config["failures"]["bc"][0] == {
        "status": 429,
        "count": 3,
        "fraction": None,
        "retryAfter": 2,
        "route": None,
    }
    assert config["failures"]["graph"][0]["fraction"] == 0.25
    assert config["bcConcurrency"]["maxRunning"] == 3 and config["bcConcurrency"]["maxConnections"] is None
    assert config["bcRateLimit"] == {"limit": 100, "windowSeconds": 300.0, "retryAfter": 9}
    assert config["graphThrottling"]["maxConcurrentPerMailbox"] == 2
    assert config["dropAfterCommit"] == 1
