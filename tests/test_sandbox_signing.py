"""Signed URLs: valid until they expire, and only for their own method and path."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from hifly_batch.sandbox.signing import signed_url, verify

SECRET = "s3cret"


def _query(url: str) -> str:
    return urlsplit(url).query


def test_a_signed_url_verifies_until_it_expires() -> None:
    url = signed_url("http://h", SECRET, "GET", "/files/a.mp4", 1000)
    assert urlsplit(url).path == "/files/a.mp4"
    assert verify(SECRET, "GET", "/files/a.mp4", _query(url), now=999.5)
    assert verify(SECRET, "GET", "/files/a.mp4", _query(url), now=1000)
    assert not verify(SECRET, "GET", "/files/a.mp4", _query(url), now=1000.01)


@pytest.mark.parametrize(
    ("secret", "method", "path"),
    [
        ("other", "GET", "/files/a.mp4"),
        (SECRET, "PUT", "/files/a.mp4"),
        (SECRET, "GET", "/files/b.mp4"),
    ],
)
def test_a_signature_is_bound_to_secret_method_and_path(
    secret: str, method: str, path: str
) -> None:
    url = signed_url("http://h", SECRET, "GET", "/files/a.mp4", 1000)
    assert not verify(secret, method, path, _query(url), now=0)


@pytest.mark.parametrize(
    "query",
    ["", "Expires=1000", "Signature=abc", "Expires=x&Signature=abc", "Expires=-1&Signature=abc"],
)
def test_incomplete_queries_do_not_verify(query: str) -> None:
    assert not verify(SECRET, "GET", "/files/a.mp4", query, now=0)


def test_a_moved_expiry_breaks_the_signature() -> None:
    query = _query(signed_url("http://h", SECRET, "GET", "/p", 1000))
    assert not verify(SECRET, "GET", "/p", query.replace("Expires=1000", "Expires=9999"), now=0)
