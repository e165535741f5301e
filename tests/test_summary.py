"""What did not finish: the summary at the end of a run (and in ``status``), and network
failures in plain words. The rendering and the wording are pure; the end of a run is seen
through the CLI against the sandbox."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import replace
from http.client import RemoteDisconnected
from pathlib import Path

import pytest
import requests
from urllib3 import HTTPSConnectionPool
from urllib3.connection import HTTPSConnection
from urllib3.exceptions import (
    ConnectTimeoutError,
    IncompleteRead,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from hifly_batch.api.errors import Delivery
from hifly_batch.api.transport import describe
from hifly_batch.core.lifecycle import Status
from hifly_batch.reports import summary
from hifly_batch.reports.summary import Commands
from hifly_batch.runner.state import Record
from hifly_batch.sandbox import Faults, Sandbox
from hifly_batch.sandbox.faults import RequestKind
from hifly_batch.sandbox.routes import classify
from hifly_batch.sandbox.server import Handler
from tests.campaigns import Campaign, cli, report_rows

# Transport failures -------------------------------------------------------------

HOST = "hfw-api.hifly.cc"
SIGNED = "/api/v2/hifly/video/task?task_id=1&signature=SECRET"
_conn = HTTPSConnection(HOST, 443)
_pool = HTTPSConnectionPool(HOST, 443)


def _retries(reason: Exception) -> MaxRetryError:
    return MaxRetryError(_pool, SIGNED, reason)


def _dns() -> requests.RequestException:
    gai = socket.gaierror(-3, "Temporary failure in name resolution")
    return requests.ConnectionError(_retries(NameResolutionError(HOST, _conn, gai)))


FAILURES: list[tuple[str, Callable[[], requests.RequestException], str]] = [
    ("dns", _dns, f"could not resolve {HOST} (DNS)"),
    (
        "refused",
        lambda: requests.ConnectionError(
            _retries(
                NewConnectionError(
                    _conn, "Failed to establish a new connection: [Errno 111] Connection refused"
                )
            )
        ),
        f"connection refused by {HOST}:443",
    ),
    (
        "closed",
        lambda: requests.ConnectionError(
            ProtocolError(
                "Connection aborted.",
                RemoteDisconnected("Remote end closed connection without response"),
            )
        ),
        "connection closed by the server without an answer",
    ),
    (
        "reset",
        lambda: requests.ConnectionError(
            ProtocolError(
                "Connection aborted.", ConnectionResetError(104, "Connection reset by peer")
            )
        ),
        "connection reset by the server",
    ),
    (
        "read timeout",
        lambda: requests.ReadTimeout(
            ReadTimeoutError(_pool, SIGNED, "Read timed out. (read timeout=30)")
        ),
        "timed out after 30 s waiting for an answer",
    ),
    (
        "connect timeout",
        lambda: requests.ConnectTimeout(
            _retries(
                ConnectTimeoutError(_conn, f"Connection to {HOST} timed out. (connect timeout=5.0)")
            )
        ),
        f"timed out after 5 s connecting to {HOST}:443",
    ),
    (
        "broke off",
        lambda: requests.exceptions.ChunkedEncodingError(
            ProtocolError(
                "Connection broken: IncompleteRead(3 bytes read, 97 more expected)",
                IncompleteRead(3, 97),
            )
        ),
        "the answer broke off after 3 bytes (97 more expected)",
    ),
    (
        "untrusted certificate",
        lambda: requests.exceptions.SSLError(
            _retries(
                SSLError(
                    "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
                    "unable to get local issuer certificate (_ssl.c:1006)"
                )
            )
        ),
        f"the TLS certificate of {HOST}:443 is not trusted",
    ),
    (
        "unknown",
        lambda: requests.RequestException(f"odd failure at https://{HOST}{SIGNED}"),
        f"RequestException: odd failure at https://{HOST}/api/v2/hifly/video/task?…",
    ),
    ("empty", requests.RequestException, "RequestException"),
]


@pytest.mark.parametrize(("name", "make", "said"), FAILURES, ids=[f[0] for f in FAILURES])
def test_a_transport_failure_is_said_in_plain_words_without_a_query(
    name: str, make: Callable[[], requests.RequestException], said: str
) -> None:
    exc = make()
    assert describe(exc) == said
    assert "SECRET" not in describe(exc) and "Error(" not in describe(exc)
    assert summary.readable(said) == said  # plain words stay as they are


def test_the_summary_reads_every_way_the_client_says_how_far_a_request_got() -> None:
    assert tuple(d.value for d in Delivery) == summary.DELIVERIES


LEGACY = [
    (
        "upload: sent, no answer: ('Connection aborted.', "
        "RemoteDisconnected('Remote end closed connection without response'))",
        "upload: sent, no answer: connection closed by the server without an answer",
    ),
    (
        "video/create_by_tts: not sent: [Errno 111] Connection refused (http://127.0.0.1:8080)",
        "video/create_by_tts: not sent: connection refused",
    ),
    (
        f"download: not sent: Failed to resolve '{HOST}' ([Errno -3] Temporary failure in "
        "name resolution)",
        f"download: not sent: could not resolve {HOST} (DNS)",
    ),
    (
        f"video/task: not sent: HTTPSConnectionPool(host='{HOST}', port=443): Max retries "
        f'exceeded with url: {SIGNED} (Caused by NameResolutionError("<urllib3.connection.'
        f"HTTPSConnection object at 0x7f>: Failed to resolve '{HOST}' ([Errno -2] Name or "
        'service not known)"))',
        f"video/task: not sent: could not resolve {HOST} (DNS)",
    ),
    (
        "may have been submitted, answer lost (Read timed out. (read timeout=30.0))",
        "may have been submitted, answer lost: timed out after 30 s waiting for an answer",
    ),
    (
        "timed out: not finished after 2 min (task_timeout); run again to look again",
        "timed out: not finished after 2 min (task_timeout); run again to look again",
    ),
    ("no public voice is titled 'x'", "no public voice is titled 'x'"),
]


@pytest.mark.parametrize(("stored", "shown"), LEGACY)
def test_messages_stored_before_are_shown_in_plain_words(stored: str, shown: str) -> None:
    assert summary.readable(stored) == shown


# The summary, rendered ------------------------------------------------------------

COMMANDS = Commands("c.yaml", ("--state", "s.db"))
DEPS = {
    "assets.clip": (),
    "avatars.a": ("assets.clip",),
    "voices.v": (),
    **{f"videos.w[{n:03d}]": ("avatars.a", "voices.v") for n in range(3)},
}


def record(item: str, status: Status, code: int | None = None, message: str = "") -> Record:
    section = item.split(".")[0]
    return Record(item, section, "k", status=status, error_code=code, error_message=message)


def test_two_hundred_items_failing_for_one_cause_read_as_one_cause_naming_each() -> None:
    dns = f"video/create_by_tts: not sent: could not resolve {HOST} (DNS) (https://{HOST})"
    ids = [f"videos.w[{n:03d}]" for n in range(200)]
    records = [record(i, Status.FAILED, message=dns) for i in ids]
    lines = summary.unfinished(records, {}, COMMANDS)
    text = "\n".join(lines)
    assert lines[0] == "200 items failed:"
    assert (
        lines[1]
        == "  network: no usable connection to the service (网络故障，无法连接服务), 200 items"
    )
    assert text.count("could not resolve") == 1
    assert re.findall(r"videos\.w\[\d+\]", text) == ids  # every one, in order
    assert all(len(line) <= summary.WIDTH for line in lines[2:])
    assert lines[-1] == "  hifly-batch run --retry-failed c.yaml --state s.db"


def test_codes_carry_both_meanings_and_the_services_own_words() -> None:
    records = [
        record("avatars.a", Status.FAILED, 2015, "数字人克隆失败: 未检测到人脸"),
        record(
            "videos.w[000]", Status.FAILED, 11,
            "video/create_by_tts: error 11 bad parameter (参数不正确): title too long "
            "[request_id r-1]",
        ),
        record(
            "videos.w[001]", Status.FAILED, 11,
            "video/create_by_tts: error 11 bad parameter (参数不正确): title too long "
            "[request_id r-2]",
        ),
        record("videos.w[002]", Status.FAILED, 9999, "something new"),
        record("voices.v", Status.FAILED, 2013, "获取音频资源失败"),
    ]  # fmt: skip
    text = "\n".join(summary.unfinished(records, DEPS, COMMANDS))
    assert "  code 2015: avatar clone failed (数字人克隆失败), 1 item\n" in text
    assert "    the service says: 未检测到人脸\n      avatars.a\n" in text
    assert (
        "  code 11: bad parameter (参数不正确), 2 items\n"
        "    the service says: title too long\n"
        "      videos.w[000], videos.w[001]\n"
    ) in text  # one message, request ids aside
    assert "  code 9999, 1 item\n    the service says: something new\n" in text
    assert (
        "  code 2013: could not fetch the audio (获取音频资源失败), 1 item\n    voices.v\n" in text
    )
    # One line each in status, the request id kept for support.
    assert summary.error_text(records[1]) == "11 bad parameter: title too long [request_id r-1]"
    assert summary.error_text(records[3]) == "9999: something new"
    assert summary.error_text(records[4]) == "2013 could not fetch the audio"


def test_uncertain_and_blocked_items_say_what_to_do_and_what_they_wait_for() -> None:
    records = [
        record("assets.clip", Status.FAILED, message="upload: HTTP 500 from the storage"),
        record("avatars.a", Status.BLOCKED),
        record(
            "voices.v", Status.UNCERTAIN,
            message="may have been submitted, answer lost: connection closed by the server "
            "without an answer (http://127.0.0.1:1)",
        ),
        record("videos.w[000]", Status.BLOCKED),
        record("videos.w[001]", Status.BLOCKED),
        record("videos.w[002]", Status.DONE),
    ]  # fmt: skip
    text = "\n".join(summary.unfinished(records, DEPS, COMMANDS))
    assert "  other errors, 1 item\n    upload: HTTP 500 from the storage\n" in text
    assert "1 item uncertain" in text and "web console" in text
    assert (
        "  connection closed by the server without an answer (http://127.0.0.1:1)\n    voices.v\n"
    ) in text
    assert "  hifly-batch run --resubmit-uncertain c.yaml --state s.db" in text
    assert "3 items blocked" in text
    assert "  waiting for assets.clip (failed):\n    avatars.a\n" in text
    assert (
        "  waiting for assets.clip (failed), voices.v (uncertain):\n"
        "    videos.w[000], videos.w[001]"
    ) in text  # through the blocked avatar, to what failed
    assert "videos.w[002]" not in text


def test_pending_items_are_counted_with_what_the_service_last_said() -> None:
    credits = "video/create_by_tts: error 1002 insufficient credits (积分不足)"
    records = [record(f"videos.w[{n:03d}]", Status.PENDING, 1002, credits) for n in range(3)]
    *said, command = summary.unfinished(records, DEPS, Commands("c.yaml"))
    assert " ".join(said) == (
        "3 items not made yet (pending), the service last answered code 1002: insufficient "
        "credits (积分不足); a run makes them:"
    )
    assert command == "  hifly-batch run c.yaml"
    done = [record("voices.v", Status.DONE), record("videos.w[000]", Status.SKIPPED)]
    assert summary.unfinished(done, DEPS, COMMANDS) == []


def test_a_task_that_ended_failed_without_a_code_is_explained_in_both_languages() -> None:
    failed = replace(
        record("videos.w[000]", Status.FAILED, None, "作品生成失败: 合成服务异常"), task_id="9"
    )
    assert str(summary.cause_of(failed)) == (
        "task failed: the service could not make it (its task ended failed) (任务失败)"
    )
    assert summary.error_text(failed) == "task failed: 作品生成失败: 合成服务异常"
    fetch = replace(failed, work_exists=True, error_message="output could not be saved")
    assert summary.cause_of(fetch).label == "other errors"  # the task made its work


def test_items_held_back_by_max_credits_are_named_apart_with_the_command_that_continues() -> None:
    blocked_before = record("videos.w[001]", Status.BLOCKED)  # (its record is a run older)
    done_before = record("videos.w[002]", Status.DONE)  # made again with --recreate
    records = [record("voices.v", Status.DONE), blocked_before, done_before]
    held = ("videos.w[001]", "videos.w[002]")
    lines = summary.unfinished(records, DEPS, COMMANDS, None, held, ("--recreate", "videos.*"))
    assert lines == [
        "2 items held back by --max-credits (not sent, not paid for):",
        "  videos.w[001], videos.w[002]",
        "To continue (with a higher --max-credits, or without it, and the same",
        "--recreate):",
        "  hifly-batch run --recreate 'videos.*' c.yaml --state s.db",
    ]


@pytest.mark.parametrize(
    ("options", "env_state", "command"),
    [
        ({}, None, "hifly-batch run --retry-failed 'my campaign.yaml'"),
        ({"sandbox": True}, None, "hifly-batch run --retry-failed 'my campaign.yaml' --sandbox"),
        ({"state": "s.db"}, "s.db", "hifly-batch run --retry-failed 'my campaign.yaml'"),
        (
            {"state": "postgresql://ci:pw@db/hifly", "base_url": "http://127.0.0.1:8080"},
            None,
            "hifly-batch run --retry-failed 'my campaign.yaml' --state "
            "postgresql://ci@db/hifly --base-url http://127.0.0.1:8080",
        ),
    ],
)
def test_the_next_command_carries_the_options_the_run_was_given(
    options: dict[str, object], env_state: str | None, command: str
) -> None:
    """Ready to paste, but never a database's password; $HIFLY_STATE is set again anyway."""
    commands = Commands.of(Path("my campaign.yaml"), env_state=env_state, **options)  # type: ignore[arg-type]
    assert commands.run("--retry-failed") == command


