"""A fault-injecting TCP proxy for Azure Storage (Azurite): proof that storage faults cost nothing.

Each storage endpoint (blob, queue, table) gets a proxy on a free port; the app's connection string
points at the proxies (`StorageFaults.connection_string`), anything else may still use Azurite
directly. The proxy reads each HTTP request whole (the SDKs send a `Content-Length`) and decides,
per request, with a seeded random generator:

- **pass** it through;
- **reset mid-request**: forward part of the request, then reset both connections (SO_LINGER 0
  sends a TCP RST): storage never saw a whole request, nothing committed;
- **reset after the request**: forward all of it, wait for the answer to begin, then reset the
  client's connection without forwarding the answer: storage committed, the client cannot know;
- **delay** it before forwarding;
- **refuse**: reset at once without forwarding anything (with `refuse_all`, every request and new
  connection: storage is down).

`counters()` tell what it did, so a test can show that faults really happened. `make run
FAULTS=storage` runs the proxies inside its own process (`StorageFaults`); the fault tests
(`tests/faults/`) run them in a process of their own (`python -m devhost.fault_proxy`, driven by
`StorageFaultsProcess` over a small HTTP control endpoint: the plan, the counters), so that the
proxy never waits for the GIL of the test's busy process. Both use the same proxy code.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

_HEADER_END = b"\r\n\r\n"
_MAX_HEADER = 64 * 1024
_ENDPOINT = re.compile(
    r"(?P<name>Blob|Queue|Table)Endpoint=http://(?P<host>[^:/;]+):(?P<port>\d+)(?P<path>[^;]*)"
)

PASSED = "passed"
RESET_MID_REQUEST = "reset_mid_request"
RESET_AFTER_REQUEST = "reset_after_request"
DELAYED = "delayed"
REFUSED = "refused"


@dataclass(frozen=True)
class FaultPlan:
    """What share of requests meets which fault. Resets are split evenly between "mid-request"
    (nothing committed) and "after the request" (committed, answer lost)."""

    reset_rate: float = 0.0
    delay_rate: float = 0.0
    delay_seconds: tuple[float, float] = (0.05, 0.3)
    refuse_all: bool = False
    seed: int = 0


class FaultProxy:
    """One listening port in front of one upstream (host, port). Threads: one accepting, two per
    connection (requests upstream, answers back)."""

    def __init__(
        self,
        upstream: tuple[str, int],
        plan: FaultPlan,
        *,
        name: str = "storage",
        host: str = "127.0.0.1",
        report: Callable[[str], None] | None = None,
    ) -> None:
        self.upstream = upstream
        self.name = name
        self._plan = plan
        self._rng = random.Random(plan.seed)
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._report = report
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(128)
        self._listener.settimeout(0.2)
        self.host = host
        self.port = int(self._listener.getsockname()[1])
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept_loop, name=f"fault-proxy-{name}", daemon=True)

    # -- control -------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            live = list(self._sockets)
        for sock in live:
            _close(sock)

    def set_plan(self, plan: FaultPlan) -> None:
        with self._lock:
            self._plan = plan
            self._rng = random.Random(plan.seed)

    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    # -- decisions -----------------------------------------------------------------------------

    def _count(self, what: str, request_line: str = "") -> None:
        with self._lock:
            self._counts[what] += 1
        if self._report is not None and what not in (PASSED, "requests", "connections"):
            self._report(f"storage fault ({self.name}): {what.replace('_', ' ')} {request_line}".rstrip())

    def _decide(self) -> tuple[str, float]:
        with self._lock:
            plan, rng = self._plan, self._rng
            if plan.refuse_all:
                return REFUSED, 0.0
            draw = rng.random()
            if draw < plan.reset_rate:
                return (RESET_MID_REQUEST if rng.random() < 0.5 else RESET_AFTER_REQUEST), 0.0
            if draw < plan.reset_rate + plan.delay_rate:
                return DELAYED, rng.uniform(*plan.delay_seconds)
            return PASSED, 0.0

    # -- connections ---------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            self._count("connections")
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _track(self, *sockets: socket.socket) -> None:
        with self._lock:
            self._sockets.update(sockets)

    def _forget(self, *sockets: socket.socket) -> None:
        with self._lock:
            self._sockets.difference_update(sockets)

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            refuse = self._plan.refuse_all
        if refuse:
            self._count(REFUSED)
            _reset(client)
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            _reset(client)
            return
        upstream.settimeout(None)
        self._track(client, upstream)
        connection = _Connection(client, upstream)
        answers = threading.Thread(target=self._pump_answers, args=(connection,), daemon=True)
        answers.start()
        try:
            self._pump_requests(connection)
        except OSError:
            connection.close()
        finally:
            answers.join(30)
            connection.close()
            self._forget(client, upstream)

    def _pump_requests(self, connection: _Connection) -> None:
        buffer = b""
        while not self._stopping.is_set():
            request, buffer, passthrough = _read_request(connection.client, buffer)
            if request is None:
                connection.upstream_done()
                return
            if passthrough:  # a body without Content-Length: no faults on this connection
                connection.upstream.sendall(request + buffer)
                _relay(connection.client, connection.upstream)
                return
            self._count("requests")
            method, _, target = request.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
            line = f"{method} {target.split(' ', 1)[0].split('?', 1)[0]}"  # never a query string
            action, delay = self._decide()
            if action == REFUSED:
                self._count(REFUSED, line)
                connection.reset()
                return
            if action == RESET_MID_REQUEST:
                self._count(RESET_MID_REQUEST, line)
                connection.upstream.sendall(request[: max(1, len(request) // 2)])
                connection.reset()
                return
            if action == RESET_AFTER_REQUEST:
                self._count(RESET_AFTER_REQUEST, line)
                connection.doomed.set()  # before sending: the answer may come back at once
                connection.upstream.sendall(request)
                return  # the answer pump resets the client when the answer begins
            if action == DELAYED:
                self._count(DELAYED, line)
                time.sleep(delay)
            else:
                self._count(PASSED)
            connection.upstream.sendall(request)

    def _pump_answers(self, connection: _Connection) -> None:
        while True:
            try:
                data = connection.upstream.recv(65536)
            except OSError:
                connection.close()
                return
            if not data or connection.doomed.is_set():
                if connection.doomed.is_set():
                    connection.reset()
                else:
                    connection.close()
                return
            try:
                connection.client.sendall(data)
            except OSError:
                connection.close()
                return


class _Connection:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.doomed = threading.Event()
        self._closed = False
        self._lock = threading.Lock()

    def reset(self) -> None:
        """RST to the client (it sees "connection reset by peer"); the upstream side is closed, so
        storage drops a half-sent request."""
        self._end(_reset)

    def close(self) -> None:
        self._end(_close)

    def _end(self, end_client: Callable[[socket.socket], None]) -> None:
        """End both sides once, whoever comes first; the client side as `end_client` says."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        end_client(self.client)
        _close(self.upstream)

    def upstream_done(self) -> None:
        """The client closed its side: let the upstream finish answering, then everything closes."""
        if self.doomed.is_set():
            return
        with contextlib.suppress(OSError):
            self.upstream.shutdown(socket.SHUT_WR)


