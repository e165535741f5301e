"""From an item's planned request to the client call that sends it.

Pure: references to other items are resolved through a callback, and the
documented fields of each create endpoint are told apart from the
pass-through ``api_params``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hifly_batch.api.client import HiflyClient
from hifly_batch.core.fingerprint import Ref
from hifly_batch.core.graph import ItemKind

# The keyword arguments of each client create method; everything else in a
# request is passed through as ``extra``.
_FIELDS: dict[ItemKind, tuple[str, ...]] = {
    ItemKind.AVATAR_BY_VIDEO: ("video_url", "file_id", "title"),
    ItemKind.AVATAR_BY_IMAGE: ("image_url", "file_id", "title", "model"),
    ItemKind.VOICE_CLONE: ("audio_url", "file_id", "title"),
    ItemKind.VIDEO_BY_TTS: ("avatar", "voice", "text", "title"),
    ItemKind.VIDEO_BY_AUDIO: ("avatar", "audio_url", "file_id", "title"),
    ItemKind.AUDIO_BY_TTS: ("voice", "text", "title"),
}
_SET_BY_CLIENT = frozenset({"voice_type"})

# A reference resolves to (field, value): the field may change, e.g. an
# audios item's output goes as ``audio_url``, or as ``file_id`` once uploaded.
Resolver = Callable[[str, str], tuple[str, Any]]


def resolve(request: Mapping[str, Any], value_of: Resolver) -> dict[str, Any]:
    """``request`` with every :class:`Ref` replaced through ``value_of(field, item_id)``."""
    resolved: dict[str, Any] = {}
    for name, value in request.items():
        if isinstance(value, Ref):
            name, value = value_of(name, value.item_id)
        resolved[name] = value
    return resolved


def send_create(client: HiflyClient, kind: ItemKind, request: Mapping[str, Any]) -> str:
    """Send a resolved create request; returns the task id."""
    known = _FIELDS[kind]
    kwargs = {k: v for k, v in request.items() if k in known}
    extra = {k: v for k, v in request.items() if k not in known and k not in _SET_BY_CLIENT}
    method = _METHODS[kind]
    return method(client, **kwargs, extra=extra or None)


_METHODS: dict[ItemKind, Callable[..., str]] = {
    ItemKind.AVATAR_BY_VIDEO: HiflyClient.create_avatar_by_video,
    ItemKind.AVATAR_BY_IMAGE: HiflyClient.create_avatar_by_image,
    ItemKind.VOICE_CLONE: HiflyClient.create_voice,
    ItemKind.VIDEO_BY_TTS: HiflyClient.create_video_by_tts,
    ItemKind.VIDEO_BY_AUDIO: HiflyClient.create_video_by_audio,
    ItemKind.AUDIO_BY_TTS: HiflyClient.create_audio_by_tts,
}
CREATE_KINDS = frozenset(_METHODS)
