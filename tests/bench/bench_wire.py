"""Round-trips per second between the client and the sandbox on loopback.

The sandbox runs in its own process (``hifly-batch sandbox serve``), as it
would for a user, so the two do not share a GIL. The baseline, measured in the
same run, is ``requests`` against a bare stdlib HTTP server that answers a
fixed JSON body: what loopback HTTP costs before any API logic.

    python tests/bench/bench_wire.py [--seconds 3] [--threads 4]
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests

from hifly_batch.api.client import HiflyClient

TARGET_ONE_CONNECTION = 300.0


def rate(call: Callable[[], object], seconds: float, threads: int = 1) -> float:
    """Calls per second of ``call`` run back to back in ``threads`` threads."""
    deadline = time.perf_counter() + seconds

    def loop() -> int:
        count = 0
        while time.perf_counter() < deadline:
            call()
            count += 1
        return count

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(lambda _: loop(), range(threads)))
    return total / (time.perf_counter() - started)


class _Bare(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = json.dumps({"code": 0, "message": "", "left": 1, "request_id": "r"}).encode()

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(self.body)}\r\n\r\n"
        ).encode()
        self.wfile.write(head + self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def bare_server() -> tuple[str, Callable[[], None]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Bare)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server.shutdown


def sandbox_process(data: str) -> tuple[subprocess.Popen[str], str, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hifly_batch", "sandbox", "serve", "--data", data],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    exports = dict(proc.stdout.readline().split(" ", 1)[1].strip().split("=", 1) for _ in "ab")
    return proc, exports["HIFLY_BASE_URL"], exports["HIFLY_TOKEN"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    bare_url, stop_bare = bare_server()
    session = requests.Session()
    baseline = rate(lambda: session.get(bare_url + "/").json(), args.seconds)
    stop_bare()

    with tempfile.TemporaryDirectory() as data:
        proc, base_url, token = sandbox_process(data)
        try:
            client = HiflyClient(token, base_url)
            voice = client.list_voices(kind=2)[0].voice
            one = rate(client.credit, args.seconds)
            task_id = client.create_audio_by_tts(voice=voice, text="基准测试。")
            poll = rate(lambda: client.video_task(task_id), args.seconds)
            many = rate(client.credit, args.seconds, threads=args.threads)
        finally:
            proc.terminate()
            proc.wait()
    print(f"cpus: {os.cpu_count()}, {args.seconds:.0f} s per figure")
    print(f"baseline  bare stdlib server + requests, 1 connection : {baseline:8.0f} req/s")
    print(
        f"sandbox   account/credit, 1 keep-alive connection     : {one:8.0f} req/s"
        f"  ({one / baseline:.2f} x baseline; target >= {TARGET_ONE_CONNECTION:.0f})"
    )
    print(f"sandbox   video/task poll, 1 keep-alive connection    : {poll:8.0f} req/s")
    print(f"sandbox   account/credit, {args.threads} threads                   : {many:8.0f} req/s")
    print("verdict:", "PASS" if one >= TARGET_ONE_CONNECTION else "FAIL")


if __name__ == "__main__":
    main()
