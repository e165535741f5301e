"""Pure helpers of the worker jobs."""

from __future__ import annotations

import json

import pytest

from hifly_batch.jobs import output_path, with_work_exists, work_exists
from hifly_batch.state import Record, Status


def test_the_work_exists_mark_sets_and_clears_keeping_other_details() -> None:
    details = json.dumps({"settings": None})
    marked = with_work_exists(details, True)
    record = Record(
        "videos.v", "videos", "video_by_tts", status=Status.FAILED, task_id="t1", details=marked
    )
    assert work_exists(record)
    cleared = with_work_exists(marked, False)
    assert json.loads(cleared or "{}") == {"settings": None}
    assert not work_exists(
        Record(
            "videos.v",
            "videos",
            "video_by_tts",
            status=Status.FAILED,
            task_id="t1",
            details=cleared,
        )
    )
    assert with_work_exists(None, False) is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://cdn.example/a/b.wav?sig=1", "audios/greeting.wav"),
        ("http://cdn.example/a/b.M4A", "audios/greeting.m4a"),
        ("http://cdn.example/a/b", "audios/greeting.mp3"),
    ],
)
def test_a_default_audio_output_takes_the_urls_extension(url: str, expected: str) -> None:
    from hifly_batch.graph import Item, ItemKind

    item = Item(
        "audios.greeting",
        "audios",
        "greeting",
        ItemKind.AUDIO_BY_TTS,
        {},
        "f",
        output="audios/greeting.mp3",
        output_default=True,
    )
    assert output_path(item, url) == expected
