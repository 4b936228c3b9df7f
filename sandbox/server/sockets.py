"""The socket layer: the standard library's threaded HTTP server with TLS.

TLS is negotiated in each connection's own thread (never in the accept loop, so one slow client
cannot stall the others), connections are HTTP/1.1 keep-alive so `requests` sessions reuse them,
and `close_connections` ends live connections so shutdown is prompt.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from sandbox.core.httpcore import (
    DropConnection,
    Request,
    Response,
)
from sandbox.server.app import SandboxApp

logger = logging.getLogger("sandbox")

MAX_BODY_BYTES = 100 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Sandbox/1.0"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this many seconds
    server: TlsServer

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            self._send(Response.json(400, {"error": {"code": "BadRequest", "message": str(exc)}}))
            return
        target = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=target.path or "/",
            query_string=target.query,
            headers={key.lower(): value for key, value in self.headers.items()},
            body=body,
            base_url=self.server.base_url,
        )
        try:
            response = self.server.app.handle(request)
        except DropConnection:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(response)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            total = 0
            while True:
                size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
                size = int(size_line or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY_BYTES:
                    raise ValueError("The request body is too large.")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length_text = self.headers.get("Content-Length")
        if not length_text:
            return b""
        length = int(length_text)
        if length < 0 or length > MAX_BODY_BYTES:
            raise ValueError("The request body is too large.")
        return self.rfile.read(length)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        body = response.body if self.command != "HEAD" and response.status not in (204, 304) else b""
        if response.status not in (204, 304):
            self.send_header(
                "Content-Length", str(len(body) if self.command != "HEAD" else len(response.body))
            )
        if self.close_connection:
            self.send_header("Connection", "close")
        if self.request_version == "HTTP/0.9":
            self.wfile.write(body)
            return
        # One write for headers and body (one TLS record, one TCP segment for small responses).
        self._headers_buffer.append(b"\r\n" + body)
        self.flush_headers()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)


class TlsServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], ssl_context: ssl.SSLContext) -> None:
        super().__init__(address, _Handler)
        self.ssl_context = ssl_context
        self.base_url = ""
        self.app: SandboxApp
        self._connections: set[socket.socket] = set()
        self.connections_opened = 0
        """TLS connections accepted so far: shows whether clients reuse keep-alive connections."""
        self._connections_lock = threading.Condition()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Handshake here, in the connection's own thread, then serve keep-alive requests."""
        with self._connections_lock:
            self._connections.add(request)
        try:
            request.settimeout(30)
            # Headers and body leave in separate writes: without this, Nagle's algorithm and the
            # client's delayed ACK add ~40 ms to every response.
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            logger.debug("TLS handshake with %s failed: %s", client_address, exc)
            with contextlib.suppress(OSError):
                request.close()
            with self._connections_lock:
                self._connections.discard(request)
                self._connections_lock.notify_all()
            return
        with self._connections_lock:
            self._connections.discard(request)
            self._connections.add(tls)
            self.connections_opened += 1
        try:
            self.finish_request(tls, client_address)
        except Exception:
            self.handle_error(tls, client_address)
        finally:
            with contextlib.suppress(OSError):
                tls.close()
            with self._connections_lock:
                self._connections.discard(tls)
                self._connections_lock.notify_all()

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)

    def close_connections(self, timeout: float) -> None:
        with self._connections_lock:
            for connection in list(self._connections):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            self._connections_lock.wait_for(lambda: not self._connections, timeout=timeout)
