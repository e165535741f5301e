"""The worker jobs: pure helpers, and a job against the sandbox."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from hifly_batch.api.client import HiflyClient
from hifly_batch.core.graph import Graph, Item, ItemKind
from hifly_batch.runner.events import Event, JobEnded
from hifly_batch.runner.jobs import JobContext, output_path, submit, with_work_exists, work_exists
from hifly_batch.runner.outputs import OutputFolder
from hifly_batch.runner.state import Record, StateStore, Status
from hifly_batch.sandbox import Sandbox


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


def test_a_submit_queued_before_an_interrupt_sends_nothing(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    item = Item(
        "videos.v",
        "videos",
        "v",
        ItemKind.VIDEO_BY_TTS,
        {"avatar": "a1", "voice": "v1", "text": "你好"},
        "f",
        output="videos/v.mp4",
    )
    record = Record(item.id, item.section, item.kind.value)
    delivered: list[Event] = []
    stopping = threading.Event()
    stopping.set()
    with StateStore(tmp_path / "state.db") as store:
        store.put(record)
        ctx = JobContext(
            Graph((item,), {item.id: item}),
            HiflyClient(sandbox.token, sandbox.base_url),
            store,
            OutputFolder(tmp_path / "out"),
            delivered.extend,
            stopping,
        )
        submit(ctx, item, record, {})
        assert store.get(item.id) == record  # not even marked as submitting
    assert delivered == [JobEnded(item.id)]
    assert sum(sandbox.counters().creates.values()) == 0
