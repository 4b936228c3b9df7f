"""`make run` (python -m devhost.run): the whole stack starts, answers, and stops with nothing left."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import requests

from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) counts as gone.
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split()[2] == "Z")


def test_make_run_starts_syncs_and_ctrl_c_stops_everything(tmp_path) -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("AzureWebJobsStorage", "AZURITE_CONNECTION_STRING")
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devhost.run",
            "--port",
            "0",
            "--sandbox-port",
            "0",
            "--settings",
            "absent.json",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        lines.extend(process.stdout)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("Stop:  Ctrl-C" in line for line in lines), timeout=180, what="the next steps")
        output = "".join(lines)
        listed = re.search(
            r"curl -s '(http://127\.0\.0\.1:\d+)/api/bookings\?top=5' -H \"Authorization: Bearer \$TOKEN\"",
            output,
        )
        assert listed, output
        base = listed.group(1)
        assert "Invoice three:" in output  # the sync ran (with a token): there were keys to offer
        assert f"{base}/.auth/login/aad" in output and "TOKEN=$(.venv/bin/python -m devhost.token)" in output
        # The printed way to get a token works: the same command, against the sandbox make run started.
        fetched = subprocess.run(
            [sys.executable, "-m", "devhost.token"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert fetched.returncode == 0, fetched.stderr
        token = fetched.stdout.strip()
        assert requests.get(f"{base}/api/bookings", timeout=30).status_code == 401
        headers = {"Authorization": f"Bearer {token}"}
        bookings = requests.get(f"{base}/api/bookings", params={"top": 5}, headers=headers, timeout=30).json()
        assert len(bookings["value"]) == 5 and all(b["status"] == "Unbilled" for b in bookings["value"])
        # The sandbox runs with every seed shape: classes show as one booking per attendee.
        unbilled = requests.get(
            f"{base}/api/bookings", params={"top": 1000}, headers=headers, timeout=30
        ).json()["value"]
        classes: dict[str, int] = {}
        for booking in (b for b in unbilled if b["groupAppointment"]):
            classes[booking["appointmentId"]] = classes.get(booking["appointmentId"], 0) + 1
        assert classes and max(classes.values()) >= 2, classes
        # A newcomer's setup check is all ok: make run's settings, templates and first runs pass it.
        report = requests.get(f"{base}/api/setup-check", headers=headers, timeout=60).json()
        statuses = {check["name"]: check["status"] for check in report["checks"]}
        assert statuses == dict.fromkeys(statuses, "ok"), report
        assert {"bc-customer-template", "bc-item-template", "last-reconcile"} <= set(statuses)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.terminate()  # its SIGTERM path stops the children too, so nothing outlives the test
            process.wait(timeout=120)
            raise
        reader.join(10)
    assert code == 0
    stopped = [(name, int(pid)) for name, pid in re.findall(r"stopped (\w+) \(pid (\d+)\)", "".join(lines))]
    assert sorted(name for name, _ in stopped) == ["Azurite", "devhost", "sandbox"]
    for name, pid in stopped:
        assert not alive(pid), f"{name} (pid {pid}) is still running"


def test_a_port_in_use_is_named_with_how_to_choose_another() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "devhost.run", "--port", str(port), "--settings", "absent.json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"port {port} (for devhost) is already in use" in result.stdout
    assert f"make run PORT={port + 1}" in result.stdout
