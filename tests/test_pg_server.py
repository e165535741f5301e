"""The test PostgreSQL server itself (tests/pg.py): what the state store's tests rely on."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from tests import pg

if TYPE_CHECKING:
    from psycopg import Connection

psycopg = pytest.importorskip("psycopg", reason=f"psycopg is not installed: {pg.INSTALL_PSYCOPG}")

LOCK_KEY = 0x4846_4C59  # any 64-bit key: the state store will derive one per campaign


def test_a_database_answers_select_1(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_the_server_listens_on_its_own_socket_only(pg_server: pg.PgServer) -> None:
    with psycopg.connect(pg_server.url) as conn:
        addresses = conn.execute("SHOW listen_addresses").fetchone()
        sockets = conn.execute("SHOW unix_socket_directories").fetchone()
    assert addresses == ("",)
    assert sockets == (str(pg_server.socket_dir),)


def test_two_databases_are_separate(pg_url: str, pg_server: pg.PgServer) -> None:
    other = pg_server.create_database()
    assert other != pg_url
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE items (key text)")
        conn.execute("INSERT INTO items VALUES ('c0042')")
    with psycopg.connect(other) as conn:
        found = conn.execute("SELECT to_regclass('items')").fetchone()
    assert found == (None,)


def test_the_server_stops_and_starts_again(pg_server: pg.PgServer, pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE kept (n int)")
        conn.execute("INSERT INTO kept VALUES (7)")
    pg_server.stop()
    try:
        assert not pg_server.running
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pg_url, connect_timeout=5)
    finally:
        pg_server.start()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT n FROM kept").fetchone() == (7,)


def test_a_stop_cuts_open_connections(pg_server: pg.PgServer, pg_url: str) -> None:
    conn = psycopg.connect(pg_url)
    try:
        pg_server.stop()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    finally:
        conn.close()
        pg_server.start()


def test_an_advisory_lock_is_refused_to_others_until_its_holder_leaves(pg_url: str) -> None:
    # The state store's per-campaign lock: session-scoped, so it dies with its holder.
    holder = psycopg.connect(pg_url, autocommit=True)
    with psycopg.connect(pg_url, autocommit=True) as other:
        assert try_lock(holder) is True
        assert try_lock(other) is False
        holder.close()
        assert eventually(lambda: try_lock(other))


def eventually(condition: Callable[[], bool], seconds: float = 10) -> bool:
    # A closed connection's server process ends, and frees its locks, a moment later.
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def try_lock(conn: Connection[Any]) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
    assert row is not None
    return bool(row[0])


def test_without_server_binaries_the_skip_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pg.shutil, "which", lambda name: None)
    monkeypatch.setattr(pg.glob, "glob", lambda pattern: [])
    reason = pg.unavailable_reason()
    assert reason is not None
    assert "initdb" in reason and "apt-get install -y postgresql" in reason
