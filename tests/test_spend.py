"""Spending (SPEC §4): the question before paying, ``--max-credits``, and the measured
spend that replaces the table, through the CLI against a sandbox taken for the service."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import pty
import select
import socket
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hifly_batch.core.estimate import Measured
from hifly_batch.core.graph import build_graph
from hifly_batch.core.lifecycle import Status
from hifly_batch.manifest.loader import load_campaign
from hifly_batch.runner.spend import CreditLimit, add_measured, measure, read_measured
from hifly_batch.runner.state import Record
from hifly_batch.sandbox import Sandbox
from tests.campaigns import Campaign, child_env, cli, creates
from tests.conftest import FAST, SECRET_TOKEN

# The real service, as far as the client can tell: no X-HiFly-Sandbox header.
SERVICE = dataclasses.replace(FAST, identify=False)
VIDEO_CREATE = "video/create_by_tts"
QUESTION = b"[y/N] "


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Sandbox]:
    with Sandbox(tmp_path / "world", SERVICE) as running:
        yield running


# On a terminal --------------------------------------------------------------------


def run_on_terminal(
    args: list[str], service: Sandbox, answer: bytes | None, stderr: Path | None = None
) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as its terminal (stdin, stdout, and stderr unless
    it goes to the file ``stderr``); type ``answer`` once the question shows (None: expect
    no question). Returns the exit code and the screen's text."""
    env = child_env(service)
    main, child = pty.openpty()

    def own_terminal() -> None:  # (in the child, a session leader: see start_new_session)
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    with contextlib.ExitStack() as files:
        log = files.enter_context(stderr.open("w")) if stderr else child
        proc = subprocess.Popen(
            [sys.executable, "-m", "hifly_batch", *args],
            stdin=child,
            stdout=child,
            stderr=log,
            env=env,
            close_fds=True,
            start_new_session=True,
            preexec_fn=own_terminal,
        )
    os.close(child)
    screen = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(main, 4096)
                except OSError:  # the child closed its end
                    break
                if not chunk:
                    break
                screen += chunk
                if answer is not None and screen.endswith(QUESTION):
                    asked = service.counters().creates
                    time.sleep(0.3)  # it waits: nothing is sent while the question stands
                    assert service.counters().creates == asked
                    os.write(main, answer)
                    answer = None
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=60)
    finally:
        os.close(main)
        if proc.poll() is None:
            proc.kill()
    text = screen.decode("utf-8", "replace")
    assert SECRET_TOKEN not in text
    return code, text


def test_a_real_run_on_a_terminal_shows_the_cost_and_asks_first(
    tmp_path: Path, service: Sandbox
) -> None:
    campaign = Campaign(tmp_path / "c", rows=3).write()
    run = ["run", "--no-progress", str(campaign.manifest)]

    code, screen = run_on_terminal(run, service, b"n\n")
    assert code == 1, screen
    assert "estimated cost: ~" in screen and "3 video_by_tts" in screen
    assert "balance: 100,000 credits on " + service.base_url in screen
    assert "run cancelled: nothing was sent" in screen
    assert creates(service) == {} and service.credits() == 100_000

    log = tmp_path / "run.log"  # stderr to a file: the question still reaches the terminal
    code, screen = run_on_terminal(run, service, b"\n", stderr=log)
    assert code == 1 and "estimated cost: ~" in screen and "run cancelled" in log.read_text()
    assert creates(service) == {}

    code, screen = run_on_terminal(run, service, b"y\n")
    assert code == 0, screen
    assert creates(service)[VIDEO_CREATE] == 3

    again = [*run, "--recreate", "videos.*", "--yes"]
    code, screen = run_on_terminal(again, service, None)  # asked nothing
    assert code == 0, screen
    assert QUESTION.decode() not in screen and "estimated cost" in screen
    assert creates(service)[VIDEO_CREATE] == 6


def test_max_credits_holds_paid_creates_back_and_the_rerun_continues(
    tmp_path: Path, service: Sandbox
) -> None:
    campaign = Campaign(tmp_path / "c", rows=5).write()
    planned = cli("plan", "--json", str(campaign.manifest), sandbox=service)
    video = json.loads(planned.stdout)["estimate"]["items"]["videos.welcome[c0001]"]
    limit = 2.5 * video  # room for two videos, not three

    held = cli(
        "run",
        "--no-progress",
        str(campaign.manifest),
        "--max-credits",
        f"{limit:.2f}",
        sandbox=service,
    )
    assert held.code == 1, held.stderr
    assert "[y/N]" not in held.stderr  # no terminal: nobody is asked
    assert f"--max-credits {limit:,.0f}: no paid create was sent past the limit" in held.stderr
    assert "this run spent 20 credits (balance 100,000 → 99,980)" in held.stderr
    assert "3 item(s) were held back" in held.stderr
    assert "3 items held back by --max-credits (not sent, not paid for):" in held.stdout
    assert f"  hifly-batch run {campaign.manifest}\n" in held.stdout
    assert creates(service)[VIDEO_CREATE] == 2

    rerun = cli("run", "--no-progress", str(campaign.manifest), sandbox=service)
    assert rerun.code == 0, rerun.stderr
    assert creates(service)[VIDEO_CREATE] == 5  # the other three, none twice

    # Made again, held back: the command that continues repeats the --recreate.
    limit_args = ("--max-credits", f"{limit:.2f}", "--recreate", "videos.*")
    again = cli("run", "--no-progress", str(campaign.manifest), *limit_args, sandbox=service)
    assert again.code == 1 and "items held back by --max-credits" in again.stdout  # (measured now)
    assert f"hifly-batch run --recreate 'videos.*' {campaign.manifest}" in again.stdout

    bad = cli("run", str(campaign.manifest), "--max-credits", "lots", sandbox=service)
    assert bad.code == 2 and "not a number of credits" in bad.stderr


