"""The receiver of the service's task callbacks (消息回调), for ``run --callbacks HOST:PORT``.

The service POSTs a JSON message when a task finishes (type 1 works, 2 avatar
clones, 3 voice clones) to the account's callback URL, and retries for 5 minutes on
any answer but 200. The message is unsigned, so it is only a hint: the receiver
passes its ``task_id`` on, and the runner queries that task and believes the answer,
never the body. Every request is answered 200 as soon as its body is read (so the
service does not retry); a body over ``MAX_BODY`` bytes, one that is not a JSON object
with a string ``task_id``, or a task this run does not know, changes nothing. What a
sender writes is never logged: the message is anyone's to forge.
"""

from __future__ import annotations

import contextlib
import errno
import io
import ipaddress
import json
import logging
import re
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from hifly_batch.errors import ConfigError, UsageError

MAX_BODY = 64 * 1024  # bytes; the document's messages are a few hundred
# A longer body is read to its end and dropped, up to this, so that its sender gets its
# 200 (closing on unread data resets the connection, and the service would retry).
DRAIN_MAX = 16 * 1024 * 1024
STOP_WITHIN = 0.02  # seconds: how often the server looks up from waiting, to stop at the run's end
BACKLOG = 128  # connections waiting to be accepted: a burst of callbacks is not refused
MAX_TASK_ID = 128  # characters; the service's are 16 digits, a longer one is no task of it
EARLY_MAX = 10_000  # task ids kept from before the run is ready for them (a resumed run's)
log = logging.getLogger(__name__)

OnTask = Callable[[str], None]
_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) as (host, port): HOST an IP address or a
    host name, PORT 1 to 65535; ``ValueError`` naming what is wrong otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 0.0.0.0:8787)")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    if not bracketed and _is_host(host, ipv6=True):
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [{host}]:{port}")
    if not _is_host(host, ipv6=bracketed):
        raise ValueError(
            f"{text!r}: {host!r} is not an IP address or host name of this machine "
            "(HOST:PORT, e.g. 0.0.0.0:8787, or [::]:8787 for IPv6)"
        )
    return host, int(port)


def _is_host(host: str, *, ipv6: bool) -> bool:
    try:
        return ipaddress.ip_address(host).version == (6 if ipv6 else 4)
    except ValueError:  # a name (not all digits and dots: 256.1.1.1 is no address)
        return not ipv6 and bool(_HOSTNAME.fullmatch(host)) and not host.replace(".", "").isdigit()


def sandbox_callback_url(address: tuple[str, int]) -> str:
    """The URL a sandbox on this machine calls back to, for a receiver on ``address``.
    ``UsageError`` unless the receiver listens on loopback or on every address (the
    sandbox calls back to loopback only, SPEC §7)."""
    host, port = address
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    with contextlib.suppress(ValueError):
        ip = ipaddress.ip_address("127.0.0.1" if host.lower() == "localhost" else host)
    if ip is None or not (ip.is_loopback or ip.is_unspecified):
        raise UsageError(
            f"--callbacks {shown(host)}:{port} with --sandbox: the sandbox calls back to this "
            f"machine's loopback only; listen on 127.0.0.1:{port} or 0.0.0.0:{port}"
        )
    if ip.is_unspecified:  # listening on every address: loopback among them
        ip = ipaddress.ip_address("::1" if ip.version == 6 else "127.0.0.1")
    return f"http://{shown(str(ip))}:{port}/"


