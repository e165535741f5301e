"""The thirteen endpoints: checked request values in, answer fields out.

No HTTP here: the server parses the request and writes the answer. The order
of checks for a create is the service's: 11 (fields) → 14 (unknown ids) →
media (2011/2012/2013/...) → 1001 (works generating) → 1002 (credits).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hifly_batch import apispec
from hifly_batch.apispec import Endpoint, TaskStatus
from hifly_batch.sandbox import signing
from hifly_batch.sandbox.config import SandboxConfig
from hifly_batch.sandbox.faults import RequestFaults, decide_task
from hifly_batch.sandbox.inputs import Input, InputContext, find_file, resolve
from hifly_batch.sandbox.records import CreateOutcome, FileRow, TaskRow
from hifly_batch.sandbox.rules import (
    DEFAULT_TITLE,
    INPUTS,
    BusinessError,
    bad,
    normalize_extension,
    validate,
)
from hifly_batch.sandbox.tasks import QUERY_SOURCES, TaskViews
from hifly_batch.sandbox.world import World

PUBLIC_VOICES: tuple[dict[str, Any], ...] = tuple(
    {
        "voice": f"voice_pub_{i:02d}",
        "type": apispec.VOICE_TYPE_PUBLIC,
        "title": f"公共声音{i}",
        "rate": "1.0",
        "volume": "1.0",
        "pitch": "1.0",
    }
    for i in range(1, 26)
)
_PUBLIC_IDS = frozenset(v["voice"] for v in PUBLIC_VOICES)
_WORKS = frozenset(e.short for e in apispec.WORK_ENDPOINTS)
# Failure code and reason of a task fated to fail, per creation.
_NO_FACE = "数字人克隆失败: 未检测到人脸"
_FAILURES: dict[Endpoint, tuple[int, str]] = {
    Endpoint.AVATAR_CREATE_BY_VIDEO: (apispec.AVATAR_CLONE_FAILED, _NO_FACE),
    Endpoint.AVATAR_CREATE_BY_IMAGE: (apispec.AVATAR_CLONE_FAILED, _NO_FACE),
    Endpoint.VOICE_CREATE: (apispec.AUDIO_FETCH_FAILED, "获取音频资源失败: 音频中未检测到人声"),
    Endpoint.VIDEO_CREATE_BY_AUDIO: (apispec.AUDIO_FETCH_FAILED, "获取音频资源失败: 音频无法解码"),
    Endpoint.VIDEO_CREATE_BY_TTS: (0, "作品生成失败: 合成服务异常"),
    Endpoint.AUDIO_CREATE_BY_TTS: (0, "作品生成失败: 合成服务异常"),
}


@dataclass(frozen=True)
class ApiResult:
    """The documented answer fields, the task recorded (if any), faults applied."""

    fields: dict[str, Any]
    created: str | None = None
    faults: tuple[str, ...] = field(default=())


class Api:
    """Endpoint logic over a world; ``config`` and ``base_url`` may change at run time."""

    def __init__(
        self, world: World, views: TaskViews, config: SandboxConfig, clock: Callable[[], float]
    ) -> None:
        self.world = world
        self.views = views
        self.config = config
        self.clock = clock
        self.base_url = ""
        self.own_netlocs: frozenset[str] = frozenset()
        self.on_created: Callable[[TaskRow], None] | None = None
        self._secret = world.secret()

    def handle(self, endpoint: Endpoint, raw: dict[str, Any], faults: RequestFaults) -> ApiResult:
        """Answer one request (BusinessError for a business error)."""
        values = validate(endpoint, raw, from_query=endpoint.method == "GET")
        if endpoint in QUERY_SOURCES:
            return self._query(endpoint, values, faults)
        if endpoint in apispec.CREATE_ENDPOINTS:
            return self._create(endpoint, values)
        handler = {
            Endpoint.VOICE_EDIT: self._voice_edit,
            Endpoint.VOICE_LIST: self._voice_list,
            Endpoint.CREATE_UPLOAD_URL: self._upload_url,
            Endpoint.ACCOUNT_CREDIT: self._credit,
        }[endpoint]
        return ApiResult(handler(values))

    # -- queries ---------------------------------------------------------

    def _query(
        self, endpoint: Endpoint, values: dict[str, Any], faults: RequestFaults
    ) -> ApiResult:
        task = self.world.task(values["task_id"])
        if task is None or task.endpoint not in QUERY_SOURCES[endpoint]:
            raise BusinessError(apispec.NOT_FOUND, f"任务 {values['task_id']} 不存在")
        done = self.views.status(task) is TaskStatus.DONE
        expired = faults.expired_url and done and endpoint is not Endpoint.AVATAR_TASK
        answer = self.views.query_answer(endpoint, task, expired_url=expired)
        return ApiResult(answer, faults=("expired_url",) if expired else ())

    def _voice_list(self, values: dict[str, Any]) -> dict[str, Any]:
        if values["kind"] == apispec.VOICE_LIST_KIND_PUBLIC:
            voices: list[dict[str, Any]] = list(PUBLIC_VOICES)
        else:
            voices = [
                {
                    "voice": v.voice,
                    "type": apispec.VOICE_TYPE_CLONE_V2,
                    "title": v.title,
                    "rate": v.rate,
                    "volume": v.volume,
                    "pitch": v.pitch,
                }
                for v in self.world.voices(self.clock())
            ]
        start = (values["page"] - 1) * values["size"]
        return {"data": voices[start : start + values["size"]]}

    def _credit(self, values: dict[str, Any]) -> dict[str, Any]:
        return {"left": self.world.credits()}

    # -- synchronous writes ----------------------------------------------

    def _voice_edit(self, values: dict[str, Any]) -> dict[str, Any]:
        self._own_voice(values["voice"])
        self.world.edit_voice(
            values["voice"],
            values["rate"].strip(),
            values["volume"].strip(),
            values["pitch"].strip(),
        )
        return {}

    def _upload_url(self, values: dict[str, Any]) -> dict[str, Any]:
        ext = normalize_extension(values["file_extension"])
        if not ext:
            raise bad("file_extension 不能为空")
        content_type = apispec.UPLOAD_CONTENT_TYPES.get(ext)
        if content_type is None:
            raise BusinessError(apispec.FILE_TYPE_NOT_SUPPORTED, f"不支持 {ext} 文件")
        file_id, stored = f"file_{secrets.token_hex(12)}", f"up_{secrets.token_hex(12)}.{ext}"
        row = FileRow(file_id, "upload", ext, content_type, False, None, stored)
        now = self.clock()
        self.world.add_file(row, now)
        url = signing.signed_url(
            self.base_url,
            self._secret,
            "PUT",
            f"/upload/{row.file_id}",
            int(now + self.config.url_ttl),
        )
        return {"upload_url": url, "content_type": content_type, "file_id": row.file_id}

    # -- lookups -----------------------------------------------------------

    def _done(self, task: TaskRow | None) -> bool:
        return task is not None and self.views.status(task) is TaskStatus.DONE

    def _own_voice(self, voice: str) -> None:
        found = self.world.voice(voice)
        if found is None or not self._done(found[1]):
            raise BusinessError(apispec.NOT_FOUND, f"声音 {voice} 不存在")

    def _check_refs(self, values: dict[str, Any]) -> None:
        voice = values.get("voice")
        if voice is not None and voice not in _PUBLIC_IDS:
            self._own_voice(voice)
        avatar = values.get("avatar")
        if avatar is not None and not self._done(self.world.avatar_task(avatar)):
            raise BusinessError(apispec.NOT_FOUND, f"数字人 {avatar} 不存在")

    # -- creates -----------------------------------------------------------

    def _create(self, endpoint: Endpoint, values: dict[str, Any]) -> ApiResult:
        role = INPUTS.get(endpoint)
        ctx = InputContext(self.world, self.own_netlocs, self._secret, self.clock())
        file = find_file(ctx, values) if role else None
        self._check_refs(values)
        source = resolve(ctx, role, values, file) if role else None
        task, injected = self._new_task(endpoint, values, source)
        outcome = self.world.create_task(
            task,
            cost=self.config.credit_cost if endpoint in apispec.PAID_ENDPOINTS else 0,
            works=_WORKS if endpoint in apispec.WORK_ENDPOINTS else None,
            max_generating=self.config.max_generating,
            now=task.created_at,
        )
        if outcome is CreateOutcome.TOO_MANY_GENERATING:
            raise BusinessError(
                apispec.TOO_MANY_GENERATING, f"最多 {self.config.max_generating} 个"
            )
        if outcome is CreateOutcome.NO_CREDITS:
            raise BusinessError(
                apispec.INSUFFICIENT_CREDITS, f"需要 {self.config.credit_cost} 积分"
            )
        if self.on_created is not None:
            self.on_created(task)
        return ApiResult(
            {"task_id": task.task_id},
            created=task.task_id,
            faults=("task_fail",) if injected else (),
        )

    def _new_task(
        self, endpoint: Endpoint, values: dict[str, Any], source: Input | None
    ) -> tuple[TaskRow, bool]:
        """The task to record, and whether an injected fault fates it to fail."""
        task_id = str(10**15 + self.world.bump("seq", "task"))
        fate = decide_task(self.config.faults, task_id, self.config.task_jitter)
        code, reason = _FAILURES[endpoint]
        if source is not None and source.missing:
            role = INPUTS[endpoint]
            code = role.fetch_code
            reason = f"{apispec.ERROR_CODES[code][1]}: 文件 {values['file_id']} 未上传"
        now = self.clock()
        prefix = "voice" if endpoint is Endpoint.VOICE_CREATE else "av"
        is_clone = endpoint.short.startswith(("avatar/", "voice/"))
        fails = fate.fails or bool(source and source.missing)
        task = TaskRow(
            task_id=task_id,
            endpoint=endpoint.short,
            params=values,
            title=values.get("title") or DEFAULT_TITLE,
            created_at=now,
            finish_at=now + self.config.task_seconds + fate.jitter,
            fails=fails,
            fail_code=code if fails else 0,
            fail_message=reason if fails else "",
            result_id=f"{prefix}_{secrets.token_hex(8)}" if is_clone else "",
            input_seconds=source.seconds if source else None,
        )
        return task, fate.fails and not (source and source.missing)
