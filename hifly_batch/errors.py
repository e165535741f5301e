"""The exception root and the exit codes the CLI maps exceptions to.

Library code raises; only ``cli.py`` turns an exception into an exit code.
"""

from __future__ import annotations

import enum
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
