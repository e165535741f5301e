"""Pure request checks, per endpoint, as the API document states them.

``validate`` turns the raw JSON body (or query string) of a request into a
dict of typed values with defaults filled in, or raises BusinessError with code 11.
Media checks (file type, size, duration) and task timing are pure too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from hifly_batch import apispec
from hifly_batch.apispec import Endpoint, TaskStatus

DEFAULT_TITLE = "未命名"
_HTML_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_INT_TEXT = re.compile(r"[+-]?\d+")


class BusinessError(Exception):
    """A business error: answered with HTTP 200 and this code."""

    def __init__(self, code: int, detail: str = "") -> None:
        self.code = code
        self.detail = detail
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The document's Chinese text for the code, then the detail."""
        zh = apispec.ERROR_CODES.get(self.code, ("", "未知错误"))[1]
        return f"{zh}: {self.detail}" if self.detail else zh


def bad(detail: str) -> BusinessError:
    """Code 11 with a detail."""
    return BusinessError(apispec.BAD_PARAMETER, detail)


Check = Callable[[str, Any], None]


@dataclass(frozen=True)
class Field:
    """One documented request field: its JSON type, whether required, its default."""

    name: str
    kind: type  # str or int
    required: bool = False
    default: Any = None
    check: Check | None = None


def _title(name: str, value: str) -> None:
    if len(value) > apispec.TITLE_MAX_CHARS:
        raise bad(f"{name} 超过 {apispec.TITLE_MAX_CHARS} 个字")


def _required_title(name: str, value: str) -> None:
    if not value.strip():
        raise bad(f"{name} 不能为空")
    _title(name, value)


def _text(name: str, value: str) -> None:
    if not value.strip():
        raise bad(f"{name} 不能为空")
    if len(value) > apispec.TEXT_MAX_CHARS:
        raise bad(f"{name} 超过 {apispec.TEXT_MAX_CHARS} 个字")
    if has_html_tag(value):
        raise bad(f"{name} 不支持 html 标签")


def _non_empty(name: str, value: str) -> None:
    if not value.strip():
        raise bad(f"{name} 不能为空")


def _one_of(*allowed: int) -> Check:
    def check(name: str, value: int) -> None:
        if value not in allowed:
            raise bad(f"{name} 必须是 {' 或 '.join(map(str, allowed))}")

    return check


def _at_least_one(name: str, value: int) -> None:
    if value < 1:
        raise bad(f"{name} 必须大于 0")


def _edit_range(name: str, value: str) -> None:
    low, high = apispec.VOICE_EDIT_RANGES[name]
    try:
        number = float(value)
    except ValueError:
        raise bad(f"{name} 不是数字: {value!r}") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise bad(f"{name} 必须在 {low} 和 {high} 之间")


def has_html_tag(text: str) -> bool:
    """``<`` then an optional ``/``, a letter, and anything up to the next ``>``."""
    return _HTML_TAG.search(text) is not None


_TITLE = Field("title", str, check=_title)
_TASK_ID = Field("task_id", str, required=True, check=_non_empty)
_VOICE = Field("voice", str, required=True, check=_non_empty)
_AVATAR = Field("avatar", str, required=True, check=_non_empty)
_TEXT = Field("text", str, required=True, check=_text)
_FILE_ID = Field("file_id", str, check=_non_empty)

FIELDS: dict[Endpoint, tuple[Field, ...]] = {
    Endpoint.AVATAR_CREATE_BY_VIDEO: (_TITLE, Field("video_url", str, check=_non_empty), _FILE_ID),
    Endpoint.AVATAR_CREATE_BY_IMAGE: (
        _TITLE,
        Field("image_url", str, check=_non_empty),
        _FILE_ID,
        Field(
            "model",
            int,
            default=apispec.AVATAR_IMAGE_DEFAULT_MODEL,
            check=_one_of(*sorted(apispec.AVATAR_IMAGE_MODELS)),
        ),
    ),
    Endpoint.AVATAR_TASK: (_TASK_ID,),
    Endpoint.VOICE_CREATE: (
        Field("title", str, required=True, check=_required_title),
        Field("voice_type", int, required=True, check=_one_of(apispec.VOICE_TYPE_CLONE_V2)),
        Field("audio_url", str, check=_non_empty),
        _FILE_ID,
    ),
    Endpoint.VOICE_EDIT: (
        _VOICE,
        *(Field(name, str, required=True, check=_edit_range) for name in apispec.VOICE_EDIT_RANGES),
    ),
    Endpoint.VOICE_LIST: (
        Field("page", int, default=1, check=_at_least_one),
        Field("size", int, default=apispec.VOICE_LIST_DEFAULT_SIZE, check=_at_least_one),
        Field(
            "kind",
            int,
            default=apispec.VOICE_LIST_KIND_OWN,
            check=_one_of(apispec.VOICE_LIST_KIND_OWN, apispec.VOICE_LIST_KIND_PUBLIC),
        ),
    ),
    Endpoint.VOICE_TASK: (_TASK_ID,),
    Endpoint.VIDEO_CREATE_BY_AUDIO: (
        Field("audio_url", str, check=_non_empty),
        _FILE_ID,
        _AVATAR,
        _TITLE,
    ),
    Endpoint.VIDEO_CREATE_BY_TTS: (_VOICE, _TEXT, _AVATAR, _TITLE),
    Endpoint.AUDIO_CREATE_BY_TTS: (_VOICE, _TEXT, _TITLE),
    Endpoint.VIDEO_TASK: (_TASK_ID,),
    Endpoint.CREATE_UPLOAD_URL: (Field("file_extension", str, required=True, check=_non_empty),),
    Endpoint.ACCOUNT_CREDIT: (),
}


