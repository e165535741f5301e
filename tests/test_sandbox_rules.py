"""The sandbox's pure request checks: code 11 per field, media limits, task status."""

from __future__ import annotations

from typing import Any

import pytest

from hifly_batch import apispec
from hifly_batch.apispec import Endpoint, TaskStatus
from hifly_batch.sandbox.rules import (
    INPUTS,
    BusinessError,
    check_media,
    has_html_tag,
    normalize_extension,
    status_at,
    url_extension,
    validate,
)

E = Endpoint
VIDEO = {"video_url": "https://x/a.mp4"}
TTS = {"voice": "v", "text": "你好", "avatar": "a"}
EDIT = {"voice": "v", "rate": "1.0", "volume": "1.0", "pitch": "1.0"}
VOICE = {"title": "t", "voice_type": 8, "file_id": "f"}


@pytest.mark.parametrize(
    ("endpoint", "body", "why"),
    [
        (E.AVATAR_CREATE_BY_VIDEO, {}, "neither url nor file_id"),
        (E.AVATAR_CREATE_BY_VIDEO, {**VIDEO, "file_id": "f"}, "both url and file_id"),
        (E.AVATAR_CREATE_BY_VIDEO, {**VIDEO, "title": "一" * 21}, "title of 21 characters"),
        (E.AVATAR_CREATE_BY_VIDEO, {**VIDEO, "title": 5}, "number title"),
        (E.AVATAR_CREATE_BY_VIDEO, {"video_url": ""}, "empty url"),
        (E.AVATAR_CREATE_BY_IMAGE, {"image_url": "https://x/a.png", "model": 3}, "model 3"),
        (E.AVATAR_CREATE_BY_IMAGE, {"image_url": "https://x/a.png", "model": "2"}, "string model"),
        (E.AVATAR_CREATE_BY_IMAGE, {"image_url": "https://x/a.png", "model": True}, "bool model"),
        (E.VOICE_CREATE, {**VOICE, "title": ""}, "empty title"),
        (E.VOICE_CREATE, {k: v for k, v in VOICE.items() if k != "title"}, "no title"),
        (E.VOICE_CREATE, {**VOICE, "voice_type": 10}, "voice_type 10"),
        (E.VOICE_CREATE, {**VOICE, "voice_type": 8.0}, "float voice_type"),
        (E.VOICE_CREATE, {"title": "t", "voice_type": 8}, "no audio"),
        (E.VOICE_EDIT, {**EDIT, "rate": 1.2}, "number rate"),
        (E.VOICE_EDIT, {**EDIT, "rate": "2.01"}, "rate above 2.0"),
        (E.VOICE_EDIT, {**EDIT, "rate": "0.49"}, "rate below 0.5"),
        (E.VOICE_EDIT, {**EDIT, "volume": "0.05"}, "volume below 0.1"),
        (E.VOICE_EDIT, {**EDIT, "pitch": "fast"}, "pitch not a number"),
        (E.VOICE_EDIT, {**EDIT, "pitch": "nan"}, "pitch nan"),
        (E.VOICE_EDIT, {k: v for k, v in EDIT.items() if k != "volume"}, "no volume"),
        (E.VIDEO_CREATE_BY_TTS, {**TTS, "text": ""}, "empty text"),
        (E.VIDEO_CREATE_BY_TTS, {**TTS, "text": "  \n"}, "blank text"),
        (E.VIDEO_CREATE_BY_TTS, {**TTS, "text": "字" * 10001}, "text of 10001"),
        (E.VIDEO_CREATE_BY_TTS, {**TTS, "text": "你好<b>世界</b>"}, "html tag"),
        (E.VIDEO_CREATE_BY_TTS, {**TTS, "text": "a</p>"}, "closing tag"),
        (E.VIDEO_CREATE_BY_TTS, {k: v for k, v in TTS.items() if k != "avatar"}, "no avatar"),
        (E.VIDEO_CREATE_BY_TTS, {**TTS, "voice": None}, "null voice"),
        (E.AUDIO_CREATE_BY_TTS, {"text": "你好"}, "no voice"),
        (E.VIDEO_CREATE_BY_AUDIO, {"avatar": "a"}, "no audio"),
        (E.CREATE_UPLOAD_URL, {}, "no extension"),
        (E.CREATE_UPLOAD_URL, {"file_extension": 4}, "number extension"),
    ],
)
def test_bad_bodies_are_code_11(endpoint: Endpoint, body: dict[str, Any], why: str) -> None:
    with pytest.raises(BusinessError) as caught:
        validate(endpoint, body)
    assert caught.value.code == apispec.BAD_PARAMETER, why
    assert caught.value.message.startswith("参数不正确: ")


@pytest.mark.parametrize(
    ("endpoint", "query"),
    [
        (E.VIDEO_TASK, {}),
        (E.VIDEO_TASK, {"task_id": ""}),
        (E.VOICE_LIST, {"page": "0"}),
        (E.VOICE_LIST, {"size": "-1"}),
        (E.VOICE_LIST, {"kind": "3"}),
        (E.VOICE_LIST, {"page": "one"}),
        (E.VOICE_LIST, {"size": "1.5"}),
    ],
)
def test_bad_queries_are_code_11(endpoint: Endpoint, query: dict[str, str]) -> None:
    with pytest.raises(BusinessError) as caught:
        validate(endpoint, query, from_query=True)
    assert caught.value.code == apispec.BAD_PARAMETER


