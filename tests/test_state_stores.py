"""Every state store keeps the same records the same way: the SQLite file and a real
PostgreSQL server (started by the tests, see ``tests/pg.py``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hifly_batch.core.lifecycle import Status
from hifly_batch.runner.errors import StateError
from hifly_batch.runner.state import Record, StateStore
from hifly_batch.runner.state_file import FileState
from hifly_batch.runner.state_postgres import DatabaseLocked, PostgresState, is_database, shown

Opener = Callable[[str, str], StateStore]  # (campaign, api) -> a store

FULL = Record(
    item="videos.welcome[c1]",
    section="videos",
    kind="video_by_tts",
    key="c1",
    status=Status.DONE,
    fingerprint="f" * 64,
    settings_fingerprint="s" * 64,
    task_id="t-1",
    resource_id="r-1",
    output="welcome/c1.mp4",
    output_size=48_213,
    output_sha256="a" * 64,
    duration_s=12.5,
    attempts=2,
    error_code=1001,
    error_message="排队中 (queued)",
    started_at=1_700_000_000.25,
    finished_at=1_700_000_100.5,
    settings={"rate": "1.1", "volume": "1.0", "pitch": "1.0"},
    field_digests={"text": "d" * 16},
    work_exists=True,
    replaces=("t-0",),
)


@pytest.fixture(params=["file", "postgresql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    opened: list[StateStore] = []

    def open_store(campaign: str, api: str) -> StateStore:
        if request.param == "file":
            store: StateStore = FileState(tmp_path / f"{campaign}.{api}.state.db")
        else:
            store = PostgresState(request.getfixturevalue("pg_url"), campaign, api)
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


def test_a_record_reads_back_exactly_as_written(opener: Opener) -> None:
    store = opener("spring", "service")
    store.claim("service", "spring")
    store.put_many([FULL, Record("voices.v", "voices", "voice_clone")])
    assert store.get(FULL.item) == FULL
    assert store.records() == {
        FULL.item: FULL,
        "voices.v": Record("voices.v", "voices", "voice_clone"),
    }
    changed = store.update(FULL, status=Status.FAILED, error_message=None, replaces=())
    assert store.get(FULL.item) == changed and store.get("nothing") is None


def test_a_state_claimed_for_another_campaign_or_api_is_refused(opener: Opener) -> None:
    store = opener("spring", "service")
    store.claim("service", "spring")
    assert store.claimed() == {"api": "service", "campaign": "spring"}
    with pytest.raises(StateError, match="belongs to campaign 'spring', not 'autumn'"):
        store.claim("service", "autumn")
    with pytest.raises(StateError, match="sandbox"):
        store.claim("sandbox", "spring")


def test_an_interrupted_run_leaves_its_submitting_items_uncertain(opener: Opener) -> None:
    store = opener("spring", "service")
    store.claim("service", "spring")
    store.put(Record("videos.a", "videos", "video_by_tts", status=Status.SUBMITTING))
    settled = store.settle_interrupted()
    assert settled["videos.a"].status is Status.UNCERTAIN
    assert store.get("videos.a") == settled["videos.a"]


def test_one_database_keeps_campaigns_and_apis_apart(pg_url: str) -> None:
    stores = {
        (campaign, api): PostgresState(pg_url, campaign, api)
        for campaign in ("spring", "autumn")
        for api in ("service", "sandbox")
    }
    try:
        for (campaign, api), store in stores.items():
            store.claim(api, campaign)
            store.put(Record(f"videos.{campaign}-{api}", "videos", "video_by_tts"))
        for (campaign, api), store in stores.items():
            assert list(store.records()) == [f"videos.{campaign}-{api}"]
    finally:
        for store in stores.values():
            store.close()


def test_a_database_that_cannot_be_reached_is_said_without_its_password(tmp_path: Path) -> None:
    url = f"postgresql://alice:s3cret-pw@/campaigns?host={tmp_path}&port=5999"
    with pytest.raises(StateError) as caught:
        PostgresState(url, "spring", "service")
    said = str(caught.value)
    assert "s3cret-pw" not in said
    assert said.startswith(f"postgresql://alice@{tmp_path}:5999/campaigns: the state database")


def test_a_database_is_named_by_its_scheme() -> None:
    assert is_database("postgresql://db.example/x") and is_database("postgres://h/x")
    assert not is_database("state.db") and not is_database("/tmp/postgresql://x")
    assert shown("postgresql://bob:pw@db.example:6543/hifly?sslmode=require") == (
        "postgresql://bob@db.example:6543/hifly"
    )


@pytest.mark.parametrize(
    "where",
    ["postgresql+psycopg://alice:s3cret@db/h", " postgresql://alice:s3cret@db/h",
     "PostgreSQL://alice:s3cret@db/h", "pg://alice:s3cret@db/h", "postgresql://a:s3cret@db/h ",
     "postgres:/alice:s3cret@db/h", "postgresql:alice:s3cret@db/h", "postgresql//a:s3cret@db",
     "postgresql\uff1a//a:s3cret@db/h", "host=db user=alice password=s3cret dbname=h"],
)  # fmt: skip
def test_a_database_of_another_form_is_refused_never_taken_for_a_file(where: str) -> None:
    with pytest.raises(StateError, match="not a state hifly-batch can keep") as caught:
        is_database(where)
    assert "s3cret" not in str(caught.value)


def test_files_named_like_a_database_are_files() -> None:
    assert not any(map(is_database, ["postgres.db", "x/postgresql-state.db", "pg.state.db"]))


@pytest.mark.parametrize(
    "url",
    ["postgresql://alice:s3cret%PW@127.0.0.1/hifly", "postgresql://alice:s3cretPW@[::1]x/hifly",
     "postgresql://alice:s3cret%00PW@127.0.0.1/hifly", "postgresql://alice:s3cretPW@[]/hifly",
     "postgresql://alice:s3cret@PW@127.0.0.1:1/hifly"],
)  # fmt: skip
def test_a_connection_string_the_driver_cannot_read_is_said_without_its_password(
    url: str,
) -> None:
    with pytest.raises(StateError) as caught:
        PostgresState(url, "spring", "service")
    assert "s3cret" not in str(caught.value) and "PW" not in str(caught.value), caught.value


def test_without_psycopg_the_message_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # (an import of it then fails)
    with pytest.raises(StateError, match=r"pip install 'hifly-batch\[postgres\]'"):
        PostgresState("postgresql://u:pw@/db?host=/nowhere", "spring", "service")


def test_a_second_run_of_a_campaign_is_refused_naming_the_first(pg_url: str) -> None:
    first = PostgresState(pg_url, "spring", "service")
    second = PostgresState(pg_url, "spring", "service")
    other = PostgresState(pg_url, "spring", "sandbox")  # a rehearsal is another lock
    try:
        with first.run_lock(), other.run_lock():
            with pytest.raises(DatabaseLocked) as caught, second.run_lock():
                pass
            said = str(caught.value)
            assert f"host {socket.gethostname()}, pid {os.getpid()}, since " in said
            assert "another hifly-batch run of campaign 'spring'" in said
        with second.run_lock():  # released with the first's run
            pass
    finally:
        for store in (first, second, other):
            store.close()


def test_a_killed_run_leaves_the_campaign_unlocked(pg_url: str) -> None:
    """The lock is the session's: a SIGKILL ends the session, and the server frees it."""
    child = textwrap.dedent(f"""
        import os, signal, sys
        from hifly_batch.runner.state_postgres import PostgresState
        store = PostgresState({pg_url!r}, "spring", "service")
        with store.run_lock():
            print("held", flush=True)
            sys.stdin.readline()
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", child], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    store = PostgresState(pg_url, "spring", "service")
    try:
        with pytest.raises(DatabaseLocked, match=f"pid {proc.pid}"), store.run_lock():
            pass
        proc.kill()
        proc.wait()
        # The server frees the lock when the session's backend process exits, a moment
        # after the client is gone.
        deadline = time.monotonic() + 10
        while True:
            try:
                with store.run_lock():
                    break
            except DatabaseLocked:
                assert time.monotonic() < deadline, "the lock outlived its killed holder"
                time.sleep(0.1)
    finally:
        store.close()
