"""Runner benchmarks against the sandbox, each run of the real CLI in its own process.

``throughput`` (default 10,000 videos, instant tasks, concurrency 16): items
per second, API calls per finished item, runner CPU seconds per item, peak RSS
of the runner. Targets: peak RSS <= 300 MB, CPU <= 2 ms per item. Concurrency
16 keeps the runner itself busy; at 4, instant tasks are paced by the 0.05 s
poll interval (about 70 items/s) and the CPU, idle between steps, does each
step slower. Beside the CPU figure it prints what the file system alone takes
to create, fill and rename a file of an output's size in the same folder: on
ext4 right after many deletions that alone can cost 0.5 ms, so run it on a
quiet disk or a tmpfs (``--dir``).

``makespan`` (default 300 videos, a cap of C=10 works generating, task times
drawn between 1.0 and 1.2 s, poll_interval 0.25s, poll_max 2s, concurrency
10): the command's wall time from start to exit divided by the floor
max(longest task, sum of task times / C) read from the sandbox's own record of
each task, and API calls per finished item (creates + polls + retries;
uploads and downloads counted apart). Targets, in the same run: ratio <= 1.15
and <= 3.0 calls per item.

    python tests/bench/bench_run.py throughput [--items 10000] [--concurrency 16] [--dir D]
    python tests/bench/bench_run.py makespan [--items 300] [--dir D]
    python tests/bench/bench_run.py callbacks [--items 300] [--dir D]

``callbacks``: the makespan scenario three times in one invocation: polling alone, with
``run --callbacks`` (the sandbox calling back; targets ratio <= 1.05 and <= 2.1 calls per
item), and with 30% of the callbacks dropped by the sandbox (ratio <= 1.15).

The sandbox serves from another process so that its work is not counted as
the runner's; the runner's CPU and RSS come from ``wait4`` on its process.
The package's bytecode is compiled first, as ``pip install`` does: an editable
install under ``PYTHONDONTWRITEBYTECODE`` would otherwise compile every module at
each start of the CLI, which no installed copy does.
"""

from __future__ import annotations

import argparse
import compileall
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import hifly_batch
from hifly_batch.api.client import HiflyClient
from hifly_batch.sandbox import Sandbox
from hifly_batch.sandbox.media_maker import make_mp4
from hifly_batch.sandbox.records import TaskTime

TRANSFERS = ("upload", "download", "tool/create_upload_url")


@dataclass
class Measured:
    wall: float
    cpu: float
    sys_cpu: float
    max_rss_mb: float
    code: int
    started: float = 0.0  # time.time() at launch: the sandbox's clock


def serve(data: Path, *options: str) -> tuple[subprocess.Popen[str], str, str]:
    """``hifly-batch sandbox serve`` in its own process; returns it, its URL and token."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hifly_batch", "sandbox", "serve", "--data", str(data), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    exports = dict(proc.stdout.readline().split(" ", 1)[1].strip().split("=", 1) for _ in "ab")
    return proc, exports["HIFLY_BASE_URL"], exports["HIFLY_TOKEN"]


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)


def existing_avatar(base_url: str, token: str, folder: Path) -> str:
    """An avatar made before the measured run, so the run is videos only."""
    client = HiflyClient(token, base_url)
    clip = folder / "clip.mp4"
    clip.write_bytes(make_mp4(3.0, "bench"))
    task_id = client.create_avatar_by_video(file_id=client.upload_file(clip))
    while not (task := client.avatar_task(task_id)).finished:
        time.sleep(0.05)
    return task.avatar


def write_campaign(folder: Path, items: int, avatar: str, settings: str) -> Path:
    rows = "\n".join(f"c{n:05d},客户{n}" for n in range(items))
    (folder / "customers.csv").write_text("customer_id,name\n" + rows + "\n", encoding="utf-8")
    manifest = folder / "bench.yaml"
    manifest.write_text(
        f"""\
version: 1
name: bench
settings:
{settings}
data:
  customers: {{csv: customers.csv, key: "{{{{ row.customer_id }}}}"}}
avatars:
  host: {{id: {avatar}}}
voices:
  narrator: {{public: 公共声音1}}
videos:
  hello:
    for_each: customers
    avatar: host
    voice: narrator
    text: "{{{{ row.name }}}}您好，欢迎光临。"
