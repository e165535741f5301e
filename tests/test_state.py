"""The state file: round trips, transactions, damaged and foreign files, and
files written by earlier versions (migrated when written, translated when read)."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hifly_batch.core.lifecycle import Status
from hifly_batch.runner.errors import StateError
from hifly_batch.runner.state import FORMAT_VERSION, Record
from hifly_batch.runner.state_file import FileState
from tests.campaigns import cli
from tests.test_examples import copy_repo_campaigns

# Written by release 0.1.0 (format version 1): the quickstart campaign run on the sandbox,
# with videos.welcome[c002] failed after its task finished (work_exists in its details).
V1_FIXTURE = Path(__file__).parent / "data" / "state-v1-quickstart.sandbox.db"
C002 = "videos.welcome[c002]"
FOUNDER_VOICE_SETTINGS = {"pitch": "1.0", "rate": "1.1", "volume": "1.0"}


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
        settings={"rate": "1.1", "pitch": "0.9"},
        field_digests={"text": "d" * 64, "title": "标题"},
        work_exists=True,
    )
    with FileState(tmp_path / "s.db") as store:
        store.put(full)
    with FileState(tmp_path / "s.db", readonly=True) as store:
        assert store.records() == {full.item: full}
        assert store.get("missing") is None


def test_update_writes_one_row(tmp_path: Path) -> None:
    with FileState(tmp_path / "s.db") as store:
        store.put_many(record(n) for n in range(100))
        changed = store.update(store.get("videos.v[7]"), status=Status.DONE)  # type: ignore[arg-type]
        assert store.get("videos.v[7]") == changed
        others = [r for r in store.records().values() if r.item != changed.item]
        assert {r.status for r in others} == {Status.PENDING}


def test_put_many_writes_all_or_nothing(tmp_path: Path) -> None:
    unwritable = record(2, error_message=object())  # fails to bind after the first row
    with FileState(tmp_path / "s.db") as store:
        with pytest.raises(sqlite3.Error):
            store.put_many([record(1), unwritable, record(3)])
        assert store.records() == {}


def test_damaged_file_names_itself(tmp_path: Path) -> None:
    bad = tmp_path / "s.db"
    bad.write_bytes(b"not a database" * 100)
    with pytest.raises(StateError) as caught:
        FileState(bad)
    assert str(bad) in str(caught.value) and "move it aside" in str(caught.value)


def test_other_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    FileState(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'format_version'")
    with pytest.raises(StateError, match="version 99"):
        FileState(path)
    with pytest.raises(StateError, match="version 99"):
        FileState(path, readonly=True)
    assert file_version(path) == "99"


def test_reading_before_any_run_says_so(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="nothing has run"):
        FileState(tmp_path / "none.db", readonly=True)


def test_a_file_from_before_a_new_column_is_read_and_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO meta VALUES ('format_version', '1');"
            "CREATE TABLE items (item TEXT PRIMARY KEY, section ANY, kind ANY, status ANY);"
            "INSERT INTO items VALUES ('videos.v[1]', 'videos', 'video_by_tts', 'done');"
        )
    with FileState(path, readonly=True) as store:
        assert store.get("videos.v[1]") == Record(
            "videos.v[1]", "videos", "video_by_tts", status=Status.DONE
        )
    with FileState(path) as store:
        store.update(store.get("videos.v[1]"), output_size=12)  # type: ignore[arg-type]
        assert store.get("videos.v[1]") == Record(
            "videos.v[1]", "videos", "video_by_tts", status=Status.DONE, output_size=12
        )
    assert file_version(path) == str(FORMAT_VERSION)


# Files written by format version 1 ---------------------------------------------------


def v1_copy(tmp_path: Path, name: str = "v1.db") -> Path:
    """A copy of the 0.1.0 fixture to open (the committed file is never opened)."""
    path = tmp_path / name
    shutil.copyfile(V1_FIXTURE, path)
    return path


def file_version(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return str(db.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()[0])


def item_columns(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return {row[1] for row in db.execute("PRAGMA table_info(items)")}


def v1_details(path: Path) -> dict[str, dict[str, object]]:
    """Each item's details JSON, as 0.1.0 wrote it."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return {
            item: json.loads(text) for item, text in db.execute("SELECT item, details FROM items")
        }


