"""The sandbox answers field for field (name and JSON type) as the API document's examples."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from hifly_batch.apispec import Endpoint
from hifly_batch.sandbox import Sandbox
from hifly_batch.sandbox.media_maker import make_wav

EXAMPLES: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "api_doc_examples.json").read_text(encoding="utf-8")
)


def shape(value: Any) -> Any:
    """Field names and JSON types, recursively; list items by their first element."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


class Raw:
    """Plain requests, so the check does not pass through our client's lenient parsing."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.base = sandbox.base_url
        self.headers = {"Authorization": f"Bearer {sandbox.token}"}

    def post(self, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        resp = requests.post(self.base + endpoint.value, json=body, headers=self.headers)
        assert resp.status_code == 200
        return resp.json()

    def get(self, endpoint: Endpoint, **params: Any) -> dict[str, Any]:
        resp = requests.get(self.base + endpoint.value, params=params, headers=self.headers)
        assert resp.status_code == 200
        return resp.json()

    def finished(self, endpoint: Endpoint, task_id: str) -> dict[str, Any]:
        while (answer := self.get(endpoint, task_id=task_id))["status"] not in (3, 4):
            time.sleep(0.02)
        return answer


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """One real answer of every endpoint, made in dependency order."""
    from tests.conftest import FAST

    with Sandbox(tmp_path_factory.mktemp("world"), FAST) as sandbox:
        return _collect(Raw(sandbox), tmp_path_factory.mktemp("media"))


def _collect(raw: Raw, media: Path) -> dict[str, dict[str, Any]]:
    got: dict[str, dict[str, Any]] = {}
    got["tool/create_upload_url"] = up = raw.post(
        Endpoint.CREATE_UPLOAD_URL, {"file_extension": "wav"}
    )
    sample = media / "s.wav"
    sample.write_bytes(make_wav(8.0, "doc"))
    put = requests.put(
        up["upload_url"], data=sample.read_bytes(), headers={"Content-Type": up["content_type"]}
    )
    assert put.status_code == 200
    got["avatar/create_by_video"] = raw.post(
        Endpoint.AVATAR_CREATE_BY_VIDEO,
        {"title": "我的数字人", "video_url": "https://example.com/my_video.mp4"},
    )
    got["avatar/create_by_image"] = raw.post(
        Endpoint.AVATAR_CREATE_BY_IMAGE,
        {"title": "图片", "image_url": "https://example.com/a.jpg", "model": 2},
    )
    got["avatar/task"] = raw.finished(
        Endpoint.AVATAR_TASK, got["avatar/create_by_video"]["task_id"]
    )
    got["voice/create"] = raw.post(
        Endpoint.VOICE_CREATE, {"title": "我的声音", "voice_type": 8, "file_id": up["file_id"]}
    )
    got["voice/task"] = raw.finished(Endpoint.VOICE_TASK, got["voice/create"]["task_id"])
    voice, avatar = got["voice/task"]["voice"], got["avatar/task"]["avatar"]
    got["voice/edit"] = raw.post(
        Endpoint.VOICE_EDIT, {"voice": voice, "rate": "1.2", "volume": "1.0", "pitch": "0.9"}
    )
    got["voice/list"] = raw.get(Endpoint.VOICE_LIST, page=1, size=10, kind=1)
    text = "这是一段测试文本,用于生成数字人视频。" * 2  # long enough to drive a video (≥ 5 s)
    got["video/create_by_tts"] = raw.post(
        Endpoint.VIDEO_CREATE_BY_TTS,
        {"title": "文本", "text": text, "voice": voice, "avatar": avatar},
    )
    got["audio/create_by_tts"] = raw.post(
        Endpoint.AUDIO_CREATE_BY_TTS, {"title": "音频", "text": text, "voice": voice}
    )
    got["video/task"] = raw.finished(Endpoint.VIDEO_TASK, got["video/create_by_tts"]["task_id"])
    audio_url = raw.finished(Endpoint.VIDEO_TASK, got["audio/create_by_tts"]["task_id"])[
        "video_Url"
    ]
    got["video/create_by_audio"] = raw.post(
        Endpoint.VIDEO_CREATE_BY_AUDIO,
        {"title": "音频驱动", "audio_url": audio_url, "avatar": avatar},
    )
    got["account/credit"] = raw.get(Endpoint.ACCOUNT_CREDIT)
    return got


@pytest.mark.parametrize("endpoint", [e.short for e in Endpoint])
def test_answer_matches_the_document(answers: dict[str, dict[str, Any]], endpoint: str) -> None:
    assert shape(answers[endpoint]) == shape(EXAMPLES[endpoint])


def test_every_answer_has_a_request_id(answers: dict[str, dict[str, Any]]) -> None:
    ids = [a["request_id"] for a in answers.values()]
    assert all(ids) and len(set(ids)) == len(ids)


def test_finished_work_url_carries_query_parameters(answers: dict[str, dict[str, Any]]) -> None:
    url = answers["video/task"]["video_Url"]
    assert "?" in url and "video_url" not in answers["video/task"]
