"""Fault injection: seeded and repeatable decisions, and each fault as a client sees it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from hifly_batch.sandbox import Faults, Sandbox
from hifly_batch.sandbox.faults import RequestKind, decide_request, decide_task
from tests.sandbox_fixtures import Client, faulty

ALL_KINDS = list(RequestKind)


def test_decisions_repeat_for_the_same_seed_and_differ_for_another() -> None:
    faults = Faults(seed=7, http_500=0.3, drop=0.3, slow=0.3)
    again = [decide_request(faults, "video/task", n, RequestKind.API_READ) for n in range(200)]
    first = [decide_request(faults, "video/task", n, RequestKind.API_READ) for n in range(200)]
    other = Faults(seed=8, http_500=0.3, drop=0.3, slow=0.3)
    third = [decide_request(other, "video/task", n, RequestKind.API_READ) for n in range(200)]
    assert first == again
    assert first != third


def test_rates_are_roughly_what_was_asked() -> None:
    faults = Faults(seed=1, drop=0.1)
    drops = sum(decide_request(faults, "x", n, RequestKind.API_READ).drop for n in range(5000))
    assert 400 < drops < 600


def test_one_rate_does_not_shift_another() -> None:
    alone = Faults(seed=3, slow=0.5)
    mixed = Faults(seed=3, slow=0.5, malformed_json=0.5)
    for n in range(100):
        a = decide_request(alone, "x", n, RequestKind.API_READ)
        b = decide_request(mixed, "x", n, RequestKind.API_READ)
        assert a.slow == b.slow


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_which_requests_each_fault_can_hit(kind: RequestKind) -> None:
    everything = Faults(
        http_500=1, drop=1, drop_after_create=1, slow=1, malformed_json=1, expired_url=1
    )
    decided = decide_request(everything, "x", 1, kind)
    droppable = kind not in (RequestKind.CREATE, RequestKind.OTHER)
    assert decided.drop is droppable
    if droppable:
        assert decided.names() == ["drop"]
        return
    api = kind is RequestKind.CREATE
    assert decided.http_500 is api
    assert decided.drop_after_create is False  # a 500 answer is not processed
    no_500 = decide_request(Faults(drop_after_create=1, malformed_json=1), "x", 1, kind)
    assert no_500.drop_after_create is api
    assert no_500.malformed_json is False  # only GET reads


def test_malformed_json_and_expired_urls_only_hit_reads() -> None:
    faults = Faults(malformed_json=1, expired_url=1)
    assert decide_request(faults, "x", 1, RequestKind.API_READ).names() == [
        "malformed_json",
        "expired_url",
    ]
    assert decide_request(faults, "x", 1, RequestKind.API_WRITE).names() == []


def test_task_fate_is_seeded_per_task() -> None:
    faults = Faults(seed=5, task_fail=0.5)
    fates = [decide_task(faults, str(n), 0.5) for n in range(100)]
    assert fates == [decide_task(faults, str(n), 0.5) for n in range(100)]
    assert all(0 <= f.jitter < 0.5 for f in fates)
    assert 30 < sum(f.fails for f in fates) < 70


# -- over HTTP ----------------------------------------------------------------


def _serve(tmp_path: Path, **rates: float) -> Sandbox:
    return Sandbox(tmp_path / "w", faulty(**rates)).start()


def test_http_500_answers_and_creates_nothing(tmp_path: Path) -> None:
    sandbox = _serve(tmp_path, http_500=1.0)
    try:
        client = Client(sandbox)
        body = {"voice": "voice_pub_01", "text": "你好"}
        answer = client.session.post(client.url("audio/create_by_tts"), json=body)
        assert answer.status_code == 500
        assert client.session.get(client.url("account/credit")).status_code == 500
        counters = sandbox.counters()
        assert counters.creates == {}
        assert counters.faults == {"http_500": 2}
        assert sandbox.credits() == 100_000
        assert sandbox.task_times() == []
    finally:
        sandbox.stop()


def test_drop_closes_without_an_answer_but_never_drops_creates(tmp_path: Path) -> None:
    sandbox = _serve(tmp_path, drop=1.0)
    try:
        client = Client(sandbox)
        with pytest.raises(requests.ConnectionError):
            client.session.get(client.url("account/credit"), timeout=5)
        with pytest.raises(requests.ConnectionError):
            client.session.post(
                client.url("tool/create_upload_url"), json={"file_extension": "mp4"}
            )
        body = {"voice": "voice_pub_01", "text": "你好"}
        assert client.post("audio/create_by_tts", body)["code"] == 0
        assert sandbox.counters().faults == {"drop": 2}
    finally:
        sandbox.stop()


def test_drop_hits_uploads_and_downloads(tmp_path: Path) -> None:
    sandbox = _serve(tmp_path)
    try:
        client = Client(sandbox)
        made = client.post("tool/create_upload_url", {"file_extension": "wav"})
        task = client.created("audio/create_by_tts", {"voice": "voice_pub_01", "text": "你好"})
        url = client.wait("video/task", task)["video_Url"]
        sandbox.set_faults(Faults(drop=1.0))
        with pytest.raises(requests.ConnectionError):
            requests.put(
                made["upload_url"],
                data=b"x" * 1000,
                headers={"Content-Type": "audio/wav"},
                timeout=5,
            )
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=5)
        assert sandbox.counters().faults == {"drop": 2}
    finally:
        sandbox.stop()


def test_drop_after_create_records_and_charges_the_task(tmp_path: Path) -> None:
    sandbox = _serve(tmp_path, drop_after_create=1.0)
    try:
        client = Client(sandbox)
        body = {"voice": "voice_pub_01", "text": "你好"}
        with pytest.raises(requests.ConnectionError):
            client.session.post(client.url("audio/create_by_tts"), json=body, timeout=5)
        assert sandbox.credits() == 100_000 - 10
        assert [t.endpoint for t in sandbox.task_times()] == ["audio/create_by_tts"]
        counters = sandbox.counters()
        assert counters.creates == {"audio/create_by_tts": 1}
        assert counters.faults == {"drop_after_create": 1}
        # A refused create is not dropped: its answer is the refusal.
        assert (
            client.post("audio/create_by_tts", {"voice": "voice_nope", "text": "x"})["code"] == 14
        )
    finally:
        sandbox.stop()


def test_slow_delays_the_answer(tmp_path: Path) -> None:
    sandbox = _serve(tmp_path, slow=1.0, slow_seconds=0.3)
    try:
        client = Client(sandbox)
        started = time.perf_counter()
        assert client.get("account/credit")["code"] == 0
        assert time.perf_counter() - started >= 0.3
        sandbox.set_faults(Faults())
        started = time.perf_counter()
        client.get("account/credit")
        assert time.perf_counter() - started < 0.2
        assert sandbox.counters().faults == {"slow": 1}
    finally:
        sandbox.stop()


def test_malformed_json_is_a_200_that_does_not_parse(tmp_path: Path) -> None:
    sandbox = _serve(tmp_path, malformed_json=1.0)
    try:
        client = Client(sandbox)
        answer = client.session.get(client.url("account/credit"))
        assert answer.status_code == 200
        with pytest.raises(ValueError):
            answer.json()
        assert client.post("tool/create_upload_url", {"file_extension": "mp4"})["file_id"]
        assert sandbox.counters().faults == {"malformed_json": 1}
    finally:
        sandbox.stop()


def test_task_fail_ends_tasks_in_status_4_with_a_code(tmp_path: Path) -> None:
    sandbox = _serve(tmp_path, task_fail=1.0)
    try:
        client = Client(sandbox)
        avatar_task = client.created("avatar/create_by_video", {"video_url": "https://x/a.mp4"})
        answer = client.wait("avatar/task", avatar_task)
        assert (answer["status"], answer["code"], answer["avatar"]) == (4, 2015, "")
        assert answer["message"]
        work = client.created("audio/create_by_tts", {"voice": "voice_pub_01", "text": "你好"})
        answer = client.wait("video/task", work)
        assert (answer["status"], answer["video_Url"], answer["duration"]) == (4, "", 0)
        assert answer["message"]
        # The failed clone's avatar does not exist.
        assert (
            client.post(
                "video/create_by_tts", {"voice": "voice_pub_01", "text": "x", "avatar": "av_x"}
            )["code"]
            == 14
        )
        assert sandbox.counters().faults == {"task_fail": 2}
    finally:
        sandbox.stop()


def test_expired_url_gives_403_and_a_requery_can_give_a_fresh_one(tmp_path: Path) -> None:
    sandbox = _serve(tmp_path, expired_url=1.0)
    try:
        client = Client(sandbox)
        task = client.created("audio/create_by_tts", {"voice": "voice_pub_01", "text": "你好"})
        url = client.wait("video/task", task)["video_Url"]
        assert requests.get(url).status_code == 403
        sandbox.set_faults(Faults())
        fresh = client.get("video/task", task_id=task)["video_Url"]
        assert requests.get(fresh).status_code == 200
        assert sandbox.counters().faults == {"expired_url": 1}
    finally:
        sandbox.stop()


def test_the_same_seed_replays_the_same_faults_over_http(tmp_path: Path) -> None:
    def run(folder: Path) -> list[int]:
        sandbox = Sandbox(folder, faulty(seed=11, http_500=0.3, malformed_json=0.3))
        with sandbox:
            client = Client(sandbox)
            statuses = []
            for _ in range(30):
                answer = client.session.get(client.url("account/credit"))
                statuses.append(answer.status_code * 10 + answer.content.endswith(b"}"))
            return statuses

    first, second = run(tmp_path / "a"), run(tmp_path / "b")
    assert first == second
    assert len(set(first)) == 3  # 500s, broken 200s and good 200s all happened
