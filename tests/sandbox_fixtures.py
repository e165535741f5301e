"""Helpers for the sandbox's own tests: a plain requests session, a movable clock, polling."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import requests

from hifly_batch.apispec import PREFIX
from hifly_batch.sandbox import Faults, Sandbox, SandboxConfig
from hifly_batch.sandbox.media_maker import make_wav
from tests.conftest import FAST


class MovableClock:
    """Real time plus an offset that a test can push forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@contextmanager
def running(data_dir: Path, clock: Any = time.time, **changes: Any) -> Iterator[Sandbox]:
    """A started sandbox on ``data_dir`` with FAST settings changed by ``changes``."""
    config = replace(FAST, **changes)
    with Sandbox(data_dir, config, clock=clock) as sandbox:
        yield sandbox


def faulty(**rates: Any) -> SandboxConfig:
    """FAST settings with these fault rates."""
    return replace(FAST, faults=Faults(**rates))


class Client:
    """Plain HTTP against a sandbox: the documented paths, JSON in and out."""

    def __init__(self, sandbox: Sandbox, token: str | None = None) -> None:
        self.sandbox = sandbox
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token or sandbox.token}"

    def url(self, short: str) -> str:
        return f"{self.sandbox.base_url}{PREFIX}/{short}"

    def get(self, short: str, **params: Any) -> dict[str, Any]:
        answer = self.session.get(self.url(short), params=params, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]

    def post(self, short: str, body: Any) -> dict[str, Any]:
        answer = self.session.post(self.url(short), json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]

    def upload(self, ext: str, data: bytes) -> str:
        """create_upload_url then PUT; the file_id."""
        made = self.post("tool/create_upload_url", {"file_extension": ext})
        put = requests.put(
            made["upload_url"],
            data=data,
            headers={"Content-Type": made["content_type"]},
            timeout=10,
        )
        assert put.status_code == 200, put.text
        return str(made["file_id"])

    def wait(self, query: str, task_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """Poll a task query until status 3 or 4."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self.get(query, task_id=task_id)
            if answer.get("status") in (3, 4) or time.monotonic() > deadline:
                return answer
            time.sleep(0.02)

    def created(self, short: str, body: dict[str, Any]) -> str:
        """The task id of a create that must succeed."""
        answer = self.post(short, body)
        assert answer["code"] == 0, answer
        return str(answer["task_id"])

    def avatar(self) -> str:
        """A finished avatar, cloned from a remote video URL."""
        task = self.created("avatar/create_by_video", {"video_url": "https://example.com/a.mp4"})
        answer = self.wait("avatar/task", task)
        assert answer["status"] == 3, answer
        return str(answer["avatar"])

    def voice(self, seconds: float = 6.0) -> str:
        """A finished own voice, cloned from an uploaded WAV of ``seconds``."""
        file_id = self.upload("wav", make_wav(seconds, "sample"))
        task = self.created("voice/create", {"title": "样本", "voice_type": 8, "file_id": file_id})
        answer = self.wait("voice/task", task)
        assert answer["status"] == 3, answer
        return str(answer["voice"])


def served(stdout: IO[str] | None) -> tuple[str, requests.Session]:
    """The base URL ``sandbox serve`` printed on ``stdout``, and a session carrying the
    token it printed."""
    assert stdout is not None
    lines = [stdout.readline().strip() for _ in range(2)]
    exports = dict(line.removeprefix("export ").split("=", 1) for line in lines)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {exports['HIFLY_TOKEN']}"
    return exports["HIFLY_BASE_URL"], session
