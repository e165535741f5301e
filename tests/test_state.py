"""The state file: round trips, transactions, the lock, damaged and foreign files."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hifly_batch.runner.state import (
    Record,
    StateError,
    StateLocked,
    StateStore,
    Status,
    run_lock,
)


def record(n: int, **changes: object) -> Record:
    base = Record(item=f"videos.v[{n}]", section="videos", kind="video_tts", key=str(n))
    return base.__class__(**{**base.__dict__, **changes})


def test_records_round_trip_every_field(tmp_path: Path) -> None:
    full = record(
        1,
        status=Status.RUNNING,
        fingerprint="f" * 64,
        settings_fingerprint="s",
        task_id="t1",
        resource_id="av_1",
        output="videos/v/1.mp4",
        duration_s=12.5,
        attempts=2,
        error_code=1001,
        error_message="满了",
        started_at=1.5,
        finished_at=2.5,
    )
    with StateStore(tmp_path / "s.db") as store:
        store.put(full)
    with StateStore(tmp_path / "s.db", readonly=True) as store:
        assert store.records() == {full.item: full}
        assert store.get("missing") is None


def test_update_writes_one_row(tmp_path: Path) -> None:
    with StateStore(tmp_path / "s.db") as store:
        store.put_many(record(n) for n in range(100))
        changed = store.update(store.get("videos.v[7]"), status=Status.DONE)  # type: ignore[arg-type]
        assert store.get("videos.v[7]") == changed
        others = [r for r in store.records().values() if r.item != changed.item]
        assert {r.status for r in others} == {Status.PENDING}


def test_put_many_writes_all_or_nothing(tmp_path: Path) -> None:
    unwritable = record(2, error_message=object())  # fails to bind after the first row
    with StateStore(tmp_path / "s.db") as store:
        with pytest.raises(sqlite3.Error):
            store.put_many([record(1), unwritable, record(3)])
        assert store.records() == {}


def test_a_second_process_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    state = tmp_path / "s.db"
    holder = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from hifly_batch.runner.state import run_lock
        with run_lock(Path({str(state)!r})):
            print("locked", flush=True)
            time.sleep(30)
    """)
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(StateLocked) as caught, run_lock(state):
            pass
        assert str(state) in str(caught.value) and f"pid {proc.pid}" in str(caught.value)
    finally:
        proc.kill()
        proc.wait()
    with run_lock(state):  # the kernel released it with the process
        pass


def test_damaged_file_names_itself(tmp_path: Path) -> None:
    bad = tmp_path / "s.db"
    bad.write_bytes(b"not a database" * 100)
    with pytest.raises(StateError) as caught:
        StateStore(bad)
    assert str(bad) in str(caught.value) and "move it aside" in str(caught.value)


def test_other_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    StateStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'format_version'")
    with pytest.raises(StateError, match="version 99"):
        StateStore(path)


def test_reading_before_any_run_says_so(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="nothing has run"):
        StateStore(tmp_path / "none.db", readonly=True)


def test_a_file_from_before_a_new_column_is_read_and_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO meta VALUES ('format_version', '1');"
            "CREATE TABLE items (item TEXT PRIMARY KEY, section ANY, kind ANY, status ANY);"
            "INSERT INTO items VALUES ('videos.v[1]', 'videos', 'video_by_tts', 'done');"
        )
    with StateStore(path, readonly=True) as store:
        assert store.get("videos.v[1]") == Record(
            "videos.v[1]", "videos", "video_by_tts", status=Status.DONE
        )
    with StateStore(path) as store:
        store.update(store.get("videos.v[1]"), output_size=12)  # type: ignore[arg-type]
        assert store.get("videos.v[1]").output_size == 12  # type: ignore[union-attr]
