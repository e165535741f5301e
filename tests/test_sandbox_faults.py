"""Fault injection: seeded and repeatable decisions, and each fault as a client sees it."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from hifly_batch.apispec import SANDBOX_HEADER
from hifly_batch.sandbox import Faults, Sandbox
from hifly_batch.sandbox.faults import RequestKind, decide_request, decide_task
from tests.campaigns import cli
from tests.readme import readme_text, section, subsections
from tests.sandbox_fixtures import Client, faulty, served

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


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_which_requests_the_v1_1_faults_can_hit(kind: RequestKind) -> None:
    decided = decide_request(Faults(http_429=1, put_fail=1, gateway_after_create=1), "x", 1, kind)
    api = kind in (RequestKind.CREATE, RequestKind.API_READ, RequestKind.API_WRITE)
    assert decided.http_429 is api
    assert decided.put_fail is (kind is RequestKind.UPLOAD)
    assert decided.gateway_after_create is False  # a 429 answer is not processed
    no_429 = decide_request(Faults(gateway_after_create=1, malformed_json=1), "x", 1, kind)
    assert no_429.gateway_after_create is (kind is RequestKind.CREATE)


def test_where_two_faults_exclude_each_other_the_older_wins() -> None:
    create = RequestKind.CREATE
    assert decide_request(Faults(http_500=1, http_429=1), "x", 1, create).names() == ["http_500"]
    both = Faults(drop_after_create=1, gateway_after_create=1)
    assert decide_request(both, "x", 1, create).names() == ["drop_after_create"]
    read = Faults(http_429=1, malformed_json=1, expired_url=1)
    assert decide_request(read, "x", 1, RequestKind.API_READ).names() == ["http_429"]
    upload = Faults(drop=1, put_fail=1)
    assert decide_request(upload, "x", 1, RequestKind.UPLOAD).names() == ["drop"]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_the_v1_1_rates_leave_the_older_decisions_alone(kind: RequestKind) -> None:
    old = Faults(seed=3, http_500=0.3, drop=0.3, drop_after_create=0.3, slow=0.3)
    new = dataclasses.replace(old, http_429=0.5, put_fail=0.5, gateway_after_create=0.5)
    for n in range(200):
        a, b = decide_request(old, "x", n, kind), decide_request(new, "x", n, kind)
        assert (a.drop, a.http_500, a.slow) == (b.drop, b.http_500, b.slow)
        # A 429 is not processed, so nothing can follow it, as after a 500.
        assert b.drop_after_create == (a.drop_after_create and not b.http_429)


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
        client.get("account/credit")
        assert sandbox.counters().faults == {"slow": 1}  # the second answer was not held
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


# -- the v1.1 faults over HTTP ------------------------------------------------

TTS = {"voice": "voice_pub_01", "text": "你好"}


def test_http_429_says_when_to_come_back_and_does_nothing(tmp_path: Path) -> None:
    sandbox = _serve(tmp_path, http_429=1.0, retry_after_seconds=3)
    try:
        client = Client(sandbox)
        answers = [
            client.session.post(client.url("audio/create_by_tts"), json=TTS),
            client.session.post(
                client.url("tool/create_upload_url"), json={"file_extension": "mp4"}
            ),
            client.session.get(client.url("account/credit")),
        ]
        for answer in answers:
            assert answer.status_code == 429
            assert answer.headers["Retry-After"] == "3"
            assert answer.headers[SANDBOX_HEADER] == "1"
            body = answer.json()
            assert (body["code"], body["message"]) == (429, "Too Many Requests")
            assert body["request_id"]
        counters = sandbox.counters()
        assert counters.creates == {}
        assert counters.faults == {"http_429": 3}
        assert sandbox.credits() == 100_000
        assert sandbox.task_times() == []
    finally:
        sandbox.stop()


@pytest.mark.parametrize(("seconds", "header"), [(0, "0"), (0.2, "1"), (1, "1"), (2.5, "3")])
def test_retry_after_is_whole_seconds_rounded_up(
    sandbox: Sandbox, seconds: float, header: str
) -> None:
    sandbox.set_faults(Faults(http_429=1.0, retry_after_seconds=seconds))
    client = Client(sandbox)
    assert client.session.get(client.url("account/credit")).headers["Retry-After"] == header


def test_put_fail_stores_nothing_and_a_put_again_can_succeed(tmp_path: Path) -> None:
    sandbox = _serve(tmp_path, put_fail=1.0)
    try:
        client = Client(sandbox)
        made = client.post("tool/create_upload_url", {"file_extension": "mp4"})

        def put() -> requests.Response:
            headers = {"Content-Type": made["content_type"]}
            return requests.put(made["upload_url"], data=b"movie", headers=headers, timeout=5)

        failed = put()
        assert failed.status_code == 500
        assert failed.headers["Content-Type"].startswith("text/plain")
        with pytest.raises(KeyError):
            sandbox.uploaded_bytes(made["file_id"])
        # As for a file whose PUT never arrived: the task ends in status 4.
        task = client.created("avatar/create_by_video", {"file_id": made["file_id"]})
        answer = client.wait("avatar/task", task)
        assert (answer["status"], answer["code"], answer["avatar"]) == (4, 2014, "")
        assert "未上传" in answer["message"]
        assert sandbox.counters().faults == {"put_fail": 1}

        sandbox.set_faults(Faults())
        assert put().status_code == 200
        assert sandbox.uploaded_bytes(made["file_id"]) == b"movie"
        task = client.created("avatar/create_by_video", {"file_id": made["file_id"]})
        assert client.wait("avatar/task", task)["status"] == 3
        assert sandbox.counters().faults == {"put_fail": 1}
    finally:
        sandbox.stop()


def test_gateway_after_create_makes_and_charges_the_task_but_answers_502_or_504(
    tmp_path: Path,
) -> None:
    sandbox = _serve(tmp_path, gateway_after_create=1.0)
    try:
        client = Client(sandbox)
        answers = [client.session.post(client.url("audio/create_by_tts"), json=TTS) for _ in "ab"]
        assert [a.status_code for a in answers] == [502, 504]
        for answer in answers:
            assert answer.headers["Content-Type"].startswith("text/html")
            assert answer.headers[SANDBOX_HEADER] == "1"  # it still says what it is
            assert f"{answer.status_code} {answer.reason}" in answer.text
            with pytest.raises(ValueError):
                answer.json()
        made = sandbox.task_times()
        assert [t.endpoint for t in made] == ["audio/create_by_tts"] * 2
        assert sandbox.credits() == 100_000 - 2 * 10
        for task in made:
            assert client.wait("video/task", task.task_id)["status"] == 3
        counters = sandbox.counters()
        assert counters.creates == {"audio/create_by_tts": 2}
        assert counters.faults == {"gateway_after_create": 2}
        # A refused create is not lost: its answer is the refusal.
        assert (
            client.post("audio/create_by_tts", {"voice": "voice_nope", "text": "x"})["code"] == 14
        )
    finally:
        sandbox.stop()


def test_the_same_seed_replays_the_v1_1_faults_over_http(tmp_path: Path) -> None:
    rates = {"http_429": 0.5, "put_fail": 0.5, "gateway_after_create": 0.5}

    def run(folder: Path) -> tuple[list[int], dict[str, int]]:
        with Sandbox(folder, faulty(seed=2, retry_after_seconds=0, **rates)) as sandbox:
            client = Client(sandbox)
            statuses = []
            for _ in range(8):
                made = client.session.post(
                    client.url("tool/create_upload_url"), json={"file_extension": "mp4"}
                )
                statuses.append(made.status_code)
                if made.status_code == 200:
                    url, content_type = made.json()["upload_url"], made.json()["content_type"]
                    headers = {"Content-Type": content_type}
                    put = requests.put(url, data=b"m", headers=headers, timeout=5)
                    statuses.append(put.status_code)
                body = {"video_url": "https://example.com/a.mp4"}
                created = client.session.post(client.url("avatar/create_by_video"), json=body)
                statuses.append(created.status_code)
            return statuses, sandbox.counters().faults

    first, second = run(tmp_path / "a"), run(tmp_path / "b")
    assert first == second
    assert {200, 429, 500, 502, 504} <= set(first[0])
    assert set(first[1]) == set(rates)


def test_sandbox_serve_takes_the_v1_1_faults(tmp_path: Path) -> None:
    spec = "http_429=0.5,retry_after_seconds=3,put_fail=0.1,gateway_after_create=0.02"
    data = tmp_path / "w"
    serve = [sys.executable, "-m", "hifly_batch", "sandbox", "serve"]
    proc = subprocess.Popen(
        [*serve, "--data", str(data), "--faults", spec],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base_url, session = served(proc.stdout)
        url = f"{base_url}/api/v2/hifly/account/credit"
        answers = [session.get(url, timeout=5) for _ in range(10)]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    statuses = [a.status_code for a in answers]
    assert set(statuses) == {200, 429}
    assert {a.headers["Retry-After"] for a in answers if a.status_code == 429} == {"3"}
    assert Sandbox.read_counters(data).faults == {"http_429": statuses.count(429)}


def test_help_and_readme_name_every_fault_setting() -> None:
    help_text = " ".join(cli("sandbox", "serve", "--help").stdout.split())
    readme = subsections(section(readme_text(), "Command line reference"))
    serve = next(body for heading, body in readme.items() if "sandbox serve" in heading)
    for setting in (f.name for f in dataclasses.fields(Faults)):
        assert setting in help_text, setting
        assert f"`{setting}`" in serve, setting
