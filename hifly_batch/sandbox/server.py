"""HTTP plumbing: a threading HTTP/1.1 keep-alive server whose answers go out in one write.

Each answer (status line, headers and body) is written with a single
``sendall`` on a socket with TCP_NODELAY: split writes would meet Nagle's
algorithm and the client's delayed ACK and stall about 40 ms per answer.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import threading
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO

from hifly_batch.apispec import SANDBOX_HEADER

logger = logging.getLogger("hifly_batch.sandbox")

_ONE_WRITE_LIMIT = 4 * 1024 * 1024  # larger files go out as headers, then chunks
_CHUNK = 256 * 1024


class BodyTooLarge(Exception):
    """The request body is over the limit (the connection is then closed)."""


class Handler(BaseHTTPRequestHandler):
    """Reads requests and writes answers; what to answer is up to ``server.dispatch``."""

    protocol_version = "HTTP/1.1"
    server_version = "hifly-sandbox"
    timeout = 120  # an idle keep-alive connection is closed after this many seconds
    server: SandboxHTTPServer

    def do_GET(self) -> None:
        self.server.dispatch(self)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("sandbox http: " + format, *args)

    # -- reading ---------------------------------------------------------

    def read_body(self, limit: int) -> bytes:
        """The whole request body (Content-Length or chunked), at most ``limit`` bytes."""
        return b"".join(self._body_parts(limit))

    def stream_body(self, out: BinaryIO, limit: int) -> int:
        """Copy the request body into ``out``; the number of bytes copied."""
        size = 0
        for part in self._body_parts(limit):
            out.write(part)
            size += len(part)
        return size

    def _body_parts(self, limit: int) -> Any:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            yield from self._chunked_parts(limit)
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > limit:
            raise BodyTooLarge(length)
        while length > 0:
            part = self.rfile.read(min(_CHUNK, length))
            if not part:
                raise ConnectionError("client closed the connection mid-body")
            length -= len(part)
            yield part

    def _chunked_parts(self, limit: int) -> Any:
        total = 0
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024).strip():
                    pass  # trailers
                return
            total += size
            if total > limit:
                raise BodyTooLarge(total)
            yield self.rfile.read(size)
            self.rfile.readline(16)

    # -- writing ---------------------------------------------------------

    def _head(
        self, status: int, content_type: str, length: int, extra: dict[str, str] | None
    ) -> bytes:
        reason = HTTPStatus(status).phrase
        lines = [
            f"HTTP/1.1 {status} {reason}",
            f"Server: {self.server_version}",
            f"Date: {formatdate(usegmt=True)}",
            f"Content-Type: {content_type}",
            f"Content-Length: {length}",
        ]
        if self.server.identify:
            lines.append(f"{SANDBOX_HEADER}: 1")
        lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        *,
        close: bool = False,
        extra: dict[str, str] | None = None,
    ) -> None:
        """Write the whole answer in one write."""
        if close:
            self.close_connection = True
        head = self._head(status, content_type, len(body), extra)
        self.wfile.write(head if self.command == "HEAD" else head + body)
        logger.debug("%s %s -> %d", self.command, self.path.split("?", 1)[0], status)

    def send_file(self, path: Path, content_type: str) -> None:
        """Answer 200 with a file's bytes and its Content-Length."""
        size = path.stat().st_size
        if size <= _ONE_WRITE_LIMIT:
            self.send(200, path.read_bytes(), content_type)
            return
        self.wfile.write(self._head(200, content_type, size, None))
        if self.command != "HEAD":
            with path.open("rb") as f:
                self.connection.sendfile(f)
        logger.debug("%s %s -> 200 (%d bytes)", self.command, self.path.split("?", 1)[0], size)

    def drop(self) -> None:
        """Close the connection without writing anything."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        self.connection.close()
        logger.debug("%s %s -> dropped", self.command, self.path.split("?", 1)[0])


class SandboxHTTPServer(ThreadingHTTPServer):
    """Daemon threads, TCP_NODELAY, and every open connection closed on stop."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        dispatch: Callable[[Handler], None],
        *,
        identify: bool = True,
    ) -> None:
        self.identify = identify  # every answer says it comes from a sandbox (SPEC §7)
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.dispatch = dispatch
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up (getfqdn), which can
        # take seconds on machines without DNS; the name is not needed.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._open_lock:
            self._open.add(sock)
        return sock, addr

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr for every reset connection.
        logger.debug("sandbox http: error on a connection from %s", client_address, exc_info=True)

    def close_connections(self) -> None:
        """Cut every open connection, so that no old keep-alive client is served after stop."""
        with self._open_lock:
            open_now = list(self._open)
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