""",
        encoding="utf-8",
    )
    return manifest


def run_cli(manifest: Path, base_url: str, token: str, *options: str) -> Measured:
    env = {**os.environ, "HIFLY_BASE_URL": base_url, "HIFLY_TOKEN": token}
    launched, started = time.time(), time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hifly_batch",
            "-q",
            "run",
            "--no-progress",
            str(manifest),
            *options,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return Measured(
        wall, cpu, usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode, started=launched
    )


def api_calls(data: Path) -> tuple[int, int]:
    """(API calls, transfer calls) the sandbox counted."""
    requests = Sandbox.read_counters(data).requests
    transfers = sum(n for name, n in requests.items() if name in TRANSFERS)
    return sum(requests.values()) - transfers, transfers


@dataclass
class Session:
    """One measured run: the runner's figures and what the sandbox counted."""

    m: Measured
    calls: int
    transfers: int
    works: list[TaskTime]  # the videos' tasks, from the sandbox's record
    file_ms: float  # CPU to create, fill and rename one output-sized file there

    @property
    def work_seconds(self) -> list[float]:
        return [t.seconds for t in self.works]

    def breakdown(self, cap: int) -> str:
        """Where the makespan went: launch to the first create, the slots' idle time
        between one task's finish and the next create (per task), and the last finish
        to the exit."""
        first = min(t.created_at for t in self.works)
        last = max(t.finished_at for t in self.works)
        idle = ((last - first) * cap - sum(self.work_seconds)) / len(self.works)
        end = self.m.started + self.m.wall - last
        return (
            f"start {first - self.m.started:.2f} s, idle per slot and task "
            f"{1000 * idle:.0f} ms, end {end:.2f} s"
        )


def file_cost(folder: Path, size: int, count: int = 2000) -> float:
    """CPU milliseconds the file system takes per output-sized file in ``folder``.

    The files stay until the run is over: deleting them now would make the
    run's own files dearer (ext4 scans recently freed inodes).
    """
    folder.mkdir()
    body = b"x" * size
    started = time.process_time()
    for n in range(count):
        part = folder / f".{n}.part"
        with part.open("wb") as fh:
            fh.write(body)
        os.replace(part, folder / f"{n}.mp4")
    return 1000 * (time.process_time() - started) / count


def measure(
    items: int,
    settings: str,
    *sandbox_options: str,
    where: str | None,
    run_options: tuple[str, ...] = (),
) -> Session:
    """Serve a sandbox, make an avatar, then time ``items`` videos through the CLI (given
    ``run_options``)."""
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        folder, data = Path(tmp), Path(tmp) / "world"
        proc, url, token = serve(data, "--credits", "1000000000", *sandbox_options)
        try:
            avatar = existing_avatar(url, token, folder)
            file_ms = file_cost(folder / "baseline", len(make_mp4(3.0, "bench")))
            before, _ = api_calls(data)
            manifest = write_campaign(folder, items, avatar, settings)
            m = run_cli(manifest, url, token, *run_options)
        finally:
            stop(proc)
        calls, transfers = api_calls(data)
        times = Sandbox(data).task_times()
    works = [t for t in times if t.endpoint == "video/create_by_tts"]
    return Session(m, calls - before, transfers, works, file_ms)


def throughput(items: int, concurrency: int, where: str | None) -> None:
    run = measure(
        items,
        f"  concurrency: {concurrency}\n  poll_interval: 0.05s\n  poll_max: 1s",
        "--task-seconds", "0", "--task-jitter", "0", "--max-generating", "1000000",
        where=where,
    )  # fmt: skip
    m = run.m
    print(f"throughput: {items} videos, instant tasks, concurrency {concurrency} (exit {m.code})")
    print(f"  items per second        : {items / m.wall:8.1f}   ({m.wall:.1f} s wall)")
    per_item, moved = run.calls / items, run.transfers / items
    print(f"  API calls per item      : {per_item:8.2f}   (+ {moved:.2f} transfers)")
    print(
        f"  runner CPU per item     : {1000 * m.cpu / items:8.2f} ms   (target <= 2.0; "
        f"{1000 * m.sys_cpu / items:.2f} ms of it in the kernel)"
    )
    print(f"  file system, per output : {run.file_ms:8.2f} ms   (create+write+rename, same folder)")
    print(f"  runner peak RSS         : {m.max_rss_mb:8.1f} MB   (target <= 300)")
    ok = m.code == 0 and m.cpu / items <= 0.002 and m.max_rss_mb <= 300
    print("verdict:", "PASS" if ok else "FAIL")


