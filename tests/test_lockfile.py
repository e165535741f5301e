"""The lock file's format and its one rule for choosing between records of one item."""

from __future__ import annotations

import json
import os
import random
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hifly_batch.core.lifecycle import Status
from hifly_batch.runner import lockfile
from hifly_batch.runner.lockfile import LockFileError, choose, combine, parse, render, to_write
from hifly_batch.runner.state import Record

VIDEO = "videos.welcome[c001]"
NEW, OLD = "fp-new", "fp-old"


def video(status: Status = Status.DONE, task: str | None = "t1", fp: str = NEW, **more) -> Record:
    base = Record(VIDEO, "videos", "video_by_tts", "c001", status=status, fingerprint=fp,
                  task_id=task)  # fmt: skip
    return replace(base, **more)


def done_video(task: str = "t1", fp: str = NEW) -> Record:
    return video(Status.DONE, task, fp, output="welcome/c001.mp4", output_size=10,
                 output_sha256="ab" * 32, duration_s=4.2)  # fmt: skip


UPLOAD = Record("assets.clip", "assets", "upload", status=Status.DONE, fingerprint="fu",
                resource_id="file-1")  # fmt: skip
VOICE = Record("voices.v", "voices", "voice_clone", status=Status.DONE, fingerprint="fv",
               settings_fingerprint="fs", task_id="tv", resource_id="voice-1",
               settings={"rate": "1.2"})  # fmt: skip


# Writing --------------------------------------------------------------------------


def test_a_header_then_one_sorted_line_per_item_with_a_task_or_a_resource() -> None:
    never_sent = Record("videos.welcome[c000]", "videos", "video_by_tts", "c000")
    refused = video(Status.FAILED, task=None, error_code=11)
    text = render("spring", [done_video(), never_sent, VOICE, UPLOAD, refused])
    lines = text.splitlines()
    assert json.loads(lines[0]) == {"hifly-batch": "lock", "format": 1, "campaign": "spring"}
    assert [json.loads(line)["id"] for line in lines[1:]] == ["assets.clip", VIDEO, "voices.v"]
    assert json.loads(lines[2]) == {
        "id": VIDEO, "kind": "video_by_tts", "fingerprint": NEW, "status": "done",
        "task_id": "t1", "output": "welcome/c001.mp4", "size": 10, "sha256": "ab" * 32,
        "duration": 4.2,
    }  # fmt: skip
    assert text.endswith("\n") and "\n\n" not in text


def test_the_same_records_give_the_same_bytes_whatever_their_order() -> None:
    records = [done_video(), VOICE, UPLOAD]
    assert render("c", records) == render("c", reversed(records))


def test_nothing_of_the_machine_is_written() -> None:
    local = replace(done_video(), started_at=1.0, finished_at=2.0, attempts=3,
                    error_message="x", field_digests={"text": "d"})  # fmt: skip
    assert render("c", [local]) == render("c", [done_video()])


def test_a_create_on_the_wire_is_written_uncertain_and_finished_work_keeps_its_mark() -> None:
    on_the_wire = video(Status.SUBMITTING, task=None)
    kept = video(Status.FAILED, work_exists=True)
    lines = [json.loads(line) for line in render("c", [on_the_wire]).splitlines()[1:]]
    assert lines == [{"id": VIDEO, "kind": "video_by_tts", "fingerprint": NEW,
                      "status": "uncertain"}]  # fmt: skip
    assert json.loads(render("c", [kept]).splitlines()[1])["work"] is True


def test_what_is_written_reads_back() -> None:
    records = [replace(done_video(), replaces=("t0",)), VOICE, UPLOAD,
               video(Status.FAILED, work_exists=True)]  # fmt: skip
    back = parse(render("c", records[:3]), path=Path("c.lock"), campaign="c")
    assert sorted(back, key=lambda r: r.item) == sorted(records[:3], key=lambda r: r.item)
    (failed,) = parse(render("c", records[3:]), path=Path("c.lock"), campaign="c")
    assert failed.work_exists and failed.status is Status.FAILED


# Reading ------------------------------------------------------------------------------


