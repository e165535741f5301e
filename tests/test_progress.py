"""The progress bar: live counts on a terminal, nothing when stderr is a pipe; a summary always."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pyte
import pytest

from hifly_batch.core.lifecycle import Status
from hifly_batch.reports.progress import MIN_BAR, render, summary_table
from hifly_batch.runner.state import Record
from hifly_batch.sandbox import Sandbox, SandboxConfig
from tests.campaigns import Campaign, child_env, cli
from tests.conftest import SECRET_TOKEN

COLUMNS, ROWS = 80, 24
# The bar's whole line in an 80-column terminal: every counter, the bar, the times.
BAR_LINE = re.compile(
    r"(\d+)/(\d+) done=(\d+) fail=(\d+) unsure=(\d+) block=(\d+) run=(\d+) queue=(\d+)"
    r" \|[^|]+\| \d\d:\d\d<\S+"
)


def screens_of_a_run(args: list[str], sandbox: Sandbox) -> tuple[list[list[str]], int, str]:
    """Run the CLI with stderr on a pseudo-terminal of COLUMNS x ROWS, read by a terminal
    emulator; returns the screens seen while it ran (one per read), its exit code and
    stdout."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    env = child_env(sandbox)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hifly_batch", *args],
        stdout=subprocess.PIPE,
        stderr=follower,
        env=env,
        text=True,
    )
    os.close(follower)
    screen = pyte.Screen(COLUMNS, ROWS)
    stream = pyte.ByteStream(screen)
    screens = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if not ready:
            continue
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closes with the process
            break
        if not chunk:
            break
        stream.feed(chunk)
        screens.append(list(screen.display))
    stdout = proc.communicate(timeout=60)[0]
    os.close(leader)
    return screens, proc.returncode, stdout


def test_the_bar_shows_every_counter_on_one_line_of_80_columns_with_logs_above_it(
    tmp_path: Path,
) -> None:
    config = SandboxConfig(task_seconds=0.3, task_jitter=0.1, token=SECRET_TOKEN)
    with Sandbox(tmp_path / "world", config) as sandbox:
        campaign = Campaign(tmp_path / "c", rows=4, concurrency=2).write()
        screens, code, stdout = screens_of_a_run(["-v", "run", str(campaign.manifest)], sandbox)
    assert code == 0, stdout
    bars = [m for s in screens for line in s if (m := BAR_LINE.fullmatch(line.rstrip()))]
    assert bars, "\n".join(screens[-1])
    for bar in bars:  # the position, and every count, add up to the total
        settled, total, *counts = (int(n) for n in bar.groups())
        assert total == 8 and sum(counts) == total and settled == sum(counts[:4])
    assert any(int(b.group(7)) > 0 for b in bars)  # seen while items were running
    assert (bars[-1].group(1), bars[-1].group(3)) == ("8", "8")  # and left at the end
    logs = [line for s in screens for line in s if " hifly_batch.http: " in line]
    assert logs, "-v shows log lines"
    for line in logs:  # each on lines of its own, never written through the bar
        assert line.startswith("INFO hifly_batch.http: ") and "done=" not in line


def test_no_bar_when_stderr_is_a_pipe_but_a_summary_on_stdout(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    campaign = Campaign(tmp_path / "c", rows=2).write()
    result = cli("run", str(campaign.manifest), sandbox=sandbox)
    assert result.code == 0 and "done=" not in result.stderr and "done," not in result.stderr
    assert "log:" not in result.stdout  # a run that did everything names no log
    assert result.stdout.splitlines()[0].split() == ["section", "done"]


SMALL = {"done": 12, "failed": 1, "uncertain": 2, "blocked": 3, "running": 4, "queued": 5}
LARGE = {"done": 1180, "failed": 10, "uncertain": 2, "blocked": 8, "running": 40, "queued": 1200}


@pytest.mark.parametrize(
    ("counts", "width", "shown", "bar"),
    [
        (SMALL, 200, "12 done, 1 failed, 2 uncertain, 3 blocked, 4 running, 5 queued", True),
        (SMALL, 80, "done=12 fail=1 unsure=2 block=3 run=4 queue=5", True),
        (SMALL, 60, "done=12 fail=1 unsure=2 block=3 run=4 queue=5", False),
        (SMALL, 40, "d12 f1 u2 b3 r4 q5", True),
        (LARGE, 200, "1180 done, 10 failed, 2 uncertain, 8 blocked, 40 running, 1200 queued", True),
        (LARGE, 80, "done=1180 fail=10 unsure=2 block=8 run=40 queue=1200", True),
        (LARGE, 60, "d1180 f10 u2 b8 r40 q1200", True),
    ],
)
def test_the_line_fits_its_width_with_every_count_and_the_bar_takes_the_rest(
    counts: dict[str, int], width: int, shown: str, bar: bool
) -> None:
    total = sum(counts.values())
    line = render(counts, total, width, elapsed=75.0)
    settled = total - counts["running"] - counts["queued"]
    assert line.startswith(f"{settled}/{total} {shown}")
    assert len(line) <= width
    bars = re.findall(r"\|(.*)\|", line)
    if bar:
        assert len(line) == width and len(bars[0]) >= MIN_BAR  # the bar took what was left
    else:
        assert bars == []


def test_summary_counts_statuses_per_section() -> None:
    records = [
        Record("videos.a[1]", "videos", "video_by_tts", status=Status.DONE),
        Record("videos.a[2]", "videos", "video_by_tts", status=Status.FAILED),
        Record("videos.a[3]", "videos", "video_by_tts", status=Status.SUBMITTING),
        Record("avatars.x", "avatars", "avatar_by_video", status=Status.DONE),
    ]
    lines = summary_table(records).splitlines()
    assert lines[0].split() == ["section", "done", "failed", "uncertain"]
    assert lines[1].split() == ["videos", "1", "1", "1"]
    assert lines[-1].split() == ["total", "2", "1", "1"]
