"""The pooled session: what the server receives, over real sockets."""

from __future__ import annotations

import json
from pathlib import Path

from hifly_batch.api.client import HiflyClient
from hifly_batch.apispec import Endpoint
from tests.httpstub import Reply, Seen, stub_server


def test_query_parameters_and_unusual_urls_are_encoded(tmp_path: Path) -> None:
    ok = json.dumps({"code": 0, "status": 1, "request_id": "r"}).encode()
    with stub_server(lambda seen: Reply(body=ok)) as (url, seen):
        client = HiflyClient("t", url)
        client.video_task("任务 1&x=2")  # a query value needing escapes
        client.download(f"{url}/files/视频 1.mp4?Expires=1&Signature=a%2Fb", tmp_path / "v.mp4")
    assert seen[0].path == f"{Endpoint.VIDEO_TASK.value}?task_id=%E4%BB%BB%E5%8A%A1+1%26x%3D2"
    assert seen[1].path == "/files/%E8%A7%86%E9%A2%91%201.mp4?Expires=1&Signature=a%2Fb"


def test_a_download_follows_the_cdn_redirect(tmp_path: Path) -> None:
    def respond(seen: Seen) -> Reply:
        if seen.path == "/real.mp4":
            return Reply(body=b"video bytes")
        return Reply(status=302, headers={"Location": "/real.mp4"})

    with stub_server(respond) as (url, _):
        assert HiflyClient("t", url).download(f"{url}/v.mp4", tmp_path / "v.mp4") == 11
    assert (tmp_path / "v.mp4").read_bytes() == b"video bytes"


def test_credentials_in_a_download_url_are_sent_as_basic_auth(tmp_path: Path) -> None:
    with stub_server(lambda seen: Reply(body=b"ok")) as (url, seen):
        authority = url.split("//", 1)[1]
        HiflyClient("t", url).download(f"http://u:p@{authority}/v.mp4", tmp_path / "v.mp4")
    assert seen[0].headers["Authorization"] == "Basic dTpw"