@dataclass(frozen=True)
class InputRole:
    """A media input of a create request: which field, which files fit, what limits."""

    url_field: str
    extensions: frozenset[str]
    fetch_code: int  # "could not fetch" code for this kind of media
    max_bytes: int | None = None
    seconds: tuple[float, float] | None = None


INPUTS: dict[Endpoint, InputRole] = {
    Endpoint.AVATAR_CREATE_BY_VIDEO: InputRole(
        "video_url", apispec.VIDEO_EXTENSIONS, apispec.VIDEO_FETCH_FAILED
    ),
    Endpoint.AVATAR_CREATE_BY_IMAGE: InputRole(
        "image_url", apispec.IMAGE_EXTENSIONS, apispec.IMAGE_FETCH_FAILED
    ),
    Endpoint.VOICE_CREATE: InputRole(
        "audio_url",
        apispec.VOICE_SAMPLE_EXTENSIONS,
        apispec.AUDIO_FETCH_FAILED,
        apispec.VOICE_SAMPLE_MAX_BYTES,
        apispec.VOICE_SAMPLE_SECONDS,
    ),
    Endpoint.VIDEO_CREATE_BY_AUDIO: InputRole(
        "audio_url",
        apispec.AUDIO_EXTENSIONS,
        apispec.AUDIO_FETCH_FAILED,
        apispec.DRIVING_AUDIO_MAX_BYTES,
        apispec.DRIVING_AUDIO_SECONDS,
    ),
}


def validate(
    endpoint: Endpoint, raw: dict[str, Any], *, from_query: bool = False
) -> dict[str, Any]:
    """Typed, checked values of the documented fields, plus any extra fields untouched.

    ``from_query``: values are query-string text, and int fields are parsed.
    """
    values = dict(raw)
    for spec in FIELDS[endpoint]:
        value = raw.get(spec.name)
        if value is None:
            if spec.required:
                raise bad(f"缺少参数 {spec.name}")
            if spec.default is not None:
                values[spec.name] = spec.default
            continue
        if from_query and spec.kind is int:
            value = _int_from_text(spec.name, value)
        _check_type(spec, value)
        if spec.check is not None:
            spec.check(spec.name, value)
        values[spec.name] = value
    role = INPUTS.get(endpoint)
    if role is not None:
        _exactly_one(values, role.url_field, "file_id")
    return values


def _int_from_text(name: str, value: Any) -> Any:
    if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        return int(value)
    raise bad(f"{name} 必须是整数")


def _check_type(spec: Field, value: Any) -> None:
    if spec.kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise bad(f"{spec.name} 必须是整数 (int)")
    if spec.kind is str and not isinstance(value, str):
        raise bad(f"{spec.name} 必须是字符串 (string)")


def _exactly_one(values: dict[str, Any], url_field: str, id_field: str) -> None:
    given = [name for name in (url_field, id_field) if values.get(name) is not None]
    if len(given) != 1:
        raise bad(f"{url_field} 与 {id_field} 必须二选一")


def normalize_extension(text: str) -> str:
    """``".MP4"`` -> ``"mp4"``."""
    text = text.strip().lower()
    return text[1:] if text.startswith(".") else text


def url_extension(url: str) -> str:
    """The extension of the URL path's last segment, lower case; "" when none."""
    last = urlsplit(url).path.rsplit("/", 1)[-1]
    stem, dot, ext = last.rpartition(".")
    return ext.lower() if dot and stem else ""


def check_media(role: InputRole, ext: str, size: int | None, seconds: float | None) -> None:
    """Raise 2012/2011/2013 when a file does not fit the input; unknown size/length pass."""
    if ext not in role.extensions:
        raise BusinessError(apispec.FILE_TYPE_NOT_SUPPORTED, f"不支持 {ext or '无后缀'} 文件")
    if role.max_bytes is not None and size is not None and size > role.max_bytes:
        raise BusinessError(apispec.FILE_TOO_LARGE, f"文件 {size} 字节,上限 {role.max_bytes} 字节")
    if role.seconds is not None and seconds is not None:
        low, high = role.seconds
        if not low <= seconds <= high:
            raise BusinessError(
                apispec.AUDIO_FETCH_FAILED, f"时长 {seconds:.1f} 秒,须在 {low:g}~{high:g} 秒之间"
            )


# Share of a task's run time spent "waiting" (status 1) before "processing" (2).
WAITING_SHARE = 0.2


def status_at(created_at: float, finish_at: float, fails: bool, now: float) -> TaskStatus:
    """A task's status at time ``now``."""
    if now >= finish_at:
        return TaskStatus.FAILED if fails else TaskStatus.DONE
    if now < created_at + WAITING_SHARE * (finish_at - created_at):
        return TaskStatus.WAITING
    return TaskStatus.PROCESSING
