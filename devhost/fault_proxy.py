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

`counters()` tell what it did, so a test can show that faults really happened. Used by the fault
tests (`tests/faults/`) and by `make run FAULTS=storage`.
"""

from __future__ import annotations

import contextlib
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

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
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _reset(self.client)
        _close(self.upstream)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _close(self.client)
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

    def set_plan(self, plan: FaultPlan) -> None:
        for offset, proxy in enumerate(self.proxies.values()):
            proxy.set_plan(replace(plan, seed=plan.seed + offset))

    def counters(self) -> dict[str, int]:
        """What all proxies did, added up: requests, connections, passed, and each fault."""
        total: Counter[str] = Counter()
        for proxy in self.proxies.values():
            total.update(proxy.counters())
        return dict(total)

    def __enter__(self) -> StorageFaults:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
