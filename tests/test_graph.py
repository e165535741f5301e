"""The item graph: items, kinds, requests with Refs, dependency order, cycles."""

from __future__ import annotations

from pathlib import Path

import pytest

from hifly_batch.core.graph import ItemKind, Ref, build_graph
from hifly_batch.manifest.diagnostics import ManifestInvalid
from hifly_batch.manifest.loader import load_campaign
from tests.manifest_helpers import REPO, campaign


def graph_of(path: Path):  # type: ignore[no-untyped-def]
    return build_graph(load_campaign(path))


def test_items_kinds_and_order(tmp_path: Path) -> None:
    graph = graph_of(campaign(tmp_path))
    assert [(i.id, i.kind) for i in graph] == [
        ("assets.clip", ItemKind.UPLOAD),
        ("assets.sample", ItemKind.UPLOAD),
        ("avatars.founder", ItemKind.AVATAR_BY_VIDEO),
        ("voices.narrator", ItemKind.PUBLIC_VOICE),
        ("voices.cloned", ItemKind.VOICE_CLONE),
        ("audios.promo", ItemKind.AUDIO_BY_TTS),
        ("videos.welcome[c1]", ItemKind.VIDEO_BY_TTS),
        ("videos.welcome[c2]", ItemKind.VIDEO_BY_TTS),
        ("videos.welcome[c3]", ItemKind.VIDEO_BY_TTS),
    ]
    position = {item.id: n for n, item in enumerate(graph)}
    for item in graph:
        assert all(position[dep] < position[item.id] for dep in item.deps)


def test_requests_use_api_field_names_and_refs(tmp_path: Path) -> None:
    graph = graph_of(campaign(tmp_path))
    video = graph["videos.welcome[c2]"]
    assert dict(video.request) == {
        "title": "欢迎Alice",
        "text": "Alice您好，欢迎来到飞影。",  # stripped (SPEC §3)
        "voice": Ref("voices.cloned"),
        "avatar": Ref("avatars.founder"),
    }
    assert (video.key, video.index, video.output) == ("c2", 2, "videos/welcome/c2.mp4")
    assert dict(graph["voices.cloned"].request) == {
        "title": "cloned", "voice_type": 8, "file_id": Ref("assets.sample"),
    }  # fmt: skip
    assert dict(graph["voices.cloned"].settings or {}) == {
        "rate": "1.1", "volume": "1.0", "pitch": "1.0",
    }  # fmt: skip
    assert dict(graph["avatars.founder"].request) == {"file_id": Ref("assets.clip")}
    upload = graph["assets.clip"]
    assert dict(upload.request) == {"file_extension": "mp4"}
    assert upload.file == tmp_path / "media" / "founder.mp4"


def test_unused_assets_are_not_uploaded(tmp_path: Path) -> None:
    path = campaign(tmp_path, replace={"assets:\n": "assets:\n  spare: {file: media/voice.wav}\n"})
    assert "assets.spare" not in graph_of(path).by_id


def test_remote_assets_api_params_and_image_model(tmp_path: Path) -> None:
    path = campaign(tmp_path, replace={
        "assets:\n": "assets:\n  photo: {url: 'https://example.com/p.png'}\n",
        "avatars:\n": "avatars:\n  host: {image: photo, api_params: {aigc_flag: 1}}\n",
        "    avatar: founder": "    avatar: host\n    api_params: {st_show: 1}",
    })  # fmt: skip
    graph = graph_of(path)
    assert graph["assets.photo"].kind is ItemKind.REMOTE_ASSET
    assert dict(graph["avatars.host"].request) == {
        "model": 2, "image_url": Ref("assets.photo"), "aigc_flag": 1,
    }  # fmt: skip
    assert graph["videos.welcome[c1]"].request["st_show"] == 1


def test_audios_item_drives_videos_per_row(tmp_path: Path) -> None:
    path = campaign(tmp_path, replace={
        "audios:\n  promo:": "audios:\n  speech: {for_each: customers, voice: narrator, "
        "text: '{{ row.name }}'}\n  promo:",
        "    voice: cloned\n    text_file: welcome.txt.j2\n": "    audio: speech\n",
    })  # fmt: skip
    graph = graph_of(path)
    video = graph["videos.welcome[c3]"]
    assert video.kind is ItemKind.VIDEO_BY_AUDIO
    assert video.request["audio_url"] == Ref("audios.speech[c3]")
    assert "audios.speech[c3]" in video.deps


def test_voice_from_audios_item_and_cycle(tmp_path: Path) -> None:
    ok = campaign(
        tmp_path / "ok",
        replace={"cloned: {audio: sample, rate: 1.1}": ("cloned: {audio: promo, rate: 1.1}")},
    )
    graph = graph_of(ok)
    assert graph["voices.cloned"].request["audio_url"] == Ref("audios.promo")
    ids = [i.id for i in graph]
    assert ids.index("audios.promo") < ids.index("voices.cloned")
    looped = campaign(tmp_path / "loop", replace={
        "cloned: {audio: sample, rate: 1.1}": "cloned: {audio: promo, rate: 1.1}",
        "promo: {voice: narrator": "promo: {voice: cloned",
    })  # fmt: skip
    with pytest.raises(ManifestInvalid) as caught:
        graph_of(looped)
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.path == "voices.cloned.audio"
    assert diagnostic.message == "cycle: voices.cloned → audios.promo → voices.cloned"
    assert diagnostic.location.line == 15


def test_quickstart_graph() -> None:
    graph = graph_of(REPO / "manifests" / "quickstart.yaml")
    assert len(graph) == 9
    assert {i.kind for i in graph} >= {ItemKind.UPLOAD, ItemKind.PUBLIC_VOICE}
