"""Moving bytes: the upload PUT to a signed URL and downloads of finished outputs.

Neither carries the Authorization header: signed URLs are their own
credential, and output URLs point at a CDN on another host.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests

from hifly_batch.api.errors import (
    Delivery,
    RateLimited,
    TransferError,
    TransportError,
    UrlExpiredError,
)
from hifly_batch.api.transport import Transport, classify, describe, retry_after

CHUNK = 256 * 1024
log = logging.getLogger(__name__)
_parts = itertools.count()


def put_file(transport: Transport, upload_url: str, content_type: str, path: Path) -> None:
    """PUT the raw bytes of ``path`` to a signed upload URL, streaming from disk.

    A PUT to the same URL is idempotent, so every transport failure and storage answer
    of HTTP 5xx is retried with backoff, and a 429 after the wait it asks for (the
    transport's policy); what still fails raises TransportError, the item's failure,
    retried on the next run.
    """

    def once() -> None:
        with path.open("rb") as body:
            resp = _send(
                transport,
                "upload",
                "PUT",
                upload_url,
                data=body,
                headers={"Content-Type": content_type},
            )
        resp.close()
        if resp.status_code in (401, 403):
            raise UrlExpiredError(upload_url, resp.status_code)
        if resp.status_code == 429:
            raise RateLimited("upload", retry_after(resp.headers.get("Retry-After")))
        if resp.status_code >= 500:
            detail = f"upload of {path.name}: HTTP {resp.status_code}"
            raise TransportError("upload", Delivery.SERVER_ERROR, detail)
        if resp.status_code not in (200, 201, 204):
            raise TransferError(f"upload of {path.name}: HTTP {resp.status_code}")

    transport.retrying(once)


def download(transport: Transport, url: str, dest: Path) -> int:
    """Stream ``url`` to ``dest`` through a temporary file beside it; return the size.

    The bytes reach ``dest`` only whole: the size is checked against
    Content-Length, then the file is renamed into place, so a killed process
    or a broken connection never leaves a partial file at ``dest``. (There is
    no fsync: after a power cut the runner finds a short file by its recorded
    size and downloads it again.)
    """
    return transport.retrying(lambda: _download_once(transport, url, dest))


def _download_once(transport: Transport, url: str, dest: Path) -> int:
    resp = _send(transport, "download", "GET", url, stream=True)
    with contextlib.closing(resp):
        if resp.status_code in (403, 404, 410):
            raise UrlExpiredError(url, resp.status_code)
        if resp.status_code == 429:
            raise RateLimited("download", retry_after(resp.headers.get("Retry-After")))
        if resp.status_code != 200:
            delivery = Delivery.SERVER_ERROR if resp.status_code >= 500 else Delivery.UNANSWERED
            raise TransportError("download", delivery, f"HTTP {resp.status_code}")
        # Unique within the process; one process at a time holds a state's lock.
        # A short name of its own (not dest's name, which may be up to 255 bytes long).
        tmp = dest.with_name(f".hifly-{os.getpid()}-{next(_parts)}.part")
        try:
            size = _write(resp, tmp)
            _check_length(resp, size)
            os.replace(tmp, dest)
        except OSError as exc:  # this machine's disk, not the download: say where
            tmp.unlink(missing_ok=True)
            raise TransferError(
                f"{dest}: cannot be written ({exc.strerror or exc}); free some space there, or "
                "make the folder writable"
            ) from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return size


def _write(resp: requests.Response, tmp: Path) -> int:
    size = 0
    try:
        fh = tmp.open("wb")
    except FileNotFoundError:  # the folder is made on first need, not checked every time
        tmp.parent.mkdir(parents=True, exist_ok=True)
        fh = tmp.open("wb")
    with fh:
        try:
            for chunk in resp.iter_content(CHUNK):
                fh.write(chunk)
                size += len(chunk)
        except requests.RequestException as exc:
            raise TransportError("download", Delivery.UNANSWERED, describe(exc)) from None
    return size


def _check_length(resp: requests.Response, size: int) -> None:
    expected = resp.headers.get("Content-Length")
    if expected is not None and expected.isdigit() and int(expected) != size:
        raise TransportError("download", Delivery.UNANSWERED, f"got {size} of {expected} bytes")


def _send(
    transport: Transport, what: str, method: str, url: str, **kwargs: object
) -> requests.Response:
    """One request with no Authorization header; transport failures classified. Logged by
    host alone: a signed URL's path and query are its credential."""
    started = time.monotonic()
    try:
        resp = transport.session.call(method, url, timeout=transport.timeout, **kwargs)  # type: ignore[arg-type]
    except requests.RequestException as exc:
        raise TransportError(what, classify(exc), describe(exc)) from None
    elapsed = (time.monotonic() - started) * 1000
    host = urlsplit(url).hostname
    log.debug("%s %s on %s -> HTTP %s in %.0f ms", method, what, host, resp.status_code, elapsed)
    return resp
