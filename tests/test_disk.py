"""A full disk, a read-only folder or an unusable output folder, through the real CLI.

The item fails with a message that says what went wrong, the state stays
readable and consistent, and a rerun after the fix downloads the output from
a fresh URL (the task is queried again) without creating the work again. A
state folder that cannot be written stops the run before anything is sent.

Tests run as root, where permission bits do not stop a write; the folder is
made unusable by a regular file in its place, the disk made full by a tiny
tmpfs mounted on the output folder, and a folder read-only by a read-only
tmpfs mounted on it (skipped where mounting is not allowed).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from hifly_batch.core.lifecycle import Status
from hifly_batch.runner.errors import StateError
from hifly_batch.runner.state import Record
from hifly_batch.runner.state_file import FileState
from hifly_batch.sandbox import Sandbox
from tests.campaigns import (
    Campaign,
    Result,
    cli,
    creates,
    read_state,
    report_rows,
    temporary_files,
)

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
def tiny_tmpfs(folder: Path, size: str, *, read_only: bool = False) -> Iterator[None]:
    """A tmpfs of ``size`` mounted on ``folder`` (made if missing), read-only if asked;
    unmounted on the way out. Skips the test where nothing can be mounted."""
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    folder.mkdir(parents=True, exist_ok=True)
    options = f"ro,size={size}" if read_only else f"size={size}"
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_disk_full_during_download(sandbox: Sandbox, tmp_path: Path) -> None:
    campaign = Campaign(tmp_path / "c", rows=2, template=LONG_TEMPLATE).write()
    folder = campaign.output_dir / "videos" / "welcome"
    with tiny_tmpfs(folder, "48k"):
        result = run(campaign, sandbox)
        assert result.code == 1
        assert_videos_failed_with(campaign, "No space left on device")
        for record in read_state(campaign).values():  # each names its file and what to do
            if record.section == "videos":
                said = f"{folder}/{record.key}.mp4: cannot be written (No space left on device)"
                assert said + "; free some space there" in (record.error_message or "")
        assert list(folder.iterdir()) == []  # no partial file, no temporary file
    assert_rerun_downloads_without_creating(campaign, sandbox)


def test_disk_full_while_writing_the_report(sandbox: Sandbox, tmp_path: Path) -> None:
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


def test_a_read_only_state_folder_stops_the_run_before_anything_is_sent(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    campaign = Campaign(tmp_path / "c", rows=2).write()
    folder = campaign.root / ".hifly"  # where the state is kept by default
    with tiny_tmpfs(folder, "1m", read_only=True):
        result = run(campaign, sandbox)
        assert result.code == 3, result.stderr
        assert f"hifly-batch: error: {folder}/" in result.stderr, result.stderr
        assert "(Read-only file system)" in result.stderr
        assert "make that folder writable, or give the state another path with --state" in (
            result.stderr
        )
        assert creates(sandbox) == {}
        assert sandbox.counters().requests == {}  # not even the balance was asked
        assert list(folder.iterdir()) == []
        assert not (campaign.root / "campaign.sandbox.lock").exists()
        assert not campaign.output_dir.exists()  # no report of a run that never began
        # A state elsewhere does not help: the campaign's lock is kept beside the manifest.
        elsewhere = cli("run", "--no-progress", "--state", str(tmp_path / "s.db"),
                        str(campaign.manifest), sandbox=sandbox)  # fmt: skip
        assert elsewhere.code == 3 and "Traceback" not in elsewhere.stderr
        said = "make that folder writable: every run of the campaign takes its lock there"
        assert said in elsewhere.stderr and "another path" not in elsewhere.stderr
        assert creates(sandbox) == {}
    result = run(campaign, sandbox)  # made writable: the run begins from nothing
    assert result.code == 0, result.stderr
    assert {r.status for r in read_state(campaign).values()} == {Status.DONE}
    assert {row["status"] for row in report_rows(campaign)} == {"done"}
    assert creates(sandbox)["video/create_by_tts"] == 2


def test_a_read_only_output_folder_fails_the_videos_and_the_report(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    campaign = Campaign(tmp_path / "c", rows=2).write()
    folder = campaign.output_dir
    with tiny_tmpfs(folder, "1m", read_only=True):
        result = run(campaign, sandbox)
        assert result.code == 3, result.stderr
        report = folder / "report.csv"
        said = f"hifly-batch: error: {report}: cannot be written (Read-only file system); "
        assert said + "make the folder writable" in result.stderr, result.stderr
        assert_videos_failed_with(campaign, "Read-only file system")
        for record in read_state(campaign).values():
            if record.section == "videos":
                assert str(folder) in (record.error_message or "")  # it names the folder
        made = creates(sandbox)
        assert made == {"avatar/create_by_video": 1, "voice/create": 1, "video/create_by_tts": 2}
        assert temporary_files(campaign) == [] and list(folder.iterdir()) == []
    assert_rerun_downloads_without_creating(campaign, sandbox)
    assert {row["status"] for row in report_rows(campaign)} == {"done"}


def fill(folder: Path) -> None:
    """Take every free byte of the file system ``folder`` is on."""
    with contextlib.suppress(OSError), (folder / "filler").open("wb") as fh:
        while True:
            fh.write(b"\0" * 65536)
            fh.flush()


def test_a_full_state_folder_is_said_so_and_never_called_damaged(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    campaign = Campaign(tmp_path / "c", rows=1).write()
    folder = campaign.root / ".hifly"
    with tiny_tmpfs(folder, "256k"):
        fill(folder)
        result = run(campaign, sandbox)
        assert result.code == 3, result.stderr
        assert "free some space there" in result.stderr and "damaged" not in result.stderr
        assert creates(sandbox) == {}


def test_a_state_that_fills_its_disk_mid_run_is_a_state_error_not_a_crash(tmp_path: Path) -> None:
    """The commit is where a full disk shows: it is a StateError (exit 3) naming the
    file, never an internal error, and what was written before stays."""
    folder = tmp_path / "state"
    with tiny_tmpfs(folder, "256k"), FileState(folder / "s.db") as store:
        first = Record("videos.v[c1]", "videos", "video_by_tts", "c1", task_id="t1")
        store.put(first)
        fill(folder)
        big = replace(first, item="videos.v[c2]", key="c2", error_message="x" * 200_000)
        with pytest.raises(StateError, match=r"s\.db: the state cannot be written .*full"):
            store.put(big)
        assert store.records() == {first.item: first}
