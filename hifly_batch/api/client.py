"""The HiFly API V2 client: one typed method per endpoint.

Requests are written strictly as the API document gives them; answers are
read leniently (flat or nested under ``data``, ``video_Url`` or
``video_url``, numbers that arrive as strings). The client knows nothing of
manifests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hifly_batch.api.errors import Delivery, SubmissionUncertain, TransportError
from hifly_batch.api.transfer import download, put_file
from hifly_batch.api.transport import JSONDict, Transport
from hifly_batch.apispec import (
    DEFAULT_BASE_URL,
    VIDEO_URL_FIELD,
    VOICE_LIST_DEFAULT_SIZE,
    VOICE_LIST_KIND_OWN,
    VOICE_LIST_KIND_PUBLIC,
    VOICE_TYPE_CLONE_V2,
    Endpoint,
    TaskStatus,
)

Extra = Mapping[str, Any] | None


@dataclass(frozen=True)
class Task:
    """What every task query answers."""

    task_id: str
    status: TaskStatus
    error_code: int | None
    error_message: str
    request_id: str

    @property
    def finished(self) -> bool:
        return self.status in (TaskStatus.DONE, TaskStatus.FAILED)


@dataclass(frozen=True)
class AvatarTask(Task):
    avatar: str


@dataclass(frozen=True)
class VoiceTask(Task):
    voice: str
    demo_url: str


@dataclass(frozen=True)
class WorkTask(Task):
    """A video or audio creation (both are queried through video/task)."""

    url: str
    duration: int | None


@dataclass(frozen=True)
class ListedVoice:
    """One entry of voice/list: a voice id with its title and current settings."""

    voice: str
    type: int
    title: str
    rate: str
    volume: str
    pitch: str


@dataclass(frozen=True)
class UploadTarget:
    upload_url: str
    content_type: str
    file_id: str


class HiflyClient:
    """Typed access to every endpoint of the HiFly API V2."""

    def __init__(self, token: str, base_url: str = DEFAULT_BASE_URL, **transport_options: Any):
        self.transport = Transport(token, base_url, **transport_options)

    def __repr__(self) -> str:
        return f"HiflyClient(base_url={self.transport.base_url!r})"

    def close(self) -> None:
        self.transport.session.close()

    # Avatars -------------------------------------------------------------

    def create_avatar_by_video(
        self,
        *,
        video_url: str | None = None,
        file_id: str | None = None,
        title: str | None = None,
        extra: Extra = None,
    ) -> str:
        """Clone an avatar from a video; returns the task id."""
        body = _body(extra, title=title, **_source("video_url", video_url, file_id))
        return self._create(Endpoint.AVATAR_CREATE_BY_VIDEO, body)

    def create_avatar_by_image(
        self,
        *,
        image_url: str | None = None,
        file_id: str | None = None,
        title: str | None = None,
        model: int | None = None,
        extra: Extra = None,
    ) -> str:
        """Make an avatar from a photo (paid); returns the task id."""
        body = _body(extra, title=title, model=model, **_source("image_url", image_url, file_id))
        return self._create(Endpoint.AVATAR_CREATE_BY_IMAGE, body)

    def avatar_task(self, task_id: str) -> AvatarTask:
        answer = self._task(Endpoint.AVATAR_TASK, task_id)
        return AvatarTask(**_task_fields(task_id, answer), avatar=_str(answer.get("avatar")))

    # Voices --------------------------------------------------------------

    def create_voice(
        self,
        *,
        title: str,
        audio_url: str | None = None,
        file_id: str | None = None,
        extra: Extra = None,
    ) -> str:
        """Clone a voice from a 5 s–3 min sample; returns the task id."""
        body = _body(
            extra,
            title=title,
            voice_type=VOICE_TYPE_CLONE_V2,
            **_source("audio_url", audio_url, file_id),
        )
        return self._create(Endpoint.VOICE_CREATE, body)

    def edit_voice(self, voice: str, *, rate: str, volume: str, pitch: str) -> None:
        """Set a cloned voice's rate, volume and pitch (strings, as the API wants them)."""
        body = {"voice": voice, "rate": rate, "volume": volume, "pitch": pitch}
        self.transport.call(Endpoint.VOICE_EDIT, body=body)

    def list_voices(
        self,
        *,
        kind: int = VOICE_LIST_KIND_OWN,
        page: int = 1,
        size: int = VOICE_LIST_DEFAULT_SIZE,
    ) -> list[ListedVoice]:
        """One page of voices: kind 1 your own clones, kind 2 the public ones."""
        answer = self.transport.call(
            Endpoint.VOICE_LIST, params={"page": page, "size": size, "kind": kind}
        )
        return [_voice(v) for v in _voice_rows(answer) if isinstance(v, Mapping)]

    def all_voices(self, *, public: bool = False, size: int = 100) -> list[ListedVoice]:
        """Every voice of a kind, page after page."""
        kind = VOICE_LIST_KIND_PUBLIC if public else VOICE_LIST_KIND_OWN
        voices: list[ListedVoice] = []
        for page in range(1, 10_000):
            batch = self.list_voices(kind=kind, page=page, size=size)
            voices.extend(batch)
            if len(batch) < size:
                break
        return voices

    def voice_task(self, task_id: str) -> VoiceTask:
        answer = self._task(Endpoint.VOICE_TASK, task_id)
        return VoiceTask(
            **_task_fields(task_id, answer),
            voice=_str(answer.get("voice")),
            demo_url=_str(answer.get("demo_url")),
        )

    # Works ---------------------------------------------------------------

    def create_video_by_audio(
        self,
        *,
        avatar: str,
        audio_url: str | None = None,
        file_id: str | None = None,
        title: str | None = None,
        extra: Extra = None,
    ) -> str:
        """A video of ``avatar`` speaking an audio file (paid); returns the task id."""
        body = _body(extra, avatar=avatar, title=title, **_source("audio_url", audio_url, file_id))
        return self._create(Endpoint.VIDEO_CREATE_BY_AUDIO, body)

    def create_video_by_tts(
        self,
        *,
        avatar: str,
        voice: str,
        text: str,
        title: str | None = None,
        extra: Extra = None,
    ) -> str:
        """A video of ``avatar`` speaking ``text`` in ``voice`` (paid); returns the task id."""
        body = _body(extra, voice=voice, text=text, avatar=avatar, title=title)
        return self._create(Endpoint.VIDEO_CREATE_BY_TTS, body)

    def create_audio_by_tts(
        self,
        *,
        voice: str,
        text: str,
        title: str | None = None,
        extra: Extra = None,
    ) -> str:
        """Speech audio of ``text`` in ``voice`` (paid); query it with ``video_task``."""
        body = _body(extra, voice=voice, text=text, title=title)
        return self._create(Endpoint.AUDIO_CREATE_BY_TTS, body)

    def video_task(self, task_id: str) -> WorkTask:
        answer = self._task(Endpoint.VIDEO_TASK, task_id)
        url = answer.get(VIDEO_URL_FIELD) or answer.get("video_url") or ""
        duration = _optional_int(answer.get("duration"))
        return WorkTask(**_task_fields(task_id, answer), url=_str(url), duration=duration)

    # Files and account ---------------------------------------------------

    def create_upload_url(self, file_extension: str) -> UploadTarget:
        answer = self.transport.call(
            Endpoint.CREATE_UPLOAD_URL, body={"file_extension": file_extension}
        )
        return UploadTarget(
            upload_url=_str(answer.get("upload_url")),
            content_type=_str(answer.get("content_type")),
            file_id=_str(answer.get("file_id")),
        )

    def upload_file(self, path: Path) -> str:
        """Upload a local file; returns its file_id for use in a create request."""
        target = self.create_upload_url(path.suffix.lstrip(".").lower())
        put_file(self.transport, target.upload_url, target.content_type, path)
        return target.file_id

    def download(self, url: str, dest: Path) -> int:
        """Save an output URL to ``dest`` atomically; returns the byte count."""
        return download(self.transport, url, dest)

    def credit(self) -> int:
        """The account's credit balance."""
        answer = self.transport.call(Endpoint.ACCOUNT_CREDIT)
        return _optional_int(answer.get("left")) or 0

    def is_sandbox(self) -> bool:
        """Whether the API is a sandbox: its answers carry ``X-HiFly-Sandbox: 1`` (SPEC §7).

        Asks for the credit balance (free) when no answer has been seen yet. A server
        error is an answer too: a sandbox marks every one, so it still tells. Raises
        ``AuthError`` for a refused token, ``HttpStatusError`` for what is not the API,
        ``TransportError`` when no answer came back at all. A loopback address alone
        says nothing: a proxy or tunnel to the service is the service.
        """
        if not self.transport.sandbox_seen:
            try:
                self.transport.call(Endpoint.ACCOUNT_CREDIT)
            except TransportError as exc:
                if exc.delivery is not Delivery.SERVER_ERROR:
                    raise
        return self.transport.sandbox_seen

    # Plumbing ------------------------------------------------------------

    def _create(self, endpoint: Endpoint, body: JSONDict) -> str:
        answer = self.transport.call(endpoint, body=body)
        task_id = _id(answer.get("task_id"))
        if not task_id:
            # Answered, yet nothing says whether work was made: as with a lost answer.
            raise SubmissionUncertain(
                endpoint.short, Delivery.UNANSWERED, "no task_id in the answer"
            )
        return task_id

    def _task(self, endpoint: Endpoint, task_id: str) -> JSONDict:
        return self.transport.call(endpoint, params={"task_id": task_id}, task_answer=True)


