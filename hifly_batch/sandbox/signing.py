"""HMAC-signed, expiring URLs for uploads (PUT) and downloads (GET).

The signature covers the method, the path and the expiry time, so a URL
cannot be reused for another file, another verb or a later time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import parse_qs, urlencode


def signature(secret: str, method: str, path: str, expires: int) -> str:
    """URL-safe base64 (no padding) HMAC-SHA256 of ``METHOD\\nPATH\\nEXPIRES``."""
    message = f"{method.upper()}\n{path}\n{expires}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def signed_url(base_url: str, secret: str, method: str, path: str, expires: int) -> str:
    """``{base_url}{path}?Expires=...&Signature=...``."""
    query = urlencode({"Expires": expires, "Signature": signature(secret, method, path, expires)})
    return f"{base_url}{path}?{query}"


def verify(secret: str, method: str, path: str, query: str, now: float) -> bool:
    """True when the query's signature matches the path and has not expired."""
    params = parse_qs(query, keep_blank_values=True)
    expires_raw = params.get("Expires", [""])[0]
    given = params.get("Signature", [""])[0]
    if not expires_raw.isdigit() or not given:
        return False
    expires = int(expires_raw)
    expected = signature(secret, method, path, expires)
    if not hmac.compare_digest(expected.encode(), given.encode()):
        return False
    return now <= expires
