"""Every endpoint over HTTP: its success answer and each error class it can give."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests

from hifly_batch.sandbox import Sandbox
from hifly_batch.sandbox.media_maker import make_mp4, make_wav
from tests.sandbox_fixtures import Client, MovableClock, running


@pytest.fixture
def client(sandbox: Sandbox) -> Client:
    return Client(sandbox)


def _code(answer: dict[str, Any]) -> int:
    assert isinstance(answer["request_id"], str) and answer["request_id"]
    return int(answer.get("code", 0))  # create_upload_url's success has no code


# -- avatars -----------------------------------------------------------------


def test_avatar_from_uploaded_video_goes_1_2_3(tmp_path: Path) -> None:
    clock = MovableClock()
    with running(tmp_path, clock=clock, task_seconds=10, task_jitter=0) as sandbox:
        client = Client(sandbox)
        file_id = client.upload("mp4", make_mp4(1, "face"))
        task = client.created("avatar/create_by_video", {"file_id": file_id, "title": "创始人"})
        seen = [client.get("avatar/task", task_id=task)]
        clock.advance(5)
        seen.append(client.get("avatar/task", task_id=task))
        clock.advance(5)
        seen.append(client.get("avatar/task", task_id=task))
    assert [a["status"] for a in seen] == [1, 2, 3]
    assert [a["avatar"] for a in seen[:2]] == ["", ""]
    assert seen[2]["avatar"].startswith("av_")
    assert all(isinstance(a["status"], int) and a["code"] == 0 for a in seen)


def test_avatar_from_image_url_is_paid_and_defaults(client: Client) -> None:
    task = client.created("avatar/create_by_image", {"image_url": "https://cdn.example/p.JPG"})
    assert isinstance(task, str)
    assert client.wait("avatar/task", task)["status"] == 3
    assert client.get("account/credit")["left"] == 100_000 - 10
    recorded = client.sandbox.task(task)
    assert recorded is not None
    assert recorded.params["model"] == 2
    assert recorded.title == "未命名"


@pytest.mark.parametrize(
    ("endpoint", "body", "code"),
    [
        ("avatar/create_by_video", {"video_url": "https://x.com/a.png"}, 2012),
        ("avatar/create_by_video", {"video_url": "https://x.com/clip"}, 2012),
        ("avatar/create_by_video", {"file_id": "file_nope"}, 14),
        ("avatar/create_by_image", {"image_url": "https://x.com/a.mp4"}, 2012),
        ("avatar/create_by_image", {"image_url": "https://x.com/a.png", "model": 5}, 11),
        ("avatar/create_by_video", {"video_url": "https://x.com/a.mp4", "title": "长" * 21}, 11),
    ],
)
def test_avatar_create_errors(
    client: Client, endpoint: str, body: dict[str, Any], code: int
) -> None:
    assert _code(client.post(endpoint, body)) == code


def test_uploaded_file_of_the_wrong_kind_is_2012(client: Client) -> None:
    image = client.upload("png", b"\x89PNG")
    assert _code(client.post("avatar/create_by_video", {"file_id": image})) == 2012
    assert _code(client.post("avatar/create_by_image", {"file_id": image})) == 0


def test_file_id_never_uploaded_fails_the_task(client: Client) -> None:
    made = client.post("tool/create_upload_url", {"file_extension": "mov"})
    task = client.created("avatar/create_by_video", {"file_id": made["file_id"]})
    answer = client.wait("avatar/task", task)
    assert (answer["status"], answer["code"], answer["avatar"]) == (4, 2014, "")
    assert "未上传" in answer["message"]
    image = client.post("tool/create_upload_url", {"file_extension": "jpg"})["file_id"]
    answer = client.wait(
        "avatar/task", client.created("avatar/create_by_image", {"file_id": image})
    )
    assert (answer["status"], answer["code"]) == (4, 2016)


@pytest.mark.parametrize("query", ["avatar/task", "voice/task", "video/task"])
def test_task_queries_refuse_unknown_and_missing_ids(client: Client, query: str) -> None:
    assert _code(client.get(query, task_id="9999")) == 14
    assert _code(client.get(query)) == 11


def test_a_task_id_is_unknown_on_another_kinds_query(client: Client) -> None:
    avatar_task = client.created("avatar/create_by_video", {"video_url": "https://x/a.mp4"})
    assert _code(client.get("video/task", task_id=avatar_task)) == 14
    assert _code(client.get("voice/task", task_id=avatar_task)) == 14
    assert _code(client.get("avatar/task", task_id=avatar_task)) == 0


# -- voices --------------------------------------------------------------------


def test_voice_clone_lists_edits_and_demo(client: Client) -> None:
    voice = client.voice()
    assert voice.startswith("voice_")
    own = client.get("voice/list")["data"]
    assert own == [
        {"voice": voice, "type": 8, "title": "样本", "rate": "1.0", "volume": "1.0", "pitch": "1.0"}
    ]
    edit = client.post(
        "voice/edit", {"voice": voice, "rate": "1.2", "volume": "0.8", "pitch": "2.0"}
    )
    assert set(edit) == {"code", "message", "request_id"} and edit["code"] == 0
    assert client.get("voice/list", kind=1)["data"][0]["rate"] == "1.2"
    assert client.get("voice/list", kind=1)["data"][0]["pitch"] == "2.0"


def test_voice_task_answers_a_demo_wav(client: Client) -> None:
    file_id = client.upload("wav", make_wav(6, "s"))
    task = client.created("voice/create", {"title": "x", "voice_type": 8, "file_id": file_id})
    answer = client.wait("voice/task", task)
    assert answer["status"] == 3 and answer["voice"].startswith("voice_")
    demo = requests.get(answer["demo_url"])
    assert demo.status_code == 200 and demo.content[:4] == b"RIFF"


def test_a_voice_still_cloning_is_unknown(tmp_path: Path) -> None:
    with running(tmp_path, task_seconds=30) as sandbox:
        client = Client(sandbox)
        file_id = client.upload("wav", make_wav(6, "s"))
        task = client.created("voice/create", {"title": "x", "voice_type": 8, "file_id": file_id})
        assert client.get("voice/task", task_id=task)["voice"] == ""
        assert client.get("voice/list")["data"] == []
        voice = sandbox.task(task).result_id  # type: ignore[union-attr]
        edit = {"voice": voice, "rate": "1.0", "volume": "1.0", "pitch": "1.0"}
        assert _code(client.post("voice/edit", edit)) == 14
        tts = {"voice": voice, "text": "你好"}
        assert _code(client.post("audio/create_by_tts", tts)) == 14


@pytest.mark.parametrize(
    ("seconds", "ext", "code"),
    [(4.0, "wav", 2013), (181.0, "wav", 2013), (6.0, "mp4", 2012), (6.0, "wav", 0)],
)
def test_voice_sample_checks(client: Client, seconds: float, ext: str, code: int) -> None:
    data = make_wav(seconds, "s") if ext == "wav" else make_mp4(seconds, "s")
    file_id = client.upload(ext, data)
    body = {"title": "x", "voice_type": 8, "file_id": file_id}
    assert _code(client.post("voice/create", body)) == code


def test_voice_sample_over_20_mb_is_2011(client: Client) -> None:
    file_id = client.upload("mp3", b"\0" * (20 * 1024 * 1024 + 1))
    body = {"title": "x", "voice_type": 8, "file_id": file_id}
    assert _code(client.post("voice/create", body)) == 2011


def test_voice_create_needs_title_and_type(client: Client) -> None:
    base = {"audio_url": "https://x.com/a.mp3"}
    assert _code(client.post("voice/create", {**base, "voice_type": 8})) == 11
    assert _code(client.post("voice/create", {**base, "title": "t", "voice_type": 20})) == 11
    assert _code(client.post("voice/create", {**base, "title": "t", "voice_type": 8})) == 0


def test_voice_edit_errors(client: Client) -> None:
    good = {"rate": "1.0", "volume": "1.0", "pitch": "1.0"}
    assert _code(client.post("voice/edit", {"voice": "voice_pub_01", **good})) == 14
    assert _code(client.post("voice/edit", {"voice": "voice_nope", **good})) == 14
    assert _code(client.post("voice/edit", {"voice": "voice_nope", **good, "rate": 1.2})) == 11


def test_public_voices_page(client: Client) -> None:
    first = client.get("voice/list", kind=2)["data"]
    assert len(first) == 20
    assert first[0] == {
        "voice": "voice_pub_01",
        "type": 10,
        "title": "公共声音1",
        "rate": "1.0",
        "volume": "1.0",
        "pitch": "1.0",
    }
    second = client.get("voice/list", kind=2, page=2, size=20)["data"]
    assert [v["title"] for v in second] == [f"公共声音{i}" for i in range(21, 26)]
    assert client.get("voice/list", kind=2, page=3)["data"] == []
    assert len(client.get("voice/list", kind=2, size=3)["data"]) == 3
    assert _code(client.get("voice/list", kind=3)) == 11


# -- works -----------------------------------------------------------------------


def test_video_by_tts_with_an_own_voice(client: Client) -> None:
    avatar, voice = client.avatar(), client.voice()
    body = {"voice": voice, "avatar": avatar, "text": "你好", "title": "欢迎", "st_show": 1}
    task = client.created("video/create_by_tts", body)
    answer = client.wait("video/task", task)
    assert answer["status"] == 3
    assert isinstance(answer["duration"], int) and answer["duration"] >= 1
    assert "?" in answer["video_Url"] and answer["video_Url"].split("?")[0].endswith(".mp4")
    assert client.sandbox.task(task).params["st_show"] == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"avatar": "av_nope"}, 14),
        ({"voice": "voice_nope"}, 14),
        ({"text": "<p>hi</p>"}, 11),
        ({"text": "字" * 10001}, 11),
        ({"title": "题" * 21}, 11),
        ({"avatar": 7}, 11),
    ],
)
def test_video_by_tts_errors(client: Client, change: dict[str, Any], code: int) -> None:
    body = {"voice": "voice_pub_01", "avatar": client.avatar(), "text": "你好", **change}
    assert _code(client.post("video/create_by_tts", body)) == code
    assert client.get("account/credit")["left"] == 100_000  # refusals are free


def test_video_by_audio_from_our_own_output_url(client: Client) -> None:
    avatar = client.avatar()
    text = "一" * 45  # 10 seconds of speech
    audio = client.wait(
        "video/task", client.created("audio/create_by_tts", {"voice": "voice_pub_01", "text": text})
    )
    assert audio["duration"] == 10
    task = client.created(
        "video/create_by_audio", {"audio_url": audio["video_Url"], "avatar": avatar}
    )
    assert client.wait("video/task", task)["duration"] == 10


def test_video_by_audio_checks_the_driving_audio(client: Client) -> None:
    avatar = client.avatar()
    short = client.upload("wav", make_wav(4, "short"))
    assert _code(client.post("video/create_by_audio", {"file_id": short, "avatar": avatar})) == 2013
    remote = {"audio_url": "https://x.com/voice.m4a", "avatar": avatar}
    answer = client.wait("video/task", client.created("video/create_by_audio", remote))
    assert answer["duration"] == 5  # unreadable length: 5 s
    bad = {"audio_url": "https://x.com/voice.ogg", "avatar": avatar}
    assert _code(client.post("video/create_by_audio", bad)) == 2012
    both = {"audio_url": "https://x.com/v.mp3", "file_id": short, "avatar": avatar}
    assert _code(client.post("video/create_by_audio", both)) == 11


def test_own_url_that_expired_or_was_tampered_cannot_be_fetched(tmp_path: Path) -> None:
    clock = MovableClock()
    with running(tmp_path, clock=clock, url_ttl=60) as sandbox:
        client = Client(sandbox)
        avatar = client.avatar()
        text = "一" * 45
        task = client.created("audio/create_by_tts", {"voice": "voice_pub_01", "text": text})
        url = client.wait("video/task", task)["video_Url"]
        tampered = url[:-1] + ("A" if url[-1] != "A" else "B")
        body = {"audio_url": tampered, "avatar": avatar}
        assert _code(client.post("video/create_by_audio", body)) == 2013
        assert (
            _code(
                client.post("voice/create", {"title": "t", "voice_type": 8, "audio_url": tampered})
            )
            == 2013
        )
        clock.advance(61)
        assert (
            _code(client.post("video/create_by_audio", {"audio_url": url, "avatar": avatar}))
            == 2013
        )


def test_requery_gives_a_fresh_working_url(tmp_path: Path) -> None:
    clock = MovableClock()
    with running(tmp_path, clock=clock, url_ttl=60) as sandbox:
        client = Client(sandbox)
        task = client.created("audio/create_by_tts", {"voice": "voice_pub_01", "text": "你好"})
        first = client.wait("video/task", task)["video_Url"]
        clock.advance(61)
        assert requests.get(first).status_code == 403
        second = client.get("video/task", task_id=task)
        assert second["status"] == 3 and second["video_Url"] != first
        assert requests.get(second["video_Url"]).status_code == 200
        assert len(list((sandbox.data_dir / "files").glob("out_*.wav"))) == 1  # made once


# -- account, limits, upload url -------------------------------------------------


def test_too_many_works_generating_is_1001(tmp_path: Path) -> None:
    clock = MovableClock()
    with running(tmp_path, clock=clock, max_generating=2, task_seconds=10, task_jitter=0) as sb:
        client = Client(sb)
        avatar_task = client.created("avatar/create_by_video", {"video_url": "https://x/a.mp4"})
        clock.advance(11)
        avatar = client.get("avatar/task", task_id=avatar_task)["avatar"]
        work = {"voice": "voice_pub_01", "text": "你好", "avatar": avatar}
        assert [_code(client.post("video/create_by_tts", work)) for _ in range(3)] == [0, 0, 1001]
        assert _code(client.post("audio/create_by_tts", work)) == 1001
        # Clones are not works: they are not capped.
        assert _code(client.post("avatar/create_by_video", {"video_url": "https://x/b.mp4"})) == 0
        assert client.get("account/credit")["left"] == 100_000 - 20
        clock.advance(11)
        assert _code(client.post("video/create_by_tts", work)) == 0


def test_insufficient_credits_is_1002_and_charges_nothing(sandbox: Sandbox) -> None:
    client = Client(sandbox)
    sandbox.set_credits(15)
    body = {"voice": "voice_pub_01", "text": "你好"}
    assert _code(client.post("audio/create_by_tts", body)) == 0
    assert _code(client.post("audio/create_by_tts", body)) == 1002
    assert client.get("account/credit")["left"] == 5 == sandbox.credits()
    # voice/create and avatar/create_by_video are free.
    assert _code(client.post("avatar/create_by_video", {"video_url": "https://x/a.mp4"})) == 0
    assert sandbox.counters().creates == {"audio/create_by_tts": 1, "avatar/create_by_video": 1}


@pytest.mark.parametrize(
    ("ext", "code", "content_type"),
    [
        ("mp4", 0, "video/mp4"),
        (".MOV", 0, "video/quicktime"),
        ("m4a", 0, "audio/mp4"),
        ("jpeg", 0, "image/jpeg"),
        ("exe", 2012, None),
        ("", 11, None),
        (".", 11, None),
    ],
)
def test_create_upload_url(client: Client, ext: str, code: int, content_type: str | None) -> None:
    answer = client.post("tool/create_upload_url", {"file_extension": ext})
    assert _code(answer) == code
    if content_type:
        assert "code" not in answer and "message" not in answer  # as the document shows it
        assert answer["content_type"] == content_type
        assert "Expires=" in answer["upload_url"] and "Signature=" in answer["upload_url"]


def test_task_times_record_each_task(tmp_path: Path) -> None:
    with running(tmp_path, task_seconds=0.1, task_jitter=0.05) as sandbox:
        client = Client(sandbox)
        before = time.time()
        task = client.created("audio/create_by_tts", {"voice": "voice_pub_01", "text": "你好"})
        times = sandbox.task_times()
    assert [(t.task_id, t.endpoint) for t in times] == [(task, "audio/create_by_tts")]
    assert times[0].created_at >= before
    assert 0.1 <= times[0].seconds < 0.15
    assert times[0].finished_at == times[0].created_at + times[0].seconds