def shown(host: str) -> str:
    """A host as it is written before ``:PORT``: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def task_id_of(body: bytes) -> str | None:
    """The ``task_id`` a callback's body names (at most ``MAX_TASK_ID`` characters), or
    None for anything else."""
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    task_id = message.get("task_id") if isinstance(message, dict) else None
    return task_id if isinstance(task_id, str) and 0 < len(task_id) <= MAX_TASK_ID else None


def read_body(headers: dict[str, str], rfile: io.BufferedIOBase) -> bytes | None:
    """A request's body (``Content-Length`` or ``Transfer-Encoding: chunked``), or None when
    it is over ``MAX_BODY`` or malformed. Reads at most ``DRAIN_MAX`` bytes of it."""
    try:
        if headers.get("transfer-encoding", "").strip().lower() == "chunked":
            pieces = _chunks(rfile)
        else:
            pieces = _sized(rfile, _length(headers.get("content-length", "")))
        body, size = bytearray(), 0
        for piece in pieces:
            size += len(piece)
            if size > DRAIN_MAX:
                return None
            if size <= MAX_BODY:
                body += piece
    except ValueError:
        return None
    return bytes(body) if size <= MAX_BODY else None


def _length(text: str) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"Content-Length {text!r}")
    return int(text)


def _sized(rfile: io.BufferedIOBase, length: int) -> Iterator[bytes]:
    while length > 0:
        piece = rfile.read(min(length, MAX_BODY))
        if not piece:
            raise ValueError("the body ended early")
        length -= len(piece)
        yield piece


def _chunks(rfile: io.BufferedIOBase) -> Iterator[bytes]:
    """The data of a chunked body (RFC 9112 §7.1), its trailer read and dropped."""
    while True:
        size_text = rfile.readline(1024).split(b";")[0].strip()
        if not re.fullmatch(rb"[0-9A-Fa-f]{1,8}", size_text):
            raise ValueError("not a chunk size")
        size = int(size_text, 16)
        if size == 0:
            while rfile.readline(1024).strip():
                pass
            return
        yield from _sized(rfile, size)
        rfile.readline(1024)  # the chunk's CRLF


class CallbackReceiver:
    """An HTTP server on ``(host, port)`` for the length of a ``with`` block, passing each
    callback's task id to ``on_task`` (from its own threads). Entering raises
    ``ConfigError`` when the address cannot be bound; leaving closes the socket, so that
    another run can bind it right after. Bound before the run is ready for them (it is
    bound first, to fail early), it keeps the task ids that come (up to ``EARLY_MAX``)
    for :meth:`pass_to`. ``received`` counts the requests, ``ignored`` those that named
    no task."""

    def __init__(self, host: str, port: int, on_task: OnTask | None = None) -> None:
        self.address = (host, port)
        self._on_task = on_task
        self._early: list[str] = []
        self._lock = threading.Lock()
        self.received = self.ignored = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def pass_to(self, on_task: OnTask) -> None:
        """From now on pass each task id to ``on_task``, those that came before first."""
        with self._lock:
            self._on_task, early, self._early = on_task, self._early, []
        for task_id in early:
            on_task(task_id)

    def __enter__(self) -> CallbackReceiver:
        host, port = self.address
        server_class = _Server6 if ":" in host else _Server
        try:
            server = server_class(self.address, _handler(self))
        except OSError as exc:
            why = exc.strerror or str(exc)
            hint = (
                "choose another port"
                if isinstance(exc, PermissionError) or exc.errno == errno.EADDRINUSE
                else f"give an address of this machine (e.g. 0.0.0.0:{port})"
            )
            raise ConfigError(
                f"--callbacks {shown(host)}:{port}: cannot listen there ({why}); {hint}, "
                "or leave --callbacks out to poll only"
            ) from None
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": STOP_WITHIN}, name="callbacks"
        )
        self._thread.daemon = True
        self._thread.start()
        log.info("listening for task callbacks on %s:%d", shown(host), self.port)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        ignored = f" ({self.ignored} not a message naming a task)" if self.ignored else ""
        log.info("callbacks: %d received%s", self.received, ignored)

    def _take(self, body: bytes | None) -> None:
        """Pass on the task a request's body names, if any (from a handler's thread)."""
        task_id = task_id_of(body) if body is not None else None
        with self._lock:
            self.received += 1
            self.ignored += task_id is None
            on_task = self._on_task
            if task_id is not None and on_task is None and len(self._early) < EARLY_MAX:
                self._early.append(task_id)
        if task_id is not None and on_task is not None:
            on_task(task_id)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # a run right after this one binds the same port
    request_queue_size = BACKLOG

    def handle_error(self, request: object, client_address: object) -> None:
        # A sender that hung up or sent nonsense: nothing for the run's output to show.
        log.debug("a callback connection failed: %s", type(sys.exc_info()[1]).__name__)


class _Server6(_Server):
    address_family = socket.AF_INET6


def _handler(receiver: CallbackReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "hifly-batch"
        timeout = 10  # a sender that stops mid-body does not hold a thread for long

        def do_POST(self) -> None:  # (the stdlib's name)
            body = read_body({k.lower(): v for k, v in self.headers.items()}, self.rfile)
            receiver._take(body)  # (first: a sender that hangs up on its answer still counts)
            self._answer()

        def do_GET(self) -> None:  # a check that the address reaches the run
            self._answer()

        def _answer(self) -> None:
            self.close_connection = True  # an unread body is never taken for a request
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:
            pass  # what a sender writes is never logged

    return Handler
