"""Uploads and downloads: byte-exact, atomic, no token to other hosts, expiry detected."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hifly_batch.api.client import HiflyClient
from hifly_batch.api.errors import TransportError, UrlExpiredError
from hifly_batch.api.transfer import put_file
from hifly_batch.api.transport import RetryPolicy
from hifly_batch.apispec import TaskStatus
from hifly_batch.sandbox import Faults, Sandbox
from tests.httpstub import Reply, Seen, stub_server

QUICK = RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0)


@pytest.fixture
def client(sandbox: Sandbox) -> HiflyClient:
    return HiflyClient(sandbox.token, sandbox.base_url, retry=QUICK, sleep=lambda s: None)


def finished_audio(client: HiflyClient) -> tuple[str, str]:
    voice = client.list_voices(kind=2)[0].voice
    task_id = client.create_audio_by_tts(voice=voice, text="下载测试的一段文字。")
    while not (task := client.video_task(task_id)).finished:
        time.sleep(0.02)
    assert task.status is TaskStatus.DONE
    return task_id, task.url


def test_upload_round_trip_is_byte_exact(
    client: HiflyClient, sandbox: Sandbox, tmp_path: Path
) -> None:
    data = bytes(range(256)) * 4099  # not a multiple of any chunk size
    source = tmp_path / "clip.mp4"
    source.write_bytes(data)
    file_id = client.upload_file(source)
    assert sandbox.uploaded_bytes(file_id) == data


def test_a_put_the_storage_refuses_for_a_while_is_sent_again(
    client: HiflyClient, sandbox: Sandbox, tmp_path: Path
) -> None:
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"clip" * 1000)
    sandbox.set_faults(Faults(put_fail=0.5, seed=4))
    uploaded = [client.upload_file(source) for _ in range(6)]
    assert all(sandbox.uploaded_bytes(f) == source.read_bytes() for f in uploaded)
    assert sandbox.counters().faults["put_fail"] >= 1  # some PUTs failed, then went through


def test_a_put_that_keeps_failing_is_a_transport_error_naming_the_file(
    client: HiflyClient, sandbox: Sandbox, tmp_path: Path
) -> None:
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"clip")
    sandbox.set_faults(Faults(put_fail=1.0))
    with pytest.raises(TransportError, match=r"upload of clip\.mp4: HTTP 500"):
        client.upload_file(source)
    assert sandbox.counters().requests["upload"] == QUICK.attempts


def test_download_round_trip_is_byte_exact(
    client: HiflyClient, sandbox: Sandbox, tmp_path: Path
) -> None:
    task_id, url = finished_audio(client)
    dest = tmp_path / "deep" / "folder" / "a.wav"
    assert client.download(url, dest) == dest.stat().st_size
    assert dest.read_bytes() == sandbox.output_bytes(task_id)
    assert [p.name for p in dest.parent.iterdir()] == ["a.wav"]


def test_expired_url_is_detected_and_requery_gives_a_fresh_one(
    client: HiflyClient, sandbox: Sandbox, tmp_path: Path
) -> None:
    task_id, _ = finished_audio(client)
    sandbox.set_faults(Faults(expired_url=1.0))
    expired = client.video_task(task_id).url
    with pytest.raises(UrlExpiredError) as caught:
        client.download(expired, tmp_path / "a.wav")
    assert caught.value.status == 403 and "Signature" not in str(caught.value)
    sandbox.set_faults(Faults())
    assert client.download(client.video_task(task_id).url, tmp_path / "a.wav") > 0


def test_tampered_signature_is_refused(client: HiflyClient, tmp_path: Path) -> None:
    _, url = finished_audio(client)
    with pytest.raises(UrlExpiredError):
        client.download(url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB"), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_dropped_download_leaves_nothing_at_dest(
    client: HiflyClient, sandbox: Sandbox, tmp_path: Path
) -> None:
    _, url = finished_audio(client)
    sandbox.set_faults(Faults(drop=1.0))
    with pytest.raises(TransportError):
        client.download(url, tmp_path / "out" / "a.wav")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_truncated_body_leaves_nothing_at_dest(tmp_path: Path) -> None:
    body = b"x" * 100_000
    with stub_server(lambda seen: Reply(body=body, truncate_to=40_000)) as (url, seen):
        client = HiflyClient("t", url, retry=QUICK, sleep=lambda s: None)
        with pytest.raises(TransportError):
            client.download(url + "/v.mp4?sig=1", tmp_path / "v.mp4")
    assert list(tmp_path.iterdir()) == [] and len(seen) == QUICK.attempts


def test_a_download_or_upload_answered_429_waits_as_asked_and_uses_no_try(
    tmp_path: Path,
) -> None:
    """Storage and CDN 429s are back-pressure too: three of them, with two tries."""

    def busy_then_fine(seen: Seen) -> Reply:
        if len(calls) < 3:
            calls.append(seen.method)
            return Reply(status=429, headers={"Retry-After": "7"})
        return Reply(body=b"video")

    source = tmp_path / "clip.mp4"
    source.write_bytes(b"clip")
    for method in ("GET", "PUT"):
        calls: list[str] = []
        slept: list[float] = []
        with stub_server(busy_then_fine) as (url, seen):
            client = HiflyClient("t", url, retry=QUICK, sleep=slept.append)
            if method == "GET":
                assert client.download(url + "/v.mp4", tmp_path / "v.mp4") == len(b"video")
            else:
                put_file(client.transport, url + "/put?sig=1", "video/mp4", source)
        assert slept == [7.0] * 3 and [s.method for s in seen] == [method] * 4


def test_an_existing_file_survives_a_failed_download(tmp_path: Path) -> None:
    (tmp_path / "v.mp4").write_bytes(b"old")
    with stub_server(lambda seen: Reply(body=b"y" * 1000, truncate_to=10)) as (url, _):
        client = HiflyClient("t", url, retry=QUICK, sleep=lambda s: None)
        with pytest.raises(TransportError):
            client.download(url + "/v.mp4", tmp_path / "v.mp4")
    assert (tmp_path / "v.mp4").read_bytes() == b"old"


def test_downloads_and_uploads_carry_no_token(tmp_path: Path) -> None:
    with stub_server(lambda seen: Reply(body=b"data")) as (url, seen):
        client = HiflyClient("tok-secret", url)
        client.download(url + "/v.mp4?Expires=1", tmp_path / "v.mp4")
        (tmp_path / "a.wav").write_bytes(b"RIFF")
        from hifly_batch.api.transfer import put_file

        put_file(client.transport, url + "/upload/f1?sig=1", "audio/wav", tmp_path / "a.wav")
    assert [s.method for s in seen] == ["GET", "PUT"]
    assert all("Authorization" not in s.headers for s in seen)
    assert seen[1].headers["Content-Type"] == "audio/wav"
