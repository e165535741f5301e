"""Callbacks: the 消息回调 messages, received by a small HTTP server in the test."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from hifly_batch.sandbox import Faults, Sandbox, SandboxConfig, parse_faults
from hifly_batch.sandbox.callbacks import CallbackSender, retry_interval
from hifly_batch.sandbox.faults import decide_callback_drop
from tests.sandbox_fixtures import Client, running, served


class Receiver:
    """Collects POSTed JSON; answers each with the next status from ``statuses`` (then 200).

    ``arrived`` keeps the time (time.time()) each delivered message came, by task id;
    ``tries`` every POST's task id, answered or not.
    """

    def __init__(self, statuses: list[int] | None = None, port: int = 0) -> None:
        self.messages: list[dict[str, Any]] = []
        self.arrived: dict[str, float] = {}
        self.tries: list[str] = []
        self.others: list[str] = []  # requests other than a POST
        self.attempts = 0
        self.statuses = list(statuses or [])
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                message = json.loads(body)
                with receiver.lock:
                    receiver.attempts += 1
                    receiver.tries.append(message["task_id"])
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    if status == 200:
                        receiver.messages.append(message)
                        receiver.arrived[message["task_id"]] = time.time()
                self.send_response(status)
                if 300 <= status < 400:  # a redirect to itself, never to be followed
                    self.send_header("Location", self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                receiver.others.append(f"GET {self.path}")
                self.send_response(405)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.messages

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_each_kind_of_task_calls_back_when_it_finishes(tmp_path: Path, receiver: Receiver) -> None:
    # Nobody queries the tasks: each message leaves when its task finishes.
    with running(tmp_path, callback_url=receiver.url, task_seconds=0.4) as sandbox:
        client = Client(sandbox)
        avatar_task = client.created("avatar/create_by_video", {"video_url": "https://x/a.mp4"})
        voice_task = client.created(
            "voice/create", {"title": "t", "voice_type": 8, "audio_url": "https://x/v.wav"}
        )
        work = client.created(
            "audio/create_by_tts", {"voice": "voice_pub_01", "text": "你好", "title": "问候"}
        )
        messages = {m["task_id"]: m for m in receiver.wait_for(3)}
        assert set(messages) == {avatar_task, voice_task, work}
        for task_id in messages:
            finish_at = sandbox.task(task_id).finish_at  # type: ignore[union-attr]
            assert 0 <= receiver.arrived[task_id] - finish_at < 0.3, task_id
        avatar = messages[avatar_task]
        assert avatar == {
            "task_id": avatar_task,
            "message": "",
            "code": 0,
            "type": 2,
            "status": 3,
            "avatar": avatar["avatar"],
        }
        assert avatar["avatar"].startswith("av_")
        voice = messages[voice_task]
        assert (voice["type"], voice["status"], voice["code"]) == (3, 3, 0)
        assert voice["voice"].startswith("voice_")
        assert requests.get(voice["demo_url"]).status_code == 200
        done = messages[work]
        assert set(done) == {
            "task_id",
            "status",
            "video_Url",
            "type",
            "duration",
            "message",
            "code",
            "title",
        }
        assert (done["type"], done["status"], done["title"], done["duration"]) == (1, 3, "问候", 1)
        assert requests.get(done["video_Url"]).status_code == 200


def test_failed_tasks_call_back_with_status_4(tmp_path: Path, receiver: Receiver) -> None:
    with running(tmp_path, callback_url=receiver.url, faults=Faults(task_fail=1.0)) as sandbox:
        client = Client(sandbox)
        task = client.created("avatar/create_by_image", {"image_url": "https://x/a.png"})
        [message] = receiver.wait_for(1)
    assert (message["task_id"], message["status"], message["code"]) == (task, 4, 2015)
    assert message["message"] and message["avatar"] == ""


def test_a_non_200_answer_is_retried_until_a_200(tmp_path: Path) -> None:
    receiver = Receiver(statuses=[500, 302, 404, 503])
    try:
        with running(tmp_path, callback_url=receiver.url, callback_retry_seconds=2.0) as sandbox:
            client = Client(sandbox)
            task = client.created("audio/create_by_tts", {"voice": "voice_pub_01", "text": "你"})
            [message] = receiver.wait_for(1)
            time.sleep(0.3)  # time for a try too many
            assert message["task_id"] == task
            # A redirect is a failed try, not followed: every try is a POST to the hook.
            assert receiver.tries == [task] * 5
            assert receiver.others == []
    finally:
        receiver.close()


def test_a_receiver_not_up_yet_gets_the_callback_within_the_window(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port where nothing listens yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    with running(tmp_path, callback_url=url, callback_retry_seconds=2.0) as sandbox:
        task = Client(sandbox).created(
            "audio/create_by_tts", {"voice": "voice_pub_01", "text": "你"}
        )
        time.sleep(0.5)  # the first tries meet a refused connection
        receiver = Receiver(port=port)
        try:
            [message] = receiver.wait_for(1)
            assert message["task_id"] == task
            assert receiver.tries == [task]
        finally:
            receiver.close()


def test_sandbox_serve_sends_callbacks_and_drops_them_at_the_rate(
    tmp_path: Path, receiver: Receiver
) -> None:
    faults = Faults(callback_drop=0.3, seed=1)
    data = tmp_path / "w"
    serve = [sys.executable, "-m", "hifly_batch", "sandbox", "serve", "--data", str(data)]
    options = ["--task-seconds", "0.05", "--task-jitter", "0"]
    options += ["--callback-url", receiver.url, "--faults", "callback_drop=0.3,seed=1"]
    proc = subprocess.Popen([*serve, *options], stdout=subprocess.PIPE, text=True)
    try:
        base_url, session = served(proc.stdout)
        url = f"{base_url}/api/v2/hifly/avatar/create_by_image"
        body = {"image_url": "https://example.com/a.png"}
        tasks = [session.post(url, json=body, timeout=5).json()["task_id"] for _ in range(50)]
        lost = {task for task in tasks if decide_callback_drop(faults, task)}
        receiver.wait_for(50 - len(lost))
        time.sleep(0.3)  # time for a stray try
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert 10 <= len(lost) <= 20  # about 30 % of 50
    assert sorted(receiver.tries) == sorted(set(tasks) - lost)  # each once, none lost
    assert Sandbox.read_counters(data).faults == {"callback_drop": len(lost)}
    # A lost message stays lost: the next sandbox on the world, without faults, sends nothing.
    with Sandbox(data, SandboxConfig(callback_url=receiver.url)):
        time.sleep(0.3)
    assert len(receiver.tries) == 50 - len(lost)


@pytest.mark.parametrize(
    ("spec", "rate"), [("callback_drop=0.3,seed=1", 0.3), ("seed=1", 0.0), ("callback_drop=1", 1.0)]
)
def test_callback_drop_is_a_fault_rate(spec: str, rate: float) -> None:
    assert parse_faults(spec).callback_drop == rate
    lost = [decide_callback_drop(parse_faults(spec), str(10**15 + n)) for n in range(200)]
    assert abs(sum(lost) / 200 - rate) <= 0.1


def test_retries_stop_after_the_window() -> None:
    sent: list[float] = []
    delivered: list[str] = []
    start = time.monotonic()

    def post(url: str, body: bytes) -> int:
        sent.append(time.monotonic() - start)
        return 500

    sender = CallbackSender(
        "http://127.0.0.1:9/x",
        1.0,
        time.monotonic,
        lambda task_id: {"task_id": task_id},
        delivered.append,
        post=post,
    )
    sender.start()
    try:
        sender.schedule("t1", start)
        time.sleep(1.3)
        tries = len(sent)
        time.sleep(0.3)
    finally:
        sender.stop()
    # Window 1 s, a try every 0.1 s: about ten tries, none after the window.
    assert 5 <= tries <= 11
    assert len(sent) == tries
    assert max(sent) <= 1.05
    assert delivered == []


def test_callbacks_wait_for_the_finish_time() -> None:
    clock = [0.0]
    sent: list[float] = []
    sender = CallbackSender(
        "http://127.0.0.1:9/x",
        10.0,
        lambda: clock[0],
        lambda task_id: {},
        lambda task_id: None,
        post=lambda url, body: sent.append(clock[0]) or 200,
    )
    sender.start()
    try:
        sender.schedule("late", 5.0)
        sender.schedule("early", 1.0)
        time.sleep(0.3)
        assert sent == []
        clock[0] = 1.0
        time.sleep(0.3)
        assert sent == [1.0]
        clock[0] = 6.0
        time.sleep(0.3)
        assert sent == [1.0, 6.0]
    finally:
        sender.stop()


def test_one_thread_serves_every_callback(tmp_path: Path, receiver: Receiver) -> None:
    with running(tmp_path, callback_url=receiver.url, task_seconds=0.3) as sandbox:
        client = Client(sandbox)
        before = threading.active_count()
        for _ in range(8):
            client.created("audio/create_by_tts", {"voice": "voice_pub_01", "text": "你好"})
        assert threading.active_count() <= before + 1
        assert len(receiver.wait_for(8)) == 8


def test_undelivered_callbacks_are_sent_by_the_next_sandbox(tmp_path: Path) -> None:
    receiver = Receiver()
    receiver.close()  # nothing listens: every try fails
    with running(tmp_path, callback_url=receiver.url, callback_retry_seconds=30) as sandbox:
        Client(sandbox).created("audio/create_by_tts", {"voice": "voice_pub_01", "text": "你"})
        time.sleep(0.2)
    listening = Receiver()
    try:
        with running(tmp_path, callback_url=listening.url, callback_retry_seconds=30):
            assert len(listening.wait_for(1)) == 1
    finally:
        listening.close()


@pytest.mark.parametrize(("window", "interval"), [(300, 3.0), (2, 0.2), (0.1, 0.05)])
def test_retry_interval(window: float, interval: float) -> None:
    assert retry_interval(window) == pytest.approx(interval)