def _body(extra: Extra, **fields: Any) -> JSONDict:
    """Documented fields over pass-through ones; unset optional fields left out."""
    body = dict(extra or {})
    body.update({k: v for k, v in fields.items() if v is not None})
    return body


def _source(url_field: str, url: str | None, file_id: str | None) -> dict[str, str]:
    """Exactly one of ``*_url`` and ``file_id``, as the API demands."""
    if (url is None) == (file_id is None):
        raise ValueError(f"give exactly one of {url_field} and file_id")
    return {url_field: url} if url is not None else {"file_id": file_id}  # type: ignore[dict-item]


def _task_fields(task_id: str, answer: JSONDict) -> dict[str, Any]:
    code = _optional_int(answer.get("code"))
    return {
        "task_id": task_id,
        "status": _status(answer.get("status")),
        "error_code": code or None,
        "error_message": _str(answer.get("message")),
        "request_id": _str(answer.get("request_id")),
    }


def _status(value: Any) -> TaskStatus:
    """Unknown values count as still processing: only 3 and 4 end a task."""
    number = _optional_int(value)
    if number is None or number not in TaskStatus._value2member_map_:
        return TaskStatus.PROCESSING
    return TaskStatus(number)


def _voice_rows(answer: JSONDict) -> list[Any]:
    data = answer.get("data")
    if isinstance(data, list):
        return data
    for key in ("list", "data", "items"):  # nested pages, as `unwrap` flattened them
        if isinstance(answer.get(key), list):
            return answer[key]
    return []


def _voice(row: Mapping[str, Any]) -> ListedVoice:
    return ListedVoice(
        voice=_str(row.get("voice")),
        type=_optional_int(row.get("type")) or 0,
        title=_str(row.get("title")),
        rate=_str(row.get("rate")),
        volume=_str(row.get("volume")),
        pitch=_str(row.get("pitch")),
    )


def _id(value: Any) -> str:
    """An id as the API sends it (text, or a number); "" for anything else (a list, an
    object, true), which names no task."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def _optional_int(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None
