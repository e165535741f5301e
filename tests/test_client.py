"""The client against the sandbox over real HTTP: every endpoint, every error class."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from hifly_batch.api.client import HiflyClient, Task
from hifly_batch.api.errors import ApiError, AuthError, Delivery, SubmissionUncertain
from hifly_batch.api.transport import RetryPolicy
from hifly_batch.apispec import Endpoint, TaskStatus
from hifly_batch.sandbox import Faults, Sandbox, SandboxConfig
from hifly_batch.sandbox.media_maker import make_mp4, make_wav
from tests.conftest import SECRET_TOKEN
from tests.httpstub import Reply, Seen, stub_server

T = TypeVar("T", bound=Task)


@pytest.fixture
def client(sandbox: Sandbox) -> HiflyClient:
    return HiflyClient(sandbox.token, sandbox.base_url)


@pytest.fixture
def media(tmp_path: Path) -> dict[str, Path]:
    files = {
        "clip.mp4": make_mp4(3.0, "clip"),
        "sample.wav": make_wav(8.0, "sample"),
        "short.wav": make_wav(2.0, "short"),
        "speech.wav": make_wav(6.0, "speech"),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return {name: tmp_path / name for name in files}


def wait(query: Callable[[str], T], task_id: str, timeout: float = 10.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        task = query(task_id)
        if task.finished or time.monotonic() > deadline:
            return task
        time.sleep(0.02)


def avatar_from(client: HiflyClient, media: dict[str, Path]) -> str:
    file_id = client.upload_file(media["clip.mp4"])
    task = wait(client.avatar_task, client.create_avatar_by_video(file_id=file_id, title="主播"))
    assert task.status is TaskStatus.DONE, task
    return task.avatar


def voice_from(client: HiflyClient, media: dict[str, Path]) -> str:
    file_id = client.upload_file(media["sample.wav"])
    task = wait(client.voice_task, client.create_voice(title="我的声音", file_id=file_id))
    assert task.status is TaskStatus.DONE, task
    assert task.demo_url.startswith("http")
    return task.voice


def test_credit_is_the_configured_balance(tmp_path: Path) -> None:
    with Sandbox(tmp_path / "w", SandboxConfig(credits=1234, token=SECRET_TOKEN)) as sb:
        assert HiflyClient(sb.token, sb.base_url).credit() == 1234


def test_avatar_by_video_from_an_upload(client: HiflyClient, media: dict[str, Path]) -> None:
    assert avatar_from(client, media)


def test_avatar_by_video_url_and_by_image(client: HiflyClient) -> None:
    by_url = client.create_avatar_by_video(video_url="https://cdn.example.com/a.mp4")
    by_image = client.create_avatar_by_image(image_url="https://cdn.example.com/h.jpg", model=1)
    for task_id in (by_url, by_image):
        task = wait(client.avatar_task, task_id)
        assert task.status is TaskStatus.DONE and task.avatar


def test_task_moves_through_waiting_and_processing(tmp_path: Path) -> None:
    slow = SandboxConfig(task_seconds=1.0, task_jitter=0.0, token=SECRET_TOKEN)
    with Sandbox(tmp_path / "w", slow) as sb:
        client = HiflyClient(sb.token, sb.base_url)
        task_id = client.create_avatar_by_video(video_url="https://cdn.example.com/a.mp4")
        seen = []
        while not (task := client.avatar_task(task_id)).finished:
            seen.append(task.status)
            time.sleep(0.05)
    assert seen[0] is TaskStatus.WAITING and TaskStatus.PROCESSING in seen
    assert seen == sorted(seen)


def test_voice_clone_edit_and_list(client: HiflyClient, media: dict[str, Path]) -> None:
    voice = voice_from(client, media)
    client.edit_voice(voice, rate="1.2", volume="0.8", pitch="1.0")
    own = {v.voice: v for v in client.list_voices()}
    assert (own[voice].rate, own[voice].volume, own[voice].pitch) == ("1.2", "0.8", "1.0")
    assert own[voice].title == "我的声音"


def test_public_voices_page(client: HiflyClient) -> None:
    first = client.list_voices(kind=2, page=1, size=10)
    second = client.list_voices(kind=2, page=2, size=10)
    everything = client.all_voices(public=True, size=7)
    assert len(first) == 10 and not {v.voice for v in first} & {v.voice for v in second}
    assert {v.voice for v in first + second} <= {v.voice for v in everything}
    assert all(v.type == 10 for v in everything)


def test_video_by_tts_downloads_the_sandbox_bytes(
    client: HiflyClient, sandbox: Sandbox, media: dict[str, Path], tmp_path: Path
) -> None:
    avatar, voice = avatar_from(client, media), voice_from(client, media)
    task_id = client.create_video_by_tts(avatar=avatar, voice=voice, text="您好,欢迎光临。")
    task = wait(client.video_task, task_id)
    assert task.status is TaskStatus.DONE and task.duration and "?" in task.url
    size = client.download(task.url, tmp_path / "out" / "v.mp4")
    assert (tmp_path / "out" / "v.mp4").read_bytes()[4:8] == b"ftyp"
    assert size == (tmp_path / "out" / "v.mp4").stat().st_size


def test_video_by_audio_and_audio_by_tts(client: HiflyClient, media: dict[str, Path]) -> None:
    avatar = avatar_from(client, media)
    public = client.list_voices(kind=2)[0].voice
    by_audio = client.create_video_by_audio(
        avatar=avatar, file_id=client.upload_file(media["speech.wav"]), title="音频驱动"
    )
    audio = client.create_audio_by_tts(voice=public, text="这是一段测试文本。", title="音频")
    assert wait(client.video_task, by_audio).status is TaskStatus.DONE
    finished = wait(client.video_task, audio)
    assert finished.status is TaskStatus.DONE and ".wav" in finished.url


def test_api_error_carries_code_meaning_and_request_id(client: HiflyClient) -> None:
    with pytest.raises(ApiError) as caught:
        client.video_task("no-such-task")
    error = caught.value
    assert (error.code, error.meaning, error.meaning_zh) == (14, "resource not found", "找不到资源")
    assert error.request_id and error.endpoint.short == "video/task"
    assert "14 resource not found (找不到资源)" in str(error)


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (
            lambda c: c.create_avatar_by_video(
                video_url="https://x.example/a.mp4", title="长" * 21
            ),
            11,
        ),
        (lambda c: c.create_avatar_by_image(image_url="https://x.example/a.jpg", model=3), 11),
        (lambda c: c.edit_voice("voice_missing", rate="1.0", volume="1.0", pitch="1.0"), 14),
        (lambda c: c.create_video_by_tts(avatar="av_missing", voice="v", text="你好"), 14),
        (lambda c: c.avatar_task("missing"), 14),
        (lambda c: c.create_upload_url("exe"), 2012),
        (lambda c: c.create_avatar_by_video(video_url="https://x.example/a.gif"), 2012),
    ],
    ids=[
        "title-too-long",
        "bad-model",
        "unknown-voice",
        "unknown-avatar",
        "unknown-task",
        "upload-type",
        "video-type",
    ],
)
def test_business_errors(
    client: HiflyClient, call: Callable[[HiflyClient], object], code: int
) -> None:
    with pytest.raises(ApiError) as caught:
        call(client)
    assert caught.value.code == code


def test_voice_sample_checks(client: HiflyClient, media: dict[str, Path]) -> None:
    with pytest.raises(ApiError) as caught:
        client.create_voice(title="太短", file_id=client.upload_file(media["short.wav"]))
    assert caught.value.code == 2013


def test_credits_run_out_with_1002(tmp_path: Path) -> None:
    config = SandboxConfig(credits=10, credit_cost=10, token=SECRET_TOKEN)
    with Sandbox(tmp_path / "w", config) as sb:
        client = HiflyClient(sb.token, sb.base_url)
        voice = client.list_voices(kind=2)[0].voice
        client.create_audio_by_tts(voice=voice, text="第一段。")
        with pytest.raises(ApiError) as caught:
            client.create_audio_by_tts(voice=voice, text="第二段。")
        assert caught.value.code == 1002 and client.credit() == 0


def test_too_many_generating_with_1001(tmp_path: Path) -> None:
    config = SandboxConfig(max_generating=2, task_seconds=30, token=SECRET_TOKEN)
    with Sandbox(tmp_path / "w", config) as sb:
        client = HiflyClient(sb.token, sb.base_url)
        voice = client.list_voices(kind=2)[0].voice
        for n in range(2):
            client.create_audio_by_tts(voice=voice, text=f"第{n}段。")
        with pytest.raises(ApiError) as caught:
            client.create_audio_by_tts(voice=voice, text="再来一段。")
        assert caught.value.code == 1001


def test_failed_task_reports_status_4(tmp_path: Path) -> None:
    from hifly_batch.sandbox import Faults

    config = SandboxConfig(task_seconds=0.05, faults=Faults(task_fail=1.0), token=SECRET_TOKEN)
    with Sandbox(tmp_path / "w", config) as sb:
        client = HiflyClient(sb.token, sb.base_url)
        task = wait(
            client.avatar_task,
            client.create_avatar_by_video(video_url="https://cdn.example.com/a.mp4"),
        )
    assert task.status is TaskStatus.FAILED and task.error_code == 2015


def test_bad_token_is_an_auth_error(sandbox: Sandbox) -> None:
    with pytest.raises(AuthError) as caught:
        HiflyClient("wrong-token", sandbox.base_url).credit()
    assert caught.value.exit_status == 3 and "HIFLY_TOKEN" in str(caught.value)
    assert "wrong-token" not in str(caught.value)


@pytest.mark.parametrize("identify", [True, False], ids=["sandbox", "service"])
def test_a_server_error_still_tells_a_sandbox_from_the_service(
    tmp_path: Path, identify: bool
) -> None:
    """Every answer a sandbox gives carries its header, a failure's too; a run that meets
    a 500 first goes on, with the right lock file (SPEC §7)."""
    config = SandboxConfig(task_seconds=0.05, identify=identify, token=SECRET_TOKEN)
    with Sandbox(tmp_path / "w", config) as sandbox:
        sandbox.set_faults(Faults(http_500=1.0))
        slept: list[float] = []
        client = HiflyClient(sandbox.token, sandbox.base_url, sleep=slept.append)
        assert client.is_sandbox() is identify
        assert len(slept) == RetryPolicy().attempts - 1  # tried as any query is


# Every create method, with the endpoint it POSTs to.
CREATES: list[tuple[Endpoint, Callable[[HiflyClient], str]]] = [
    (
        Endpoint.AVATAR_CREATE_BY_VIDEO,
        lambda c: c.create_avatar_by_video(video_url="https://x.example/a.mp4"),
    ),
    (
        Endpoint.AVATAR_CREATE_BY_IMAGE,
        lambda c: c.create_avatar_by_image(image_url="https://x.example/a.jpg", model=1),
    ),
    (
        Endpoint.VOICE_CREATE,
        lambda c: c.create_voice(title="声音", audio_url="https://x.example/a.wav"),
    ),
    (
        Endpoint.VIDEO_CREATE_BY_AUDIO,
        lambda c: c.create_video_by_audio(avatar="a", audio_url="https://x.example/a.wav"),
    ),
    (
        Endpoint.VIDEO_CREATE_BY_TTS,
        lambda c: c.create_video_by_tts(avatar="a", voice="v", text="你好"),
    ),
    (Endpoint.AUDIO_CREATE_BY_TTS, lambda c: c.create_audio_by_tts(voice="v", text="你好")),
]


@pytest.mark.parametrize(
    ("endpoint", "create"), [pytest.param(*case, id=case[0].short) for case in CREATES]
)
def test_a_create_answered_ok_without_a_task_id_is_uncertain_and_sent_once(
    endpoint: Endpoint, create: Callable[[HiflyClient], str]
) -> None:
    answer = json.dumps({"code": 0, "message": "ok"}).encode()

    def respond(seen: Seen) -> Reply:
        return Reply(body=answer, headers={"Content-Type": "application/json"})

    slept: list[float] = []
    with stub_server(respond) as (url, seen):
        client = HiflyClient(SECRET_TOKEN, url, sleep=slept.append)
        with pytest.raises(SubmissionUncertain) as caught:
            create(client)
    assert "no task_id" in str(caught.value), caught.value
    assert str(caught.value).startswith(f"{endpoint.short}: ")
    assert caught.value.delivery is Delivery.UNANSWERED  # the work may have been made
    assert [(s.method, s.path) for s in seen] == [("POST", endpoint.value)]  # not sent again
    assert slept == []


@pytest.mark.parametrize("task_id", [["x"], {"id": 1}, True, "", "  ", None, 1.5])
def test_a_task_id_that_names_no_task_is_uncertain_never_stored(task_id: object) -> None:
    answer = json.dumps({"code": 0, "message": "ok", "task_id": task_id}).encode()
    with stub_server(lambda seen: Reply(body=answer)) as (url, seen):
        client = HiflyClient(SECRET_TOKEN, url, sleep=lambda s: None)
        with pytest.raises(SubmissionUncertain, match="no task_id"):
            client.create_audio_by_tts(voice="v", text="你好")
    assert len(seen) == 1
