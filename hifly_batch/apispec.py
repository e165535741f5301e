"""Facts about the HiFly API V2, as its documentation states them.

This is the only module the client and the sandbox share, so each one checks
the other honestly: everything here is data copied from the API document,
never behaviour.
"""

from __future__ import annotations

import enum
from typing import Final

DEFAULT_BASE_URL: Final = "https://hfw-api.hifly.cc"
PREFIX: Final = "/api/v2/hifly"
# Not the API document's: every answer of the sandbox carries this header with
# value "1" (SPEC §7), and only that tells a client it talks to a sandbox.
SANDBOX_HEADER: Final = "X-HiFly-Sandbox"


class Endpoint(str, enum.Enum):
    """Every documented endpoint: value is the path below the base URL."""

    AVATAR_CREATE_BY_VIDEO = f"{PREFIX}/avatar/create_by_video"
    AVATAR_CREATE_BY_IMAGE = f"{PREFIX}/avatar/create_by_image"
    AVATAR_TASK = f"{PREFIX}/avatar/task"
    VOICE_CREATE = f"{PREFIX}/voice/create"
    VOICE_EDIT = f"{PREFIX}/voice/edit"
    VOICE_LIST = f"{PREFIX}/voice/list"
    VOICE_TASK = f"{PREFIX}/voice/task"
    VIDEO_CREATE_BY_AUDIO = f"{PREFIX}/video/create_by_audio"
    VIDEO_CREATE_BY_TTS = f"{PREFIX}/video/create_by_tts"
    AUDIO_CREATE_BY_TTS = f"{PREFIX}/audio/create_by_tts"
    VIDEO_TASK = f"{PREFIX}/video/task"
    CREATE_UPLOAD_URL = f"{PREFIX}/tool/create_upload_url"
    ACCOUNT_CREDIT = f"{PREFIX}/account/credit"

    @property
    def method(self) -> str:
        return "GET" if self in _GET_ENDPOINTS else "POST"

    @property
    def short(self) -> str:
        """The path without the common prefix, e.g. ``video/task``."""
        return self.value[len(PREFIX) + 1 :]


_GET_ENDPOINTS: Final = frozenset(
    {
        Endpoint.AVATAR_TASK,
        Endpoint.VOICE_LIST,
        Endpoint.VOICE_TASK,
        Endpoint.VIDEO_TASK,
        Endpoint.ACCOUNT_CREDIT,
    }
)

# Requests that start remote work: sending one twice may pay twice.
CREATE_ENDPOINTS: Final = frozenset(
    {
        Endpoint.AVATAR_CREATE_BY_VIDEO,
        Endpoint.AVATAR_CREATE_BY_IMAGE,
        Endpoint.VOICE_CREATE,
        Endpoint.VIDEO_CREATE_BY_AUDIO,
        Endpoint.VIDEO_CREATE_BY_TTS,
        Endpoint.AUDIO_CREATE_BY_TTS,
    }
)

# "此接口会产生积分消耗" in the document.
PAID_ENDPOINTS: Final = frozenset(
    {
        Endpoint.AVATAR_CREATE_BY_IMAGE,
        Endpoint.VIDEO_CREATE_BY_AUDIO,
        Endpoint.VIDEO_CREATE_BY_TTS,
        Endpoint.AUDIO_CREATE_BY_TTS,
    }
)

# Works ("作品"): the creations that count against code 1001 and are queried
# through video/task (audio/create_by_tts included, SPEC §2).
WORK_ENDPOINTS: Final = frozenset(
    {
        Endpoint.VIDEO_CREATE_BY_AUDIO,
        Endpoint.VIDEO_CREATE_BY_TTS,
        Endpoint.AUDIO_CREATE_BY_TTS,
    }
)


class TaskStatus(enum.IntEnum):
    WAITING = 1  # 等待中
    PROCESSING = 2  # 处理中
    DONE = 3  # 完成
    FAILED = 4  # 失败


class CallbackType(enum.IntEnum):
    WORK = 1  # 作品
    AVATAR = 2  # 数字人克隆
    VOICE = 3  # 声音克隆


