"""The sandbox over HTTP: auth, status codes, uploads, downloads, signatures, traversal."""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from hifly_batch.sandbox import Sandbox
from tests.sandbox_fixtures import Client, MovableClock, running


def _raw(
    sandbox: Sandbox,
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> http.client.HTTPResponse:
    """A request whose target goes out exactly as written (no URL normalizing)."""
    parts = urlsplit(sandbox.base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    conn.request(method, target, body=body, headers=headers or {})
    answer = conn.getresponse()
    answer.read()
    conn.close()
    return answer


def _finished_video(client: Client) -> str:
    """The video_Url of a finished audio/create_by_tts work."""
    task = client.created("audio/create_by_tts", {"voice": "voice_pub_01", "text": "你好"})
    answer = client.wait("video/task", task)
    assert answer["status"] == 3
    return str(answer["video_Url"])


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic x", "Bearer"])
def test_a_bad_token_is_401_with_code_2003(sandbox: Sandbox, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    answer = requests.get(f"{sandbox.base_url}/api/v2/hifly/account/credit", headers=headers)
    assert answer.status_code == 401
    body = answer.json()
    assert body["code"] == 2003
    assert body["message"] == "无效 Token"
    assert body["request_id"]


def test_answers_are_utf8_json_with_unique_request_ids(sandbox: Sandbox) -> None:
    client = Client(sandbox)
    first = client.session.get(client.url("voice/list"), params={"kind": 2})
    second = client.session.get(client.url("voice/list"), params={"kind": 2})
    assert first.headers["Content-Type"] == "application/json; charset=utf-8"
    assert "公共声音1".encode() in first.content  # not \u escapes
    assert first.json()["request_id"] != second.json()["request_id"]


def test_unknown_path_is_404_and_wrong_method_405(sandbox: Sandbox) -> None:
    client = Client(sandbox)
    assert client.session.get(client.url("video/nothing")).status_code == 404
    assert client.session.get(f"{sandbox.base_url}/elsewhere").status_code == 404
    assert client.session.get(client.url("video/create_by_tts")).status_code == 405
    assert client.session.post(client.url("video/task"), json={}).status_code == 405


@pytest.mark.parametrize("body", [b"[1, 2]", b"not json", b"", b'"text"', b"\xff\xfe"])
def test_a_body_that_is_not_a_json_object_is_code_11(sandbox: Sandbox, body: bytes) -> None:
    client = Client(sandbox)
    answer = client.session.post(client.url("tool/create_upload_url"), data=body)
    assert answer.status_code == 200
    assert answer.json()["code"] == 11


def test_keep_alive_serves_many_requests_on_one_connection(sandbox: Sandbox) -> None:
    client = Client(sandbox)
    took = []
    for _ in range(100):
        started = time.perf_counter()
        assert client.get("account/credit")["code"] == 0
        took.append(time.perf_counter() - started)
    # Split writes (Nagle + delayed ACK) hold each answer for the 40 ms ACK timer; the
    # median stays clear of load spikes on a busy machine.
    assert statistics.median(took) < 0.02, f"median {statistics.median(took) * 1000:.1f} ms"
    assert sandbox.counters().requests["account/credit"] == 100


# -- uploads ---------------------------------------------------------------


def test_upload_stores_bytes_and_a_second_put_replaces_them(sandbox: Sandbox) -> None:
    client = Client(sandbox)
    made = client.post("tool/create_upload_url", {"file_extension": "MP3"})
    assert made["content_type"] == "audio/mpeg"
    assert made["file_id"].startswith("file_")
    headers = {"Content-Type": "audio/mpeg"}
    for data in (b"first bytes", b"second"):
        answer = requests.put(made["upload_url"], data=data, headers=headers)
        assert (answer.status_code, answer.content) == (200, b"")
    stored = list((sandbox.data_dir / "files").glob("up_*.mp3"))
    assert [p.read_bytes() for p in stored] == [b"second"]


@pytest.mark.parametrize("content_type", ["video/mp4", "audio/mpeg; charset=x", ""])
def test_upload_with_another_content_type_is_403(sandbox: Sandbox, content_type: str) -> None:
    made = Client(sandbox).post("tool/create_upload_url", {"file_extension": "mp3"})
    answer = requests.put(made["upload_url"], data=b"x", headers={"Content-Type": content_type})
    assert answer.status_code == 403


def test_upload_with_a_tampered_signature_or_other_file_is_403(sandbox: Sandbox) -> None:
    client = Client(sandbox)
    made = client.post("tool/create_upload_url", {"file_extension": "wav"})
    other = client.post("tool/create_upload_url", {"file_extension": "wav"})
    headers = {"Content-Type": "audio/wav"}
    tampered = made["upload_url"][:-2] + ("AA" if not made["upload_url"].endswith("AA") else "BB")
    assert requests.put(tampered, data=b"x", headers=headers).status_code == 403
    moved = made["upload_url"].replace(made["file_id"], other["file_id"])
    assert requests.put(moved, data=b"x", headers=headers).status_code == 403


def test_upload_url_expires(tmp_path: Path) -> None:
    clock = MovableClock()
    with running(tmp_path, clock=clock, url_ttl=60) as sandbox:
        made = Client(sandbox).post("tool/create_upload_url", {"file_extension": "wav"})
        clock.advance(61)
        answer = requests.put(made["upload_url"], data=b"x", headers={"Content-Type": "audio/wav"})
        assert answer.status_code == 403


def test_upload_over_200_mb_is_413_without_reading_it(sandbox: Sandbox) -> None:
    made = Client(sandbox).post("tool/create_upload_url", {"file_extension": "mp4"})
    parts = urlsplit(made["upload_url"])
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        head = (
            f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: video/mp4\r\nContent-Length: {201 * 1024 * 1024}\r\n\r\n"
        )
        sock.sendall(head.encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 413")


def test_chunked_upload_is_stored(sandbox: Sandbox) -> None:
    made = Client(sandbox).post("tool/create_upload_url", {"file_extension": "png"})
    answer = requests.put(
        made["upload_url"], data=iter([b"ab", b"cd"]), headers={"Content-Type": "image/png"}
    )
    assert answer.status_code == 200
    assert [p.read_bytes() for p in (sandbox.data_dir / "files").glob("up_*.png")] == [b"abcd"]


# -- downloads ---------------------------------------------------------------


def test_download_has_length_and_type_and_needs_no_token(sandbox: Sandbox) -> None:
    url = _finished_video(Client(sandbox))
    assert urlsplit(url).path.endswith(".wav")
    answer = requests.get(url)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "audio/wav"
    assert int(answer.headers["Content-Length"]) == len(answer.content)
    assert answer.content[:4] == b"RIFF"


def test_download_with_a_tampered_or_missing_signature_is_403(sandbox: Sandbox) -> None:
    url = _finished_video(Client(sandbox))
    path, _, query = url.partition("?")
    sig = query.rsplit("Signature=", 1)[1]
    flipped = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    assert requests.get(f"{path}?{query.replace(sig, flipped)}").status_code == 403
    assert requests.get(path).status_code == 403
    later = query.replace("Expires=", "Expires=9")
    assert requests.get(f"{path}?{later}").status_code == 403


def test_download_url_expires(tmp_path: Path) -> None:
    clock = MovableClock()
    with running(tmp_path, clock=clock, url_ttl=60) as sandbox:
        url = _finished_video(Client(sandbox))
        assert requests.get(url).status_code == 200
        clock.advance(61)
        assert requests.get(url).status_code == 403


@pytest.mark.parametrize(
    "target",
    [
        "/files/../world.db",
        "/files/%2e%2e/world.db",
        "/files/..%2fworld.db",
        "/files/world.db",
        "/files/files/../../world.db",
        "/files/",
        "/upload/../world.db",
        "/upload/%2e%2e%2fworld.db",
    ],
)
def test_traversal_attempts_never_reach_the_disk(sandbox: Sandbox, target: str) -> None:
    method = "PUT" if target.startswith("/upload") else "GET"
    answer = _raw(sandbox, method, target + "?Expires=99999999999&Signature=x", body=b"")
    assert answer.status in (403, 404)
    assert (sandbox.data_dir / "world.db").stat().st_size > 0


def test_a_signed_name_that_is_not_an_output_is_404(sandbox: Sandbox) -> None:
    from hifly_batch.sandbox.signing import signed_url

    world_secret = sandbox._world.secret()  # type: ignore[union-attr]
    url = signed_url(sandbox.base_url, world_secret, "GET", "/files/out_nothing.mp4", 2**40)
    assert requests.get(url).status_code == 404


def test_outputs_are_real_media(sandbox: Sandbox, tmp_path: Path) -> None:
    from hifly_batch.sandbox.media_maker import read_duration

    client = Client(sandbox)
    avatar = client.avatar()
    text = "这是一段用于测试的文字,大约有二十个汉字长度。"
    task = client.created(
        "video/create_by_tts", {"voice": "voice_pub_02", "text": text, "avatar": avatar}
    )
    answer = client.wait("video/task", task)
    saved = tmp_path / "out.mp4"
    saved.write_bytes(requests.get(answer["video_Url"]).content)
    seconds = read_duration(saved)
    assert seconds is not None
    assert answer["duration"] == round(seconds) > 0


def test_stop_cuts_open_keep_alive_connections(tmp_path: Path) -> None:
    with running(tmp_path) as sandbox:
        client = Client(sandbox)
        client.get("account/credit")
    with pytest.raises(requests.ConnectionError):
        client.session.get(client.url("account/credit"), timeout=2)


def test_answer_is_one_write(sandbox: Sandbox) -> None:
    """Status line, headers and body arrive together in the first read."""
    parts = urlsplit(sandbox.base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(
            f"GET /api/v2/hifly/account/credit HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {sandbox.token}\r\n\r\n".encode()
        )
        data = sock.recv(65536)  # the first segment must hold everything
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Content-Length: %d" % len(body) in head
    assert json.loads(body)["left"] == 100_000


def test_a_large_output_streams_whole(sandbox: Sandbox) -> None:
    client = Client(sandbox)
    body = {"voice": "voice_pub_01", "text": "长" * 2000}  # about 444 s: a 7 MB WAV
    task = client.created("audio/create_by_tts", body)
    download = requests.get(client.wait("video/task", task)["video_Url"])
    assert int(download.headers["Content-Length"]) == len(download.content) > 4 * 1024 * 1024
    assert download.content == sandbox.output_bytes(task)
