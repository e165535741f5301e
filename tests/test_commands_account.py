"""``credit``, ``voices`` and ``sandbox serve`` through the real CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hifly_batch.api.client import HiflyClient
from hifly_batch.commands.credit import balance_line
from hifly_batch.commands.voices import type_name
from hifly_batch.sandbox import Sandbox
from tests.campaigns import cli


def test_credit_and_voices_against_a_running_sandbox(sandbox: Sandbox) -> None:
    sandbox.set_credits(1_234_567)
    credit = cli("credit", sandbox=sandbox)
    assert credit.code == 0 and credit.stdout == "left: 1,234,567 credits\n"
    public = cli("voices", "--public", "--json", sandbox=sandbox)
    voices = json.loads(public.stdout)
    assert public.code == 0 and len(voices) == 25
    assert set(voices[0]) == {"voice", "type", "type_name", "title", "rate", "volume", "pitch"}
    assert (voices[0]["type"], voices[0]["type_name"]) == (10, "public")
    table = cli("voices", "--public", sandbox=sandbox).stdout.splitlines()
    assert table[0].split() == ["voice", "type", "title", "rate", "volume", "pitch"]
    assert len(table) == 26 and table[1].split()[1:3] == ["public", "(10)"]


@pytest.mark.parametrize(
    ("type_number", "shown"),
    [(8, "basic v2 clone (8)"), (10, "public (10)"), (20, "high-fidelity (20)"), (7, "type 7")],
)
def test_voice_types_are_named_with_their_number(type_number: int, shown: str) -> None:
    assert type_name(type_number) == shown


@pytest.mark.parametrize(
    ("left", "line"),
    [(100_000, "left: 100,000 credits"), (1, "left: 1 credit"), (0, "left: 0 credits")],
)
def test_the_balance_reads_with_thousands_separators(left: int, line: str) -> None:
    assert balance_line(left) == line


def test_account_commands_with_an_in_process_sandbox(tmp_path: Path) -> None:
    result = cli("--sandbox", "credit", cwd=tmp_path)
    assert result.code == 0 and result.stdout == "left: 100,000 credits\n"
    assert (tmp_path / ".hifly" / "sandbox" / "world.db").exists()
    assert cli("voices", "--sandbox", cwd=tmp_path).stdout.startswith("voice")


def test_missing_token_is_exit_3_naming_the_variable() -> None:
    result = cli("credit")
    assert result.code == 3 and "HIFLY_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_refused_token_is_exit_3(sandbox: Sandbox) -> None:
    env = {**os.environ, "HIFLY_BASE_URL": sandbox.base_url, "HIFLY_TOKEN": "not-the-token"}
    proc = subprocess.run(
        [sys.executable, "-m", "hifly_batch", "voices"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 3 and "refused the token" in proc.stderr
    assert "not-the-token" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("command", ["credit", "voices"])
def test_unreachable_api_is_a_configuration_error_saying_where(command: str) -> None:
    env = {**os.environ, "HIFLY_BASE_URL": "http://127.0.0.1:9", "HIFLY_TOKEN": "t"}
    proc = subprocess.run(
        [sys.executable, "-m", "hifly_batch", command], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 3, proc.stderr
    assert (
        proc.stderr.startswith(
            "hifly-batch: error: cannot reach the HiFly API at http://127.0.0.1:9 "
            "(connection refused); check the network"
        )
        and proc.stderr.count("127.0.0.1:9") == 1
    )
    assert "Traceback" not in proc.stderr


def test_sandbox_serve_prints_exports_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hifly_batch",
            "sandbox",
            "serve",
            "--data",
            str(tmp_path / "w"),
            "--credits",
            "777",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(2)]
        assert lines[0].startswith("export HIFLY_BASE_URL=http://127.0.0.1:")
        assert lines[1].startswith("export HIFLY_TOKEN=")
        exports = dict(line.removeprefix("export ").split("=", 1) for line in lines)
        client = HiflyClient(exports["HIFLY_TOKEN"], exports["HIFLY_BASE_URL"])
        assert client.credit() == 777
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_sandbox_serve_refuses_bad_fault_settings(tmp_path: Path) -> None:
    result = cli("sandbox", "serve", "--data", str(tmp_path / "w"), "--faults", "http_500=2")
    assert result.code == 2 and "http_500" in result.stderr


def test_sandbox_serve_on_a_port_in_use_says_so(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("sandbox", "serve", "--data", str(tmp_path / "w"), "--port", str(port))
    assert result.code == 2, result.stderr
    assert f"cannot listen on 127.0.0.1:{port} (Address already in use)" in result.stderr
    assert "internal error" not in result.stderr


@pytest.mark.parametrize("port", ["65536", "-1", "http"])
def test_sandbox_serve_on_a_port_that_is_no_port_is_a_usage_error(port: str) -> None:
    result = cli("sandbox", "serve", "--port", port)
    assert result.code == 2 and "argument --port:" in result.stderr, result.stderr
    assert "internal error" not in result.stderr
