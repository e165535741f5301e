"""``run --callbacks``: the service's task callbacks as hints, through the CLI against a
sandbox that sends them, and the receiver against forged ones."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from hifly_batch.errors import ConfigError, UsageError
from hifly_batch.runner.receiver import (
    MAX_BODY,
    CallbackReceiver,
    parse_address,
    sandbox_callback_url,
    shown,
    task_id_of,
)
from hifly_batch.runner.state_file import FileState
from hifly_batch.sandbox import Sandbox
from tests.campaigns import Campaign, Result, cli, creates, popen, read_state
from tests.conftest import FAST

POLLS = ("poll_interval: 0.05s", "poll_max: 0.5s")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def slow_polling(campaign: Campaign, poll_max: str = "5s") -> Campaign:
    """Polling alone would query a task of a second at 0.25 s and again and again; with
    callbacks, polls are only at poll_max (5 s), for a callback that was lost."""
    text = campaign.manifest.read_text(encoding="utf-8")
    text = text.replace(POLLS[0], "poll_interval: 0.25s").replace(POLLS[1], f"poll_max: {poll_max}")
    campaign.manifest.write_text(text, encoding="utf-8")
    return campaign


def run_listening(campaign: Campaign, port: int, sandbox: Sandbox, *options: str) -> Result:
    """``run --callbacks 127.0.0.1:PORT`` of ``campaign`` against ``sandbox``."""
    listen = ("--callbacks", f"127.0.0.1:{port}")
    return cli("run", "--no-progress", str(campaign.manifest), *listen, *options, sandbox=sandbox)


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def calling_back(tmp_path: Path, port: int) -> Iterator[Sandbox]:
    config = dataclasses.replace(
        FAST, task_seconds=1.0, task_jitter=0.0, callback_url=f"http://127.0.0.1:{port}/hook"
    )
    with Sandbox(tmp_path / "world", config) as running:
        yield running


def queries(sandbox: Sandbox) -> int:
    requests_seen = sandbox.counters().requests
    return sum(n for name, n in requests_seen.items() if name.endswith("/task"))


def test_callbacks_make_each_task_one_query_and_the_port_is_free_right_after(
    tmp_path: Path, calling_back: Sandbox, port: int
) -> None:
    campaign = slow_polling(Campaign(tmp_path / "c", rows=4).write())
    first = run_listening(campaign, port, calling_back)
    assert first.code == 0, first.stderr
    made = sum(creates(calling_back).values())  # avatar, voice and 4 videos
    assert made == 6
    # One query per video, and one more at most (a callback that came while a query was
    # on its way asks again); polling alone would take 2 or more each. The clones, the
    # first of their kinds, are polled as without callbacks until one of theirs comes
    # (an account calls them back only with V2 event callbacks on). And no task waited
    # for the poll at 5 s: each was seen done soon after its second of work.
    video_queries = calling_back.counters().requests["video/task"]
    assert video_queries <= 4 + 1, calling_back.counters().requests
    records = read_state(campaign).values()
    waits = [r.finished_at - r.started_at for r in records if r.task_id and r.finished_at]
    assert len(waits) == made and max(waits) < 4.0, waits

    # The receiver closed with the run: the same port is bound again at once.
    again = run_listening(campaign, port, calling_back, "--recreate", "videos.*")
    assert again.code == 0, again.stderr
    assert creates(calling_back)["video/create_by_tts"] == 8


def test_a_port_that_cannot_be_bound_is_a_configuration_error_before_anything_is_sent(
    tmp_path: Path, calling_back: Sandbox, port: int
) -> None:
    campaign = Campaign(tmp_path / "c", rows=1).write()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = run_listening(campaign, port, calling_back)
    assert result.code == 3 and "cannot listen there" in result.stderr, result.stderr
    assert creates(calling_back) == {}
    bad = cli("run", str(campaign.manifest), "--callbacks", "nowhere", sandbox=calling_back)
    assert bad.code == 2 and "is not HOST:PORT" in bad.stderr


def test_a_sandbox_run_hears_the_callbacks_of_its_own_sandbox(tmp_path: Path, port: int) -> None:
    """``run --sandbox --callbacks``: the run's own sandbox calls back to the run, so each
    task is seen done about when it ends, not at the backstop's poll_max (5 s)."""
    campaign = slow_polling(Campaign(tmp_path / "c", rows=4).write())
    listen = ("--callbacks", f"0.0.0.0:{port}")
    result = cli("run", "--sandbox", "--no-progress", "-v", str(campaign.manifest), *listen)
    assert result.code == 0, result.stderr
    assert "no callback has come" not in result.stderr
    state = campaign.root / ".hifly" / "campaign.sandbox.state.db"
    with FileState(state, readonly=True) as store:
        records = store.records().values()
    waits = [r.finished_at - r.started_at for r in records if r.task_id and r.finished_at]
    assert len(waits) == 6 and max(waits) < 4.0, waits
    [log] = (campaign.root / ".hifly" / "logs").glob("*.log")
    text = log.read_text(encoding="utf-8")
    assert "callbacks: 6 received\n" in text and "callbacks named 6 task(s) of this run" in text
    assert text.count("GET download on 127.0.0.1 -> HTTP 200 in ") == 4

    elsewhere = cli("run", "--sandbox", str(campaign.manifest), "--callbacks", "192.0.2.1:8787")
    assert elsewhere.code == 2, elsewhere.stderr
    assert "the sandbox calls back to this machine's loopback only" in elsewhere.stderr