def test_good_bodies_get_defaults_and_keep_extra_fields() -> None:
    values = validate(E.AVATAR_CREATE_BY_IMAGE, {"image_url": "https://x/a.png", "aigc_flag": 1})
    assert values["model"] == 2
    assert values["aigc_flag"] == 1
    assert validate(E.VOICE_LIST, {}, from_query=True) == {"page": 1, "size": 20, "kind": 1}
    assert validate(E.VOICE_LIST, {"kind": "2", "size": "5"}, from_query=True)["kind"] == 2


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        ({**VIDEO, "title": "一" * 20}, True),  # 20 Chinese characters fit
        ({**VIDEO, "title": "a" * 20}, True),
        ({**VIDEO, "title": None}, True),  # null is "not given"
        ({"file_id": "f"}, True),
        ({**VIDEO, "title": "a" * 21}, False),
    ],
)
def test_title_counts_characters(body: dict[str, Any], ok: bool) -> None:
    if ok:
        validate(E.AVATAR_CREATE_BY_VIDEO, body)
    else:
        with pytest.raises(BusinessError):
            validate(E.AVATAR_CREATE_BY_VIDEO, body)


@pytest.mark.parametrize("rate", ["0.5", "2.0", "2", " 1.25 "])
def test_edit_bounds_are_inclusive(rate: str) -> None:
    validate(E.VOICE_EDIT, {**EDIT, "rate": rate, "volume": "0.1", "pitch": "2.0"})


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("<b>x</b>", True),
        ("a </div> b", True),
        ("<img src=x>", True),
        ("1 < 2 and 3 > 2", False),
        ("<3 you>", False),
        ("a <b", False),
        ("纯文本", False),
    ],
)
def test_html_tag(text: str, tag: bool) -> None:
    assert has_html_tag(text) is tag


@pytest.mark.parametrize(
    ("url", "ext"),
    [
        ("https://x.com/a/b.MP4?sig=1", "mp4"),
        ("https://x.com/a.tar.gz", "gz"),
        ("https://x.com/a", ""),
        ("https://x.com/.wav", ""),
        ("https://x.com/dir.mp3/", ""),
    ],
)
def test_url_extension(url: str, ext: str) -> None:
    assert url_extension(url) == ext


@pytest.mark.parametrize(("text", "ext"), [(".MP4", "mp4"), ("wav", "wav"), (" .Jpeg ", "jpeg")])
def test_normalize_extension(text: str, ext: str) -> None:
    assert normalize_extension(text) == ext


MB = 1024 * 1024


@pytest.mark.parametrize(
    ("endpoint", "ext", "size", "seconds", "code"),
    [
        (E.VOICE_CREATE, "wav", 1 * MB, 10.0, None),
        (E.VOICE_CREATE, "mp4", 1 * MB, 10.0, 2012),
        (E.VOICE_CREATE, "wav", 21 * MB, 10.0, 2011),
        (E.VOICE_CREATE, "wav", 1 * MB, 4.9, 2013),
        (E.VOICE_CREATE, "wav", 1 * MB, 180.5, 2013),
        (E.VOICE_CREATE, "wav", None, None, None),
        (E.VIDEO_CREATE_BY_AUDIO, "m4a", 99 * MB, 1799.0, None),
        (E.VIDEO_CREATE_BY_AUDIO, "mp3", 101 * MB, 60.0, 2011),
        (E.VIDEO_CREATE_BY_AUDIO, "mp3", 1 * MB, 1801.0, 2013),
        (E.AVATAR_CREATE_BY_VIDEO, "mov", 500 * MB, None, None),
        (E.AVATAR_CREATE_BY_VIDEO, "png", 1, None, 2012),
        (E.AVATAR_CREATE_BY_IMAGE, "jpeg", 1, None, None),
        (E.AVATAR_CREATE_BY_IMAGE, "", 1, None, 2012),
    ],
)
def test_media_limits(
    endpoint: Endpoint, ext: str, size: int | None, seconds: float | None, code: int | None
) -> None:
    role = INPUTS[endpoint]
    if code is None:
        check_media(role, ext, size, seconds)
        return
    with pytest.raises(BusinessError) as caught:
        check_media(role, ext, size, seconds)
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("now", "fails", "status"),
    [
        (100.0, False, TaskStatus.WAITING),
        (101.9, False, TaskStatus.WAITING),
        (102.1, False, TaskStatus.PROCESSING),
        (109.9, True, TaskStatus.PROCESSING),
        (110.0, False, TaskStatus.DONE),
        (110.0, True, TaskStatus.FAILED),
    ],
)
def test_status_follows_the_clock(now: float, fails: bool, status: TaskStatus) -> None:
    assert status_at(100.0, 110.0, fails, now) is status
