"""Retries and the at-most-once classification, over real sockets."""

from __future__ import annotations

import email.utils
import json
import random
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hifly_batch.api.client import HiflyClient
from hifly_batch.api.errors import (
    Delivery,
    HttpStatusError,
    RateLimited,
    SubmissionUncertain,
    TransportError,
)
from hifly_batch.api.session import USER_AGENT
from hifly_batch.api.transport import (
    RATE_LIMIT_PATIENCE,
    RETRY_AFTER_MAX,
    RetryPolicy,
    redacted_headers,
    retry_after,
)
from hifly_batch.apispec import Endpoint
from hifly_batch.sandbox import Faults, Sandbox, SandboxConfig
from tests.conftest import SECRET_TOKEN
from tests.httpstub import Reply, Seen, stub_server

QUICK = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)


def client_for(sandbox: Sandbox, **options: object) -> HiflyClient:
    return HiflyClient(sandbox.token, sandbox.base_url, retry=QUICK, **options)  # type: ignore[arg-type]


def healing(sandbox: Sandbox) -> tuple[list[float], Callable[[float], None]]:
    """A `sleep` for the client that clears the sandbox's faults during the first backoff."""
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        sandbox.set_faults(Faults())

    return slept, sleep


def voice_of(sandbox: Sandbox) -> str:
    return HiflyClient(sandbox.token, sandbox.base_url).list_voices(kind=2)[0].voice


def test_ambiguous_create_is_uncertain_and_not_resent(sandbox: Sandbox) -> None:
    voice = voice_of(sandbox)
    sandbox.set_faults(Faults(drop_after_create=1.0))
    with pytest.raises(SubmissionUncertain) as caught:
        client_for(sandbox).create_audio_by_tts(voice=voice, text="你好。")
    assert caught.value.delivery is Delivery.UNANSWERED
    assert sandbox.counters().creates == {"audio/create_by_tts": 1}
    assert sandbox.counters().requests["audio/create_by_tts"] == 1


def test_a_create_answered_500_is_sent_once_and_its_retry_left_to_the_runner(
    sandbox: Sandbox,
) -> None:
    """The runner sends a create again later with its item pending, so that an item is
    "submitting" only while its request is on the wire."""
    voice = voice_of(sandbox)
    sandbox.set_faults(Faults(http_500=1.0))
    slept: list[float] = []
    with pytest.raises(TransportError) as caught:
        client_for(sandbox, sleep=slept.append).create_audio_by_tts(voice=voice, text="你好。")
    assert caught.value.delivery is Delivery.SERVER_ERROR and slept == []
    assert sandbox.counters().requests["audio/create_by_tts"] == 1


def test_a_create_not_sent_is_not_sent_again_by_the_client(tmp_path: Path) -> None:
    client = HiflyClient(
        SECRET_TOKEN, f"http://127.0.0.1:{_free_port()}", retry=QUICK, sleep=lambda s: None
    )
    with pytest.raises(TransportError) as caught:
        client.create_avatar_by_video(video_url="https://cdn.example.com/a.mp4")
    assert caught.value.delivery is Delivery.NOT_SENT


@pytest.mark.parametrize("seconds", [0.0, 2.0])
def test_http_429_asks_to_wait_what_retry_after_says(sandbox: Sandbox, seconds: float) -> None:
    voice = voice_of(sandbox)
    sandbox.set_faults(Faults(http_429=1.0, retry_after_seconds=seconds))
    with pytest.raises(RateLimited) as caught:
        client_for(sandbox).create_audio_by_tts(voice=voice, text="你好。")
    assert caught.value.retry_after == seconds
    assert sandbox.counters().creates == {}  # nothing was made
    slept, sleep = healing(sandbox)  # a query waits as asked, then goes through
    client_for(sandbox, sleep=sleep).list_voices(kind=2)
    assert slept == [seconds] or (seconds == 0.0 and len(slept) == 1)


def test_a_query_waits_out_more_429s_than_it_has_tries(sandbox: Sandbox) -> None:
    """Back-pressure uses up no try: five 429s in a row, with three tries."""
    sandbox.set_faults(Faults(http_429=1.0, retry_after_seconds=2.0))
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 5:
            sandbox.set_faults(Faults())

    assert client_for(sandbox, sleep=sleep).credit() == sandbox.credits()
    assert slept == [2.0] * 5 and sandbox.counters().requests["account/credit"] == 6


def test_a_query_gives_up_when_429_waits_pass_the_patience(sandbox: Sandbox) -> None:
    sandbox.set_faults(Faults(http_429=1.0, retry_after_seconds=RETRY_AFTER_MAX))
    slept: list[float] = []
    with pytest.raises(RateLimited):
        client_for(sandbox, sleep=slept.append).credit()
    assert sum(slept) >= RATE_LIMIT_PATIENCE > sum(slept[:-1])
    assert sandbox.counters().requests["account/credit"] == len(slept) + 1


def test_a_gateway_502_or_504_on_a_create_is_uncertain_and_not_sent_again(
    sandbox: Sandbox,
) -> None:
    voice = voice_of(sandbox)
    sandbox.set_faults(Faults(gateway_after_create=1.0))
    for _ in range(2):  # the sandbox answers 502, then 504
        with pytest.raises(SubmissionUncertain, match=r"HTTP 50[24] from a gateway"):
            client_for(sandbox).create_audio_by_tts(voice=voice, text="你好。")
    assert sandbox.counters().creates == {"audio/create_by_tts": 2}  # both were made
    assert sandbox.counters().requests["audio/create_by_tts"] == 2  # neither sent twice


