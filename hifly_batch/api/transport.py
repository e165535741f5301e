"""HTTP calls to the HiFly API: authentication, retries, and what a failure means.

The runner's at-most-once rule rests on one distinction made here: a request
that provably never reached the server may be sent again, one that may have
reached it must not be, when it creates remote work. Every transport failure
is therefore classified by ``Delivery``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import NewConnectionError

from hifly_batch.api.errors import (
    ApiError,
    AuthError,
    Delivery,
    HttpStatusError,
    RateLimited,
    SubmissionUncertain,
    TransportError,
)
from hifly_batch.api.session import ApiSession, new_session
from hifly_batch.apispec import (
    CREATE_ENDPOINTS,
    INVALID_TOKEN,
    SANDBOX_HEADER,
    Endpoint,
)
from hifly_batch.errors import plain_fault

log = logging.getLogger("hifly_batch.http")

JSONDict = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before try number ``attempt + 1`` (attempt counts from 0)."""
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


def classify(exc: requests.RequestException) -> Delivery:
    """Tell from a ``requests`` exception whether the request left this machine."""
    if isinstance(exc, requests.ConnectTimeout):
        return Delivery.NOT_SENT
    if isinstance(exc, requests.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        if isinstance(reason, NewConnectionError):  # refused, unreachable, DNS
            return Delivery.NOT_SENT
    return Delivery.UNANSWERED


def describe(exc: requests.RequestException) -> str:
    """The failure in plain words (``connection refused by 127.0.0.1:8080``, ``could not
    resolve hfw-api.hifly.cc (DNS)``, ``timed out after 30 s waiting for an answer``) rather
    than a page of repr; never a URL's query."""
    text = f"{type(exc).__name__}: {exc}"
    plain = plain_fault(text)
    return type(exc).__name__ if plain == text and not str(exc) else plain


def is_retryable_status(status: int) -> bool:
    return status >= 500 or status == 429


GATEWAY_STATUSES = (502, 504)  # a proxy's words: the service's own answer may be lost
RETRY_AFTER_MAX = 300.0  # seconds; a longer wait asked for is waited in steps of this
RATE_LIMIT_PATIENCE = 900.0  # seconds of 429 waits one call takes before it fails


def retry_after(value: str | None) -> float:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP date; RFC
    9110 §10.2.3); 1 when absent or unreadable, at most RETRY_AFTER_MAX."""
    if value is None:
        return 1.0
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return 1.0
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)


def unwrap(body: JSONDict) -> JSONDict:
    """Flatten an answer nested under ``data`` (seen in public clients) onto the top level."""
    data = body.get("data")
    if isinstance(data, dict):
        return {**data, **{k: v for k, v in body.items() if k != "data"}}
    return body


def redacted_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers fit for a log line: the credential replaced."""
    return {k: ("Bearer ***" if k.lower() == "authorization" else v) for k, v in headers.items()}