def lines_of(*records: Record, campaign: str = "c") -> str:
    return render(campaign, records)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<<<<<<< HEAD\n", "merge conflict"),
        ('{"id": "x", "kind": "upload"\n', "not a line of a hifly-batch lock file"),
        ("[1, 2]\n", "not a JSON object"),
        ('{"id": "x", "kind": "upload", "fingerprint": "f", "status": "pending"}\n', "pending"),
        ('{"id": "x", "kind": "upload", "fingerprint": "f", "status": "done", "size": "9"}\n',
         "size '9' is not a number"),
        ('{"id": 7, "kind": "upload", "fingerprint": "f", "status": "done"}\n', "id 7"),
        ('{"kind": "upload", "fingerprint": "f", "status": "done"}\n', "'id'"),
        ('{"hifly-batch": "lock", "format": 2, "campaign": "c"}\n', "format 2"),
        ('{"hifly-batch": "lock", "format": 1, "campaign": "other"}\n', "campaign 'other'"),
    ],
)  # fmt: skip
def test_a_line_that_is_not_ours_is_refused_with_its_place(text: str, message: str) -> None:
    good = lines_of(done_video())
    with pytest.raises(LockFileError, match=message) as caught:
        parse(good + text, path=Path("c.lock"), campaign="c")
    assert str(caught.value).startswith(f"c.lock:{len(good.splitlines()) + 1}: ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the lock file is empty"),
        ("\n\n", "the lock file is empty"),
        ('{"id": "x", "kind": "upload", "fingerprint": "f", "status": "done"}\n',
         "header line naming the campaign is missing"),
    ],
)  # fmt: skip
def test_a_file_without_its_header_is_refused_not_read_as_nothing_made(
    text: str, message: str
) -> None:
    with pytest.raises(LockFileError, match=message):
        parse(text, path=Path("c.lock"), campaign="c")


def test_a_link_to_a_missing_lock_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "c.lock").symlink_to(tmp_path / "elsewhere.lock")
    with pytest.raises(LockFileError, match="does not exist"):
        lockfile.read(tmp_path / "c.lock", campaign="c")


def test_a_lock_file_left_behind_by_a_renamed_manifest_is_named(tmp_path: Path) -> None:
    lockfile.write(tmp_path / "old.lock", lines_of(done_video(), campaign="c"))
    lockfile.write(tmp_path / "other.lock", lines_of(done_video(), campaign="other"))
    (tmp_path / "notes.lock").write_text("not ours\n")
    with pytest.raises(LockFileError, match=r"old\.lock records campaign 'c'.*git mv old"):
        lockfile.read(tmp_path / "new.lock", campaign="c")
    assert lockfile.read(tmp_path / "new.sandbox.lock", campaign="c") == []  # another kind
    assert lockfile.read(tmp_path / "new.lock", campaign="d") == []


def test_a_union_merge_may_repeat_the_header_and_leave_two_lines_for_one_item() -> None:
    merged = lines_of(done_video("t1")) + lines_of(done_video("t2"))
    assert [r.task_id for r in parse(merged, path=Path("c.lock"), campaign="c")] == ["t1", "t2"]


def test_no_file_reads_as_no_records_and_a_written_file_is_left_alone_when_unchanged(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.lock"
    assert lockfile.read(path, campaign="c") == []
    text = lines_of(done_video())
    assert lockfile.write(path, text) is True
    os.utime(path, ns=(0, 0))
    assert lockfile.write(path, text) is False and path.stat().st_mtime_ns == 0
    assert lockfile.read(path, campaign="c") == [done_video()]
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in tmp_path.iterdir()] == ["c.lock"]


def test_a_write_removes_what_a_killed_write_left(tmp_path: Path) -> None:
    (tmp_path / ".c.lock.k1lled.tmp").write_text("half")
    (tmp_path / ".other.lock.x.tmp").write_text("not ours")
    lockfile.write(tmp_path / "c.lock", lines_of(done_video()))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.lock.x.tmp", "c.lock"]


