"""The one pooled ``requests.Session`` every HTTP call of a run goes through."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from requests.structures import CaseInsensitiveDict

from hifly_batch import __version__

USER_AGENT = f"hifly-batch/{__version__}"
# An absolute http(s) URL made only of characters RFC 3986 allows: sendable as it is.
_SENDABLE_URL = re.compile(r"https?://[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")


class ApiSession(requests.Session):
    """A pooled Session whose calls cost as little CPU as ``requests`` allows.

    Each call is a prepared request handed to ``send`` (as the requests
    documentation describes for prepared requests), built directly: a URL made
    only of characters allowed in a URI is sent as it is (the pool still checks
    it), and only other URLs go through requests' parsing and requoting. The
    environment's proxy and CA settings are read once per host; the session's
    cookies are not sent. Calls that must not follow redirects go straight to the mounted
    adapter. requests' general-purpose preparation was about a quarter of the
    CPU of each call, and a long run makes tens of thousands of calls.
    ``trust_env`` is off so that ~/.netrc never replaces our Bearer header or
    sends its credentials to the hosts that serve outputs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False
        self._environment: dict[str, dict[str, Any]] = {}

    def call(
        self,
        method: str,
        url: str,
        *,
        timeout: tuple[float, float],
        stream: bool = False,
        follow_redirects: bool = True,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
    ) -> requests.Response:
        """One request; ``params``, ``json`` and ``data`` mean what they mean to requests."""
        prepared = self._prepare(method, url, headers, params, json, data)
        settings = self.environment(url)
        if follow_redirects:
            return self.send(prepared, timeout=timeout, stream=stream, **settings)
        adapter = self.get_adapter(prepared.url or url)
        resp = adapter.send(prepared, timeout=timeout, stream=stream, **settings)
        if not stream:
            _ = resp.content  # read the body now, which returns the connection to the pool
        return resp

    def _prepare(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        params: Mapping[str, Any] | None,
        json: Any,
        data: Any,
    ) -> requests.PreparedRequest:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        if query:
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(query, doseq=True)}"
        prepared = requests.PreparedRequest()
        prepared.method = method.upper()
        if _SENDABLE_URL.fullmatch(url):
            prepared.url = url
        else:
            prepared.prepare_url(url, None)
        prepared.headers = CaseInsensitiveDict({**self.headers, **(headers or {})})  # type: ignore[arg-type]
        prepared.prepare_cookies(None)  # an empty jar: none sent, a redirect may add some
        prepared.prepare_body(data, None, json)
        prepared.prepare_auth(None)  # user:password in a URL, as requests would
        prepared.prepare_hooks({})
        return prepared

    def environment(self, url: str) -> dict[str, Any]:
        """Proxies and CA bundle for ``url``'s host, from the environment, looked up once."""
        host = urlsplit(url).netloc
        if host not in self._environment:
            self._environment[host] = {
                "proxies": requests.utils.get_environ_proxies(url),
                "verify": os.environ.get("REQUESTS_CA_BUNDLE")
                or os.environ.get("CURL_CA_BUNDLE")
                or True,
            }
        return self._environment[host]


def new_session() -> ApiSession:
    """A pooled session sized for a worker pool, with our User-Agent."""
    session = ApiSession()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=32)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session