FORGED_URL = "http://127.0.0.1:9/forged.mp4"


def test_a_resumed_run_asks_at_once_after_tasks_whose_callbacks_came_while_none_listened(
    tmp_path: Path, port: int
) -> None:
    """A run stopped after its creates; its tasks end while no run listens, and their
    callbacks are gone. The next run with --callbacks queries them at poll_interval,
    not at the backstop's poll_max (5 s)."""
    config = dataclasses.replace(FAST, task_seconds=1.0, task_jitter=0.0)
    with Sandbox(tmp_path / "world", config) as sandbox:  # (it sends no callbacks)
        campaign = slow_polling(Campaign(tmp_path / "c", rows=2).write())
        first = popen("run", "--no-progress", str(campaign.manifest), sandbox=sandbox)
        for n in (1, 2):
            _running_task(campaign, f"videos.welcome[c000{n}]")
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 143
        time.sleep(1.5)  # the videos end meanwhile
        resumed_at = time.time()
        result = run_listening(campaign, port, sandbox)
        assert result.code == 0, result.stderr
        records = read_state(campaign)
    ended = [records[f"videos.welcome[c000{n}]"].finished_at or 0 for n in (1, 2)]
    assert max(ended) - resumed_at < 4.0, (ended, resumed_at)


def _said_done(task_id: str) -> bytes:
    """A callback as the service sends one for a finished work (type 1)."""
    message = {"task_id": task_id, "status": 3, "type": 1, "video_Url": FORGED_URL, "code": 0}
    return json.dumps(message).encode()


# Each forgery: its body, given the run's running task and another campaign's finished
# one; and how many queries it may cost (one: it names the run's task, and only a query
# can tell).
FORGERIES = {
    "a running task said done": (lambda running, other: _said_done(running), 1),
    "another campaign's finished task": (lambda running, other: _said_done(other), 0),
    "a 10 MB body": (lambda running, other: _said_done(running) + b" " * (10 << 20), 0),
    "garbage JSON": (lambda running, other: b'{"task_id": "' + running.encode() + b'", st', 0),
}