def test_a_place_that_cannot_be_written_is_said_so_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(LockFileError, match="cannot be written"):
        lockfile.write(tmp_path / "a-file" / "c.lock", "x\n")
    (tmp_path / "c.lock").mkdir()  # os.replace cannot put a file over a folder
    with pytest.raises(LockFileError, match="cannot be written"):
        lockfile.write(tmp_path / "c.lock", "x\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "c.lock"]


# Choosing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "locked", "expected"),
    [
        # The lock file knows work the local state lacks or failed to keep.
        (None, [done_video()], "lock"),
        (video(Status.FAILED, task="t2"), [done_video("t1")], "lock"),
        (video(Status.PENDING, task=None), [video(Status.RUNNING)], "lock"),
        (video(Status.PENDING, task=None), [video(Status.UNCERTAIN, task=None)], "lock"),
        # Finished work of the current fingerprint beats an older one, wherever it is.
        (done_video("t1", OLD), [done_video("t2", NEW)], "lock"),
        (done_video("t2", NEW), [done_video("t1", OLD)], "local"),
        # A task for the manifest as it is now, maybe still running, beats finished work
        # of an older version: choosing that would make the item a second time.
        (video(Status.RUNNING, "t2"), [done_video("t1", OLD)], "local"),
        # A retry of a changed item that failed is newer than the output it replaces.
        (video(Status.FAILED, "t2"), [done_video("t1", OLD)], "local"),
        # A later word on the same task: the local run saw it fail after the file said running.
        (video(Status.FAILED, "t1"), [video(Status.RUNNING, "t1")], "local"),
        # ... and a teammate saw it done after this machine last saw it running.
        (video(Status.RUNNING, "t1"), [done_video("t1")], "lock"),
        # This machine lost the output of a task the file says is done: it is not done here.
        (video(Status.FAILED, "t1", work_exists=True), [done_video("t1")], "local"),
        # Made again with --recreate elsewhere: the new work replaces this machine's.
        (done_video("t1"), [replace(done_video("t2"), replaces=("t1",))], "lock"),
        (replace(done_video("t2"), replaces=("t1",)), [done_video("t1")], "local"),
        # ... and twice: the chain of every task it replaced is kept.
        (done_video("t1"), [replace(done_video("t3"), replaces=("t1", "t2"))], "lock"),
        # Made again on a branch for other inputs: not a replacement of work for these.
        (replace(done_video("t2", OLD), replaces=("t1",)), [done_video("t1")], "lock"),
        # Blocked or pending again: that says nothing of its old task, which still counts.
        (video(Status.BLOCKED, "t1", OLD), [done_video("t1")], "lock"),
        (video(Status.BLOCKED, "t1", NEW), [done_video("t1", OLD)], "local"),
        # ... but not before that new work has a task.
        (done_video("t1"), [replace(video(Status.UNCERTAIN, None), replaces=("t1",))], "local"),
        # Equal records: the local one, which knows more (attempts, times, digests).
        (done_video("t1"), [done_video("t1")], "local"),
    ],
)  # fmt: skip
def test_finished_work_wins_then_the_current_fingerprint(
    local: Record | None, locked: list[Record], expected: str
) -> None:
    chosen = choose(local, locked, NEW)
    assert chosen is (local if expected == "local" else locked[0])


def test_an_item_the_manifest_no_longer_has_keeps_its_finished_work() -> None:
    assert choose(video(Status.FAILED, "t2"), [done_video("t1")], None).task_id == "t1"


@given(st.permutations([done_video("t1"), done_video("t2"), done_video("t3", OLD),
                        video(Status.RUNNING, "t4", OLD), video(Status.FAILED, "t5")]))  # fmt: skip
def test_the_choice_between_lines_does_not_depend_on_their_order(lines: list[Record]) -> None:
    assert choose(None, lines, NEW) == done_video("t1")


@given(st.permutations([done_video("t1"), replace(done_video("t2"), replaces=("t1",))]))
def test_a_recreated_item_is_read_as_its_new_work_in_any_order(lines: list[Record]) -> None:
    assert choose(None, lines, NEW).task_id == "t2"


def test_combine_says_which_records_came_from_the_lock_file() -> None:
    other = replace(done_video("t9"), item="videos.welcome[c002]", key="c002")
    local = {VIDEO: video(Status.FAILED, "t2"), UPLOAD.item: UPLOAD}
    shuffled = [done_video("t1"), other, UPLOAD]
    random.Random(1).shuffle(shuffled)
    records, from_lock = combine(local, shuffled, {VIDEO: NEW, UPLOAD.item: "fu"})
    assert from_lock == {VIDEO, "videos.welcome[c002]"}
    assert records[VIDEO].task_id == "t1" and records[UPLOAD.item] is UPLOAD
    assert records["videos.welcome[c002]"] == other  # not in the manifest: kept, as removed


