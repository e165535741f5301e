"""Local media files: type, size and duration as the API checks them, and content hashes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import mutagen

from hifly_batch.apispec import (
    AUDIO_EXTENSIONS,
    DRIVING_AUDIO_MAX_BYTES,
    DRIVING_AUDIO_SECONDS,
    IMAGE_EXTENSIONS,
    UPLOAD_CONTENT_TYPES,
    VIDEO_EXTENSIONS,
    VOICE_SAMPLE_EXTENSIONS,
    VOICE_SAMPLE_MAX_BYTES,
    VOICE_SAMPLE_SECONDS,
)
from hifly_batch.manifest.build import a_or_an
from hifly_batch.manifest.diagnostics import Collector, format_path
from hifly_batch.manifest.model import Asset


@dataclass(frozen=True)
class Purpose:
    """What an asset is used for, with the limits the API sets for that use."""

    name: str
    extensions: frozenset[str]
    max_bytes: int | None = None
    seconds: tuple[float, float] | None = None


VOICE_SAMPLE = Purpose(
    "voice sample", VOICE_SAMPLE_EXTENSIONS, VOICE_SAMPLE_MAX_BYTES, VOICE_SAMPLE_SECONDS
)
DRIVING_AUDIO = Purpose(
    "driving audio", AUDIO_EXTENSIONS, DRIVING_AUDIO_MAX_BYTES, DRIVING_AUDIO_SECONDS
)
AVATAR_VIDEO = Purpose("avatar video", VIDEO_EXTENSIONS)
AVATAR_IMAGE = Purpose("avatar image", IMAGE_EXTENSIONS)


def check_uses(uses: Iterable[tuple[Asset, Purpose, str]], errors: Collector) -> dict[str, str]:
    """Check each used local file for its purpose (``user`` names the item using it);
    return asset name -> sha256 of the bytes."""
    hashes: dict[str, str] = {}
    checked: set[tuple[str, str]] = set()
    for asset, purpose, user in uses:
        if asset.file is None or (asset.name, purpose.name) in checked:
            continue
        checked.add((asset.name, purpose.name))
        if not asset.file.is_file():
            continue  # reported when the asset was read
        for problem in file_problems(asset.file, purpose):
            path = format_path(("assets", asset.name, "file"))
            errors.add(asset.location, path, f"{problem} (used by {user})")
        if asset.name not in hashes:
            hashes[asset.name] = file_sha256(asset.file)
    return hashes


def file_problems(path: Path, purpose: Purpose) -> list[str]:
    """Why ``path`` cannot serve ``purpose`` (empty when it can)."""
    extension = path.suffix.lower().lstrip(".")
    if extension not in purpose.extensions or extension not in UPLOAD_CONTENT_TYPES:
        wanted = ", ".join(sorted(purpose.extensions))
        found = path.suffix or "no extension"
        return [f"{a_or_an(purpose.name)} must be one of {wanted}, not {found}"]
    size = path.stat().st_size
    if size == 0:
        return [f"{path.name} is empty"]
    if purpose.max_bytes is not None and size > purpose.max_bytes:
        limit = purpose.max_bytes // (1024 * 1024)
        return [
            f"{path.name} is {size / 1048576:.1f} MB; {a_or_an(purpose.name)} is at most {limit} MB"
        ]
    if purpose.seconds is not None:
        return _duration_problems(path, purpose)
    return []


def _duration_problems(path: Path, purpose: Purpose) -> list[str]:
    assert purpose.seconds is not None
    seconds = audio_seconds(path)
    if seconds is None:
        return [f"{path.name} cannot be read as {path.suffix.lstrip('.')} audio; is it damaged?"]
    low, high = purpose.seconds
    if not low <= seconds <= high:
        return [
            f"{path.name} lasts {seconds:.1f} s; {a_or_an(purpose.name)} lasts "
            f"{_span(low)} to {_span(high)}"
        ]
    return []


def audio_seconds(path: Path) -> float | None:
    """The duration mutagen reads from the file, or None when it cannot."""
    try:
        info = mutagen.File(path)
    except Exception:  # mutagen raises many types for damaged files
        return None
    length = getattr(getattr(info, "info", None), "length", None)
    return float(length) if length else None


def file_sha256(path: Path) -> str:
    """The SHA-256 of the file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _span(seconds: float) -> str:
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
