"""`make run`: the whole product on one machine, and what to do next.

Without a `local.settings.json` it starts Azurite, the sandbox (local Entra ID, Graph Bookings and
Business Central) and devhost wired to them, runs one sync and prints ready-to-paste commands.
With a `local.settings.json` (a real tenant) it starts only Azurite (when the settings point at
development storage) and devhost against the real services.

Every child runs in its own session and is stopped by pid on Ctrl-C or SIGTERM, so nothing is
left running.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from devhost.azurite import Azurite, start_azurite
from devhost.fault_proxy import FaultPlan, StorageFaults
from devhost.token import api_token
from shared.settings import DEFAULT_RECONCILE_SCHEDULE, DEFAULT_SYNC_SCHEDULE

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".devhost"
SANDBOX_STATE = ROOT / ".sandbox"


class RunError(RuntimeError):
    """Something a user can fix (a port in use, a child that would not start)."""


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def say(text: str = "") -> None:
    """Print for the user; never fail (stdout may be a pipe whose reader is gone after Ctrl-C)."""
    try:
        print(text, flush=True)
    except (BrokenPipeError, OSError, ValueError):
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(text + "\n")


class Children:
    """The processes `make run` started, stopped in reverse order by pid."""

    def __init__(self) -> None:
        self.processes: list[tuple[str, subprocess.Popen[str]]] = []
        self.azurite: Azurite | None = None
        self.faults: StorageFaults | None = None

    def start(
        self, name: str, args: list[str], env: dict[str, str], ready_prefix: str, timeout: float
    ) -> str:
        """Start a child and wait for its ready line on stdout; return that line."""
        process = subprocess.Popen(
            args,
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.processes.append((name, process))
        deadline = time.monotonic() + timeout
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if line.startswith(ready_prefix):
                # Keep forwarding the child's stdout (its log goes to stderr, straight to the console).
                self._forward(process)
                return line.strip()
            if not line and process.poll() is not None:
                raise RunError(
                    f"{name} exited with status {process.returncode} before it was ready (see above)"
                )
            if line:
                sys.stdout.write(line)
        raise RunError(f"{name} was not ready within {timeout:.0f}s")

    @staticmethod
    def _forward(process: subprocess.Popen[str]) -> None:
        import threading

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                with contextlib.suppress(OSError, ValueError):
                    sys.stdout.write(line)

        threading.Thread(target=pump, daemon=True).start()

    def stop(self) -> None:
        """Stop every child, newest first; one that will not stop is killed, and the rest still stop."""
        for name, process in reversed(self.processes):
            try:
                if process.poll() is None:
                    process.send_signal(signal.SIGINT if name == "devhost" else signal.SIGTERM)
                    try:
                        process.wait(timeout=70 if name == "devhost" else 10)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait(timeout=10)
            finally:
                if process.poll() is None:
                    process.kill()
            say(f"stopped {name} (pid {process.pid})")
        if self.faults is not None:
            counts = self.faults.counters()
            self.faults.stop()
            say(f"stopped the storage fault proxy ({counts})")
        if self.azurite is not None:
            self.azurite.stop()
            say(f"stopped Azurite (pid {self.azurite.process.pid})")

    def first_exited(self) -> tuple[str, int] | None:
        for name, process in self.processes:
            if process.poll() is not None:
                return name, int(process.returncode)
        return None


def wait_until(condition: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = condition()
        except requests.RequestException:
            result = None
        if result:
            return result
        time.sleep(interval)
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make run", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "7071")), help="devhost port")
    parser.add_argument(
        "--sandbox-port", type=int, default=int(os.environ.get("SANDBOX_PORT", "8443")), help="sandbox port"
    )
    parser.add_argument("--settings", default="local.settings.json", help="real-tenant settings file")
    parser.add_argument(
        "--faults",
        choices=["none", "storage"],
        default=os.environ.get("FAULTS") or "none",
        help="storage: a proxy between the app and Azurite resets, delays and refuses some requests",
    )
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=float(os.environ.get("FAULT_RATE", "0.03")),
        help="share of storage requests whose connection is reset (with --faults storage)",
    )
    return parser.parse_args(argv)


def start_storage_faults(children: Children, args: argparse.Namespace) -> str:
    """The fault proxy in front of Azurite; the connection string the app should use."""
    assert children.azurite is not None
    plan = FaultPlan(reset_rate=args.fault_rate, delay_rate=0.02, seed=int(time.time()))
    children.faults = StorageFaults(children.azurite.connection_string, plan, report=say).start()
    ports = ", ".join(f"{name} {proxy.port}" for name, proxy in children.faults.proxies.items())
    say(
        f"==> storage faults on: {args.fault_rate:.0%} of storage requests reset (half mid-request, "
        f"half after it), 2% delayed; the app reaches Azurite through the proxy ({ports})"
    )
    return children.faults.connection_string


def check_ports(args: argparse.Namespace, with_sandbox: bool) -> None:
    taken = [("devhost", args.port, "PORT")] if port_in_use(args.port) else []
    if with_sandbox and port_in_use(args.sandbox_port):
        taken.append(("sandbox", args.sandbox_port, "SANDBOX_PORT"))
    if taken:
        lines = [f"port {port} (for {name}) is already in use" for name, port, _ in taken]
        hint = " ".join(f"{variable}={port + 1}" for _, port, variable in taken)
        raise RunError("; ".join(lines) + f". Stop what uses it, or choose another: make run {hint}")


def start_sandbox(children: Children, args: argparse.Namespace) -> dict[str, str]:
    settings_file = SANDBOX_STATE / "settings.json"
    say(f"==> starting the sandbox (Entra ID, Graph Bookings, Business Central) on port {args.sandbox_port}")
    children.start(
        "sandbox",
        [
            sys.executable, "-m", "sandbox", "--port", str(args.sandbox_port),
            "--state-dir", str(SANDBOX_STATE), "--settings-out", str(settings_file),
            # Every appointment shape the real Graph serves: classes (one booking per attendee),
            # Windows time zone names, customers only in the flat fields.
            "--seed-group-appointments", "--seed-windows-time-zones", "--seed-flat-customer-fields",
        ],
        dict(os.environ),
        "sandbox ready",
        timeout=60,
    )  # fmt: skip
    settings: dict[str, str] = json.loads(settings_file.read_text(encoding="utf-8"))
    info = json.loads((SANDBOX_STATE / "sandbox.json").read_text(encoding="utf-8"))
    settings.setdefault("BOOKINGS_TIME_ZONE", str(info.get("timeZone", "UTC")))
    if info.get("customerTemplate"):
        settings.setdefault("CUSTOMER_TEMPLATE", str(info["customerTemplate"]))
    if info.get("itemTemplate"):
        settings.setdefault("ITEM_TEMPLATE", str(info["itemTemplate"]))
    settings["SANDBOX_URL"] = str(info.get("url", ""))
    return settings


def print_next_steps(base: str, keys: list[str], sandbox_url: str | None) -> None:
    auth = '-H "Authorization: Bearer $TOKEN"'
    say()
    say("=" * 78)
    say("Bookings bulk invoicing is running locally." + (" (sandbox data)" if sandbox_url else ""))
    say()
    say(f"  Portal (browser):    {base}/  (Bookings not invoiced: sign in, filter, invoice)")
    say(f"  Sign in (browser):   {base}/.auth/login/aad  (pick a user name and the app roles")
    say(f"                       Bookings.Read / Bookings.Invoice; who you are: {base}/.auth/me)")
    say("  Get a token first:   TOKEN=$(.venv/bin/python -m devhost.token)")
    say("                       (client credentials for api://<ENTRA_CLIENT_ID>/.default, as in Azure)")
    say(f"  Unbilled bookings:   curl -s '{base}/api/bookings?top=5' {auth}")
    if keys:
        body = json.dumps({"bookingKeys": keys[:3]})
        say(
            "  Invoice three:       curl -si -X POST "
            f"'{base}/api/invoice-requests' {auth} -H 'content-type: application/json' -d '{body}'"
        )
    say(
        "  Invoice all:         curl -si -X POST "
        f"'{base}/api/invoice-requests' {auth} -H 'content-type: application/json' -d '{{\"all\": true}}'"
    )
    status_url = f"{base}/api/invoice-requests/<requestId from the Location header>"
    say(f"  Request status:      curl -s '{status_url}' {auth}")
    say(f"  Health / API spec:   {base}/api/health   {base}/api/openapi.json")
    say(f"  Setup check:         the portal's Settings view, or curl -s '{base}/api/setup-check' {auth}")
    say(f"  Sync again now:      curl -si -X POST '{base}/admin/functions/sync_bookings' "
        "-H 'content-type: application/json' -d '{\"input\": \"\"}'")  # fmt: skip
    if sandbox_url:
        say(
            "  Invoices created:    curl -s --cacert .sandbox/ca.pem "
            f"'{sandbox_url}/_sandbox/state?include=invoices'"
        )
    say()
    say("  Watch: every invocation logs one line here (function, outcome, duration, fields).")
    say("  Stop:  Ctrl-C stops everything started here.")
    say("=" * 78)


def prepare_environment(children: Children, args: argparse.Namespace, settings_path: Path) -> dict[str, str]:
    """The devhost's environment: the real services `local.settings.json` names (with Azurite if it
    asks for development storage), or Azurite and the sandbox; storage behind the fault proxy with
    `--faults storage`."""
    env = dict(os.environ)
    if settings_path.exists():
        say(f"==> {settings_path.name} found: running against the real services it names")
        values = json.loads(settings_path.read_text(encoding="utf-8")).get("Values", {})
        storage = str(env.get("AzureWebJobsStorage") or values.get("AzureWebJobsStorage", ""))
        if storage.startswith("UseDevelopmentStorage=true"):
            say("==> starting Azurite (development storage)")
            children.azurite = start_azurite()
            env["AzureWebJobsStorage"] = children.azurite.connection_string
            if args.faults == "storage":
                env["AzureWebJobsStorage"] = start_storage_faults(children, args)
        return env
    say("==> starting Azurite (tables and queues, in memory)")
    children.azurite = start_azurite()
    env.update(start_sandbox(children, args))
    env["AzureWebJobsStorage"] = children.azurite.connection_string
    if args.faults == "storage":
        env["AzureWebJobsStorage"] = start_storage_faults(children, args)
    # The host resolves %SYNC_SCHEDULE% from app settings, so it must be set (infra sets it too).
    env.setdefault("SYNC_SCHEDULE", DEFAULT_SYNC_SCHEDULE)
    env.setdefault("RECONCILE_SCHEDULE", DEFAULT_RECONCILE_SCHEDULE)
    return env


def start_devhost(children: Children, args: argparse.Namespace, env: dict[str, str]) -> str:
    """Start devhost; its base URL once it says it is ready."""
    say(f"==> starting devhost on port {args.port}")
    STATE.mkdir(exist_ok=True)
    line = children.start(
        "devhost",
        [sys.executable, "-m", "devhost", "--port", str(args.port), "--settings", args.settings],
        env,
        "devhost ready",
        timeout=120,
    )
    return line.split()[-1]


def run_first_sync(base: str, env: dict[str, str]) -> None:
    """Run `sync_bookings`, then `reconcile_invoices`, once through the admin endpoint and wait until
    nothing is in flight (so the setup check's `last-sync` and `last-reconcile` have a run to show)."""
    for function in ("sync_bookings", "reconcile_invoices"):
        run_now(base, env, function)


def run_now(base: str, env: dict[str, str], function: str) -> None:
    say(f"==> running {function} once")
    headers = {"x-functions-key": env["DEVHOST_MASTER_KEY"]} if env.get("DEVHOST_MASTER_KEY") else {}
    requests.post(f"{base}/admin/functions/{function}", json={"input": ""}, headers=headers, timeout=30)

    def idle() -> bool:  # the admin run answers 202 at once
        status = requests.get(f"{base}/admin/host/status", headers=headers, timeout=30).json()
        return bool(status["inFlight"] == 0)

    wait_until(idle, timeout=600)


def first_unbilled_keys(base: str, env: dict[str, str]) -> list[str]:
    """Up to three unbilled booking keys for the printed examples, read through the API with the
    app's own registration (as `python -m devhost.token` does); none if no token can be had."""
    key_header = {"x-functions-key": env["DEVHOST_FUNCTION_KEY"]} if env.get("DEVHOST_FUNCTION_KEY") else {}
    try:
        for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
            if env.get(name):
                os.environ[name] = env[name]
        headers = {**key_header, "Authorization": f"Bearer {api_token(env)}"}
        page = requests.get(f"{base}/api/bookings", params={"top": 3}, headers=headers, timeout=30)
    except RuntimeError as exc:
        say(f"(no token for the API: {exc}; sign in in the browser instead)")
        return []
    listed = page.json().get("value") if page.ok else None
    return [booking["key"] for booking in listed or []]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings_path = ROOT / args.settings
    children = Children()
    stop_requested = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True
        raise KeyboardInterrupt

    # Installed explicitly: a process started in the background inherits SIGINT ignored, and then
    # Python would never raise KeyboardInterrupt for Ctrl-C.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)  # the terminal went away: stop as for Ctrl-C
    try:
        check_ports(args, with_sandbox=not settings_path.exists())
        env = prepare_environment(children, args, settings_path)
        base = start_devhost(children, args, env)
        run_first_sync(base, env)
        keys = first_unbilled_keys(base, env)
        if not keys:
            say("(no unbilled bookings: the first sync found none, or it failed - see the log lines above)")
        print_next_steps(base, keys, env.get("SANDBOX_URL"))
        while not stop_requested:
            exited = children.first_exited()
            if exited:
                say(f"{exited[0]} exited with status {exited[1]}; stopping the rest")
                return 1
            time.sleep(0.5)
        return 0
    except KeyboardInterrupt:
        say("\n==> stopping")
        return 0
    except RunError as exc:
        say(f"make run: {exc}")
        return 1
    finally:
        # A second Ctrl-C must not cut the cleanup short and leave children running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        children.stop()


if __name__ == "__main__":
    sys.exit(main())