VIDEO = "videos.welcome[c0001]"


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_forged_callbacks_change_nothing(tmp_path: Path, port: int, forgery: str) -> None:
    """Each is answered 200 (or, too big, cut short), costs no more than one query, and
    changes nothing: only a query decides."""
    body_of, may_cost = FORGERIES[forgery]
    config = dataclasses.replace(FAST, task_seconds=1.5, task_jitter=0.0)
    with Sandbox(tmp_path / "world", config) as sandbox:  # (it sends no callbacks)
        other = "0"
        if "another campaign" in forgery:  # a real task of the same account, finished
            earlier = Campaign(tmp_path / "other", rows=1).write()
            assert cli("run", "--no-progress", str(earlier.manifest), sandbox=sandbox).code == 0
            other = read_state(earlier)[VIDEO].task_id or ""
        made_before = creates(sandbox).get("video/create_by_tts", 0)
        campaign = slow_polling(Campaign(tmp_path / "c", rows=1).write(), poll_max="2s")
        listen = ("--callbacks", f"127.0.0.1:{port}")
        proc = popen("run", "--no-progress", str(campaign.manifest), *listen, sandbox=sandbox)
        running = _running_task(campaign, VIDEO)
        before = queries(sandbox)
        body = body_of(running, other)
        try:
            answer = requests.post(f"http://127.0.0.1:{port}/", data=body, timeout=10)
            assert answer.status_code == 200
        except requests.ConnectionError:  # the huge body: answered, then cut short
            assert len(body) > MAX_BODY
        time.sleep(0.3)
        assert queries(sandbox) - before <= may_cost
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    # The video was made once, by its own task, and its file is the one that task made.
    assert creates(sandbox)["video/create_by_tts"] == made_before + 1
    record = read_state(campaign)[VIDEO]
    made = sandbox.task(running)
    assert record.task_id == running and made is not None
    assert record.output and made.output_seconds
    assert record.duration_s == pytest.approx(made.output_seconds, abs=0.5)
    assert (campaign.output_dir / record.output).stat().st_size == record.output_size > 0


def _running_task(campaign: Campaign, item: str) -> str:
    """The item's task id, once the run has recorded it."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # (the state may not exist yet)
            task_id = read_state(campaign)[item].task_id
            if task_id:
                return task_id
        time.sleep(0.05)
    raise AssertionError(f"{item} was never submitted")


@pytest.mark.parametrize(
    ("body", "task_id"),
    [
        (b'{"task_id": "123", "status": 3}', "123"),
        (b'{"task_id": 123}', None),
        (b'{"task_id": ""}', None),
        (json.dumps({"task_id": "7" * 128}).encode(), "7" * 128),
        (json.dumps({"task_id": "7" * 129}).encode(), None),  # no task of the service's
        (b"[1, 2]", None),
        (b"\xff\xfe", None),
        (b"", None),
    ],
)
def test_only_a_json_object_naming_a_task_is_a_hint(body: bytes, task_id: str | None) -> None:
    assert task_id_of(body) == task_id


def test_the_receiver_answers_200_fast_and_passes_on_what_it_can_read() -> None:
    seen: list[str] = []
    done = threading.Event()

    def on_task(task_id: str) -> None:
        seen.append(task_id)
        done.set()

    with CallbackReceiver("127.0.0.1", 0, on_task) as receiver:
        url = f"http://127.0.0.1:{receiver.port}/"
        assert requests.post(url, data=b"{oops", timeout=5).status_code == 200
        assert requests.post(url, json={"task_id": "42"}, timeout=5).status_code == 200
        assert done.wait(5)
        assert requests.get(url, timeout=5).status_code == 200
    assert seen == ["42"]
    with pytest.raises(requests.ConnectionError):
        requests.post(url, json={"task_id": "43"}, timeout=5)  # closed with the run


def post_raw(port: int, request: bytes, *, reset: bool = False) -> bytes:
    """Send ``request`` as it is on a new connection; the answer's bytes (none after a
    ``reset``: the connection is torn down at once, as by a sender that crashed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sender:
        sender.sendall(request)
        if reset:
            sender.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return b""
        answer = b""
        while chunk := sender.recv(4096):
            answer += chunk
        return answer


