"""Tasks as the API shows them: status from the clock, outputs, signed output URLs.

Outputs are generated once, the first time anyone sees the task done, and kept
under ``files/``; every query hands out a freshly signed URL to them.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hifly_batch import apispec
from hifly_batch.apispec import CallbackType, Endpoint, TaskStatus
from hifly_batch.sandbox import media_maker, signing
from hifly_batch.sandbox.records import FileRow, TaskRow
from hifly_batch.sandbox.rules import status_at
from hifly_batch.sandbox.world import World

# Which creations each task query answers for.
QUERY_SOURCES: dict[Endpoint, frozenset[str]] = {
    Endpoint.AVATAR_TASK: frozenset(
        {Endpoint.AVATAR_CREATE_BY_VIDEO.short, Endpoint.AVATAR_CREATE_BY_IMAGE.short}
    ),
    Endpoint.VOICE_TASK: frozenset({Endpoint.VOICE_CREATE.short}),
    Endpoint.VIDEO_TASK: frozenset(e.short for e in apispec.WORK_ENDPOINTS),
}
DEMO_SECONDS = 3.0  # a cloned voice's demo clip
UNREADABLE_AUDIO_SECONDS = 5.0  # video length when the driving audio's length is unknown


@dataclass(frozen=True)
class Output:
    """A generated file and its length."""

    stored_name: str
    seconds: float


def plan_output(task: TaskRow) -> tuple[str, float] | None:
    """(extension, seconds) of the file a finished task produces; None for avatars."""
    text = str(task.params.get("text", ""))
    if task.endpoint == Endpoint.VOICE_CREATE.short:
        return "wav", DEMO_SECONDS
    if task.endpoint == Endpoint.VIDEO_CREATE_BY_TTS.short:
        return "mp4", media_maker.speech_seconds(text)
    if task.endpoint == Endpoint.AUDIO_CREATE_BY_TTS.short:
        return "wav", media_maker.speech_seconds(text)
    if task.endpoint == Endpoint.VIDEO_CREATE_BY_AUDIO.short:
        return "mp4", task.input_seconds or UNREADABLE_AUDIO_SECONDS
    return None


def _render(ext: str, seconds: float, tag: str) -> bytes:
    return (
        media_maker.make_mp4(seconds, tag) if ext == "mp4" else media_maker.make_wav(seconds, tag)
    )


class TaskViews:
    """Answers about tasks: what task queries and callbacks say."""

    def __init__(self, world: World, secret: str, clock: Callable[[], float]) -> None:
        self.world = world
        self.secret = secret
        self.clock = clock
        self.base_url = ""
        self.url_ttl = 3600.0
        self._generate_lock = threading.Lock()

    def status(self, task: TaskRow) -> TaskStatus:
        """The task's status now."""
        return status_at(task.created_at, task.finish_at, task.fails, self.clock())

    def file_url(self, stored_name: str, *, expired: bool = False) -> str:
        """A signed download URL; ``expired`` gives one whose time is already up."""
        now = self.clock()
        expires = int(now) - 1 if expired else int(now + self.url_ttl)
        path = f"/files/{stored_name}"
        return signing.signed_url(self.base_url, self.secret, "GET", path, expires)

    def output(self, task: TaskRow) -> Output | None:
        """The task's output file, generating it the first time."""
        if task.output_file is not None and task.output_seconds is not None:
            return Output(task.output_file, task.output_seconds)
        planned = plan_output(task)
        if planned is None:
            return None
        with self._generate_lock:
            fresh = self.world.task(task.task_id)
            if fresh is not None and fresh.output_file and fresh.output_seconds is not None:
                return Output(fresh.output_file, fresh.output_seconds)
            return self._generate(task, *planned)

    def _generate(self, task: TaskRow, ext: str, seconds: float) -> Output:
        file_id = f"out_{secrets.token_hex(12)}"
        stored_name = f"{file_id}.{ext}"
        data = _render(ext, seconds, task.task_id)
        tmp = self.world.files_dir / f".{stored_name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, self.world.files_dir / stored_name)
        row = FileRow(
            file_id, "output", ext, apispec.UPLOAD_CONTENT_TYPES[ext], True, len(data), stored_name
        )
        self.world.add_file(row, self.clock())
        self.world.set_output(task.task_id, stored_name, seconds)
        return Output(stored_name, seconds)

    def query_answer(self, query: Endpoint, task: TaskRow, *, expired_url: bool) -> dict[str, Any]:
        """The fields of a task query answer (code/message set when the task failed)."""
        status = self.status(task)
        done = status is TaskStatus.DONE
        answer: dict[str, Any] = {"status": int(status)}
        if status is TaskStatus.FAILED:
            answer.update(code=task.fail_code, message=task.fail_message)
        if query is Endpoint.AVATAR_TASK:
            answer["avatar"] = task.result_id if done else ""
        elif query is Endpoint.VOICE_TASK:
            answer["voice"] = task.result_id if done else ""
            answer["demo_url"] = self._url(task, expired_url) if done else ""
        else:
            out = self.output(task) if done else None
            answer[apispec.VIDEO_URL_FIELD] = self._url(task, expired_url) if done else ""
            answer["duration"] = round(out.seconds) if out else 0
        return answer

    def _url(self, task: TaskRow, expired: bool) -> str:
        out = self.output(task)
        return self.file_url(out.stored_name, expired=expired) if out else ""

    def callback_payload(self, task: TaskRow) -> dict[str, Any]:
        """The 消息回调 message for a finished task."""
        status = self.status(task)
        done = status is TaskStatus.DONE
        payload: dict[str, Any] = {
            "task_id": task.task_id,
            "message": "" if done else task.fail_message,
            "code": 0 if done else task.fail_code,
            "status": int(status),
        }
        if task.endpoint.startswith("avatar/"):
            payload.update(type=int(CallbackType.AVATAR), avatar=task.result_id if done else "")
        elif task.endpoint == Endpoint.VOICE_CREATE.short:
            payload.update(
                type=int(CallbackType.VOICE),
                voice=task.result_id if done else "",
                demo_url=self._url(task, False) if done else "",
            )
        else:
            out = self.output(task) if done else None
            payload.update(
                type=int(CallbackType.WORK),
                title=task.title,
                duration=round(out.seconds) if out else 0,
            )
            payload[apispec.VIDEO_URL_FIELD] = self._url(task, False) if done else ""
        return payload
