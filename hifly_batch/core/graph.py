"""The item graph (SPEC §5): every piece of remote work a campaign needs, expanded per
row, with its dependencies, in dependency order, each with its fingerprint.

Built purely from a validated :class:`~hifly_batch.manifest.model.Campaign`;
the runner walks it and the plan compares it with the state.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from hifly_batch.apispec import VOICE_TYPE_CLONE_V2, Endpoint
from hifly_batch.core.fingerprint import (
    Ref,
    combined,
    field_digests,
    item_fingerprint,
    settings_fingerprint,
)
from hifly_batch.manifest.diagnostics import ManifestInvalid
from hifly_batch.manifest.model import (
    Asset,
    Avatar,
    AvatarSource,
    Campaign,
    SkippedRow,
    Voice,
    VoiceSource,
    Work,
)

__all__ = ["Graph", "Item", "ItemKind", "Ref", "build_graph"]


class ItemKind(str, enum.Enum):
    """What an item does; ``endpoint`` is its create request (None: no create)."""

    UPLOAD = "upload"
    REMOTE_ASSET = "remote_asset"
    AVATAR_BY_VIDEO = "avatar_by_video"
    AVATAR_BY_IMAGE = "avatar_by_image"
    EXISTING_AVATAR = "existing_avatar"
    VOICE_CLONE = "voice_clone"
    EXISTING_VOICE = "existing_voice"
    PUBLIC_VOICE = "public_voice"
    VIDEO_BY_TTS = "video_by_tts"
    VIDEO_BY_AUDIO = "video_by_audio"
    AUDIO_BY_TTS = "audio_by_tts"

    @property
    def endpoint(self) -> Endpoint | None:
        return _ENDPOINTS.get(self)


_ENDPOINTS = {
    ItemKind.UPLOAD: Endpoint.CREATE_UPLOAD_URL,
    ItemKind.AVATAR_BY_VIDEO: Endpoint.AVATAR_CREATE_BY_VIDEO,
    ItemKind.AVATAR_BY_IMAGE: Endpoint.AVATAR_CREATE_BY_IMAGE,
    ItemKind.VOICE_CLONE: Endpoint.VOICE_CREATE,
    ItemKind.PUBLIC_VOICE: Endpoint.VOICE_LIST,
    ItemKind.VIDEO_BY_TTS: Endpoint.VIDEO_CREATE_BY_TTS,
    ItemKind.VIDEO_BY_AUDIO: Endpoint.VIDEO_CREATE_BY_AUDIO,
    ItemKind.AUDIO_BY_TTS: Endpoint.AUDIO_CREATE_BY_TTS,
}


@dataclass(frozen=True)
class Item:
    """One node of the graph.

    ``request`` holds the create request's fields as the API document names
    them, with :class:`Ref` values where another item's result goes. A voice's
    ``settings`` (voice/edit's rate/volume/pitch strings) have their own
    ``settings_fingerprint``: a change there edits the voice, it does not clone
    it again, but it does change ``dependent_fingerprint``, which the items that
    speak with the voice fold into their own fingerprints.
    """

    id: str
    section: str
    name: str
    kind: ItemKind
    request: Mapping[str, Any]
    fingerprint: str
    deps: tuple[str, ...] = ()
    key: str | None = None
    index: int | None = None
    output: str | None = None  # relative POSIX path under output_dir
    output_default: bool = False  # audios: the runner may use the output URL's extension
    text: str | None = None
    file: Path | None = None  # uploads: the local file
    file_sha256: str | None = None  # uploads: the hash of its bytes (in the fingerprint)
    settings: Mapping[str, str] | None = None
    settings_fingerprint: str | None = None
    # The fingerprint version 1.0 gave the same item, whose rendered texts were not yet
    # normalized (SPEC §3): its records count as this item's. Equal to ``fingerprint``
    # where nothing differs.
    legacy_fingerprint: str = ""

    @property
    def dependent_fingerprint(self) -> str:
        """What items depending on this one fold into their fingerprints."""
        return combined(self.fingerprint, self.settings_fingerprint)

    @property
    def dependent_legacy_fingerprint(self) -> str:
        return combined(self.legacy_fingerprint or self.fingerprint, self.settings_fingerprint)


@dataclass(frozen=True)
class Graph:
    """Items in dependency order (every item after all of its deps). ``skipped``: the
    rows that ``when`` filtered out, which make no item; reports name them."""

    items: tuple[Item, ...]
    by_id: Mapping[str, Item]
    skipped: tuple[SkippedRow, ...] = ()

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, item_id: str) -> Item:
        return self.by_id[item_id]

    def field_digests(self, item_id: str) -> dict[str, str]:
        """One digest per request field of the item (references by their fingerprints),
        for the state to keep so that a later plan can say which fields changed."""
        return field_digests(self[item_id].request, lambda d: self[d].dependent_fingerprint)


def build_graph(campaign: Campaign) -> Graph:
    """The campaign's graph; :class:`ManifestInvalid` when voices and audios form a cycle."""
    specs = _Specs(campaign)
    for work in campaign.works:
        specs.add_work(work)
    for name in campaign.manifest.avatars:
        specs.avatar(name)
    for name in campaign.manifest.voices:
        specs.voice(name)
    order = _topological(specs.specs, specs.sort_key, specs.voice_locations)
    built: dict[str, Item] = {}
    for item_id in order:
        built[item_id] = _finish(specs.specs[item_id], built)
    return Graph(tuple(built.values()), MappingProxyType(built), campaign.skipped)


@dataclass
class _Spec:
    """An item before its fingerprint (which needs its deps' fingerprints)."""

    id: str
    section: str
    name: str
    kind: ItemKind
    request: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    deps: tuple[str, ...] = ()
    legacy_request: dict[str, Any] | None = None  # as version 1.0 sent it, where it differs

    def __post_init__(self) -> None:
        self.deps = tuple(dict.fromkeys(_refs(self.request)))


def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, Ref):
        yield value.item_id
    elif isinstance(value, dict):
        for inner in value.values():
            yield from _refs(inner)


