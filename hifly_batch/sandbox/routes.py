"""What each HTTP request gets: routing, faults, auth, API answers, uploads, downloads.

Request paths are never joined onto a filesystem path: an upload or download
names a file by id, which is looked up in the world.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from hifly_batch import apispec
from hifly_batch.apispec import Endpoint
from hifly_batch.sandbox import signing
from hifly_batch.sandbox.config import Faults
from hifly_batch.sandbox.endpoints import Api
from hifly_batch.sandbox.faults import RequestFaults, RequestKind, decide_request
from hifly_batch.sandbox.rules import BusinessError, bad
from hifly_batch.sandbox.server import BodyTooLarge, Handler
from hifly_batch.sandbox.world import World

logger = logging.getLogger("hifly_batch.sandbox")

JSON_TYPE = "application/json; charset=utf-8"
UPLOAD_MAX_BYTES = 200 * 1024 * 1024
API_BODY_MAX_BYTES = 2 * 1024 * 1024
_BY_PATH = {e.value: e for e in Endpoint}
# The document's success answer of create_upload_url (response table and
# example alike) has no code and no message; its errors have both.
_BARE_SUCCESS = frozenset({Endpoint.CREATE_UPLOAD_URL})
_ID = re.compile(r"[A-Za-z0-9_]{1,64}")
_FILE_NAME = re.compile(r"[A-Za-z0-9_]{1,64}\.[a-z0-9]{1,8}")
# What a gateway answers when it lost the service's answer: 502 and 504 by turns.
_GATEWAY_STATUSES = (502, 504)


@dataclass(frozen=True)
class Route:
    """Where a request goes: counter name, fault kind, endpoint, and the id in the path."""

    name: str
    kind: RequestKind
    endpoint: Endpoint | None = None
    target: str = ""


def classify(path: str) -> Route:
    """The route of a request path (without query)."""
    if path.startswith(apispec.PREFIX + "/"):
        endpoint = _BY_PATH.get(path)
        if endpoint is None:
            return Route("unknown", RequestKind.OTHER)
        if endpoint in apispec.CREATE_ENDPOINTS:
            kind = RequestKind.CREATE
        else:
            kind = RequestKind.API_READ if endpoint.method == "GET" else RequestKind.API_WRITE
        return Route(endpoint.short, kind, endpoint)
    for prefix, name, kind in (
        ("/upload/", "upload", RequestKind.UPLOAD),
        ("/files/", "download", RequestKind.DOWNLOAD),
    ):
        if path.startswith(prefix):
            return Route(name, kind, target=path[len(prefix) :])
    return Route("unknown", RequestKind.OTHER)


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _gateway_page(status: int) -> bytes:
    """A reverse proxy's own error page: HTML, not the API's JSON."""
    title = f"{status} {HTTPStatus(status).phrase}"
    return (
        f"<html>\n<head><title>{title}</title></head>\n<body>\n"
        f"<center><h1>{title}</h1></center>\n<hr><center>gateway</center>\n"
        "</body>\n</html>\n"
    ).encode()


def _answer(
    fields: dict[str, Any], code: int = 0, message: str = "", *, bare: bool = False
) -> dict[str, Any]:
    """The JSON answer; ``bare`` leaves out code and message (create_upload_url's success)."""
    payload: dict[str, Any] = {} if bare else {"code": code, "message": message}
    payload.update(fields)
    payload["request_id"] = f"req_{secrets.token_hex(12)}"
    return payload


class App:
    """Dispatches requests over one world; ``faults`` may change at run time."""

    def __init__(
        self, world: World, api: Api, token: str, faults: Faults, clock: Callable[[], float]
    ) -> None:
        self.world = world
        self.api = api
        self.token = token
        self.faults = faults
        self.clock = clock
        self._secret = world.secret()

    def __call__(self, http: Handler) -> None:
        """Answer one request (the server's dispatch hook)."""
        try:
            self._dispatch(http)
        except (BodyTooLarge, ConnectionError, TimeoutError) as exc:
            logger.debug("request ended early: %r", exc)
            http.close_connection = True
        except Exception:
            logger.exception("sandbox: unexpected error answering %s", http.command)
            http.send(500, _json(_answer({}, 500, "sandbox internal error")), JSON_TYPE, close=True)

    def _count_fault(self, name: str) -> int:
        return self.world.bump("faults", name)

    def _dispatch(self, http: Handler) -> None:
        parts = urlsplit(http.path)
        route = classify(parts.path)
        seq = self.world.bump("requests", route.name)
        faults = decide_request(self.faults, route.name, seq, route.kind)
        if faults.drop:
            self._count_fault("drop")
            http.drop()
            return
        if route.kind is RequestKind.UPLOAD:
            self._upload(http, route, parts.query, faults)
        elif route.kind is RequestKind.DOWNLOAD:
            self._download(http, route, parts.query, faults)
        elif route.endpoint is not None or parts.path.startswith(apispec.PREFIX + "/"):
            self._api(http, route, parts.query, faults)
        else:
            self._delay(faults)
            http.send(404, _json(_answer({}, 404, "Not Found")), JSON_TYPE)

    def _delay(self, faults: RequestFaults) -> None:
        if faults.slow:
            self._count_fault("slow")
            time.sleep(self.faults.slow_seconds)

    # -- API ---------------------------------------------------------------

    def _api(self, http: Handler, route: Route, query: str, faults: RequestFaults) -> None:
        body = http.read_body(API_BODY_MAX_BYTES) if http.command in ("POST", "PUT") else b""
        status, payload = self._api_answer(http, route, query, body, faults)
        if status == 0:  # recorded, then the answer is lost
            self._lose_answer(http, faults)
            return
        data = _json(payload)
        if faults.malformed_json and status == 200 and http.command == "GET":
            self._count_fault("malformed_json")
            data = data[: max(1, len(data) // 2)]
        extra = None
        if status == 429:
            extra = {"Retry-After": str(math.ceil(self.faults.retry_after_seconds))}
        self._delay(faults)
        http.send(status, data, JSON_TYPE, extra=extra)

    def _lose_answer(self, http: Handler, faults: RequestFaults) -> None:
        """After a recorded create: drop the connection, or answer as a gateway would."""
        if faults.drop_after_create:
            self._count_fault("drop_after_create")
            http.drop()
            return
        n = self._count_fault("gateway_after_create")
        status = _GATEWAY_STATUSES[(n - 1) % len(_GATEWAY_STATUSES)]
        self._delay(faults)
        http.send(status, _gateway_page(status), "text/html; charset=utf-8")

    def _api_answer(
        self, http: Handler, route: Route, query: str, body: bytes, faults: RequestFaults
    ) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON answer); status 0 means "the task is recorded, lose the answer"."""
        if faults.http_500:
            self._count_fault("http_500")
            return 500, _answer({}, 500, "Internal Server Error")
        if faults.http_429:  # turned away before the service sees it: nothing done
            self._count_fault("http_429")
            return 429, _answer({}, 429, "Too Many Requests")
        if not self._authorized(http):
            return 401, _answer({}, apispec.INVALID_TOKEN, apispec.ERROR_CODES[2003][1])
        if route.endpoint is None:
            return 404, _answer({}, 404, "Not Found")
        if http.command != route.endpoint.method:
            return 405, _answer({}, 405, "Method Not Allowed")
        try:
            result = self.api.handle(route.endpoint, self._params(http, query, body), faults)
        except BusinessError as exc:
            return 200, _answer({}, exc.code, exc.message)
        for name in result.faults:
            self._count_fault(name)
        if result.created is not None:
            self.world.bump("creates", route.name)
            if faults.drop_after_create or faults.gateway_after_create:
                return 0, {}
        return 200, _answer(result.fields, bare=route.endpoint in _BARE_SUCCESS)

    def _authorized(self, http: Handler) -> bool:
        scheme, _, given = http.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(
            given.strip().encode(), self.token.encode()
        )

    @staticmethod
    def _params(http: Handler, query: str, body: bytes) -> dict[str, Any]:
        if http.command == "GET":
            return {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        try:
            params = json.loads(body.decode("utf-8")) if body.strip() else None
        except (UnicodeDecodeError, ValueError):
            params = None
        if not isinstance(params, dict):
            raise bad("请求体必须是 JSON 对象")
        return params

    # -- files -------------------------------------------------------------

    def _plain(self, http: Handler, status: int, text: str, *, close: bool = False) -> None:
        http.send(status, text.encode(), "text/plain; charset=utf-8", close=close)

    def _upload(self, http: Handler, route: Route, query: str, faults: RequestFaults) -> None:
        if http.command != "PUT":
            self._plain(http, 405, "Method Not Allowed", close=True)
            return
        path = f"/upload/{route.target}"
        if not _ID.fullmatch(route.target) or not signing.verify(
            self._secret, "PUT", path, query, self.clock()
        ):
            self._plain(http, 403, "AccessDenied: bad or expired signature", close=True)
            return
        row = self.world.file(route.target)
        if row is None or row.kind != "upload":
            self._plain(http, 404, "NoSuchKey", close=True)
            return
        if http.headers.get("Content-Type", "").strip() != row.content_type:
            self._plain(
                http, 403, "AccessDenied: Content-Type differs from the signed one", close=True
            )
            return
        try:
            size = self._discard(http) if faults.put_fail else self._store(http, row.stored_name)
        except BodyTooLarge:
            self._plain(http, 413, "EntityTooLarge", close=True)
            return
        if faults.put_fail:  # nothing stored: the file stays as it was before this PUT
            self._count_fault("put_fail")
            self._delay(faults)
            self._plain(http, 500, "InternalError: the file was not stored; put it again")
            return
        self.world.mark_uploaded(row.file_id, size)
        self._delay(faults)
        http.send(200, b"", "text/plain; charset=utf-8")

    def _store(self, http: Handler, stored_name: str) -> int:
        # Written under a temporary name and renamed: a broken upload never
        # leaves half a file where a finished one is expected.
        final = self.world.files_dir / stored_name
        tmp = final.with_name(f".{stored_name}.{secrets.token_hex(4)}.part")
        try:
            with tmp.open("wb") as out:
                size = http.stream_body(out, UPLOAD_MAX_BYTES)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return size

    @staticmethod
    def _discard(http: Handler) -> int:
        # The body is read before the failure, as object storage does, so that the
        # client gets the 500 instead of a connection cut while it still sends.
        with open(os.devnull, "wb") as sink:
            return http.stream_body(sink, UPLOAD_MAX_BYTES)

    def _download(self, http: Handler, route: Route, query: str, faults: RequestFaults) -> None:
        if http.command not in ("GET", "HEAD"):
            self._plain(http, 405, "Method Not Allowed", close=True)
            return
        if not _FILE_NAME.fullmatch(route.target):
            self._plain(http, 404, "NoSuchKey")
            return
        if not signing.verify(self._secret, "GET", f"/files/{route.target}", query, self.clock()):
            self._plain(http, 403, "AccessDenied: bad or expired signature")
            return
        row = self.world.file_by_name(route.target)
        stored = self.world.files_dir / row.stored_name if row is not None else None
        if row is None or stored is None or row.kind != "output" or not stored.is_file():
            self._plain(http, 404, "NoSuchKey")
            return
        self._delay(faults)
        http.send_file(stored, row.content_type)
