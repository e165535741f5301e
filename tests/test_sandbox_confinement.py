"""The sandbox stays on loopback and inside its data folder.

Already proven: ``test_sandbox_config.py`` (0.0.0.0 refused, allowed only with
``allow_non_loopback``; the loopback predicate) and ``test_sandbox_server.py::
test_traversal_attempts_never_reach_the_disk`` (``/files/../world.db``, ``%2e%2e``
and ``..%2f`` forms, ``/upload/../world.db``). Added: more hosts, the command
line, PUTs that would write outside, and a signed upload URL re-aimed with ``..``.
"""

from __future__ import annotations

import http.client
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from hifly_batch.sandbox import Sandbox, SandboxConfig
from tests.campaigns import cli
from tests.conftest import SECRET_TOKEN


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com", "[::]"])
def test_non_loopback_hosts_are_refused(tmp_path: Path, host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        Sandbox(tmp_path / "world", host=host)


def test_the_command_line_offers_no_host() -> None:
    help_text = cli("sandbox", "serve", "--help").stdout
    assert "--port" in help_text and "--host" not in help_text and "--bind" not in help_text


def _send(sandbox: Sandbox, method: str, target: str, body: bytes = b"x") -> int:
    parts = urlsplit(sandbox.base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        conn.request(method, target, body=body, headers={"Content-Type": "video/mp4"})
        answer = conn.getresponse()
        answer.read()
        return answer.status
    finally:
        conn.close()


TARGETS = [
    "/upload/../../x",
    "/upload/..%2f..%2fx",
    "/upload/%2e%2e/%2e%2e/x",
    "/upload/....//....//x",
    "/upload/%2e%2e%5c%2e%2e%5cx",
    "/files/../../x",
    "/files/%2e%2e%2f%2e%2e%2fx",
    "/files/..%5c..%5cx",
]


@pytest.mark.parametrize("target", TARGETS)
def test_traversal_neither_reads_nor_writes_outside(tmp_path: Path, target: str) -> None:
    (tmp_path / "x").write_text("outside the sandbox")
    config = SandboxConfig(token=SECRET_TOKEN)
    with Sandbox(tmp_path / "world", config) as sandbox:
        for method in ("PUT", "GET"):
            status = _send(sandbox, method, target + "?Expires=99999999999&Signature=x")
            assert status in (403, 404, 405), (method, status)
    assert (tmp_path / "x").read_text() == "outside the sandbox"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["world", "x"]


def test_a_signed_upload_url_re_aimed_with_dots_is_refused(tmp_path: Path) -> None:
    config = SandboxConfig(token=SECRET_TOKEN)
    with Sandbox(tmp_path / "world", config) as sandbox:
        answer = requests.post(
            sandbox.base_url + "/api/v2/hifly/tool/create_upload_url",
            json={"file_extension": "mp4"},
            headers={"Authorization": f"Bearer {SECRET_TOKEN}"},
            timeout=5,
        ).json()
        url = urlsplit(answer["upload_url"])
        file_id = url.path.rsplit("/", 1)[1]
        for path in (f"/upload/../{file_id}", f"/upload/{file_id}/../../x", "/upload/../world.db"):
            status = _send(sandbox, "PUT", f"{path}?{url.query}")
            assert status in (403, 404), (path, status)
        assert _send(sandbox, "PUT", f"{url.path}?{url.query}") == 200  # the real one works
    assert sorted(p.name for p in tmp_path.iterdir()) == ["world"]
