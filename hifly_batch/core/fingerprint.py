"""Fingerprints (SPEC §5): what an item is, as a hash that is the same on every
machine and in every process.

A fingerprint is the SHA-256 of the canonical JSON of the item's kind and its
resolved create request, in which each reference to another item is replaced
by that item's fingerprint and a local file by the hash of its bytes. Canonical
JSON has sorted keys, no spaces and UTF-8 text, so neither dict order nor
``hash()`` randomisation can change it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# Changing how fingerprints are made changes this, so old states re-create
# rather than silently compare unlike things.
FINGERPRINT_FORMAT = "hifly-batch/fingerprint/1"


@dataclass(frozen=True)
class Ref:
    """A request value that is another item's result, resolved by the runner at run time
    (a file_id, an avatar or voice id, an audio URL)."""

    item_id: str


def canonical_json(value: Any) -> bytes:
    """The one byte string a JSON value has: sorted keys, compact, UTF-8, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def digest(value: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``value``."""
    return hashlib.sha256(canonical_json(value)).hexdigest()


def resolve_refs(value: Any, fingerprint_of: Callable[[str], str]) -> Any:
    """``value`` with every :class:`Ref` replaced by ``{"ref": <that item's fingerprint>}``."""
    if isinstance(value, Ref):
        return {"ref": fingerprint_of(value.item_id)}
    if isinstance(value, Mapping):
        return {k: resolve_refs(v, fingerprint_of) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [resolve_refs(v, fingerprint_of) for v in value]
    return value


def item_fingerprint(
    kind: str,
    request: Mapping[str, Any],
    fingerprint_of: Callable[[str], str],
    file_sha256: str | None = None,
) -> str:
    """The fingerprint of an item of ``kind`` sending ``request`` (uploading a file
    whose bytes hash to ``file_sha256``)."""
    identity: dict[str, Any] = {
        "format": FINGERPRINT_FORMAT,
        "kind": kind,
        "request": resolve_refs(request, fingerprint_of),
    }
    if file_sha256 is not None:
        identity["file_sha256"] = file_sha256
    return digest(identity)


def settings_fingerprint(settings: Mapping[str, str]) -> str:
    """The fingerprint of a voice's edit settings (rate, volume, pitch as strings)."""
    return digest({"format": FINGERPRINT_FORMAT, "voice_settings": dict(settings)})


def combined(fingerprint: str, settings: str | None) -> str:
    """What dependents of a voice fold in: its clone identity and, if any, its settings."""
    if settings is None:
        return fingerprint
    return digest([fingerprint, settings])


def field_digests(
    request: Mapping[str, Any], fingerprint_of: Callable[[str], str]
) -> dict[str, str]:
    """One digest per request field, so a plan can say which fields changed."""
    return {k: digest(resolve_refs(v, fingerprint_of)) for k, v in request.items()}