def _reset(sock: socket.socket) -> None:
    """Abortive close: SO_LINGER 0 makes close() send a TCP RST instead of a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


def _close(sock: socket.socket) -> None:
    """shutdown() first: it wakes a thread blocked in recv() on the socket, close() alone does not."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


def _read_request(sock: socket.socket, buffer: bytes) -> tuple[bytes | None, bytes, bool]:
    """One whole HTTP request from `buffer` + the socket: (request, rest, passthrough?).

    None when the client closed the connection between requests."""
    while _HEADER_END not in buffer:
        if len(buffer) > _MAX_HEADER:
            return buffer, b"", True
        chunk = sock.recv(65536)
        if not chunk:
            return None, b"", False
        buffer += chunk
    head, _, rest = buffer.partition(_HEADER_END)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding" and b"chunked" in value.lower():
            return head + _HEADER_END, rest, True
        if name == b"content-length":
            length = int(value.strip() or 0)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None, b"", False
        rest += chunk
    return head + _HEADER_END + rest[:length], rest[length:], False


def _relay(source: socket.socket, target: socket.socket) -> None:
    while True:
        data = source.recv(65536)
        if not data:
            return
        target.sendall(data)


class StorageFaults:
    """Fault proxies in front of every endpoint of a storage connection string."""

    def __init__(
        self, connection_string: str, plan: FaultPlan, *, report: Callable[[str], None] | None = None
    ) -> None:
        self.direct_connection_string = connection_string
        self.proxies: dict[str, FaultProxy] = {}
        for found in _ENDPOINT.finditer(connection_string):
            name = found["name"].lower()
            seeded = replace(plan, seed=plan.seed + len(self.proxies))  # one stream per endpoint
            self.proxies[name] = FaultProxy(
                (found["host"], int(found["port"])), seeded, name=name, report=report
            )
        if not self.proxies:
            raise ValueError("the connection string names no http Blob/Queue/Table endpoint")

    @property
    def connection_string(self) -> str:
        """The same account, every endpoint through its proxy."""

        def through_proxy(found: re.Match[str]) -> str:
            proxy = self.proxies[found["name"].lower()]
            return f"{found['name']}Endpoint=http://{proxy.host}:{proxy.port}{found['path']}"

        return _ENDPOINT.sub(through_proxy, self.direct_connection_string)

    def start(self) -> StorageFaults:
        for proxy in self.proxies.values():
            proxy.start()
        return self

    def stop(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()

    def set_plan(self, plan: FaultPlan, endpoint: str | None = None) -> None:
        """The plan of every proxy, or of one endpoint's (`"queue"`: tables answer, the queue not)."""
        for offset, (name, proxy) in enumerate(self.proxies.items()):
            if endpoint is None or name == endpoint:
                proxy.set_plan(replace(plan, seed=plan.seed + offset))

    def counters(self, endpoint: str | None = None) -> dict[str, int]:
        """What the proxies did (all added up, or one endpoint's): requests, connections, passed,
        and each fault."""
        total: Counter[str] = Counter()
        for name, proxy in self.proxies.items():
            if endpoint is None or name == endpoint:
                total.update(proxy.counters())
        return dict(total)

    def __enter__(self) -> StorageFaults:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the proxies in a process of their own -------------------------------------------------------


def plan_to_json(plan: FaultPlan) -> dict[str, object]:
    return {**asdict(plan), "delay_seconds": list(plan.delay_seconds)}


def plan_from_json(data: dict[str, Any]) -> FaultPlan:
    fields = dict(data)
    if "delay_seconds" in fields:
        low, high = fields["delay_seconds"]
        fields["delay_seconds"] = (float(low), float(high))
    return FaultPlan(**fields)


class _Control(BaseHTTPRequestHandler):
    """`GET /counters` (each endpoint's) and `PUT /plan` (`{"plan": {...}, "endpoint": null}`)."""

    faults: StorageFaults

    def do_GET(self) -> None:
        if self.path != "/counters":
            self._answer(404, {"error": "not found"})
            return
        self._answer(200, {name: self.faults.counters(name) for name in self.faults.proxies})

    def do_PUT(self) -> None:
        if self.path != "/plan":
            self._answer(404, {"error": "not found"})
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        endpoint = body.get("endpoint")
        if endpoint is not None and endpoint not in self.faults.proxies:
            self._answer(400, {"error": f"no {endpoint} endpoint"})
            return
        self.faults.set_plan(plan_from_json(body.get("plan") or {}), endpoint)
        self._answer(200, {"endpoint": endpoint})

    def _answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the control calls are the test's, not faults worth a line."""


READY = "fault proxy ready"


def main(argv: list[str] | None = None) -> int:
    """`python -m devhost.fault_proxy --connection-string CS [--plan JSON] [--report]`: the proxies
    and a control endpoint; prints `fault proxy ready {"control": url, "connectionString": cs}`."""
    parser = argparse.ArgumentParser(
        prog="python -m devhost.fault_proxy", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--connection-string", required=True, help="storage to put the proxies in front of")
    parser.add_argument("--plan", default="{}", help="the FaultPlan as JSON (default: pass everything)")
    parser.add_argument("--report", action="store_true", help="print each fault on stderr")
    parser.add_argument(
        "--stop-with-stdin", action="store_true", help="stop when stdin closes (the parent is gone)"
    )
    args = parser.parse_args(argv)
    report = (lambda line: print(line, file=sys.stderr, flush=True)) if args.report else None
    faults = StorageFaults(args.connection_string, plan_from_json(json.loads(args.plan)), report=report)
    handler = type("Control", (_Control,), {"faults": faults})
    control = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    control.daemon_threads = True
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.stop_with_stdin:  # a test killed outright leaves no proxy behind

        def watch_parent() -> None:
            # os.read, not sys.stdin: a daemon thread blocked in the buffered reader holds its
            # lock, and the interpreter aborts at exit when it cannot take it.
            while os.read(sys.stdin.fileno(), 4096):
                pass
            stop.set()

        threading.Thread(target=watch_parent, name="fault-proxy-parent", daemon=True).start()
    faults.start()
    threading.Thread(target=control.serve_forever, name="fault-proxy-control", daemon=True).start()
    control_url = f"http://127.0.0.1:{control.server_address[1]}"
    print(f"{READY} {json.dumps({'control': control_url, 'connectionString': faults.connection_string})}")
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    control.shutdown()
    faults.stop()
    return 0


class StorageFaultsProcess:
    """`StorageFaults` in a process of its own (`main`), driven over its control endpoint.

    Why: a proxy inside a busy Python process (a test holding the app, the sandbox and the test
    itself) waits for that process's GIL on every request it forwards; in its own process it adds
    next to nothing, so a test can push thousands of bookings through it."""

    def __init__(self, connection_string: str, plan: FaultPlan, *, start_timeout: float = 30.0) -> None:
        self.direct_connection_string = connection_string
        self._plan = plan
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[str] | None = None
        self._control = ""
        self.connection_string = ""

    def start(self) -> StorageFaultsProcess:
        root = Path(__file__).resolve().parent.parent
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
        }
        self._process = subprocess.Popen(
            [
                sys.executable, "-m", "devhost.fault_proxy",
                "--connection-string", self.direct_connection_string,
                "--plan", json.dumps(plan_to_json(self._plan)), "--stop-with-stdin",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=root,
        )  # fmt: skip
        assert self._process.stdout is not None
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline and self._process.poll() is None:
            readable, _, _ = select.select(
                [self._process.stdout], [], [], max(0.0, deadline - time.monotonic())
            )
            if not readable:
                break
            line = self._process.stdout.readline()
            if line.startswith(READY):
                ready = json.loads(line[len(READY) :])
                self._control, self.connection_string = ready["control"], ready["connectionString"]
                return self
        self.stop()
        raise RuntimeError(f"the fault proxy process did not start within {self._start_timeout:.0f}s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()

    def set_plan(self, plan: FaultPlan, endpoint: str | None = None) -> None:
        """As `StorageFaults.set_plan`; in force when this returns."""
        self._call("PUT", "/plan", {"plan": plan_to_json(plan), "endpoint": endpoint})

    def counters(self, endpoint: str | None = None) -> dict[str, int]:
        """As `StorageFaults.counters`."""
        endpoints: dict[str, dict[str, int]] = self._call("GET", "/counters")
        total: Counter[str] = Counter()
        for name, counts in endpoints.items():
            if endpoint is None or name == endpoint:
                total.update(counts)
        return dict(total)

    def _call(self, method: str, path: str, body: object = None) -> Any:
        answer = requests.request(method, self._control + path, json=body, timeout=30)
        answer.raise_for_status()
        return answer.json()

    def __enter__(self) -> StorageFaultsProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