class _Specs:
    """Collects item specs, adding an asset, avatar or voice when first used."""

    def __init__(self, campaign: Campaign) -> None:
        self.campaign = campaign
        self.manifest = campaign.manifest
        self.specs: dict[str, _Spec] = {}
        self.voice_locations = {
            v.item_id: v.audio_location or v.location for v in self.manifest.voices.values()
        }

    def sort_key(self, spec: _Spec, met: int) -> tuple[int, int, int]:
        """Section, then the entry's place in its section, then the order rows were met."""
        m = self.manifest
        section: Mapping[str, Any] = {
            "assets": m.assets, "avatars": m.avatars, "voices": m.voices,
        }.get(spec.section, m.works)  # fmt: skip
        return _SECTION_RANK[spec.section], list(section).index(spec.name), met

    def _put(self, spec: _Spec) -> str:
        self.specs.setdefault(spec.id, spec)
        return spec.id

    def asset(self, name: str, url_field: str) -> tuple[str, Ref]:
        """The request field and value for an asset used as ``url_field``'s input."""
        asset: Asset = self.manifest.assets[name]
        if asset.file is None:
            self._put(
                _Spec(asset.item_id, "assets", name, ItemKind.REMOTE_ASSET, {"url": asset.url})
            )
            return url_field, Ref(asset.item_id)
        request = {"file_extension": asset.extension}
        extra = {"file": asset.file, "file_sha256": self.campaign.file_hashes[name]}
        self._put(_Spec(asset.item_id, "assets", name, ItemKind.UPLOAD, request, extra))
        return "file_id", Ref(asset.item_id)

    def avatar(self, name: str) -> Ref:
        avatar: Avatar = self.manifest.avatars[name]
        if avatar.item_id not in self.specs:
            self._put(self._avatar_spec(avatar))
        return Ref(avatar.item_id)

    def _avatar_spec(self, avatar: Avatar) -> _Spec:
        if avatar.source is AvatarSource.ID:
            return _Spec(
                avatar.item_id,
                "avatars",
                avatar.name,
                ItemKind.EXISTING_AVATAR,
                {"avatar": avatar.ref},
            )
        request: dict[str, Any] = {}
        if avatar.title is not None:
            request["title"] = avatar.title
        if avatar.source is AvatarSource.VIDEO:
            key, ref = self.asset(avatar.ref, "video_url")
            kind = ItemKind.AVATAR_BY_VIDEO
        else:
            key, ref = self.asset(avatar.ref, "image_url")
            kind = ItemKind.AVATAR_BY_IMAGE
            request["model"] = avatar.model if avatar.model is not None else 2
        request[key] = ref
        request.update(avatar.api_params)
        spec = _Spec(avatar.item_id, "avatars", avatar.name, kind, request)
        if avatar.legacy_title is not None:  # the title as version 1.0 sent it
            spec.legacy_request = {**request, "title": avatar.legacy_title}
        return spec

    def voice(self, name: str) -> Ref:
        voice: Voice = self.manifest.voices[name]
        if voice.item_id not in self.specs:
            self._put(self._voice_spec(voice))
        return Ref(voice.item_id)

    def _voice_spec(self, voice: Voice) -> _Spec:
        extra = {"settings": voice.settings.as_request() if voice.settings else None}
        request: dict[str, Any]
        if voice.source is VoiceSource.ID:
            kind, request = ItemKind.EXISTING_VOICE, {"voice": voice.ref}
        elif voice.source is VoiceSource.PUBLIC:
            kind, request = ItemKind.PUBLIC_VOICE, {"title": voice.ref}
        else:
            kind = ItemKind.VOICE_CLONE
            request = {"title": voice.title or voice.name, "voice_type": VOICE_TYPE_CLONE_V2}
            if voice.ref in self.manifest.works:
                request["audio_url"] = Ref(f"audios.{voice.ref}")
            else:
                key, ref = self.asset(voice.ref, "audio_url")
                request[key] = ref
            request.update(voice.api_params)
        spec = _Spec(voice.item_id, "voices", voice.name, kind, request, extra)
        if voice.legacy_title is not None:  # the title as version 1.0 sent it
            spec.legacy_request = {**request, "title": voice.legacy_title}
        return spec

    def add_work(self, work: Work) -> None:
        request: dict[str, Any] = {}
        if work.title is not None:
            request["title"] = work.title
        if work.text is not None:
            request["text"] = work.text
        if work.voice is not None:
            request["voice"] = self.voice(work.voice)
        if work.avatar is not None:
            request["avatar"] = self.avatar(work.avatar)
        if work.audio is not None:
            if work.audio.startswith("audios."):
                request["audio_url"] = Ref(work.audio)
            else:
                key, ref = self.asset(work.audio.split(".", 1)[1], "audio_url")
                request[key] = ref
        request.update(work.api_params)
        kind = _work_kind(work)
        extra = {
            "key": work.key,
            "index": work.index,
            "output": work.output,
            "output_default": work.output_default,
            "text": work.text,
        }
        spec = _Spec(work.item_id, work.section, work.name, kind, request, extra)
        spec.legacy_request = _legacy_request(request, work.legacy) if work.legacy else None
        self._put(spec)


