"""The worker jobs: pure helpers, and a job against the sandbox."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest

from hifly_batch.api.client import HiflyClient
from hifly_batch.core.graph import Graph, Item, ItemKind, Ref
from hifly_batch.core.lifecycle import Status
from hifly_batch.runner.events import Event, JobEnded
from hifly_batch.runner.jobs import JobContext, output_path, submit, work_exists
from hifly_batch.runner.outputs import OutputFolder
from hifly_batch.runner.state import Record, StateStore
from hifly_batch.runner.state_file import FileState
from hifly_batch.sandbox import Sandbox


def test_the_work_exists_mark_sets_and_clears_keeping_the_other_fields(tmp_path: Path) -> None:
    made = Record(
        "videos.v",
        "videos",
        "video_by_tts",
        status=Status.FAILED,
        task_id="t1",
        settings={"rate": "1.1"},
        field_digests={"text": "d1"},
    )
    with FileState(tmp_path / "state.db") as store:
        marked = store.update(made, work_exists=True)
        assert work_exists(marked) and store.get(made.item) == marked
        cleared = store.update(marked, work_exists=False)
        assert not work_exists(cleared)
        assert store.get(made.item) == made


@pytest.mark.parametrize(
    ("status", "task_id", "exists"),
    [(Status.FAILED, "t1", True), (Status.FAILED, None, False), (Status.DONE, "t1", False)],
)
def test_work_exists_only_for_a_failed_item_with_a_task(
    status: Status, task_id: str | None, exists: bool
) -> None:
    record = Record("videos.v", "videos", "video_by_tts", status=status, task_id=task_id)
    assert work_exists(replace(record, work_exists=True)) is exists
    assert not work_exists(record)


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


def context(
    item: Item,
    sandbox: Sandbox,
    store: StateStore,
    out: Path,
    delivered: list[Event],
    stopping: threading.Event,
) -> JobContext:
    """What one job of ``item`` runs with, against the sandbox."""
    graph = Graph((item,), {item.id: item})
    client = HiflyClient(sandbox.token, sandbox.base_url)
    return JobContext(graph, client, store, OutputFolder(out), delivered.extend, stopping)


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
    with FileState(tmp_path / "state.db") as store:
        store.put(record)
        ctx = context(item, sandbox, store, tmp_path / "out", delivered, stopping)
        submit(ctx, item, record, {})
        assert store.get(item.id) == record  # not even marked as submitting
    assert delivered == [JobEnded(item.id)]
    assert sum(sandbox.counters().creates.values()) == 0


def test_an_audio_driver_neither_offered_nor_kept_fails_its_video_not_the_run(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A video driven by an audio whose task no longer offers its file, and whose download
    was deleted: the video fails, saying what to do, and the job ends normally."""
    audio = Record("audios.a", "audios", "audio_by_tts", status=Status.DONE, task_id="404404",
                   output="audios/a.mp3")  # fmt: skip

    item = Item("videos.v", "videos", "v", ItemKind.VIDEO_BY_AUDIO,
                {"avatar": "a1", "audio_url": Ref("audios.a")}, "f", deps=("audios.a",),
                output="videos/v.mp4")  # fmt: skip
    record = Record(item.id, item.section, item.kind.value)
    delivered: list[Event] = []
    with FileState(tmp_path / "state.db") as store:
        store.put(record)
        ctx = context(item, sandbox, store, tmp_path / "out", delivered, threading.Event())
        submit(ctx, item, record, {"audios.a": audio})
        failed = store.get(item.id)
    assert failed is not None and failed.status is Status.FAILED
    assert "neither offered by its task 404404 nor kept" in (failed.error_message or "")
    assert "--recreate 'audios.a'" in (failed.error_message or "")
    assert sum(sandbox.counters().creates.values()) == 0
