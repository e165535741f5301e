"""The estimate: a pure function of the plan, the prior state and the measured spend."""

from __future__ import annotations

from pathlib import Path

import pytest

from hifly_batch.core.estimate import (
    TABLE,
    UNKNOWN_SECONDS,
    Measured,
    creates,
    estimate,
    speech_seconds,
    table_credits,
)
from hifly_batch.core.graph import Graph, ItemKind, build_graph
from hifly_batch.core.lifecycle import Status
from hifly_batch.core.planning import Action, PriorState, make_plan
from hifly_batch.manifest.loader import load_campaign
from hifly_batch.sandbox.media_maker import make_wav

MANIFEST = """\
version: 1
name: costs
assets:
  sample: {file: sample.wav}
  remote_sample: {url: "https://example.com/talk.mp3"}
  photo: {url: "https://example.com/host.jpg"}
avatars:
  host: {image: photo}
voices:
  narrator: {id: voice_1}
audios:
  promo: {voice: narrator, text: 您好您好您好您好您好您好您好您好您好}
videos:
  spoken: {avatar: host, voice: narrator, text: "one two three four five"}
  dubbed: {avatar: host, audio: sample}
  replayed: {avatar: host, audio: promo}
  remote: {avatar: host, audio: remote_sample}
"""
SAMPLE_SECONDS = 8.0


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Graph:
    root = tmp_path_factory.mktemp("costs")
    (root / "sample.wav").write_bytes(make_wav(SAMPLE_SECONDS, "sample"))
    (root / "costs.yaml").write_text(MANIFEST, encoding="utf-8")
    return build_graph(load_campaign(root / "costs.yaml"))


def media_seconds(path: Path) -> float | None:
    return SAMPLE_SECONDS if path.name == "sample.wav" else None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("您好" * 9, 4.0),  # 18 CJK characters at 4.5 a second
        ("one two three four five", 2.0),  # 5 words at 2.5 a second
        ("欢迎 Alice 来到上海", 6 / 4.5 + 1 / 2.5),  # scripts mixed: both rates add up
        ("こんにちは", max(1.0, 5 / 4.5)),  # kana count as CJK
        ("!", 1.0),  # a second at least
    ],
)
def test_speech_seconds_per_script(text: str, seconds: float) -> None:
    assert speech_seconds(text) == pytest.approx(seconds)


def test_every_paid_create_is_priced_by_the_table(graph: Graph) -> None:
    quoted = estimate(graph, make_plan(graph, {}), {}, media_seconds=media_seconds)
    promo = speech_seconds("您好" * 9)
    assert quoted.items == pytest.approx(
        {
            "avatars.host": TABLE[ItemKind.AVATAR_BY_IMAGE],  # per avatar, not per second
            "audios.promo": TABLE[ItemKind.AUDIO_BY_TTS] * promo,
            "videos.spoken": TABLE[ItemKind.VIDEO_BY_TTS] * 2.0,
            "videos.dubbed": TABLE[ItemKind.VIDEO_BY_AUDIO] * SAMPLE_SECONDS,  # the file's length
            "videos.replayed": TABLE[ItemKind.VIDEO_BY_AUDIO] * promo,  # its audio's estimate
            "videos.remote": TABLE[ItemKind.VIDEO_BY_AUDIO] * UNKNOWN_SECONDS,
        }
    )
    assert quoted.unknown_lengths == 1 and quoted.basis == "table"
    assert quoted.by_kind["video_by_audio"][0] == 3
    assert quoted.credits == pytest.approx(sum(quoted.items.values()))
    assert "an estimate from the README's table" in quoted.describe()


def test_only_creates_in_scope_that_will_be_sent_cost(graph: Graph) -> None:
    done = {
        item.id: PriorState(Status.DONE, item.fingerprint, item.settings_fingerprint, "t")
        for item in graph
    }
    fetched = PriorState(
        Status.FAILED, graph["videos.spoken"].fingerprint, None, "t1", work_exists=True
    )
    failed = PriorState(Status.FAILED, graph["videos.dubbed"].fingerprint, None, "t2")
    prior = {**done, "videos.spoken": fetched, "videos.dubbed": failed}
    plan = make_plan(graph, prior)
    quoted = estimate(graph, plan, prior, media_seconds=media_seconds)
    assert set(quoted.items) == {"videos.dubbed"}  # retried; the other is fetched again
    scoped = estimate(
        graph, make_plan(graph, {}), {}, media_seconds=media_seconds, scope={"audios.promo"}
    )
    assert set(scoped.items) == {"audios.promo"}


@pytest.mark.parametrize(
    ("action", "prior", "sends"),
    [
        (Action.CREATE, None, True),
        (Action.RECREATE, PriorState(Status.DONE), True),
        (Action.RETRY, PriorState(Status.FAILED), True),
        (Action.RETRY, PriorState(Status.FAILED, task_id="t", work_exists=True), False),
        (Action.DOWNLOAD, PriorState(Status.FAILED, task_id="t", work_exists=True), False),
        (Action.RESUME, PriorState(Status.RUNNING, task_id="t"), False),
        (Action.SKIP, PriorState(Status.DONE), False),
        (Action.UNCERTAIN, PriorState(Status.UNCERTAIN), False),
    ],
)
def test_which_actions_send_a_create(action: Action, prior: PriorState | None, sends: bool) -> None:
    assert creates(action, prior) is sends


def test_a_measure_replaces_the_table(graph: Graph) -> None:
    plan = make_plan(graph, {})
    table = estimate(graph, plan, {}, media_seconds=media_seconds)
    # Runs that paid twice the table, for speech that lasted 1.5 times the estimate.
    measured = Measured(runs=2, credits=200, table_credits=100, seconds=30, estimated_seconds=20)
    quoted = estimate(graph, plan, {}, measured, media_seconds=media_seconds)
    assert quoted.basis == "measured" and quoted.runs == 2
    assert quoted.items["avatars.host"] == pytest.approx(2 * table.items["avatars.host"])
    assert quoted.items["videos.dubbed"] == pytest.approx(2 * table.items["videos.dubbed"])
    for spoken in ("videos.spoken", "audios.promo", "videos.replayed"):
        assert quoted.items[spoken] == pytest.approx(3 * table.items[spoken])
    assert "measured on this API over 2 run(s)" in quoted.describe()


def test_measures_add_up_and_an_empty_one_changes_nothing() -> None:
    one = Measured(1, 10, 5, 4, 2)
    assert one.plus(one) == Measured(2, 20, 10, 8, 4)
    assert Measured().price_factor is None and Measured().speech_factor is None
    assert table_credits(ItemKind.VIDEO_BY_TTS, 12) == pytest.approx(
        12 * TABLE[ItemKind.VIDEO_BY_TTS]
    )
    assert table_credits(ItemKind.AVATAR_BY_IMAGE, None) == TABLE[ItemKind.AVATAR_BY_IMAGE]
    assert table_credits(ItemKind.UPLOAD, 3) == 0.0