# code -> (English, the document's Chinese)
ERROR_CODES: Final[dict[int, tuple[str, str]]] = {
    11: ("bad parameter", "参数不正确"),
    14: ("resource not found", "找不到资源"),
    1001: ("too many works generating at once", "正在生成中的作品数量达到上限"),
    1002: ("insufficient credits", "积分不足"),
    1005: ("membership required", "开通会员"),
    1006: ("membership level too low", "会员等级不够"),
    1009: ("high-fidelity voices sold out", "高保真声音已售罄"),
    1011: ("voice resembles a celebrity", "声音与名人相似"),
    1013: ("high-fidelity voice clone quota reached", "高保真声音达到克隆数量上限"),
    1015: ("submitted works limit reached", "提交的作品数量达到上限"),
    2003: ("invalid token", "无效 Token"),
    2011: ("file too large", "文件大小超过限制"),
    2012: ("file type not supported", "文件类型不支持"),
    2013: ("could not fetch the audio", "获取音频资源失败"),
    2014: ("could not fetch the video", "获取视频资源失败"),
    2015: ("avatar clone failed", "数字人克隆失败"),
    2016: ("could not fetch the image", "获取图片资源失败"),
}

BAD_PARAMETER: Final = 11
NOT_FOUND: Final = 14
TOO_MANY_GENERATING: Final = 1001
INSUFFICIENT_CREDITS: Final = 1002
SUBMITTED_LIMIT: Final = 1015
INVALID_TOKEN: Final = 2003
FILE_TOO_LARGE: Final = 2011
FILE_TYPE_NOT_SUPPORTED: Final = 2012
AUDIO_FETCH_FAILED: Final = 2013
VIDEO_FETCH_FAILED: Final = 2014
AVATAR_CLONE_FAILED: Final = 2015
IMAGE_FETCH_FAILED: Final = 2016

# Back-pressure: the request was refused for now, a later one may pass.
BACK_PRESSURE_CODES: Final = frozenset({TOO_MANY_GENERATING, SUBMITTED_LIMIT})


def describe_code(code: int) -> str:
    """``"1002 insufficient credits (积分不足)"``; unknown codes say so."""
    en, zh = ERROR_CODES.get(code, ("undocumented error code", "未记载的错误码"))
    return f"{code} {en} ({zh})"


# Limits stated in the document.
TITLE_MAX_CHARS: Final = 20
TEXT_MAX_CHARS: Final = 10_000
VOICE_TYPE_CLONE_V2: Final = 8
AVATAR_IMAGE_MODELS: Final = frozenset({1, 2})
AVATAR_IMAGE_DEFAULT_MODEL: Final = 2
VOICE_EDIT_RANGES: Final[dict[str, tuple[float, float]]] = {
    "rate": (0.5, 2.0),
    "volume": (0.1, 2.0),
    "pitch": (0.1, 2.0),
}
VOICE_SAMPLE_MAX_BYTES: Final = 20 * 1024 * 1024
VOICE_SAMPLE_SECONDS: Final = (5.0, 180.0)
VOICE_SAMPLE_EXTENSIONS: Final = frozenset({"mp3", "m4a", "wav"})
DRIVING_AUDIO_MAX_BYTES: Final = 100 * 1024 * 1024
DRIVING_AUDIO_SECONDS: Final = (5.0, 1800.0)
VOICE_LIST_KIND_OWN: Final = 1
VOICE_LIST_KIND_PUBLIC: Final = 2
VOICE_LIST_DEFAULT_SIZE: Final = 20
# voice/list "type": 10 public, 20 high fidelity, 8 basic clone v2.
VOICE_TYPE_PUBLIC: Final = 10
VOICE_TYPE_HIGH_FIDELITY: Final = 20
# What each voice type is, in English (the document: 10 公版声音, 20 高保真声音, 8 基础版声音 V2).
VOICE_TYPE_NAMES: Final[dict[int, str]] = {
    VOICE_TYPE_CLONE_V2: "basic v2 clone",
    VOICE_TYPE_PUBLIC: "public",
    VOICE_TYPE_HIGH_FIDELITY: "high-fidelity",
}

# What create_upload_url takes, with the Content-Type it hands out.
UPLOAD_CONTENT_TYPES: Final[dict[str, str]] = {
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "mp3": "audio/mpeg",
    "m4a": "audio/mp4",
    "wav": "audio/wav",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
}
VIDEO_EXTENSIONS: Final = frozenset({"mp4", "mov"})
IMAGE_EXTENSIONS: Final = frozenset({"jpg", "jpeg", "png"})
AUDIO_EXTENSIONS: Final = frozenset({"mp3", "m4a", "wav"})

# "video_Url" is the document's spelling; clients seen in public also send
# and accept "video_url".
VIDEO_URL_FIELD: Final = "video_Url"