@pytest.mark.parametrize(
    ("scope", "said"),
    [
        (None, "Nothing to do: all 3 items are done and unchanged."),
        ({"a"}, "Nothing to do: the 1 item selected is done and unchanged."),
        (set(), "Nothing to do: none of the items selected needs work."),
    ],
)
def test_nothing_to_do_is_one_line(scope: set[str] | None, said: str) -> None:
    records = [record(i, Status.DONE) for i in ("assets.a", "assets.b", "assets.c")]
    assert summary.nothing_to_do(records, scope) == said


# The end of a run, through the CLI -------------------------------------------------


def test_a_failed_run_names_every_failure_and_the_next_command_and_a_no_op_says_so(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    campaign = Campaign(tmp_path / "c", rows=3).write()
    state = str(tmp_path / "s.db")

    def run(*extra: str):  # type: ignore[no-untyped-def]
        return cli("run", "--no-progress", "--state", state, str(campaign.manifest), *extra,
                   sandbox=sandbox)  # fmt: skip

    sandbox.set_faults(Faults(task_fail=1.0))
    failed = run()
    assert failed.code == 1, failed.stderr
    out = failed.stdout
    assert "code 2015: avatar clone failed (数字人克隆失败), 1 item\n" in out
    assert "code 2013: could not fetch the audio (获取音频资源失败), 1 item\n" in out
    assert re.search(r"the service says: .+\n +avatars\.founder\n", out), out
    retry = f"hifly-batch run --retry-failed {campaign.manifest} --state {state}"
    assert f"\n  {retry}\n" in out
    videos = ", ".join(f"videos.welcome[c000{n}]" for n in (1, 2, 3))
    assert (
        f"  waiting for avatars.founder (failed), voices.founder_voice (failed):\n    {videos}\n"
    ) in out
    assert f"report: {campaign.output_dir / 'report.csv'}" in out

    sandbox.set_faults(Faults(drop_after_create=0.5, seed=3))
    lost = run("--retry-failed")
    uncertain = [r["item"] for r in report_rows(campaign) if r["status"] == "uncertain"]
    assert lost.code == 1 and uncertain, lost.stdout
    assert all(item in lost.stdout for item in uncertain)
    assert "web console" in lost.stdout and "may pay twice" in lost.stdout
    resubmit = f"hifly-batch run --resubmit-uncertain {campaign.manifest} --state {state}"
    assert f"\n  {resubmit}\n" in lost.stdout

    sandbox.set_faults(Faults())
    assert run("--resubmit-uncertain").code == 0
    idle = run()
    assert (idle.code, idle.stdout, idle.stderr) == (
        0, "Nothing to do: all 7 items are done and unchanged.\n", ""
    )  # fmt: skip
    shown = cli("status", "--state", state, str(campaign.manifest)).stdout.splitlines()
    assert shown[-1] == "Nothing to do: all 7 items are done and unchanged."
    campaign.template = "第二版：{{ row.name }}您好。"
    campaign.write()
    shown = cli("status", "--state", state, str(campaign.manifest)).stdout.splitlines()
    assert shown[-1] == (
        "All 7 items are done, but a run still has work to do (a change since, or outputs "
        f"to fetch): `hifly-batch plan {campaign.manifest} --state {state}` shows what."
    )


class DroppedUploads:
    """The storage closes every upload's connection without an answer: the uploads fail
    below the API, as on a broken network, while the API itself answers."""

    def __init__(self, sandbox: Sandbox) -> None:
        server = sandbox._server
        assert server is not None
        self._inner: Callable[[Handler], None] = server.dispatch
        server.dispatch = self._dispatch  # type: ignore[method-assign]

    def _dispatch(self, http: Handler) -> None:
        if classify(http.path.split("?", 1)[0]).kind is RequestKind.UPLOAD:
            http.drop()
            return
        self._inner(http)


def test_network_failures_are_named_by_kind_in_plain_words(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    campaign = Campaign(tmp_path / "c", rows=2, max_attempts=1).write()
    DroppedUploads(sandbox)
    result = cli("run", "--no-progress", str(campaign.manifest), sandbox=sandbox)
    assert result.code == 1, result.stderr
    assert (
        "2 items failed:\n"
        "  network: no usable connection to the service (网络故障，无法连接服务), 2 items\n"
        "    upload: sent, no answer: connection closed by the server without an answer\n"
        "      assets.founder_clip, assets.voice_sample\n"
    ) in result.stdout
    assert f"  hifly-batch run --retry-failed {campaign.manifest}\n" in result.stdout
    assert "  waiting for assets.founder_clip (failed):\n    avatars.founder\n" in result.stdout
    errors = [r["error_message"] for r in report_rows(campaign) if r["status"] == "failed"]
    assert (
        errors == ["upload: sent, no answer: connection closed by the server without an answer"] * 2
    )
    assert not re.search(r"Remote|aborted|Error\(", result.stdout + "".join(errors))