def test_the_fixture_is_what_the_tests_below_assume() -> None:
    details = v1_details(V1_FIXTURE)
    assert file_version(V1_FIXTURE) == "1"
    assert [item for item, d in details.items() if d.get("work_exists")] == [C002]
    assert details["voices.founder_voice"]["settings"] == FOUNDER_VOICE_SETTINGS


def test_a_version_1_file_is_migrated_when_opened_for_writing(tmp_path: Path) -> None:
    path = v1_copy(tmp_path)
    old = v1_details(path)
    with FileState(path) as store:
        records = store.records()
    assert file_version(path) == "2" and "details" not in item_columns(path)
    assert set(records) == set(old)
    for item, details in old.items():
        assert records[item].settings == details["settings"], item
        assert records[item].field_digests == details["field_digests"], item
        assert records[item].work_exists is (item == C002), item
    assert records["voices.founder_voice"].settings == FOUNDER_VOICE_SETTINGS
    digests = records["videos.welcome[c001]"].field_digests
    assert digests is not None and digests["avatar"] == (
        "b55e08351a9e2404f71c806cd889b11efda36a7c2168822e917b40b420df8f5c"
    )
    c002 = records[C002]
    assert (c002.status, c002.task_id, c002.work_exists) == (
        Status.FAILED,
        "1000000000000004",
        True,
    )
    # Everything else is as 0.1.0 left it: the same records a read-only open translates.
    with FileState(v1_copy(tmp_path, "fresh.db"), readonly=True) as store:
        assert store.records() == records


def test_a_version_1_file_opened_read_only_is_translated_and_left_alone(tmp_path: Path) -> None:
    path = v1_copy(tmp_path)
    with FileState(path, readonly=True) as store:
        records = store.records()
        assert store.get(C002) == records[C002]
    assert path.read_bytes() == V1_FIXTURE.read_bytes()
    assert records["voices.founder_voice"].settings == FOUNDER_VOICE_SETTINGS
    assert [item for item, r in records.items() if r.work_exists] == [C002]
    assert all(r.field_digests for r in records.values())


def test_a_second_open_of_a_migrated_file_changes_nothing(tmp_path: Path) -> None:
    path = v1_copy(tmp_path)
    with FileState(path) as store:
        migrated = store.records()
    before = path.read_bytes()
    with FileState(path) as store:
        assert store.records() == migrated
    assert path.read_bytes() == before


def test_a_migration_killed_midway_leaves_a_version_1_file(tmp_path: Path) -> None:
    path = v1_copy(tmp_path)
    # The child dies (SIGKILL, no cleanup) while moving the third row's details.
    child = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from hifly_batch.runner import state_file
        real, calls = state_file.from_details, []
        def dying(details):
            calls.append(details)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(details)
        state_file.from_details = dying
        state_file.FileState(Path({str(path)!r}))
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert file_version(path) == "1" and "work_exists" not in item_columns(path)
    assert v1_details(path) == v1_details(V1_FIXTURE)
    with FileState(path) as store:  # the next run migrates it
        assert store.get(C002).work_exists  # type: ignore[union-attr]
    assert file_version(path) == "2"


def test_null_or_garbage_details_read_as_defaults(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    rows = {
        "videos.v[1]": None,
        "videos.v[2]": "not json {",
        "videos.v[3]": "[1, 2]",
        "videos.v[4]": json.dumps({"settings": "fast", "field_digests": {"text": 1}}),
        "videos.v[5]": json.dumps({"settings": {"rate": "1.1"}, "work_exists": True}),
    }
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO meta VALUES ('format_version', '1');"
            "CREATE TABLE items (item TEXT PRIMARY KEY, section ANY, kind ANY, status ANY,"
            " task_id ANY, details ANY);"
        )
        db.executemany(
            "INSERT INTO items VALUES (?, 'videos', 'video_by_tts', 'failed', 't', ?)",
            rows.items(),
        )
    with FileState(path, readonly=True) as store:
        translated = store.records()
    with FileState(path) as store:
        assert store.records() == translated
    plain = Record("", "videos", "video_by_tts", status=Status.FAILED, task_id="t")
    for n in (1, 2, 3, 4):
        assert translated[f"videos.v[{n}]"] == Record(**{**vars(plain), "item": f"videos.v[{n}]"})
    kept = translated["videos.v[5]"]
    assert (kept.settings, kept.field_digests, kept.work_exists) == ({"rate": "1.1"}, None, True)


