"""The PostgreSQL store when its database goes away: reconnecting, the run lock taken
again, the local journal, and reading without creating (a real server, stopped and
started by the test)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from hifly_batch.core.lifecycle import Status
from hifly_batch.runner import journal
from hifly_batch.runner.errors import StateError
from hifly_batch.runner.state import Record
from hifly_batch.runner.state_postgres import DatabaseLocked, PostgresState
from tests.pg import PgServer

SENT = Record(
    "videos.a", "videos", "video_by_tts", status=Status.SUBMITTING, attempts=1,
    started_at=1_700_000_000.5,
)  # fmt: skip
ANSWERED = replace(SENT, status=Status.RUNNING, task_id="t-1")


def store_of(url: str, tmp_path: Path, retry: float, readonly: bool = False) -> PostgresState:
    return PostgresState(
        url, "spring", "service", readonly=readonly, journal=tmp_path / "spring.journal",
        retry_seconds=retry,
    )  # fmt: skip


@contextlib.contextmanager
def running(store: PostgresState) -> Iterator[None]:
    """``store`` held as a run holds it, with one create sent (``SENT``)."""
    with store, store.run_lock():
        store.claim("service", "spring")
        store.put(SENT)
        yield


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as db:
        rows = db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row[0] for row in rows}


def test_a_server_restarted_within_the_wait_loses_nothing_and_keeps_the_lock(
    pg_server: PgServer, pg_url: str, tmp_path: Path
) -> None:
    store = store_of(pg_url, tmp_path, retry=60)
    with running(store):
        pg_server.stop()
        restart = threading.Timer(1.5, pg_server.start)
        restart.start()
        started = time.monotonic()
        store.put(ANSWERED)  # waits for the server, then writes
        restart.join()
        assert time.monotonic() - started >= 1.0
        assert store.get(SENT.item) == ANSWERED
        with store_of(pg_url, tmp_path, retry=0) as other:
            assert other.records() == {SENT.item: ANSWERED}
            with pytest.raises(DatabaseLocked), other.run_lock():  # the lock was taken again
                pass
    assert not (tmp_path / "spring.journal").exists()


def test_a_database_gone_for_longer_keeps_answers_in_the_journal_until_the_next_run(
    pg_server: PgServer, pg_url: str, tmp_path: Path
) -> None:
    store = store_of(pg_url, tmp_path, retry=1)
    with running(store):
        pg_server.stop()
        with pytest.raises(StateError) as caught:
            store.put(ANSWERED)
        said = str(caught.value)
        assert "the state database was lost" in said and "spring.journal" in said
        assert "the next run writes it back" in said
        started = time.monotonic()
        later = replace(ANSWERED, status=Status.DONE, output="a.mp4")
        with pytest.raises(StateError):  # given up: straight to the journal, no new wait
            store.put(later)
        assert time.monotonic() - started < 0.5
    assert journal.read(tmp_path / "spring.journal") == [ANSWERED, later]
    pg_server.start()
    with store_of(pg_url, tmp_path, retry=0, readonly=True) as reading:  # as status sees it
        assert reading.records() == {SENT.item: later}
    with store_of(pg_url, tmp_path, retry=0) as after:
        assert after.get(SENT.item) == SENT  # written back only by the lock's holder
        with after.run_lock():
            assert after.get(SENT.item) == later
    assert not (tmp_path / "spring.journal").exists()


def test_a_lock_taken_by_another_run_while_the_connection_was_lost_stops_this_one(
    pg_url: str, tmp_path: Path
) -> None:
    store = store_of(pg_url, tmp_path, retry=30)
    other = store_of(pg_url, tmp_path / "elsewhere", retry=0)
    with other, running(store):
        with psycopg.connect(pg_url, autocommit=True) as admin:  # the connection is cut
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        other = store_of(pg_url, tmp_path / "elsewhere", retry=0)
        with other.run_lock():
            with pytest.raises(StateError, match="another run took the campaign's lock: host"):
                store.put(ANSWERED)
            assert other.get(SENT.item) == SENT  # nothing written under another's lock
    assert journal.read(tmp_path / "spring.journal") == [ANSWERED]


def test_reading_a_database_no_run_has_used_creates_nothing(pg_url: str, tmp_path: Path) -> None:
    with store_of(pg_url, tmp_path, retry=0, readonly=True) as store:
        assert store.records() == {} and store.claimed() == {} and store.get("x") is None
        assert store.campaigns() == []
    assert tables(pg_url) == set()
    with store_of(pg_url, tmp_path, retry=0):
        pass
    assert tables(pg_url) == {"hifly_meta", "hifly_campaigns", "hifly_items", "hifly_locks"}


def test_tables_of_an_earlier_version_are_read_as_they_are_and_brought_up_on_writing(
    pg_url: str, tmp_path: Path
) -> None:
    with store_of(pg_url, tmp_path, retry=0) as store:
        store.claim("service", "spring")
        store.put(replace(ANSWERED, replaces=("t-0",)))
    with psycopg.connect(pg_url, autocommit=True) as admin:  # as a release before the field
        admin.execute("ALTER TABLE hifly_items DROP COLUMN replaces")
    with store_of(pg_url, tmp_path, retry=0, readonly=True) as reading:
        assert reading.records() == {SENT.item: ANSWERED}  # the field reads as its default
    assert "replaces" not in columns(pg_url)
    with store_of(pg_url, tmp_path, retry=0) as writing:
        writing.put(replace(ANSWERED, replaces=("t-0",)))
        assert writing.get(SENT.item) == replace(ANSWERED, replaces=("t-0",))


def test_tables_of_a_later_version_are_refused_unchanged(pg_url: str, tmp_path: Path) -> None:
    with store_of(pg_url, tmp_path, retry=0):
        pass
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("UPDATE hifly_meta SET value = '99' WHERE key = 'schema_version'")
    for readonly in (True, False):
        with pytest.raises(StateError, match="tables are of version 99, this hifly-batch reads 1"):
            store_of(pg_url, tmp_path, retry=0, readonly=readonly)


def columns(url: str) -> set[str]:
    with psycopg.connect(url) as db:
        rows = db.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'hifly_items'"
        )
        return {row[0] for row in rows}


def test_a_write_waiting_for_the_database_is_already_in_the_journal(
    pg_server: PgServer, pg_url: str, tmp_path: Path
) -> None:
    """A kill (a CI runner's SIGKILL after its SIGTERM) during the wait loses nothing."""
    store = store_of(pg_url, tmp_path, retry=60)
    with running(store):
        pg_server.stop()
        other = replace(SENT, item="videos.b", status=Status.RUNNING, task_id="t-2")
        writing = [threading.Thread(target=store.put, args=(r,)) for r in (ANSWERED, other)]
        for thread in writing:  # the second waits for the first, which waits for the server
            thread.start()
            time.sleep(0.5)
        deadline = time.monotonic() + 10
        while len(journal.read(tmp_path / "spring.journal")) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert journal.read(tmp_path / "spring.journal") == [ANSWERED, other]
        pg_server.start()
        for thread in writing:
            thread.join()
        assert store.get(SENT.item) == ANSWERED and store.get(other.item) == other
    assert not (tmp_path / "spring.journal").exists()  # written after all


def test_a_database_that_stops_answering_is_cut_off_not_waited_for_forever(
    pg_url: str, tmp_path: Path
) -> None:
    store = store_of(pg_url, tmp_path, retry=1)
    with running(store):
        backend = store._use(lambda db: db.execute("SELECT pg_backend_pid()").fetchone()[0])
        os.kill(backend, signal.SIGSTOP)  # a frozen host: the connection stays open, mute
        try:
            started = time.monotonic()
            with pytest.raises(StateError, match="the state database was lost"):
                store.put(ANSWERED)
            assert time.monotonic() - started < 15
        finally:
            os.kill(backend, signal.SIGCONT)
    assert journal.read(tmp_path / "spring.journal") == [ANSWERED]


def test_a_user_without_the_rights_a_state_needs_is_told_which(pg_url: str, tmp_path: Path) -> None:
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("CREATE ROLE reader LOGIN")  # (PostgreSQL 15: no CREATE on public)
    as_reader = pg_url.replace("postgres@", "reader@")
    with pytest.raises(StateError, match="may not do what a state needs") as caught:
        store_of(as_reader, tmp_path, retry=0)
    assert "permission denied for schema public" in str(caught.value)
    assert str(caught.value).startswith("postgresql://reader@")


def test_tables_changed_by_hand_and_an_unreadable_journal_are_said_not_crashed(
    pg_url: str, tmp_path: Path
) -> None:
    with store_of(pg_url, tmp_path, retry=0):
        pass
    (tmp_path / "spring.journal").mkdir()
    unreadable = pytest.raises(StateError, match="journal of a lost state database cannot be")
    with store_of(pg_url, tmp_path, retry=0, readonly=True) as reading, unreadable:
        reading.records()
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("UPDATE hifly_meta SET value = 'abc' WHERE key = 'schema_version'")
    with pytest.raises(StateError, match=r"^postgresql://postgres@.*schema_version 'abc'"):
        store_of(pg_url, tmp_path, retry=0)


def test_a_released_lock_names_nobody(pg_url: str, tmp_path: Path) -> None:
    with store_of(pg_url, tmp_path, retry=0) as store:
        with store.run_lock():
            assert holders(pg_url) == [(socket.gethostname(), os.getpid())]
        assert holders(pg_url) == []


def holders(url: str) -> list[tuple[str, int]]:
    with psycopg.connect(url) as db:
        return [(h, p) for h, p in db.execute("SELECT host, pid FROM hifly_locks")]


def test_a_nul_in_a_message_is_kept_as_a_replacement_not_a_crash(
    pg_url: str, tmp_path: Path
) -> None:
    with store_of(pg_url, tmp_path, retry=0) as store:
        store.put(replace(ANSWERED, error_message="bad\0byte"))
        assert store.get(SENT.item) == replace(ANSWERED, error_message="bad\ufffdbyte")