def _legacy_request(request: Mapping[str, Any], legacy: Mapping[str, str]) -> dict[str, Any]:
    """The create request as version 1.0 made it: its title and text as rendered then (an
    empty title was left out)."""
    older = {**request, **legacy}
    if not older.get("title"):
        older.pop("title", None)
    return older


def _work_kind(work: Work) -> ItemKind:
    if work.section == "audios":
        return ItemKind.AUDIO_BY_TTS
    return ItemKind.VIDEO_BY_AUDIO if work.audio is not None else ItemKind.VIDEO_BY_TTS


def _finish(spec: _Spec, built: Mapping[str, Item]) -> Item:
    """Fingerprint a spec whose deps are all built."""

    def fingerprint_of(item_id: str) -> str:
        return built[item_id].dependent_fingerprint

    def legacy_of(item_id: str) -> str:
        return built[item_id].dependent_legacy_fingerprint

    settings = spec.extra.get("settings")
    settings_fp = settings_fingerprint(settings) if settings else None
    extra = {k: v for k, v in spec.extra.items() if k != "settings"}
    return Item(
        id=spec.id,
        section=spec.section,
        name=spec.name,
        kind=spec.kind,
        request=MappingProxyType(spec.request),
        fingerprint=item_fingerprint(
            spec.kind.value, spec.request, fingerprint_of, spec.extra.get("file_sha256")
        ),
        legacy_fingerprint=item_fingerprint(
            spec.kind.value,
            spec.legacy_request or spec.request,
            legacy_of,
            spec.extra.get("file_sha256"),
        ),
        deps=spec.deps,
        settings=MappingProxyType(settings) if settings else None,
        settings_fingerprint=settings_fp,
        **extra,
    )


def _topological(
    specs: Mapping[str, _Spec],
    sort_key: Callable[[_Spec, int], tuple[int, int, int]],
    voice_locations: Mapping[str, Any],
) -> list[str]:
    """Kahn's algorithm; among ready items, manifest order (sections, entries, rows)."""
    ranked = sorted(enumerate(specs), key=lambda p: sort_key(specs[p[1]], p[0]))
    ids = [item_id for _, item_id in ranked]
    position = {item_id: i for i, item_id in enumerate(ids)}
    waiting = {item_id: len(spec.deps) for item_id, spec in specs.items()}
    dependents: dict[str, list[str]] = {item_id: [] for item_id in specs}
    for item_id, spec in specs.items():
        for dep in spec.deps:
            dependents[dep].append(item_id)
    ready = [position[i] for i, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        item_id = ids[heapq.heappop(ready)]
        order.append(item_id)
        for user in dependents[item_id]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, position[user])
    if len(order) < len(specs):
        _raise_cycle(specs, set(specs) - set(order), voice_locations)
    return order


_SECTION_RANK = {"assets": 0, "avatars": 1, "voices": 2, "audios": 3, "videos": 4}


def _raise_cycle(
    specs: Mapping[str, _Spec], stuck: set[str], voice_locations: Mapping[str, Any]
) -> None:
    """Name one cycle among the ``stuck`` items, at a voice's ``audio:`` field."""
    from hifly_batch.manifest.diagnostics import Diagnostic

    start = next(i for i in specs if i in stuck and i.startswith("voices."))
    path, seen = [start], {start}
    while True:
        nxt = next(d for d in specs[path[-1]].deps if d in stuck)
        if nxt in seen:
            cycle = [*path[path.index(nxt) :], nxt]
            break
        path.append(nxt)
        seen.add(nxt)
    first_voice = next(i for i in cycle if i.startswith("voices."))
    message = "cycle: " + " → ".join(cycle)
    raise ManifestInvalid(
        [Diagnostic(voice_locations[first_voice], f"{first_voice}.audio", message)]
    )
