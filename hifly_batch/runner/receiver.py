"""The receiver of the service's task callbacks (消息回调), for ``run --callbacks HOST:PORT``.

The service POSTs a JSON message when a task finishes (type 1 works, 2 avatar
clones, 3 voice clones) to the account's callback URL, and retries for 5 minutes on
any answer but 200. The message is unsigned, so it is only a hint: the receiver
passes its ``task_id`` on, and the runner queries that task at once and believes
the answer, never the body. Every request is answered 200 at once (so the service
does not retry); a body over ``MAX_BODY`` bytes, one that is not a JSON object with
a string ``task_id``, or a task this run does not know, changes nothing.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from hifly_batch.errors import ConfigError

MAX_BODY = 64 * 1024  # bytes; the document's messages are a few hundred
STOP_WITHIN = 0.02  # seconds: how often the server looks up from waiting, to stop at the run's end
log = logging.getLogger(__name__)

OnTask = Callable[[str], None]


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) as (host, port); ``ValueError`` otherwise."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 0.0.0.0:8787)")
    return host, int(port)


def task_id_of(body: bytes) -> str | None:
    """The ``task_id`` a callback's body names, or None for anything else."""
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    task_id = message.get("task_id") if isinstance(message, dict) else None
    return task_id if isinstance(task_id, str) and task_id else None


class CallbackReceiver:
    """An HTTP server on ``(host, port)`` for the length of a ``with`` block, passing each
    callback's task id to ``on_task`` (from its own threads). Entering raises
    ``ConfigError`` when the address cannot be bound; leaving closes the socket, so that
    another run can bind it right after."""

    def __init__(self, host: str, port: int, on_task: OnTask) -> None:
        self.address = (host, port)
        self.on_task = on_task
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> CallbackReceiver:
        handler = _handler(self.on_task)
        try:
            server = _Server(self.address, handler)
        except OSError as exc:
            host, port = self.address
            raise ConfigError(
                f"--callbacks {host}:{port}: cannot listen there ({exc.strerror or exc}); "
                "choose another port, or leave --callbacks out to poll only"
            ) from None
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": STOP_WITHIN}, name="callbacks"
        )
        self._thread.daemon = True
        self._thread.start()
        log.info("listening for task callbacks on %s:%d", *server.server_address[:2])
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # a run right after this one binds the same port


def _handler(on_task: OnTask) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "hifly-batch"
        timeout = 10  # a sender that stops mid-body does not hold a thread for long

        def do_POST(self) -> None:  # (the stdlib's name)
            length = self.headers.get("Content-Length", "")
            size = int(length) if length.isdigit() else None
            body = self.rfile.read(size) if size is not None and size <= MAX_BODY else None
            self._answer()
            task_id = task_id_of(body) if body is not None else None
            log.debug("callback for task %s", task_id or "(none: ignored)")
            if task_id is not None:
                on_task(task_id)

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
            pass  # each callback is logged with its task id instead

    return Handler
