"""The local journal of a database state: what it keeps, and what a later run writes back."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hifly_batch.core.lifecycle import Status
from hifly_batch.runner import journal
from hifly_batch.runner.state import Record

SENT = Record(
    "videos.a", "videos", "video_by_tts", status=Status.SUBMITTING, attempts=1,
    started_at=1_700_000_000.125, settings={"rate": "1.0"}, replaces=("t-0",),
)  # fmt: skip
ANSWERED = replace(SENT, status=Status.RUNNING, task_id="t-1")


def test_records_read_back_as_appended_and_a_cut_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / ".hifly" / "c.journal"
    assert journal.read(path) == []
    assert journal.append(path, [SENT, ANSWERED]) == 2
    assert journal.append(path, []) == 0
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"item": "videos.b", "sta')  # a kill in the middle of a line
    assert journal.read(path) == [SENT, ANSWERED]
    assert path.stat().st_mode & 0o777 == 0o600


def test_the_last_record_of_an_attempt_the_database_is_behind_on_is_written_back() -> None:
    done = replace(ANSWERED, status=Status.DONE, output="a.mp4")
    assert journal.behind({SENT.item: SENT}, [ANSWERED, done]) == [done]
    settled = replace(SENT, status=Status.UNCERTAIN, error_message="stopped")
    assert journal.behind({SENT.item: settled}, [ANSWERED]) == [ANSWERED]


def test_what_the_database_moved_past_is_kept_as_the_database_says() -> None:
    again = replace(SENT, started_at=SENT.started_at + 60, attempts=2)  # sent again since
    finished = replace(ANSWERED, status=Status.DONE)
    assert journal.behind({SENT.item: again}, [ANSWERED]) == []
    assert journal.behind({SENT.item: finished}, [ANSWERED]) == []
    assert journal.behind({SENT.item: ANSWERED}, [ANSWERED]) == []  # already there
    assert journal.behind({}, [ANSWERED]) == []  # an item the database does not know
