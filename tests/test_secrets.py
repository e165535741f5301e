"""The token never leaves: not in output at any verbosity, files, messages or sandbox logs.

``conftest.py`` already fails a test whose captured output, logs or exception
shows the suite's token, and the session when any file under the test folders
holds it. Output of CLI subprocesses is not captured by pytest, so this file
scans it explicitly, together with every file a run leaves (state with its WAL,
report, review page, crash logs sent to this test's TMPDIR).
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from hifly_batch.sandbox import Faults, Sandbox, SandboxConfig
from hifly_batch.sandbox.faults import RequestKind, decide_request
from tests.campaigns import Campaign, Result, cli
from tests.conftest import SECRET_TOKEN

# The seed fails the campaign's first upload PUT of its two (see the seed's own test).
FAULTS = Faults(
    seed=6,
    http_500=0.2,
    drop=0.1,
    malformed_json=0.05,
    expired_url=0.2,
    task_fail=0.1,
    drop_after_create=0.1,
    http_429=0.1,
    retry_after_seconds=0.0,
    put_fail=0.2,
    gateway_after_create=0.1,
)
VERBOSITIES = (("-q",), (), ("-v",), ("-vv",))


def files_under(root: Path) -> list[Path]:
    """Every file, except the sandbox's own world (it must keep the token to check it)."""
    return [p for p in root.rglob("*") if p.is_file() and not p.name.startswith("world.db")]


def assert_clean(results: list[Result], root: Path) -> int:
    for result in results:
        assert SECRET_TOKEN not in result.stdout and SECRET_TOKEN not in result.stderr
    scanned = files_under(root)
    leaked = [p for p in scanned if SECRET_TOKEN.encode() in p.read_bytes()]
    assert leaked == []
    return len(scanned)


@pytest.mark.slow
def test_the_token_appears_nowhere_under_faults_at_every_verbosity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hifly_batch")  # the sandbox runs in this process
    crash_logs = tmp_path / "tmpdir"
    crash_logs.mkdir()
    monkeypatch.setenv("TMPDIR", str(crash_logs))  # where the CLI would write a crash log
    results: list[Result] = []
    config = SandboxConfig(task_seconds=0.05, task_jitter=0.05, token=SECRET_TOKEN)
    with Sandbox(tmp_path / "world", config) as sandbox:
        campaign = Campaign(tmp_path / "c", rows=6).write()
        sandbox.set_faults(FAULTS)
        for n, flags in enumerate(VERBOSITIES):
            campaign.template = f"第{n}版：{{{{ row.name }}}}您好，欢迎光临我们的门店。"
            campaign.write()  # new text: every video is made again, with every fault
            results.append(cli(*flags, "run", "--no-progress", str(campaign.manifest),
                               sandbox=sandbox))  # fmt: skip
        sandbox.set_faults(Faults())
        results.append(cli("-vv", "run", "--no-progress", "--resubmit-uncertain",
                           str(campaign.manifest), sandbox=sandbox))  # fmt: skip
        for command in (("status",), ("status", "--json"), ("plan",), ("report",)):
            results.append(cli("-vv", *command, str(campaign.manifest), sandbox=sandbox))
        results += [cli("-vv", "credit", sandbox=sandbox), cli("-vv", "voices", sandbox=sandbox)]
    assert {r.code for r in results[:4]} <= {0, 1} and results[4].code == 0, results[4].stderr
    verbose = results[3].stderr
    assert "Bearer ***" in verbose and "HTTP 200" in verbose
    fired = sandbox.counters().faults
    for fault in ("http_500", "http_429", "gateway_after_create", "drop", "put_fail"):
        assert fired.get(fault, 0) > 0, (fault, fired)  # every kind was tried on the token
    scanned = assert_clean(results, tmp_path)
    assert scanned >= 5  # state, its WAL, report, review page, media: the scan saw them
    assert any(r.name == "hifly_batch.sandbox" for r in caplog.records)
    assert SECRET_TOKEN not in caplog.text


def test_the_seed_fails_the_first_upload_put() -> None:
    puts = [decide_request(FAULTS, "upload", n, RequestKind.UPLOAD) for n in (1, 2, 3)]
    assert puts[0].put_fail and not any(p.drop for p in puts)


def test_a_refused_token_is_not_echoed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "hf-wrong-" + secrets.token_hex(12)
    config = SandboxConfig(task_seconds=0.05, task_jitter=0.0, token=SECRET_TOKEN)
    with Sandbox(tmp_path / "world", config) as sandbox:
        campaign = Campaign(tmp_path / "c", rows=1).write()

        class WrongToken:  # what ``cli`` reads from a sandbox: its URL and a token
            base_url, token = sandbox.base_url, wrong

        result = cli("-vv", "run", "--no-progress", str(campaign.manifest),
                     sandbox=WrongToken())  # type: ignore[arg-type]  # fmt: skip
    assert result.code == 3 and "HIFLY_TOKEN" in result.stderr
    assert wrong not in result.stdout + result.stderr and "Bearer ***" in result.stderr
    assert [p for p in files_under(tmp_path) if wrong.encode() in p.read_bytes()] == []


def test_no_command_line_option_takes_a_token() -> None:
    for args in (("--help",), ("run", "--help"), ("sandbox", "--help")):
        assert "token" not in cli(*args).stdout.lower().replace("hifly_token", "")


@pytest.mark.parametrize(
    "token",
    ["SECRET-xyz\n-123", "SECRET-xyz\r\nX-Other: 1", "SECRET\t-xyz-123", "SECRET-xyz-１２３"],
    ids=["newline", "header injection", "tab", "non-ASCII"],
)
def test_a_token_no_header_can_carry_is_refused_without_being_shown(
    tmp_path: Path, token: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIFLY_")}
    env.update(HIFLY_TOKEN=token, HIFLY_BASE_URL="http://127.0.0.1:9", TMPDIR=str(tmp_path))
    for command in (["credit"], ["voices"]):
        proc = subprocess.run([sys.executable, "-m", "hifly_batch", *command], env=env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert proc.returncode == 3, proc.stderr
        assert "HIFLY_TOKEN holds a character a token cannot have" in proc.stderr
        shown = proc.stdout + proc.stderr
        assert all(piece not in shown for piece in ("SECRET", "xyz", "123", "１２３"))
    assert list(tmp_path.iterdir()) == []  # no crash log


def test_surrounding_whitespace_is_not_part_of_the_token() -> None:
    from hifly_batch.api.connect import token_from

    assert token_from({"HIFLY_TOKEN": "  hf-abc123\n"}) == "hf-abc123"


def test_a_crash_log_and_message_never_show_the_token() -> None:
    from hifly_batch.files import without_secret

    token = "SECRET-xyz\n-123456"
    traceback = (
        "ValueError: Invalid header value b'Bearer SECRET-xyz\\n-123456'\n-123456 SECRET-xyz"
    )
    cleaned = without_secret(traceback, token)
    assert "SECRET" not in cleaned and "123456" not in cleaned, cleaned
