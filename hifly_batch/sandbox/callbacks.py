"""Task-completion callbacks, sent as the service sends them (消息回调).

One background thread keeps a heap of (due time, task) and sleeps until the
next one is due, so a message leaves when the task finishes on the sandbox's
clock, whether or not anyone queries it; a few threads send them side by side.
Anything but a 200 (another status, a refused connection, a timeout, a
redirect) is retried a few seconds apart until the retry window after the
task's finish has passed; then never again. A message the ``lost`` hook claims
on its first try (the ``callback_drop`` fault) is never sent at all.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

logger = logging.getLogger("hifly_batch.sandbox")

_MAX_NAP = 0.1  # re-read the (possibly injected) clock at least this often
_SEND_TIMEOUT = 5.0
_SENDERS = 8  # messages on their way at once

Post = Callable[[str, bytes], int]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer other than 200: a failed try, never followed elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# No proxy from the environment and no redirects: the message goes straight to
# the loopback URL it was given, and nowhere else.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def post_json(url: str, body: bytes) -> int:
    """POST a JSON body; the HTTP status, or 0 when nothing answered (refused, timed out)."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    try:
        with _OPENER.open(request, timeout=_SEND_TIMEOUT) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return 0


def retry_interval(window: float) -> float:
    """Seconds between tries: a tenth of the window, between 0.05 s and 3 s."""
    return min(3.0, max(0.05, window / 10))


def _never_lost(task_id: str) -> bool:
    return False


class CallbackSender:
    """Sends each finished task's message to ``url``; ``payload`` builds it by task id.

    ``delivered`` is told of each message answered 200; ``lost`` is asked once,
    before a message's first try, whether the network loses it (True: not sent,
    not retried).
    """

    def __init__(
        self,
        url: str,
        retry_seconds: float,
        clock: Callable[[], float],
        payload: Callable[[str], dict[str, Any] | None],
        delivered: Callable[[str], None],
        post: Post = post_json,
        lost: Callable[[str], bool] = _never_lost,
    ) -> None:
        self.url = url
        self.retry_seconds = retry_seconds
        self.clock = clock
        self._payload = payload
        self._delivered = delivered
        self._post = post
        self._lost = lost
        # (due time, order, task id, deadline, first try)
        self._heap: list[tuple[float, int, str, float, bool]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="sandbox-callbacks", daemon=True)

    def start(self) -> None:
        """Start the sender thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop sending; undelivered messages stay undelivered in the world."""
        with self._wake:
            self._stopped = True
            self._wake.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=_SEND_TIMEOUT + 1)

    def schedule(self, task_id: str, finish_at: float) -> None:
        """Send the task's message once ``finish_at`` has come."""
        self._push(finish_at, task_id, finish_at + self.retry_seconds, first=True)

    def _push(self, due: float, task_id: str, deadline: float, *, first: bool) -> None:
        with self._wake:
            heapq.heappush(self._heap, (due, next(self._order), task_id, deadline, first))
            self._wake.notify_all()

    def _next_due(self) -> tuple[str, float, bool] | None:
        """Wait for the earliest due entry and pop it: (task id, deadline, first try);
        None once stopped."""
        with self._wake:
            while not self._stopped:
                if self._heap and self._heap[0][0] <= self.clock():
                    _, _, task_id, deadline, first = heapq.heappop(self._heap)
                    return task_id, deadline, first
                nap = self._heap[0][0] - self.clock() if self._heap else _MAX_NAP
                self._wake.wait(timeout=min(max(nap, 0.0), _MAX_NAP))
            return None

    def _run(self) -> None:
        # Messages go out side by side, as the service's do: making one (a work's output
        # is rendered for its URL) or a slow receiver never holds the others back.
        with ThreadPoolExecutor(_SENDERS, thread_name_prefix="sandbox-callback") as senders:
            while (item := self._next_due()) is not None:
                senders.submit(self._send_logged, *item)

    def _send_logged(self, task_id: str, deadline: float, first: bool) -> None:
        try:
            self._send(task_id, deadline, first)
        except Exception:
            logger.exception("sandbox: callback for task %s failed", task_id)

    def _send(self, task_id: str, deadline: float, first: bool) -> None:
        payload = self._payload(task_id)
        if payload is None:
            return
        if first and self._lost(task_id):
            logger.debug("sandbox: callback for task %s lost (callback_drop)", task_id)
            return
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        status = self._post(self.url, body)
        if status == 200:
            self._delivered(task_id)
            logger.debug("sandbox: callback for task %s delivered", task_id)
            return
        retry_at = self.clock() + retry_interval(self.retry_seconds)
        if retry_at <= deadline:
            logger.debug("sandbox: callback for task %s got %s, retrying", task_id, status)
            self._push(retry_at, task_id, deadline, first=False)
        else:
            logger.debug("sandbox: callback for task %s given up after %s", task_id, status)