class Transport:
    """One pooled session, the token, timeouts and the retry loop."""

    def __init__(
        self,
        token: str,
        base_url: str,
        *,
        session: ApiSession | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._auth = f"Bearer {token}"
        self.secret = token  # only to cut it out of crash logs
        self.base_url = base_url.rstrip("/")
        self.session = session or new_session()
        self.timeout = timeout
        self.retry = retry
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.sandbox_seen = False  # an answer said it came from a sandbox (SPEC §7)

    def __repr__(self) -> str:  # never show the token
        return f"Transport(base_url={self.base_url!r})"

    def call(
        self,
        endpoint: Endpoint,
        *,
        body: JSONDict | None = None,
        params: Mapping[str, Any] | None = None,
        task_answer: bool = False,
        attempts: int | None = None,
    ) -> JSONDict:
        """Send one API request and return its (unwrapped) answer (``attempts``: how many
        tries on a transport failure; default: the retry policy's).

        Raises ApiError / AuthError for business errors, SubmissionUncertain
        when a create may have been made without us learning its task id, and
        TransportError when retries ran out. ``task_answer``: a non-zero code
        beside a ``status`` field describes a failed task, not a failed call.
        """
        is_create = endpoint in CREATE_ENDPOINTS

        def once() -> JSONDict:
            try:
                return self._once(endpoint, body, params, task_answer)
            except TransportError as exc:
                if is_create and exc.delivery is Delivery.UNANSWERED:
                    raise SubmissionUncertain(exc.what, exc.delivery, exc.detail) from None
                raise

        if is_create:
            # Sent once: the runner sends it again later with the item pending, so that it
            # is "submitting" only while its request is on the wire, and takes a 429 as a
            # pause for every create.
            return once()
        return self.retrying(once, attempts)

    def retrying(self, op: Callable[[], T], attempts: int | None = None) -> T:
        """Run ``op``, again after a backoff on TransportError, up to ``attempts`` tries
        (default: the policy's). HTTP 429 is back-pressure, not failure: its waits (as
        long as Retry-After asks) use up no try, until they add up to
        RATE_LIMIT_PATIENCE seconds. Raises the last TransportError, or
        SubmissionUncertain at once."""
        tries = attempts or self.retry.attempts
        failures, waited = 0, 0.0
        while True:
            try:
                return op()
            except SubmissionUncertain:
                raise
            except RateLimited as exc:
                if waited >= RATE_LIMIT_PATIENCE:
                    raise
                pause = max(exc.retry_after, self.retry.delay(0, self.rng))
                waited += pause
                reason = str(exc)
            except TransportError as exc:
                failures += 1
                if failures >= tries:
                    raise
                pause = self.retry.delay(failures - 1, self.rng)
                reason = str(exc)
            log.info("retrying in %.1f s after: %s", pause, reason)
            self.sleep(pause)

    def _once(
        self,
        endpoint: Endpoint,
        body: JSONDict | None,
        params: Mapping[str, Any] | None,
        task_answer: bool,
    ) -> JSONDict:
        headers = {"Authorization": self._auth}
        url = self.base_url + endpoint.value
        started = time.monotonic()
        try:
            resp = self.session.call(
                endpoint.method,
                url,
                json=body,
                params=params,
                headers=headers,
                timeout=self.timeout,
                follow_redirects=False,  # a redirected create must not turn into a GET elsewhere
            )
        except requests.RequestException as exc:
            detail = describe(exc)
            if (urlsplit(self.base_url).hostname or self.base_url) not in detail:  # where, once
                detail += f" ({self.base_url})"
            raise TransportError(endpoint.short, classify(exc), detail) from None
        if log.isEnabledFor(logging.DEBUG):
            elapsed = (time.monotonic() - started) * 1000
            log.debug(
                "%s %s -> HTTP %s in %.0f ms, headers %s",
                endpoint.method,
                endpoint.short,
                resp.status_code,
                elapsed,
                redacted_headers(headers),
            )
        return self._answer(endpoint, resp, task_answer)

    def _answer(self, endpoint: Endpoint, resp: requests.Response, task_answer: bool) -> JSONDict:
        if resp.headers.get(SANDBOX_HEADER) == "1":
            self.sandbox_seen = True
        if resp.status_code == 401:
            raise AuthError(INVALID_TOKEN, endpoint, _request_id_of(resp))
        if resp.status_code == 429:
            raise RateLimited(endpoint.short, retry_after(resp.headers.get("Retry-After")))
        if resp.status_code in GATEWAY_STATUSES and endpoint in CREATE_ENDPOINTS:
            # A gateway answered: the service may have made the task and its answer be lost.
            detail = f"HTTP {resp.status_code} from a gateway"
            raise SubmissionUncertain(endpoint.short, Delivery.UNANSWERED, detail)
        if is_retryable_status(resp.status_code):
            raise TransportError(endpoint.short, Delivery.SERVER_ERROR, f"HTTP {resp.status_code}")
        if resp.status_code != 200:
            location = resp.headers.get("Location") if resp.is_redirect else None
            raise HttpStatusError(endpoint, resp.status_code, self.base_url, location)
        try:
            body = resp.json()
        except ValueError:
            raise TransportError(
                endpoint.short, Delivery.UNANSWERED, "answer is not valid JSON"
            ) from None
        if not isinstance(body, dict):
            raise TransportError(endpoint.short, Delivery.UNANSWERED, "answer is not an object")
        body = unwrap(body)
        code = _int(body.get("code"))
        if code and not (task_answer and "status" in body):
            cls = AuthError if code == INVALID_TOKEN else ApiError
            raise cls(code, endpoint, str(body.get("request_id", "")), str(body.get("message", "")))
        log.info("%s ok, request_id %s", endpoint.short, body.get("request_id", ""))
        return body


def _request_id_of(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return ""
    return str(body.get("request_id", "")) if isinstance(body, dict) else ""


def _int(value: Any) -> int:
    """Lenient integer: answers seen in public send numbers as strings at times."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