MAKESPAN_SANDBOX = ("--task-seconds", "1.0", "--task-jitter", "0.2")


def makespan_of(
    items: int,
    where: str | None,
    cap: int,
    sandbox_options: tuple[str, ...] = (),
    run_options: tuple[str, ...] = (),
) -> tuple[Session, float, float]:
    """One makespan session: the session, its ratio to the floor and API calls per item."""
    run = measure(
        items,
        f"  concurrency: {cap}\n  poll_interval: 0.25s\n  poll_max: 2s",
        *MAKESPAN_SANDBOX, "--max-generating", str(cap), *sandbox_options,
        where=where,
        run_options=run_options,
    )  # fmt: skip
    seconds = run.work_seconds
    floor = max(max(seconds), sum(seconds) / cap)
    return run, run.m.wall / floor, run.calls / items


def makespan(items: int, where: str | None, cap: int = 10) -> None:
    run, ratio, per_item = makespan_of(items, where, cap)
    m, transfers, seconds = run.m, run.transfers, run.work_seconds
    floor = m.wall / ratio
    print(
        f"makespan: {items} videos, cap C={cap}, tasks {min(seconds):.2f}-{max(seconds):.2f} s "
        f"(exit {m.code})"
    )
    print(f"  floor max(longest, sum/C) : {floor:7.2f} s  (from the sandbox's task record)")
    print(f"  makespan (start to exit)  : {m.wall:7.2f} s")
    print(f"  ratio                     : {ratio:7.3f}    (target <= 1.15)")
    print(
        f"  API calls per item        : {per_item:7.2f}    (target <= 3.0; "
        f"+ {transfers / items:.2f} transfers)"
    )
    print(f"  runner CPU                : {m.cpu:7.2f} s")
    print("verdict:", "PASS" if m.code == 0 and ratio <= 1.15 and per_item <= 3.0 else "FAIL")


def callbacks(items: int, where: str | None, cap: int = 10, lost: float = 0.3) -> None:
    """The makespan with ``run --callbacks`` beside polling alone, in one invocation; then
    with a share ``lost`` of the callbacks dropped by the sandbox."""
    print(f"callbacks: {items} videos, cap C={cap}, tasks 1.0-1.2 s, poll_max 2s")
    rows = [("polling", (), (), 1.15, 3.0)]
    port = free_port()
    hook = ("--callback-url", f"http://127.0.0.1:{port}/")
    listen = ("--callbacks", f"127.0.0.1:{port}")
    rows.append(("callbacks", hook, listen, 1.05, 2.1))
    drop = ("--faults", f"callback_drop={lost},seed=1")
    rows.append((f"callbacks, {lost:.0%} lost", (*hook, *drop), listen, 1.15, 3.0))
    ok = True
    for name, sandbox_options, run_options, ratio_target, calls_target in rows:
        run, ratio, per_item = makespan_of(items, where, cap, sandbox_options, run_options)
        passed = run.m.code == 0 and ratio <= ratio_target and per_item <= calls_target
        ok = ok and (passed or name == "polling")
        print(
            f"  {name:<20}: ratio {ratio:6.3f} (target <= {ratio_target}), "
            f"{per_item:5.2f} API calls per item (target <= {calls_target}), exit {run.m.code}"
        )
        print(f"  {'':<20}  ({run.breakdown(cap)})")
    print("verdict:", "PASS" if ok else "FAIL")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=["throughput", "makespan", "callbacks"])
    parser.add_argument("--items", type=int)
    parser.add_argument("--concurrency", type=int, default=16, help="throughput only")
    parser.add_argument("--dir", help="where the campaign and its outputs go (default: temp)")
    args = parser.parse_args()
    compileall.compile_dir(Path(hifly_batch.__file__).parent, quiet=1)
    if args.scenario == "throughput":
        throughput(args.items or 10_000, args.concurrency, args.dir)
    elif args.scenario == "makespan":
        makespan(args.items or 300, args.dir)
    else:
        callbacks(args.items or 300, args.dir)


if __name__ == "__main__":
    main()