def test_the_cli_plans_runs_and_reports_on_a_version_1_state(tmp_path: Path) -> None:
    """0.1.0's quickstart state through the real CLI: c002's finished task is fetched again,
    never created again. The fixture's sandbox world is not committed, so a first run with a
    state of its own makes the sandbox tasks the fixture names (the sandbox numbers tasks
    in order: avatar and voice clone first, then the four works)."""
    manifest = copy_repo_campaigns(tmp_path) / "quickstart.yaml"
    seed = cli(
        "--sandbox", "run", "--no-progress", "--state", str(tmp_path / "seed.db"), str(manifest)
    )
    assert seed.code == 0, seed.stdout + seed.stderr
    shutil.rmtree(manifest.parent / "out")  # every output must come from the old tasks
    (manifest.parent / "quickstart.sandbox.lock").unlink()  # 0.1.0 wrote no lock file
    state = manifest.parent / ".hifly" / "quickstart.sandbox.state.db"
    shutil.copyfile(V1_FIXTURE, state)

    plan = cli("--sandbox", "plan", "--all", str(manifest))
    assert plan.code == 0, plan.stderr
    steps = {line.split()[1]: line.split()[0] for line in plan.stdout.splitlines()[1:10]}
    works = [C002, "videos.welcome[c001]", "videos.welcome[c003]", "audios.greeting"]
    assert [steps.pop(work) for work in works] == ["download"] * 4  # out/ was removed
    assert set(steps.values()) == {"skip"}
    assert "task 1000000000000004 finished; its output is downloaded, not re-created" in plan.stdout
    before = status_json(manifest)
    assert before[C002]["work_exists"] is True and before[C002]["status"] == "failed"
    assert before["voices.founder_voice"]["settings"] == FOUNDER_VOICE_SETTINGS
    assert "field_digests" not in before[C002]
    assert file_version(state) == "1"  # plan and status only read

    result = cli("--sandbox", "run", "--no-progress", str(manifest))
    assert result.code == 0, result.stdout + result.stderr
    assert file_version(state) == "2"
    after = status_json(manifest)
    assert {item["status"] for item in after.values()} == {"done"}
    assert (after[C002]["task_id"], after[C002]["attempts"]) == ("1000000000000004", 1)
    assert not any(item["work_exists"] for item in after.values())
    assert (
        manifest.parent / "out" / "quickstart.sandbox" / "welcome" / "c002.mp4"
    ).stat().st_size > 0


def status_json(manifest: Path) -> dict[str, dict[str, object]]:
    result = cli("--sandbox", "status", "--json", str(manifest))
    assert result.code == 0, result.stderr
    return {item["item"]: item for item in json.loads(result.stdout)}


def test_a_state_that_cannot_be_written_says_so_and_is_not_called_damaged(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with FileState(path) as store:
        store.put(Record(item="a", section="assets", kind="upload"))
        # A connection that may only read, as a read-only file gives a non-root user.
        store._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        with pytest.raises(StateError, match="cannot be written") as caught:
            store.put(Record(item="b", section="assets", kind="upload"))
    assert "damaged" not in str(caught.value)
    assert set(FileState(path, readonly=True).records()) == {"a"}


def test_a_version_1_file_that_lost_its_version_row_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    shutil.copy(V1_FIXTURE, path)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("DELETE FROM meta WHERE key = 'format_version'")
    with FileState(path) as store:
        records = store.records()
    assert records["videos.welcome[c002]"].work_exists
    assert records["voices.founder_voice"].settings == {
        "pitch": "1.0",
        "rate": "1.1",
        "volume": "1.0",
    }


@pytest.mark.parametrize(
    ("column", "value"),
    [("status", "weird"), ("attempts", "three"), ("output_size", 1.5), ("item_kind", None)],
)
def test_a_value_no_state_holds_is_damage_named_by_item_not_a_traceback(
    tmp_path: Path, column: str, value: object
) -> None:
    path = tmp_path / "s.db"
    with FileState(path) as store:
        store.put(Record(item="a", section="assets", kind="upload"))
    column = "kind" if column == "item_kind" else column
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(f"UPDATE items SET {column} = ?", (value,))
    with pytest.raises(StateError, match=r"damaged .*item 'a'") as caught:
        FileState(path, readonly=True).records()
    assert column in str(caught.value)
