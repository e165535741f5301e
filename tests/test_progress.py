"""The progress bar: live counts on a terminal, nothing when stderr is a pipe; a summary always."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import sys
import termios
from pathlib import Path

from hifly_batch.core.lifecycle import Status
from hifly_batch.reports.progress import summary_table
from hifly_batch.runner.state import Record
from hifly_batch.sandbox import Sandbox
from tests.campaigns import Campaign, cli


def test_bar_shows_counts_on_a_terminal(sandbox: Sandbox, tmp_path: Path) -> None:
    campaign = Campaign(tmp_path / "c", rows=6).write()
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    env = {**os.environ, "HIFLY_BASE_URL": sandbox.base_url, "HIFLY_TOKEN": sandbox.token}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hifly_batch", "run", str(campaign.manifest)],
        stdout=subprocess.PIPE,
        stderr=follower,
        env=env,
        text=True,
    )
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closes with the process
            break
        if not chunk:
            break
        shown += chunk
    proc.wait(timeout=60)
    os.close(leader)
    text = shown.decode(errors="replace")
    assert proc.returncode == 0
    assert "10/10" in text and "done=10" in text and "failed=0" in text
    assert "queued=" in text and "running=" in text


def test_no_bar_when_stderr_is_a_pipe_but_a_summary_on_stdout(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    campaign = Campaign(tmp_path / "c", rows=2).write()
    result = cli("run", str(campaign.manifest), sandbox=sandbox)
    assert result.code == 0 and "done=" not in result.stderr
    assert result.stdout.splitlines()[0].split() == ["section", "done"]


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