@pytest.mark.parametrize(
    ("header", "seconds"),
    [(None, 1.0), ("7", 7.0), ("0", 0.0), ("-3", 0.0), ("soon", 1.0), ("99999", 300.0)],
)
def test_retry_after_is_read_as_seconds_within_bounds(header: str | None, seconds: float) -> None:
    assert retry_after(header) == seconds


def test_retry_after_may_be_an_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= retry_after(when) <= 31


@pytest.mark.parametrize(
    "faults",
    [Faults(http_500=1.0), Faults(drop=1.0), Faults(malformed_json=1.0)],
    ids=["http-500", "dropped-connection", "malformed-json"],
)
def test_failed_read_is_retried_and_succeeds(sandbox: Sandbox, faults: Faults) -> None:
    sandbox.set_faults(faults)
    slept, sleep = healing(sandbox)
    assert client_for(sandbox, sleep=sleep).credit() == sandbox.credits()
    assert len(slept) == 1 and sandbox.counters().requests["account/credit"] == 2


def test_reads_give_up_after_the_policy(sandbox: Sandbox) -> None:
    sandbox.set_faults(Faults(http_500=1.0))
    with pytest.raises(TransportError) as caught:
        client_for(sandbox, sleep=lambda s: None).credit()
    assert caught.value.delivery is Delivery.SERVER_ERROR
    assert sandbox.counters().requests["account/credit"] == QUICK.attempts


def test_refused_connection_is_not_sent() -> None:
    client = HiflyClient(
        SECRET_TOKEN, f"http://127.0.0.1:{_free_port()}", retry=QUICK, sleep=lambda s: None
    )
    with pytest.raises(TransportError) as caught:
        client.create_avatar_by_video(video_url="https://cdn.example.com/a.mp4")
    assert caught.value.delivery is Delivery.NOT_SENT
    assert not isinstance(caught.value, SubmissionUncertain)


def test_read_timeout_on_create_is_uncertain(tmp_path: Path) -> None:
    slow = SandboxConfig(faults=Faults(slow=1.0, slow_seconds=1.0), token=SECRET_TOKEN)
    with Sandbox(tmp_path / "w", slow) as sandbox:
        client = HiflyClient(sandbox.token, sandbox.base_url, retry=QUICK, timeout=(2.0, 0.2))
        with pytest.raises(SubmissionUncertain):
            client.create_avatar_by_video(video_url="https://cdn.example.com/a.mp4")


def test_backoff_grows_and_is_jittered() -> None:
    policy, rng = RetryPolicy(attempts=6, base_delay=0.5, max_delay=4.0), random.Random(1)
    delays = [[policy.delay(n, rng) for _ in range(200)] for n in range(5)]
    assert [max(d) <= min(4.0, 0.5 * 2**n) for n, d in enumerate(delays)] == [True] * 5
    assert max(delays[3]) > max(delays[0]) and len({round(x, 6) for x in delays[2]}) > 100


def test_requests_carry_user_agent_and_bearer_token() -> None:
    answer = json.dumps({"code": 0, "message": "", "left": 7, "request_id": "r1"}).encode()
    with stub_server(lambda seen: Reply(body=answer)) as (url, seen):
        assert HiflyClient("tok-123", url).credit() == 7
    assert seen[0].headers["User-Agent"] == USER_AGENT
    assert seen[0].headers["Authorization"] == "Bearer tok-123"
    assert seen[0].path == Endpoint.ACCOUNT_CREDIT.value


def test_answers_nested_under_data_are_read() -> None:
    answers = {
        Endpoint.VIDEO_TASK.value: {
            "code": 0,
            "request_id": "r",
            "data": {"status": "3", "video_url": "http://cdn.example/v.mp4?x=1", "duration": 12.0},
        },
        Endpoint.VOICE_LIST.value: {"code": 0, "data": {"list": [{"voice": "v1", "type": 8}]}},
    }

    def respond(seen: Seen) -> Reply:
        return Reply(body=json.dumps(answers[seen.path.split("?")[0]]).encode())

    with stub_server(respond) as (url, _):
        client = HiflyClient("t", url)
        task = client.video_task("t1")
        voices = client.list_voices()
    assert (task.status, task.url, task.duration) == (3, "http://cdn.example/v.mp4?x=1", 12)
    assert [v.voice for v in voices] == ["v1"]


def test_logged_headers_hide_the_token() -> None:
    shown = redacted_headers({"Authorization": f"Bearer {SECRET_TOKEN}", "Accept": "*/*"})
    assert shown == {"Authorization": "Bearer ***", "Accept": "*/*"}


def test_verbose_logs_never_show_the_token(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="hifly_batch")
    client_for(sandbox).credit()
    assert "Bearer ***" in caplog.text and SECRET_TOKEN not in caplog.text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_api_call_answered_with_a_redirect_is_not_followed() -> None:
    def respond(seen: Seen) -> Reply:
        if seen.path == "/elsewhere":
            return Reply(body=b'{"code": 0, "task_id": "t-elsewhere"}')
        return Reply(status=302, headers={"Location": "/elsewhere"})

    with stub_server(respond) as (url, seen), pytest.raises(HttpStatusError):
        HiflyClient("t", url).create_video_by_tts(avatar="a", voice="v", text="你好")
    assert [(s.method, s.path) for s in seen] == [("POST", Endpoint.VIDEO_CREATE_BY_TTS.value)]