# The measure -------------------------------------------------------------------------


def test_the_estimate_after_a_measured_run_is_within_ten_percent_of_the_next(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """The sandbox charges per create, not per second: the table is far off, the measure
    is not. (A sandbox known by its answers' header: its runs are rehearsals.)"""
    first = Campaign(tmp_path, rows=6).write()
    assert cli("run", "--no-progress", str(first.manifest), sandbox=sandbox).code == 0
    measured = read_measured(tmp_path / ".hifly", sandbox.base_url, "campaign")
    assert measured is not None and measured.runs == 1 and measured.credits == 60

    second = tmp_path / "second.yaml"
    second.write_text(first.manifest.read_text().replace("name: campaign", "name: second"))
    planned = cli("plan", str(second), sandbox=sandbox)
    assert (
        "Estimated cost: ~60 credits (6 video_by_tts ~60); an estimate from the spend "
        in planned.stdout
    )
    quoted = json.loads(cli("plan", "--json", str(second), sandbox=sandbox).stdout)["estimate"]
    assert quoted["basis"] == "measured" and len(quoted["items"]) == 6
    before = sandbox.credits()
    assert cli("run", "--no-progress", str(second), sandbox=sandbox).code == 0
    spent = before - sandbox.credits()
    assert spent == 60
    assert abs(quoted["credits"] - spent) <= 0.10 * spent, (quoted, spent)


def test_a_run_is_measured_only_when_every_paid_create_it_sent_finished(tmp_path: Path) -> None:
    graph = build_graph(load_campaign(Campaign(tmp_path, rows=2).write().manifest))
    videos = [item for item in graph if item.section == "videos"]

    def record(item_id: str, status: Status, task: str | None, seconds: float | None) -> Record:
        item = graph[item_id]
        return Record(
            item.id, item.section, item.kind.value, status=status, task_id=task, duration_s=seconds
        )

    a, b = (v.id for v in videos)
    before = {a: record(a, Status.DONE, "old", 5.0)}
    after = {a: record(a, Status.DONE, "t1", 6.0), b: record(b, Status.DONE, "t2", 4.0)}
    one = measure(graph, before, after, spent=20)
    assert one is not None and one.runs == 1 and one.credits == 20
    assert one.table_credits == pytest.approx(10.0) and one.seconds == 10.0
    assert one.estimated_seconds > 0
    unchanged = {a: before[a]}
    assert measure(graph, before, unchanged, spent=0) is None  # sent nothing paid
    failed = {**after, b: record(b, Status.FAILED, "t2", None)}
    assert measure(graph, before, failed, spent=20) is None  # charged, made nothing known
    lost = {**after, b: record(b, Status.UNCERTAIN, None, None)}
    assert measure(graph, before, lost, spent=20) is None  # its create may have been paid
    refetched = {**after, "x": before[a]} | {a: record(a, Status.DONE, "old", 5.5)}
    assert measure(graph, before, refetched, spent=10) is not None  # a fetch sends no create
    assert measure(graph, before, after, spent=-5) is None  # the account was topped up


def test_the_measured_spend_file_adds_runs_per_api_and_campaign_and_survives_damage(
    tmp_path: Path,
) -> None:
    folder = tmp_path / ".hifly"
    assert read_measured(folder, "sandbox", "a") is None
    add_measured(folder, "sandbox", "a", Measured(1, 10, 5, 4, 2))
    add_measured(folder, "sandbox", "a", Measured(1, 30, 15, 6, 3))
    add_measured(folder, "sandbox", "b", Measured(1, 5, 5, 1, 1))
    add_measured(folder, "https://hfw-api.hifly.cc", "a", Measured(1, 1, 1, 1, 1))
    assert read_measured(folder, "sandbox", "a") == Measured(2, 40, 20, 10, 5)  # its own
    assert read_measured(folder, "sandbox", "c") == Measured(3, 45, 25, 11, 6)  # the folder's
    assert read_measured(folder, "https://hfw-api.hifly.cc", "b") == Measured(1, 1, 1, 1, 1)
    document = json.loads((folder / "spend.json").read_text())
    assert document["format"] == 1
    (folder / "spend.json").write_text("{not json")
    assert read_measured(folder, "sandbox", "a") is None  # the table applies again
    add_measured(folder, "sandbox", "a", Measured(1, 10, 5, 4, 2))  # and a new file starts
    assert read_measured(folder, "sandbox", "a") == Measured(1, 10, 5, 4, 2)


def test_a_credit_limit_stops_at_the_first_create_that_would_pass_it() -> None:
    limit = CreditLimit(10, {"a": 4, "b": 4, "c": 4, "d": 1})
    assert limit.admit("a") and limit.admit("b")
    assert not limit.admit("c")  # 12 > 10
    assert not limit.admit("d")  # cheap enough, but the run has stopped paying
    assert limit.admit("a")  # a resend of one already admitted costs nothing more
    assert limit.committed == 8 and limit.held == ["c", "d"] and limit.stopped


def test_a_callbacks_port_that_cannot_be_bound_is_refused_before_the_question(
    tmp_path: Path, service: Sandbox
) -> None:
    campaign = Campaign(tmp_path / "c", rows=1).write()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = ["run", "--no-progress", str(campaign.manifest), "--callbacks", f"127.0.0.1:{port}"]
        code, screen = run_on_terminal(run, service, None)
    assert code == 3 and "cannot listen there" in screen, screen
    assert "[y/N]" not in screen and "estimated cost" not in screen
    assert creates(service) == {}
