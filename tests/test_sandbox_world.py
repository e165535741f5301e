"""The world on disk: what a second sandbox on the same folder sees, versions, damage."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from hifly_batch.sandbox import Sandbox, SandboxConfig, WorldError
from tests.conftest import FAST
from tests.sandbox_fixtures import Client


def test_a_second_sandbox_sees_the_first_ones_world(tmp_path: Path) -> None:
    config = replace(FAST, token=None)
    with Sandbox(tmp_path, config) as first:
        client = Client(first)
        token = first.token
        avatar, voice = client.avatar(), client.voice()
        client.post("voice/edit", {"voice": voice, "rate": "1.5", "volume": "1.0", "pitch": "0.9"})
        task = client.created("audio/create_by_tts", {"voice": voice, "text": "你好"})
        client.wait("video/task", task)
        file_id = client.upload("mp4", b"movie")
    with Sandbox(tmp_path, replace(config, credits=5)) as second:
        assert second.token == token
        client = Client(second)
        assert second.credits() == 100_000 - 10  # an existing world keeps its balance
        assert client.get("voice/list")["data"][0]["rate"] == "1.5"
        answer = client.get("video/task", task_id=task)
        assert answer["status"] == 3
        assert answer["video_Url"].startswith(second.base_url)
        assert requests.get(answer["video_Url"]).status_code == 200
        assert client.post("avatar/create_by_video", {"file_id": file_id})["code"] == 0
        tts = {"voice": voice, "avatar": avatar, "text": "再见"}
        assert client.post("video/create_by_tts", tts)["code"] == 0


def test_a_configured_token_replaces_the_worlds_own(tmp_path: Path) -> None:
    with Sandbox(tmp_path, SandboxConfig()) as first:
        own = first.token
    with Sandbox(tmp_path, SandboxConfig(token="chosen")) as second:
        assert second.token == "chosen"
        assert Client(second).get("account/credit")["code"] == 0
        refused = Client(second, token=own).session.get(Client(second).url("account/credit"))
        assert refused.status_code == 401
    with Sandbox(tmp_path) as third:
        assert third.token == own


def test_counters_persist_and_are_readable_without_a_server(tmp_path: Path) -> None:
    with Sandbox(tmp_path, FAST) as sandbox:
        client = Client(sandbox)
        client.get("account/credit")
        client.post("audio/create_by_tts", {"voice": "voice_pub_01", "text": "你好"})
    with Sandbox(tmp_path, FAST) as again:
        Client(again).get("account/credit")
        assert again.counters().requests["account/credit"] == 2
    counters = Sandbox.read_counters(tmp_path)
    assert counters.requests == {"account/credit": 2, "audio/create_by_tts": 1}
    assert counters.creates == {"audio/create_by_tts": 1}
    assert counters.faults == {}


def test_read_counters_in_another_process(tmp_path: Path) -> None:
    with Sandbox(tmp_path, FAST) as sandbox:
        Client(sandbox).get("voice/list")
        code = (
            "import sys; from pathlib import Path; from hifly_batch.sandbox import Sandbox;"
            "print(Sandbox.read_counters(Path(sys.argv[1])).requests)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
        )
    assert out.stdout.strip() == "{'voice/list': 1}"


def test_counters_and_credits_after_stop(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path, FAST).start()
    Client(sandbox).get("account/credit")
    sandbox.stop()
    assert sandbox.counters().requests == {"account/credit": 1}
    sandbox.set_credits(3)
    assert sandbox.credits() == 3


def test_read_counters_of_no_world_says_so(tmp_path: Path) -> None:
    with pytest.raises(WorldError, match="no sandbox world"):
        Sandbox.read_counters(tmp_path)


def test_another_format_version_is_refused_naming_the_file(tmp_path: Path) -> None:
    Sandbox(tmp_path).stop()
    db = sqlite3.connect(tmp_path / "world.db")
    db.execute("UPDATE meta SET value = '99' WHERE key = 'format_version'")
    db.commit()
    db.close()
    with pytest.raises(WorldError, match=r"world\.db.*version 99"):
        Sandbox(tmp_path)


def test_a_damaged_file_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "world.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(WorldError, match=r"world\.db: not a readable sandbox world"):
        Sandbox(tmp_path)


def test_files_are_stored_under_generated_names(tmp_path: Path) -> None:
    with Sandbox(tmp_path, FAST) as sandbox:
        client = Client(sandbox)
        file_id = client.upload("jpg", b"image")
        names = [p.name for p in (tmp_path / "files").iterdir()]
    assert len(names) == 1
    assert names[0].startswith("up_") and names[0].endswith(".jpg")
    assert file_id.removeprefix("file_") not in names[0]


def test_uploaded_and_output_bytes_for_tests(tmp_path: Path) -> None:
    with Sandbox(tmp_path, FAST) as sandbox:
        client = Client(sandbox)
        file_id = client.upload("mp3", b"sound bytes")
        assert sandbox.uploaded_bytes(file_id) == b"sound bytes"
        pending = client.post("tool/create_upload_url", {"file_extension": "mp3"})["file_id"]
        with pytest.raises(KeyError):
            sandbox.uploaded_bytes(pending)
        task = client.created("audio/create_by_tts", {"voice": "voice_pub_01", "text": "你好"})
        with pytest.raises(KeyError):
            sandbox.output_bytes(task)
        url = client.wait("video/task", task)["video_Url"]
        assert sandbox.output_bytes(task) == requests.get(url).content
