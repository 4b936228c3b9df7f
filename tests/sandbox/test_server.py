"""The server itself: the CLI, settings and CA files, keep-alive, the admin API, clean shutdown."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox import SandboxAdminError, SandboxHandle, SystemClock
from tests.sandbox.support import BC_SCOPE, FIXED_NOW, SandboxClient, wait_for

REPO = Path(__file__).resolve().parents[2]
SETTING_KEYS = {
    "ENTRA_AUTHORITY_HOST",
    "ENTRA_TENANT_ID",
    "ENTRA_CLIENT_ID",
    "ENTRA_CLIENT_SECRET",
    "GRAPH_BASE_URL",
    "BOOKINGS_BUSINESS_IDS",
    "BC_BASE_URL",
    "BC_ENVIRONMENT",
    "BC_COMPANY_ID",
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
    "DEVHOST_MANAGED_IDENTITY_SOURCE",
}


def test_cli_serves_writes_settings_and_stops_on_sigterm(tmp_path: Path) -> None:
    state = tmp_path / "state"
    settings_path = tmp_path / "settings.json"
    system_bundle = Path(os.environ.get("SSL_CERT_FILE", ""))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox",
            "--port",
            "0",
            "--state-dir",
            str(state),
            "--settings-out",
            str(settings_path),
            "--seed",
            "3",
            "--now",
            "2026-03-02T09:30:00Z",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout or []], daemon=True).start()
    try:
        try:
            ready = lines.get(timeout=60)
        except queue.Empty:
            pytest.fail("the sandbox did not print its ready line")
        assert ready.startswith("sandbox ready https://127.0.0.1:"), ready
        url = ready.split()[-1]
        port = int(url.rsplit(":", 1)[1])
        assert port > 0
        settings = json.loads(settings_path.read_text(encoding="utf-8"))
        assert set(settings) == SETTING_KEYS
        assert settings["ENTRA_AUTHORITY_HOST"] == f"{url}/login"
        assert settings["GRAPH_BASE_URL"] == f"{url}/graph/v1.0"
        assert settings["BC_BASE_URL"] == f"{url}/bc/v2.0"
        bundle = Path(settings["REQUESTS_CA_BUNDLE"])
        assert bundle == Path(settings["SSL_CERT_FILE"]) == (state / "ca-bundle.pem").resolve()
        ca_pem = (state / "ca.pem").read_text(encoding="ascii")
        assert ca_pem.strip() in bundle.read_text(encoding="ascii")
        if system_bundle.is_file():
            first_system_line = system_bundle.read_text(encoding="ascii", errors="replace").splitlines()[0]
            assert bundle.read_text(encoding="ascii", errors="replace").startswith(first_system_line)
        health = requests.get(f"{url}/_sandbox/health", verify=str(state / "ca.pem"), timeout=10)
        assert health.json() == {"status": "ok"}
        clock = requests.get(f"{url}/_sandbox/clock", verify=str(state / "ca.pem"), timeout=10).json()
        assert clock == {"now": "2026-03-02T09:30:00Z", "adjustable": True}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0, process.stderr.read() if process.stderr else ""


def test_settings_pass_the_apps_own_validation(sandbox: SandboxHandle) -> None:
    settings_module = pytest.importorskip("shared.settings")
    values = dict(sandbox.settings, AzureWebJobsStorage="UseDevelopmentStorage=true")
    loaded = settings_module.load_settings(values)
    assert loaded.bookings_business_ids == tuple(sandbox.settings["BOOKINGS_BUSINESS_IDS"].split(","))


def test_state_dir_files(sandbox: SandboxHandle) -> None:
    info = json.loads((sandbox.state_dir / "sandbox.json").read_text(encoding="utf-8"))
    assert info["url"] == sandbox.url
    assert info["settings"] == sandbox.settings
    assert Path(info["clientCertificatePath"]).read_text(encoding="ascii").count("BEGIN") == 2
    assert (sandbox.state_dir / "ca.pem").is_file()


def test_requests_sessions_reuse_keep_alive_connections(
    sandbox: SandboxHandle, client: SandboxClient
) -> None:
    client.token(BC_SCOPE)
    before = sandbox.connections_opened
    for _ in range(5):
        assert client.bc("GET", "/items", params={"$top": "1"}).status_code == 200
    assert sandbox.connections_opened - before <= 1


def test_counters_name_route_templates(sandbox: SandboxHandle, client: SandboxClient) -> None:
    invoice = client.bc(
        "POST",
        "/salesInvoices",
        json={
            "customerNumber": "C00010",
            "salesInvoiceLines": [{"lineObjectNumber": "SVC-0001", "quantity": 1}],
        },
    ).json()
    client.bc("GET", f"/salesInvoices({invoice['id']})")
    services = sandbox.admin.counters()["services"]
    assert services["bc"]["routes"] == {
        "POST companies({companyId})/salesInvoices": 1,
        "GET companies({companyId})/salesInvoices({id})": 1,
    }
    assert services["bc"]["total"] == 2
    assert services["entra"]["routes"] == {"POST /{tenant}/oauth2/v2.0/token": 1}


def test_admin_state_clock_and_errors(sandbox: SandboxHandle) -> None:
    state = sandbox.admin.state()
    assert {"now", "company", "customers", "items", "invoices", "businesses"} <= set(state)
    assert set(sandbox.admin.state(["items"])) == {"now", "items"}
    assert sandbox.admin.advance_clock(90) == FIXED_NOW + timedelta(seconds=90)
    assert sandbox.admin.set_clock(FIXED_NOW) == FIXED_NOW
    with pytest.raises(SandboxAdminError) as missing:
        sandbox.admin._call("GET", "/nothing-here")
    assert missing.value.status == 404
    stray = requests.get(f"{sandbox.url}/elsewhere", verify=str(sandbox.ca_path), timeout=10)
    assert stray.status_code == 404
    info = sandbox.admin.info()
    assert info["customerTemplate"] == "CT-BOOKINGS" and info["itemTemplate"] == "IT-BOOKINGS"


def test_stop_is_prompt_with_requests_in_flight(sandbox_factory: Any) -> None:
    handle: SandboxHandle = sandbox_factory(clock=SystemClock(), seed=11)
    api = SandboxClient(handle)
    try:
        token = api.token(BC_SCOPE)
        with pytest.raises(SandboxAdminError) as fixed:
            handle.admin.advance_clock(1)
        assert fixed.value.status == 409
        handle.admin.set_faults({"latency": {"bc": 120}})

        def slow() -> int | str:
            try:
                response = requests.get(
                    api.company_url + "/items",
                    headers={"Authorization": f"Bearer {token}"},
                    verify=api.verify,
                    timeout=60,
                )
            except requests.RequestException as exc:
                return type(exc).__name__
            return response.status_code

        with ThreadPoolExecutor(max_workers=1) as pool:
            in_flight = pool.submit(slow)
            wait_for(
                lambda: handle.app.faults.stats()["concurrency"]["bc"]["maxRunning"] == 1, what="in flight"
            )
            handle.stop()
            handle.stop()  # idempotent
            assert in_flight.result(timeout=30) in (200, "ConnectionError")
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{handle.url}/_sandbox/health", verify=api.verify, timeout=5)
    finally:
        api.close()