# What a run writes back -------------------------------------------------------------------


def written(local: Record | None, lines: list[Record], changed: bool = False) -> list[str | None]:
    mine = {VIDEO: local} if local is not None else {}
    records = to_write(mine, {VIDEO} if changed else set(), lines, {VIDEO: NEW})
    return [r.task_id for r in records]


def test_a_run_writes_what_it_changed_and_what_the_file_lacks() -> None:
    assert written(done_video("t2"), [done_video("t1")], changed=True) == ["t2"]  # --recreate
    assert written(done_video("t2"), []) == ["t2"]
    moved = replace(done_video("t1"), output="renamed/c001.mp4")
    assert to_write({VIDEO: moved}, {VIDEO}, [done_video("t1")], {})[0].output == moved.output


def test_an_output_lost_on_this_machine_does_not_change_the_record_of_its_task() -> None:
    lost = video(Status.FAILED, "t1", work_exists=True, error_message="download failed")
    (record,) = to_write({VIDEO: lost}, {VIDEO}, [done_video("t1")], {VIDEO: NEW})
    assert record == done_video("t1")


def test_a_tie_keeps_the_line_already_there_so_machines_do_not_take_turns() -> None:
    # Two machines each made the item (a union merge kept both lines); after one line
    # was written back, the other machine's rerun with nothing to do keeps it.
    assert written(done_video("t2"), [done_video("t1")]) == ["t1"]
    assert written(done_video("t1"), [done_video("t2")]) == ["t2"]


def test_an_untouched_local_record_better_than_the_line_replaces_it() -> None:
    # The run that saw the task finish was killed before it wrote the file.
    (record,) = to_write({VIDEO: done_video("t1")}, set(), [video(Status.RUNNING, "t1")], {})
    assert record.status is Status.DONE


@pytest.mark.parametrize(
    "nothing_made",
    [video(Status.BLOCKED, "t1"), video(Status.PENDING, None), video(Status.FAILED, None,
     error_code=11), video(Status.FAILED, "t2")],
    ids=["blocked", "pending", "refused", "task failed"],
)  # fmt: skip
def test_a_record_of_nothing_made_never_erases_the_work_the_file_records(
    nothing_made: Record,
) -> None:
    (record,) = to_write({VIDEO: nothing_made}, {VIDEO}, [done_video("t1", OLD)], {VIDEO: NEW})
    assert record == done_video("t1", OLD)
    assert render("c", [nothing_made]).count("\n") == 1  # the header only


@pytest.mark.parametrize(
    "under_way",
    [video(Status.UNCERTAIN, None), video(Status.SUBMITTING, None), video(Status.RUNNING, "t2")],
    ids=["uncertain", "a create on the wire", "task running"],
)
@pytest.mark.parametrize(
    "outcome",
    [video(Status.FAILED, "t2", error_code=1), video(Status.FAILED, None, error_code=11),
     video(Status.PENDING, None)],
    ids=["task failed", "refused", "sent again later"],
)  # fmt: skip
def test_work_under_way_is_forgotten_once_the_run_has_settled_it(
    under_way: Record, outcome: Record
) -> None:
    """Written while a create was on the wire (as uncertain) or its task ran, the line
    goes once the run knows how that ended: it never outlives the attempt as uncertain,
    which would stop the next run from trying again."""
    lines = parse(lines_of(under_way), path=Path("c.lock"), campaign="c")
    assert written(outcome, lines, changed=True) == []
    assert combine({VIDEO: outcome}, [], {VIDEO: NEW})[0][VIDEO] is outcome
    # Finished work, and work of other inputs, stay as before.
    kept = [done_video("t0", OLD), video(Status.RUNNING, "t9", OLD)]
    assert written(outcome, [*lines, *kept], changed=True) == ["t0"]
    assert written(outcome, lines) == [under_way.task_id]  # not settled by this run


def test_several_lines_for_one_item_become_the_chosen_one_on_every_machine() -> None:
    lines = [done_video("t2"), done_video("t1"), done_video("t3", OLD)]
    assert written(None, lines) == written(None, lines[::-1]) == ["t1"]