FORGED_LINE = "\n2026-12-02T00:00:00Z ERROR hifly_batch.runner: FORGED"


def test_what_a_sender_writes_is_never_logged_nor_shown_and_every_sender_gets_200(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """Whatever comes (a forged id that would be a log line of its own, a length that
    is no number, a sender that hangs up mid-body): no traceback on stderr, nothing of
    the sender's in the log, and a 200 for each sender still there to read it."""
    seen: list[str] = []
    forged = {"task_id": "x" * 60 + FORGED_LINE}  # short enough to be passed on
    too_long = {"task_id": "x" * 60_000 + FORGED_LINE}
    with (
        caplog.at_level("DEBUG", logger="hifly_batch"),
        CallbackReceiver("127.0.0.1", 0, seen.append) as receiver,
    ):
        url = f"http://127.0.0.1:{receiver.port}/"
        assert requests.post(url, json=forged, timeout=5).status_code == 200
        assert requests.post(url, json=too_long, timeout=5).status_code == 200
        for length in ("\u00b2", "-1", "1e3", "0x10"):
            head = f"POST / HTTP/1.1\r\nContent-Length: {length}\r\n\r\n{{}}"
            assert post_raw(receiver.port, head.encode()).startswith(b"HTTP/1.0 200")
        post_raw(receiver.port, b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n{", reset=True)
        time.sleep(0.2)  # (the handler of the reset connection has failed by now)
    assert seen == [forged["task_id"]]  # passed on as it came: the runner decides
    assert "FORGED" not in caplog.text and "xxxx" not in caplog.text
    assert "callbacks: 6 received (5 not a message naming a task)" in caplog.text
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception" not in err, err


def chunked(body: bytes, size: int) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\nX-T: 1\r\n\r\n"


def test_chunked_and_long_bodies_are_read_to_their_end_and_answered_200() -> None:
    """A message sent chunked (as a proxy or tunnel may re-send it) is read; one over
    MAX_BODY, sent either way, is read to its end and dropped, so that its sender gets
    its 200 instead of a reset connection, and the service does not send it again."""
    seen: list[str] = []
    message = json.dumps({"task_id": "77", "status": 3}).encode()
    huge = message + b" " * (10 << 20)
    with CallbackReceiver("127.0.0.1", 0, seen.append) as receiver:
        head = b"POST /hook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        assert post_raw(receiver.port, head + chunked(message, 5)).startswith(b"HTTP/1.0 200")
        assert post_raw(receiver.port, head + chunked(huge, 1 << 16)).startswith(b"HTTP/1.0 200")
        url = f"http://127.0.0.1:{receiver.port}/"
        assert requests.post(url, data=huge, timeout=10).status_code == 200
        bad = head + b"zz\r\n" + message
        assert post_raw(receiver.port, bad).startswith(b"HTTP/1.0 200")
    assert seen == ["77"]


def test_a_burst_of_callbacks_is_answered_not_refused() -> None:
    """Three hundred senders at once (the service's retries after an outage, say): each
    is accepted and answered 200, none is reset for want of room to wait."""
    seen: list[str] = []
    with CallbackReceiver("127.0.0.1", 0, seen.append) as receiver:
        request = b"POST / HTTP/1.1\r\nContent-Length: 16\r\n\r\n" + b'{"task_id": "1"}'
        senders = [socket.socket() for _ in range(300)]
        try:
            for sender in senders:
                sender.settimeout(20)
                sender.connect(("127.0.0.1", receiver.port))
            for sender in senders:
                sender.sendall(request)
            answers = [sender.recv(64) for sender in senders]
        finally:
            for sender in senders:
                sender.close()
    assert all(a.startswith(b"HTTP/1.0 200") for a in answers)
    assert len(seen) == 300


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:8787", ("127.0.0.1", 8787)),
        ("[::1]:80", ("::1", 80)),
        ("0.0.0.0:1", ("0.0.0.0", 1)),
        ("localhost:8080", ("localhost", 8080)),
        ("hooks.example.com:443", ("hooks.example.com", 443)),
    ],
)
def test_addresses(text: str, address: tuple[str, int]) -> None:
    assert parse_address(text) == address


@pytest.mark.parametrize("text", ["8787", ":8787", "host:", "host:0", "host:70000", "host:x"])
def test_bad_addresses(text: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address(text)


@pytest.mark.parametrize(
    "text",
    ["http://127.0.0.1:80", "256.1.1.1:80", " 127.0.0.1:80", "[127.0.0.1]:80", "a b:1"],
)
def test_a_host_that_is_no_address_or_name_is_said_so(text: str) -> None:
    with pytest.raises(ValueError, match="is not an IP address or host name"):
        parse_address(text)


def test_callbacks_that_come_before_the_run_is_ready_are_kept_for_it() -> None:
    """The receiver is bound before the run asks to spend; a resumed run's tasks may end
    (and call back, once) meanwhile: their ids are passed on when the run is ready."""
    seen: list[str] = []
    with CallbackReceiver("127.0.0.1", 0) as receiver:
        url = f"http://127.0.0.1:{receiver.port}/"
        for task_id in ("1", "2"):
            assert requests.post(url, json={"task_id": task_id}, timeout=5).status_code == 200
        assert requests.post(url, data=b"{oops", timeout=5).status_code == 200
        receiver.pass_to(seen.append)
        assert requests.post(url, json={"task_id": "3"}, timeout=5).status_code == 200
        deadline = time.monotonic() + 5
        while len(seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert seen == ["1", "2", "3"]


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8787/"),
        ("127.0.0.2", "http://127.0.0.2:8787/"),
        ("0.0.0.0", "http://127.0.0.1:8787/"),
        ("localhost", "http://127.0.0.1:8787/"),
        ("::1", "http://[::1]:8787/"),
        ("::", "http://[::1]:8787/"),
    ],
)
def test_a_sandbox_calls_back_to_the_loopback_address_the_run_listens_on(
    host: str, url: str
) -> None:
    assert sandbox_callback_url((host, 8787)) == url


@pytest.mark.parametrize("host", ["192.0.2.1", "hooks.example.com", "::ffff:192.0.2.1"])
def test_a_sandbox_run_refuses_an_address_its_sandbox_cannot_call_back_to(host: str) -> None:
    with pytest.raises(UsageError, match=rf"--callbacks {re.escape(shown(host))}:8787 with"):
        sandbox_callback_url((host, 8787))


def test_an_ipv6_address_without_brackets_is_said_how_to_write() -> None:
    with pytest.raises(
        ValueError, match=re.escape("write an IPv6 address in brackets, e.g. [::1]:80")
    ):
        parse_address("::1:80")


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 on this machine")
def test_an_ipv6_address_is_listened_on_and_named_in_brackets() -> None:
    try:
        receiver = CallbackReceiver("::1", 0).__enter__()
    except ConfigError as exc:  # (a machine with IPv6 turned off)
        pytest.skip(str(exc))
    try:
        with socket.create_connection(("::1", receiver.port), timeout=5):
            pass
        taken = CallbackReceiver("::1", receiver.port)
        with pytest.raises(ConfigError, match=rf"--callbacks \[::1\]:{receiver.port}: "):
            taken.__enter__()
    finally:
        receiver.__exit__(None, None, None)


def test_a_bound_port_is_refused_by_name() -> None:
    with CallbackReceiver("127.0.0.1", 0, lambda task: None) as first:
        second = CallbackReceiver("127.0.0.1", first.port, lambda task: None)
        with pytest.raises(ConfigError, match=f"--callbacks 127.0.0.1:{first.port}"):
            second.__enter__()
