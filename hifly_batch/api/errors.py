"""Every error the API client raises, under one base class.

A caller that talks to the API catches :class:`ClientError`; the subclasses
say how far a request got (``Delivery``), which decides whether it may be
sent again.
"""

from __future__ import annotations

import enum

from hifly_batch.apispec import ERROR_CODES, Endpoint, describe_code
from hifly_batch.errors import ExitStatus, HiflyBatchError, redact_url


class ClientError(HiflyBatchError):
    """Root of the API client's errors: a call, an upload or a download failed."""


class Delivery(enum.Enum):
    """How far a failed request got."""

    NOT_SENT = "not sent"  # connection refused, DNS, connect timeout: safe to resend
    UNANSWERED = "sent, no answer"  # read timeout, reset after send, unreadable answer
    SERVER_ERROR = "answered with a server error"  # HTTP 5xx or 429: nothing was done


class ApiError(ClientError):
    """The service answered with a non-zero business ``code``."""

    def __init__(
        self, code: int, endpoint: Endpoint, request_id: str = "", server_message: str = ""
    ) -> None:
        self.code = code
        self.endpoint = endpoint
        self.request_id = request_id
        self.server_message = server_message
        super().__init__(self._render())

    @property
    def meaning(self) -> str:
        """The documented meaning in English."""
        return ERROR_CODES.get(self.code, ("undocumented error code", ""))[0]

    @property
    def meaning_zh(self) -> str:
        """The documented meaning as the API document writes it."""
        return ERROR_CODES.get(self.code, ("", "未记载的错误码"))[1]

    def _render(self) -> str:
        text = f"{self.endpoint.short}: error {describe_code(self.code)}"
        if self.server_message and self.server_message != self.meaning_zh:
            text += f": {self.server_message}"
        if self.request_id:
            text += f" [request_id {self.request_id}]"
        return text


class AuthError(ApiError):
    """HTTP 401 or code 2003: the token was refused."""

    exit_status = ExitStatus.AUTH_OR_CONFIG

    def _render(self) -> str:
        return (
            f"{self.endpoint.short}: the API refused the token (HTTP 401 / code 2003): "
            "check the HIFLY_TOKEN environment variable"
        )


class HttpStatusError(ClientError):
    """An HTTP status the API does not use for business errors (e.g. 404 from a wrong base URL);
    a configuration fault, exit 3."""

    exit_status = ExitStatus.AUTH_OR_CONFIG

    def __init__(
        self, endpoint: Endpoint, status: int, url: str, location: str | None = None
    ) -> None:
        self.endpoint = endpoint
        self.status = status
        moved = f" (redirected to {redact_url(location)})" if location else ""
        super().__init__(
            f"{endpoint.short}: HTTP {status} from {url}{moved}: is --base-url / "
            "HIFLY_BASE_URL right?"
        )


class TransportError(ClientError):
    """The request failed below the API: no usable answer arrived."""

    def __init__(self, what: str, delivery: Delivery, detail: str) -> None:
        self.what = what
        self.delivery = delivery
        self.detail = detail
        super().__init__(f"{what}: {delivery.value}: {detail}")


class RateLimited(TransportError):
    """HTTP 429: the service asks to wait ``retry_after`` seconds; nothing was done."""

    def __init__(self, what: str, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(what, Delivery.SERVER_ERROR, f"HTTP 429, retry after {retry_after:g} s")


class SubmissionUncertain(TransportError):
    """A create request may have reached the server but its answer was lost.

    The API has no idempotency key and no task listing, so nobody can tell
    whether the work was made: sending it again may pay twice.
    """


class UrlExpiredError(ClientError):
    """A signed URL was refused (HTTP 403/404/410): it expired or is no longer valid.

    For an output, query the task again: the answer carries a fresh URL.
    """

    def __init__(self, url: str, status: int) -> None:
        self.status = status
        super().__init__(f"{redact_url(url)}: HTTP {status}: the link expired or is invalid")


class TransferError(ClientError):
    """A transfer failed for a reason that retrying will not mend."""
