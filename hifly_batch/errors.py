"""The exception root and the exit codes the CLI maps exceptions to.

Library code raises; only ``cli.py`` turns an exception into an exit code.
"""

from __future__ import annotations

import enum
import re
from urllib.parse import urlsplit, urlunsplit


class ExitStatus(enum.IntEnum):
    """Exit codes of SPEC §4."""

    OK = 0
    ITEMS_FAILED = 1
    INVALID = 2  # invalid manifest or usage
    AUTH_OR_CONFIG = 3  # no token, HTTP 401, unusable settings
    INTERRUPTED = 130  # Ctrl-C (SIGINT)
    TERMINATED = 143  # SIGTERM, how CI and service managers stop a process


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it stops a run as Ctrl-C does: nothing
    new is sent, what was sent is recorded, reports are written (exit 143)."""


class HiflyBatchError(Exception):
    """Root of every error this package raises on purpose."""

    exit_status = ExitStatus.ITEMS_FAILED


class UsageError(HiflyBatchError):
    """The command line asks for something that cannot be done."""

    exit_status = ExitStatus.INVALID


class RunDeclined(HiflyBatchError):
    """The user answered no to spending credits: nothing was sent (exit 1, as Terraform's
    apply answered no)."""

    def __init__(self) -> None:
        super().__init__("run cancelled: nothing was sent, and no credits were spent")


class ConfigError(HiflyBatchError):
    """Missing token, unusable base URL and the like."""

    exit_status = ExitStatus.AUTH_OR_CONFIG


class MissingTokenError(ConfigError):
    def __init__(self) -> None:
        super().__init__(
            "no API token: set the HIFLY_TOKEN environment variable "
            "(or rehearse without one using --sandbox)"
        )


def redact_url(url: str) -> str:
    """The URL without its query: signed URLs carry credentials there."""
    parts = urlsplit(url)
    query = "…" if parts.query else ""
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


# How transport libraries (requests, urllib3, http.client, ssl) word a network failure.
_HOST = re.compile(r"host='([^']*)', port=(\d+)")
_RESOLVING = re.compile(r"Failed to resolve '([^']*)'")
_SECONDS = re.compile(r"(?:read|connect) timeout=([\d.]+)")
_BROKE_OFF = re.compile(r"IncompleteRead\((\d+) bytes read, (\d+) more expected\)")
_ERRNO = re.compile(r"\[(?:Errno|WinError) -?\d+\] ([^\"')(]+)")
_QUERY = re.compile(r"((?:https?://|url: )[^\s?'\"]*)\?[^\s'\"()]+")
_DNS = ("Failed to resolve", "Name or service not known", "nodename nor servname",
        "getaddrinfo failed", "name resolution", "No address associated")  # fmt: skip
_REFUSED = ("Connection refused", "ConnectionRefusedError", "[Errno 111]", "[WinError 10061]")
_CLOSED = ("RemoteDisconnected", "Remote end closed connection")
_RESET = ("Connection reset", "ConnectionResetError", "[Errno 104]", "[Errno 54]")
_CONNECT_TIMEOUT = ("ConnectTimeout", "connect timeout=")
_READ_TIMEOUT = ("Read timed out", "ReadTimeout", "read timeout=")
_UNTRUSTED = ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed")
_UNREACHABLE = ("Network is unreachable", "[Errno 101]")
_NO_ROUTE = ("No route to host", "[Errno 113]")


def plain_fault(text: str) -> str:
    """A network failure as a transport library words it, in plain words.

    ``HTTPSConnectionPool(host='hfw-api.hifly.cc', port=443): Max retries exceeded with url:
    /… (Caused by NameResolutionError(…))`` becomes ``could not resolve hfw-api.hifly.cc
    (DNS)``; ``('Connection aborted.', RemoteDisconnected(…))`` becomes ``connection closed
    by the server without an answer``. Text that is no such failure (plain words already
    among them) comes back as it is. Never a URL's query: signed URLs carry credentials there.
    """
    host = _HOST.search(text)
    where = f"{host[1]}:{host[2]}" if host else "the server"
    seconds = _SECONDS.search(text)
    after = f" after {float(seconds[1]):g} s" if seconds else ""
    if _has(text, _DNS):
        name = _RESOLVING.search(text)
        return f"could not resolve {name[1] if name else host[1] if host else 'the host'} (DNS)"
    if _has(text, _CONNECT_TIMEOUT):
        return f"timed out{after} connecting to {where}"
    if _has(text, _READ_TIMEOUT):
        return f"timed out{after} waiting for an answer"
    if _has(text, _REFUSED):
        return f"connection refused by {where}" if host else "connection refused"
    if _has(text, _CLOSED):
        return "connection closed by the server without an answer"
    if _has(text, _RESET):
        return "connection reset by the server"
    broke = _BROKE_OFF.search(text)
    if broke:
        return f"the answer broke off after {broke[1]} bytes ({broke[2]} more expected)"
    if _has(text, ("Connection broken", "Connection aborted")):
        return "the connection broke during the answer"
    if _has(text, _UNTRUSTED):
        return f"the TLS certificate of {where} is not trusted"
    if _has(text, ("SSLError", "SSL:")):
        return f"the TLS handshake with {where} failed"
    if _has(text, _UNREACHABLE):
        return "the network is unreachable"
    if _has(text, _NO_ROUTE):
        return f"no route to {where}"
    if _has(text, ("Max retries exceeded", "Failed to establish a new connection")):
        reason = _ERRNO.search(text)
        return f"could not connect to {where}" + (f" ({reason[1].strip()})" if reason else "")
    return _QUERY.sub(r"\1?…", text)


def _has(text: str, marks: tuple[str, ...]) -> bool:
    return any(mark in text for mark in marks)
