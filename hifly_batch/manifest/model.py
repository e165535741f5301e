"""The validated manifest as frozen dataclasses.

Nothing past validation reads the raw YAML: the loader turns it into these
types, and the graph is built from them alone.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from hifly_batch.manifest.diagnostics import Location

JsonValue = Any
EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class Field:
    """A string as written in the manifest (maybe a template) and where it is."""

    text: str
    location: Location
    block: bool = False  # a "|" or ">" block scalar: its text starts on the next line

    def line_of(self, template_line: int | None) -> Location:
        """The manifest location of a line of this template (1-based)."""
        if template_line is None:
            return self.location
        line = self.location.line + (template_line if self.block else template_line - 1)
        return Location(self.location.file, line, self.location.col)

    @property
    def is_template(self) -> bool:
        return "{{" in self.text or "{%" in self.text or "{#" in self.text


@dataclass(frozen=True)
class Settings:
    output_dir: Path  # absolute
    concurrency: int = 4
    poll_interval: float = 5.0
    poll_max: float = 60.0
    task_timeout: float = 7200.0
    max_attempts: int = 3


class MediaKind(str, enum.Enum):
    VIDEO = "video"
    IMAGE = "image"
    AUDIO = "audio"
    UNKNOWN = "unknown"  # a URL whose path has no known extension


@dataclass(frozen=True)
class Asset:
    """A local file (uploaded when used) or a remote URL (passed as ``*_url``)."""

    name: str
    location: Location
    media: MediaKind
    file: Path | None = None  # absolute
    url: str | None = None

    @property
    def item_id(self) -> str:
        return f"assets.{self.name}"

    @property
    def extension(self) -> str:
        source = self.file.name if self.file is not None else (self.url or "")
        return source.rsplit("?", 1)[0].rsplit(".", 1)[-1].lower() if "." in source else ""


@dataclass(frozen=True)
class Row:
    """One data row: 1-based index in its source, key, values, and where it is."""

    index: int
    key: str
    values: Mapping[str, JsonValue]
    location: Location

    def describe(self) -> str:
        return f"row {self.key!r} at {self.location.file}:{self.location.line}"


@dataclass(frozen=True)
class DataSource:
    name: str
    location: Location
    rows: tuple[Row, ...]


class AvatarSource(str, enum.Enum):
    VIDEO = "video"
    IMAGE = "image"
    ID = "id"


@dataclass(frozen=True)
class Avatar:
    name: str
    location: Location
    source: AvatarSource
    ref: str  # asset name for video/image, the avatar id for id
    title: str | None = None
    model: int | None = None
    api_params: Mapping[str, JsonValue] = field(default_factory=lambda: EMPTY)
    # The title as version 1.0 sent it (not normalized), where that differs: the clone
    # it made is still this avatar.
    legacy_title: str | None = None

    @property
    def item_id(self) -> str:
        return f"avatars.{self.name}"


class VoiceSource(str, enum.Enum):
    AUDIO = "audio"
    ID = "id"
    PUBLIC = "public"


@dataclass(frozen=True)
class VoiceSettings:
    """voice/edit values as the API's strings (unset ones take the API default ``"1.0"``)."""

    rate: str = "1.0"
    volume: str = "1.0"
    pitch: str = "1.0"

    def as_request(self) -> dict[str, str]:
        return {"rate": self.rate, "volume": self.volume, "pitch": self.pitch}


@dataclass(frozen=True)
class Voice:
    name: str
    location: Location
    source: VoiceSource
    ref: str  # asset or audios item name, voice id, or public title
    audio_location: Location | None = None
    title: str | None = None
    settings: VoiceSettings | None = None
    api_params: Mapping[str, JsonValue] = field(default_factory=lambda: EMPTY)
    legacy_title: str | None = None  # as for Avatar

    @property
    def item_id(self) -> str:
        return f"voices.{self.name}"


@dataclass(frozen=True)
class WorkSpec:
    """A videos or audios entry as written: every string field is a template."""

    section: str  # "videos" or "audios"
    name: str
    location: Location
    fields: Mapping[str, Field]  # avatar, voice, text, text_file, audio, title, output, when
    for_each: str | None = None
    api_params: Mapping[str, JsonValue] = field(default_factory=lambda: EMPTY)


@dataclass(frozen=True)
class Work:
    """One videos or audios item after rendering, for one row (or the only one)."""

    section: str
    name: str
    key: str | None
    index: int | None
    row: Row | None
    title: str | None
    text: str | None = None
    avatar: str | None = None  # avatar name
    voice: str | None = None  # voice name
    audio: str | None = None  # item id of the driving audio: assets.x or audios.y[key]
    output: str = ""  # relative POSIX path under output_dir
    output_default: bool = True  # audios: the runner may take the extension from the URL
    api_params: Mapping[str, JsonValue] = field(default_factory=lambda: EMPTY)
    # ``title`` and ``text`` as version 1.0 rendered them (no block trimming, no strip, no
    # NFC), where that differs: records of work made then still count as this item.
    legacy: Mapping[str, str] = field(default_factory=lambda: EMPTY)

    @property
    def item_id(self) -> str:
        base = f"{self.section}.{self.name}"
        return base if self.key is None else f"{base}[{self.key}]"


@dataclass(frozen=True)
class SkippedRow:
    """A row that an entry's ``when`` filtered out: it makes no item (SPEC §3), and is
    kept only so that reports can name it."""

    section: str  # "videos" or "audios"
    name: str
    key: str | None  # None: an entry without for_each
    source: Location | None  # the data row, its file relative to the manifest's folder

    @property
    def item_id(self) -> str:
        """The id the row's item would have had."""
        base = f"{self.section}.{self.name}"
        return base if self.key is None else f"{base}[{self.key}]"


@dataclass(frozen=True)
class Manifest:
    """A whole validated manifest."""

    path: Path  # absolute
    file: str  # as shown in diagnostics
    root: Path  # the manifest's folder: manifest paths are relative to it
    name: str
    settings: Settings
    vars: Mapping[str, JsonValue]
    assets: Mapping[str, Asset]
    data: Mapping[str, DataSource]
    avatars: Mapping[str, Avatar]
    voices: Mapping[str, Voice]
    works: Mapping[str, WorkSpec]  # videos and audios entries, by name (one namespace)

    def display(self, path: Path) -> str:
        """A file named by the manifest as diagnostics show it."""
        base = Path(self.file).parent
        try:
            return (base / path.relative_to(self.root)).as_posix()
        except ValueError:
            return path.as_posix()


@dataclass(frozen=True)
class Campaign:
    """A manifest validated down to every row: what the graph is built from."""

    manifest: Manifest
    works: tuple[Work, ...]
    file_hashes: Mapping[str, str]  # asset name -> sha256 of the bytes, for used local files
    skipped: tuple[SkippedRow, ...] = ()  # rows that ``when`` filtered out, in manifest order
