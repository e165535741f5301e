"""From schema-valid YAML to the frozen model, with the semantic checks of SPEC §3:
names, one namespace, references and their kinds, settings and durations."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from hifly_batch.apispec import (
    AUDIO_EXTENSIONS,
    IMAGE_EXTENSIONS,
    TITLE_MAX_CHARS,
    VIDEO_EXTENSIONS,
    VOICE_EDIT_RANGES,
)
from hifly_batch.manifest.diagnostics import Collector, FieldPath, format_path
from hifly_batch.manifest.model import (
    Asset,
    Avatar,
    AvatarSource,
    Field,
    MediaKind,
    Settings,
    Voice,
    VoiceSettings,
    VoiceSource,
    WorkSpec,
)
from hifly_batch.manifest.values import (
    api_string,
    control_problem,
    invisible_problem,
    is_campaign_name,
    is_item_name,
    missing_file,
    parse_duration,
    shorten,
    spoken,
)
from hifly_batch.manifest.yamlload import YamlDocument

SECTIONS = ("assets", "data", "avatars", "voices", "videos", "audios")
WORK_SECTIONS = ("videos", "audios")
WORK_FIELDS = ("when", "avatar", "voice", "text", "text_file", "audio", "title", "output")
DEFAULTS = Settings(output_dir=Path("."))


class Builder:
    """Reads one schema-checked document; ``bad`` holds path prefixes the schema refused."""

    def __init__(self, doc: YamlDocument, path: Path, errors: Collector, bad: set[FieldPath]):
        self.doc = doc
        self.root = path.parent
        self.path = path
        self.errors = errors
        self.bad = bad
        self.data: dict[str, Any] = doc.data if isinstance(doc.data, dict) else {}
        # Names whose entries the schema refused: references to them are not
        # reported again as unknown.
        self.refused_names = {p[1] for p in bad if len(p) == 2 and isinstance(p[1], str)}

    def error(self, path: FieldPath, message: str, *, key: bool = False) -> None:
        self.errors.add(self.doc.locate(path, key=key), format_path(path), message)

    def entries(self, section: str) -> list[tuple[str, dict[str, Any]]]:
        """The section's entries that passed the schema and have valid names."""
        raw = self.data.get(section)
        if not isinstance(raw, dict) or (section,) in self.bad:
            return []
        return [
            (name, value)
            for name, value in raw.items()
            if (section, name) not in self.bad and is_item_name(name) and isinstance(value, dict)
        ]

    def field(self, path: FieldPath) -> Field:
        value = self._get(path)
        return Field(str(value), self.doc.locate(path), path in self.doc.block_scalars)

    def _get(self, path: FieldPath) -> Any:
        value: Any = self.data
        for part in path:
            value = value[part]
        return value

    # -- top level -----------------------------------------------------------

    def campaign_name(self) -> str:
        name = self.data.get("name")
        if name is None:
            name = self.path.stem
            if not is_campaign_name(name):
                self.error(
                    (), f"the file name {name!r} is not a usable campaign name: {_NAME_RULE}"
                )
        elif ("name",) not in self.bad and not is_campaign_name(str(name)):
            self.error(("name",), f"{name!r} is not a usable campaign name: {_NAME_RULE}")
        return str(name)

    def settings(self, name: str) -> Settings:
        raw = self.data.get("settings")
        raw = raw if isinstance(raw, dict) and ("settings",) not in self.bad else {}
        values: dict[str, Any] = {}
        for key in ("poll_interval", "poll_max", "task_timeout"):
            if key in raw and ("settings", key) not in self.bad:
                try:
                    values[key] = parse_duration(raw[key])
                except ValueError as exc:
                    self.error(("settings", key), str(exc))
        for key in ("concurrency", "max_attempts"):
            if key in raw and ("settings", key) not in self.bad:
                values[key] = raw[key]
        interval = values.get("poll_interval", DEFAULTS.poll_interval)
        if interval > values.get("poll_max", DEFAULTS.poll_max):
            where = ("settings", "poll_max") if "poll_max" in raw else ("settings", "poll_interval")
            self.error(where, "poll_interval must not be greater than poll_max")
        output = raw.get("output_dir") if ("settings", "output_dir") not in self.bad else None
        if isinstance(output, str) and (problem := invisible_problem(output)) is not None:
            self.error(("settings", "output_dir"), f"the folder {problem}")
            output = None
        out_dir = self.root / (output if isinstance(output, str) else f"out/{name}")
        return Settings(output_dir=Path(os.path.normpath(out_dir.absolute())), **values)

    def check_names(self) -> None:
        """Item names are identifiers, unique across every section (one namespace)."""
        seen: dict[str, FieldPath] = {}
        for section in SECTIONS:
            raw = self.data.get(section)
            if not isinstance(raw, dict):
                continue
            for name in raw:
                here = (section, name)
                if not is_item_name(name):
                    self.error(here, f"{name!r} is not a valid item name: {_ITEM_RULE}", key=True)
                elif name in seen:
                    first = seen[name]
                    line = self.doc.locate(first, key=True).line
                    message = f"name {name!r} is already used by {format_path(first)} (line {line})"
                    self.error(here, message + "; names are unique across all sections", key=True)
                else:
                    seen[name] = here

    # -- sections --------------------------------------------------------------

    def assets(self) -> dict[str, Asset]:
        found = {}
        for name, raw in self.entries("assets"):
            where = self.doc.locate(("assets", name))
            if "file" in raw:
                file = (self.root / raw["file"]).absolute()
                if not file.is_file():
                    self.error(("assets", name, "file"), missing_file(raw["file"]))
                found[name] = Asset(name, where, media_kind(file.name), file=file)
            else:
                found[name] = Asset(name, where, media_kind(raw["url"]), url=raw["url"])
        return found

    def avatars(self, assets: Mapping[str, Asset]) -> dict[str, Avatar]:
        found = {}
        for name, raw in self.entries("avatars"):
            source = next(s for s in AvatarSource if s.value in raw)
            here = ("avatars", name)
            if source is not AvatarSource.ID:
                wanted = MediaKind.VIDEO if source is AvatarSource.VIDEO else MediaKind.IMAGE
                self.check_asset_ref((*here, source.value), raw[source.value], assets, wanted)
            self.only_for(here, raw, "model", source is AvatarSource.IMAGE, "image avatars")
            self.only_for(here, raw, "title", source is not AvatarSource.ID, "cloned avatars")
            self.only_for(here, raw, "api_params", source is not AvatarSource.ID, "cloned avatars")
            title = self.title(here, raw.get("title"))
            found[name] = Avatar(
                name,
                self.doc.locate(here),
                source,
                raw[source.value],
                title=title,
                model=raw.get("model"),
                api_params=self.api_params(here, raw),
                legacy_title=raw.get("title") if raw.get("title") != title else None,
            )
        return found

    def voices(
        self, assets: Mapping[str, Asset], works: Mapping[str, WorkSpec]
    ) -> dict[str, Voice]:
        found = {}
        for name, raw in self.entries("voices"):
            source = next(s for s in VoiceSource if s.value in raw)
            here = ("voices", name)
            audio_at = None
            if source is VoiceSource.AUDIO:
                audio_at = self.doc.locate((*here, "audio"))
                self.check_audio_ref((*here, "audio"), raw["audio"], assets, works)
            edits = [k for k in VOICE_EDIT_RANGES if k in raw]
            is_public = source is VoiceSource.PUBLIC
            for key in edits:
                self.only_for(here, raw, key, not is_public, "cloned or own voices (audio or id)")
            self.only_for(here, raw, "title", source is VoiceSource.AUDIO, "cloned voices")
            self.only_for(here, raw, "api_params", source is VoiceSource.AUDIO, "cloned voices")
            settings = self.voice_settings(here, raw) if edits and not is_public else None
            written = raw.get("title", name)
            title = (self.title(here, written) or name) if source is VoiceSource.AUDIO else None
            found[name] = Voice(
                name,
                self.doc.locate(here),
                source,
                raw[source.value],
                audio_location=audio_at,
                title=title,
                settings=settings,
                api_params=self.api_params(here, raw),
                legacy_title=written if title is not None and written != title else None,
            )
        return found

    def title(self, here: FieldPath, title: str | None) -> str | None:
        """A clone's title as sent, as a rendered one is (SPEC §3): NFC, stripped, none
        when it holds only whitespace and invisible characters; a control character in
        it is an error."""
        if title is None or not (sent := spoken(title)):
            return None
        if (problem := control_problem(sent)) is not None:
            self.error((*here, "title"), f"the title {problem}")
        elif len(sent) > TITLE_MAX_CHARS:
            message = f"at most {TITLE_MAX_CHARS} characters, got {len(sent)}: {shorten(sent)!r}"
            self.error((*here, "title"), message)
        return sent

    def voice_settings(self, here: FieldPath, raw: Mapping[str, Any]) -> VoiceSettings:
        values = {}
        for key, (low, high) in VOICE_EDIT_RANGES.items():
            if key in raw:
                if not low <= raw[key] <= high:
                    self.error((*here, key), f"{key} must be between {low} and {high}")
                values[key] = api_string(raw[key])
        return VoiceSettings(**values)

    def works(self) -> dict[str, WorkSpec]:
        found = {}
        for section in WORK_SECTIONS:
            for name, raw in self.entries(section):
                here = (section, name)
                for_each = raw.get("for_each")
                data = self.data.get("data")
                if for_each is not None and not (isinstance(data, dict) and for_each in data):
                    self.unknown_ref((*here, "for_each"), for_each, "data", "a data source")
                if section == "videos" and "audio" in raw and "voice" in raw:
                    self.error((*here, "voice"), "voice is not used by a video made from audio")
                if section == "videos" and "audio" not in raw and "voice" not in raw:
                    self.error(
                        here, "missing required key 'voice' (a video from text needs a voice)"
                    )
                fields = {k: self.field((*here, k)) for k in WORK_FIELDS if k in raw}
                found[name] = WorkSpec(
                    section,
                    name,
                    self.doc.locate(here),
                    MappingProxyType(fields),
                    for_each=for_each,
                    api_params=self.api_params(here, raw),
                )
        return found

    # -- helpers ---------------------------------------------------------------

    def only_for(
        self, here: FieldPath, raw: Mapping[str, Any], key: str, ok: bool, what: str
    ) -> None:
        if key in raw and not ok:
            self.error((*here, key), f"{key} applies only to {what}", key=True)

    def api_params(self, here: FieldPath, raw: Mapping[str, Any]) -> Mapping[str, Any]:
        params = raw.get("api_params") or {}
        for key, value in params.items():
            if not _is_json(value):
                self.error(
                    (*here, "api_params", key),
                    "not a JSON value (NaN, infinity or a non-string key)",
                )
        return MappingProxyType(dict(params))

    def check_asset_ref(
        self, path: FieldPath, name: str, assets: Mapping[str, Asset], wanted: MediaKind
    ) -> None:
        asset = assets.get(name)
        if asset is None:
            if name not in self.refused_names:
                self.unknown_ref(path, name, "assets", f"a {wanted.value} asset")
        elif asset.url and asset.media not in (wanted, MediaKind.UNKNOWN):
            # Local files are checked for their use (type, size, duration) in media.py.
            exts = ", ".join(sorted(_EXTENSIONS[wanted]))
            what = a_or_an(asset.media.value)
            self.error(
                path, f"assets.{name} is {what} URL; this needs {a_or_an(wanted.value)} ({exts})"
            )

    def check_audio_ref(
        self, path: FieldPath, name: str, assets: Mapping[str, Asset], works: Mapping[str, WorkSpec]
    ) -> None:
        """An ``audio:`` names an audio asset or an audios item."""
        work = works.get(name)
        if work is not None and work.section == "audios":
            return
        if work is not None:
            self.error(
                path, f"{name!r} is a videos item; audio: needs an audio asset or an audios item"
            )
            return
        self.check_asset_ref(path, name, assets, MediaKind.AUDIO)

    def unknown_ref(self, path: FieldPath, name: object, section: str, what: str) -> None:
        raw = self.data.get(section)
        candidates = list(raw) if isinstance(raw, dict) else []
        message = f"{name!r} is not {what}" + did_you_mean(str(name), candidates)
        self.error(path, message)


def did_you_mean(name: str, candidates: list[str]) -> str:
    """`` (did you mean 'x'?)`` when a candidate is close, else ``""``."""
    import difflib

    close = difflib.get_close_matches(name, candidates, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def media_kind(name: str) -> MediaKind:
    """The kind of media a file name or URL's extension names."""
    path = name.split("?", 1)[0].split("#", 1)[0]
    extension = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    for kind, extensions in _EXTENSIONS.items():
        if extension in extensions:
            return kind
    return MediaKind.UNKNOWN


def _is_json(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return value is None or isinstance(value, str | int | bool)


def a_or_an(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


_EXTENSIONS = {
    MediaKind.VIDEO: VIDEO_EXTENSIONS,
    MediaKind.IMAGE: IMAGE_EXTENSIONS,
    MediaKind.AUDIO: AUDIO_EXTENSIONS,
}
_NAME_RULE = (
    "1-64 letters (any script), digits, '.', '_' or '-', not starting with '.' "
    "(set name: in the manifest)"
)
_ITEM_RULE = "start with a letter or '_', then letters, digits, '_' or '-'"
