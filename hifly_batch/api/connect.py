"""Where the API is: the real service with ``HIFLY_TOKEN``, or an in-process sandbox."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from hifly_batch.api.client import HiflyClient
from hifly_batch.api.errors import Delivery, TransportError
from hifly_batch.apispec import DEFAULT_BASE_URL
from hifly_batch.errors import ConfigError, MissingTokenError

TOKEN_VARIABLE = "HIFLY_TOKEN"
BASE_URL_VARIABLE = "HIFLY_BASE_URL"
# Where account commands keep a sandbox world with --sandbox.
ACCOUNT_SANDBOX_DIR = Path(".hifly") / "sandbox"


def base_url_from(option: str | None, env: Mapping[str, str]) -> str:
    """``--base-url``, else ``$HIFLY_BASE_URL``, else the real API; checked for shape."""
    url = option or env.get(BASE_URL_VARIABLE) or DEFAULT_BASE_URL
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"base URL {url!r} is not an http(s) URL")
    return url


def token_from(env: Mapping[str, str]) -> str:
    """``$HIFLY_TOKEN`` without surrounding whitespace; ConfigError when what is left holds a
    character an HTTP header cannot carry (said by position, never shown)."""
    token = env.get(TOKEN_VARIABLE, "").strip()
    if not token:
        raise MissingTokenError()
    bad = next((i for i, c in enumerate(token) if not " " < c < "\x7f"), None)
    if bad is not None:
        raise ConfigError(
            f"{TOKEN_VARIABLE} holds a character a token cannot have (a control character, "
            f"space or non-ASCII letter, at position {bad + 1} of {len(token)}); set it "
            "again, copied from the HiFly personal centre (个人中心)"
        )
    return token


def unreachable(base_url: str, exc: TransportError) -> ConfigError:
    """The configuration fault of an API that gave no answer at all (exit 3)."""
    reason = exc.detail.removesuffix(f" ({base_url})")  # the URL is said once
    netloc = urlsplit(base_url).netloc
    for said in (f" by {netloc}", f" to {netloc}"):  # ``connection refused by 127.0.0.1:9``
        reason = reason.replace(said, "")
    return ConfigError(
        f"cannot reach the HiFly API at {base_url} ({reason}); check the network, and "
        "--base-url / HIFLY_BASE_URL. Nothing was sent"
    )


@contextlib.contextmanager
def api_client(
    env: Mapping[str, str],
    *,
    base_url: str | None,
    sandbox_dir: Path | None,
    callback_url: str | None = None,
) -> Iterator[HiflyClient]:
    """A client for the real API, or for a sandbox kept in ``sandbox_dir`` when one is given
    (that sends its task callbacks to ``callback_url``, when one is given)."""
    if sandbox_dir is None:
        client = HiflyClient(token_from(env), base_url_from(base_url, env))
        with contextlib.closing(client):
            try:
                yield client
            except TransportError as exc:  # a call of the command's own, not an item's
                if exc.delivery is not Delivery.NOT_SENT:
                    raise
                raise unreachable(client.transport.base_url, exc) from None
        return
    from hifly_batch.sandbox import Sandbox, SandboxConfig  # only sandbox runs import it

    with Sandbox(sandbox_dir, SandboxConfig(callback_url=callback_url)) as sandbox:
        client = HiflyClient(sandbox.token, sandbox.base_url)
        with contextlib.closing(client):
            yield client
