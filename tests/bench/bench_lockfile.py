"""What keeping the lock file costs a run: one write of it, against reading the state.

A run writes the lock file at its end and every few seconds while it runs; each
write reads the state, chooses each item's record (:func:`lockfile.to_write`),
renders the text and compares it with the file. The baseline, measured in the
same run, is reading every record from the state file, which a run does anyway.

    python tests/bench/bench_lockfile.py [--items 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from hifly_batch.campaign import LOCK_SAVE_SECONDS, LOCK_SAVE_SHARE
from hifly_batch.core.lifecycle import Status
from hifly_batch.runner import lockfile
from hifly_batch.runner.state import Record
from hifly_batch.runner.state_file import FileState


def records(n: int) -> list[Record]:
    """``n`` finished videos, as a large campaign's state holds them."""
    return [
        Record(
            item=f"videos.welcome[c{i:06d}]",
            section="videos",
            kind="video_by_tts",
            key=f"c{i:06d}",
            status=Status.DONE,
            fingerprint=f"{i:064x}",
            task_id=str(1_000_000_000_000_000 + i),
            output=f"welcome/c{i:06d}.mp4",
            output_size=48_213 + i,
            output_sha256=f"{i * 7:064x}",
            duration_s=4.2,
            attempts=1,
            started_at=1.0,
            finished_at=2.0,
        )
        for i in range(n)
    ]


def best_of(repeat: int, call: Callable[[], object]) -> float:
    """The fastest of ``repeat`` timed calls, in seconds."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    made = records(args.items)
    fingerprints = {r.item: r.fingerprint for r in made}
    with tempfile.TemporaryDirectory() as folder:
        state = Path(folder) / "c.state.db"
        lock = Path(folder) / "c.lock"
        with FileState(state) as store:
            store.put_many(made)
            lockfile.write(lock, lockfile.render("c", made))
            # A teammate's line for every tenth item: the file and the state disagree there.
            locked = lockfile.read(lock, campaign="c")
            locked += [replace(r, task_id=r.task_id + "9") for r in made[::10]]

            def save() -> None:
                local = store.records()
                written = lockfile.to_write(local, set(), locked, fingerprints)
                lockfile.write(lock, lockfile.render("c", written))

            baseline = best_of(args.repeat, store.records)
            one_save = best_of(args.repeat, save)
            parse = best_of(args.repeat, lambda: lockfile.read(lock, campaign="c"))
            tracemalloc.start()
            save()
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        size = lock.stat().st_size
    print(f"lock file of {args.items} items: {size / 1e6:.2f} MB, {size / args.items:.0f} B/item")
    print(f"baseline: read every record from the state   {baseline * 1e3:8.1f} ms")
    print(f"one lock file write (read, choose, render)    {one_save * 1e3:8.1f} ms  "
          f"= {one_save / baseline:.2f} x the baseline")  # fmt: skip
    print(f"reading the lock file (parse every line)       {parse * 1e3:8.1f} ms  "
          f"= {parse / baseline:.2f} x the baseline")  # fmt: skip
    pause = max(LOCK_SAVE_SECONDS, LOCK_SAVE_SHARE * one_save)
    print(f"during a run it is written every {pause:.1f} s: {one_save / pause:.2%} of the run")
    print(f"peak memory of one write: {peak / 1e6:.1f} MB ({peak / args.items:.0f} B/item)")
    print("(exit 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
