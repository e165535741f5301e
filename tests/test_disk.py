"""A full disk or an unusable output folder during download, through the real CLI.

The item fails with a message that says what went wrong, the state stays
readable and consistent, and a rerun after the fix downloads the output from
a fresh URL (the task is queried again) without creating the work again.

Tests run as root, where permission bits do not stop a write; the folder is
made unusable by a regular file in its place, and the disk made full by a
tiny tmpfs mounted on the output folder (skipped where mounting is not allowed).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hifly_batch.core.lifecycle import Status
from hifly_batch.sandbox import Sandbox
from tests.campaigns import Campaign, Result, cli, creates, read_state, temporary_files

# About 100 kB per video: more than the tmpfs below holds.
LONG_TEMPLATE = "{{ row.name }}您好。" + "好" * 6000


def run(campaign: Campaign, sandbox: Sandbox) -> Result:
    result = cli("run", "--no-progress", str(campaign.manifest), sandbox=sandbox)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    return result


def assert_videos_failed_with(campaign: Campaign, *words: str) -> None:
    records = read_state(campaign)  # the state opens and reads
    videos = [r for r in records.values() if r.section == "videos"]
    others = [r for r in records.values() if r.section != "videos"]
    assert videos and all(r.status is Status.FAILED for r in videos), videos
    assert all(r.status is Status.DONE for r in others), others
    for record in videos:
        assert record.task_id is not None  # the work was made: only saving it failed
        message = record.error_message or ""
        assert any(word in message for word in words), message


def assert_rerun_downloads_without_creating(campaign: Campaign, sandbox: Sandbox) -> None:
    before = creates(sandbox)
    queries = sandbox.counters().requests.get("video/task", 0)
    result = run(campaign, sandbox)
    assert result.code == 0, result.stderr
    assert creates(sandbox) == before  # no work made twice
    assert sandbox.counters().requests["video/task"] > queries  # fresh URLs were asked for
    for record in read_state(campaign).values():
        assert record.status is Status.DONE
        if record.section == "videos":
            assert record.output is not None and record.task_id is not None
            data = (campaign.output_dir / record.output).read_bytes()
            assert data == sandbox.output_bytes(record.task_id)


def test_a_file_in_place_of_the_output_folder(sandbox: Sandbox, tmp_path: Path) -> None:
    campaign = Campaign(tmp_path / "c", rows=2).write()
    blocker = campaign.output_dir / "videos" / "welcome"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the videos' folder should be")
    result = run(campaign, sandbox)
    assert result.code == 1
    assert_videos_failed_with(campaign, str(blocker))
    blocker.unlink()
    assert_rerun_downloads_without_creating(campaign, sandbox)


def test_a_folder_in_place_of_the_output_file(sandbox: Sandbox, tmp_path: Path) -> None:
    campaign = Campaign(tmp_path / "c", rows=2).write()
    blockers = [campaign.output_dir / "videos" / "welcome" / f"c000{n}.mp4" for n in (1, 2)]
    for blocker in blockers:
        (blocker / "inside").mkdir(parents=True)
    result = run(campaign, sandbox)
    assert result.code == 1
    assert_videos_failed_with(campaign, "Is a directory", "Directory not empty")
    assert temporary_files(campaign) == []  # the downloaded bytes were not left behind
    for blocker in blockers:
        shutil.rmtree(blocker)
    assert_rerun_downloads_without_creating(campaign, sandbox)


@contextlib.contextmanager
def tiny_tmpfs(folder: Path, size: str) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_disk_full_during_download(sandbox: Sandbox, tmp_path: Path) -> None:
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    campaign = Campaign(tmp_path / "c", rows=2, template=LONG_TEMPLATE).write()
    folder = campaign.output_dir / "videos" / "welcome"
    with tiny_tmpfs(folder, "48k"):
        result = run(campaign, sandbox)
        assert result.code == 1
        assert_videos_failed_with(campaign, "No space left on device")
        assert list(folder.iterdir()) == []  # no partial file, no temporary file
    assert_rerun_downloads_without_creating(campaign, sandbox)


def test_disk_full_while_writing_the_report(sandbox: Sandbox, tmp_path: Path) -> None:
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    campaign = Campaign(tmp_path / "c", rows=30).write()
    assert run(campaign, sandbox).code == 0
    folder = tmp_path / "full"
    with tiny_tmpfs(folder, "8k"):
        (folder / "filler").write_bytes(b"x" * 4096)
        target = folder / "report.csv"
        result = cli("report", "-o", str(target), str(campaign.manifest))
        assert result.code == 3, result.stderr
        assert f"{target}: cannot be written (No space left on device); free some space" in (
            result.stderr
        )
        assert "internal error" not in result.stderr
        assert sorted(p.name for p in folder.iterdir()) == ["filler"]  # nothing half-written
