"""The state in PostgreSQL (SPEC §5, v1.1), for teams and CI runners on several machines,
in the spirit of Terraform's ``pg`` backend.

One database holds many campaigns: every row is keyed by the campaign's name and the
kind of API its work was made on (``service`` or ``sandbox``), so a rehearsal never
reads the real campaign's records. A change is one statement in one transaction (an
upsert per record), as in the file, and the task id is committed the moment a create is
answered. Credentials come from the connection string's environment (libpq's
``PGPASSWORD``, ``~/.pgpass``) and are never shown: :func:`shown` is how a database is
named in messages.

The driver is psycopg 3, in the extra ``hifly-batch[postgres]``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from hifly_batch.runner.errors import StateError
from hifly_batch.runner.state import (
    COLUMNS,
    FORMAT_VERSION,
    Record,
    StateStore,
    encode,
    record_of,
    refuse_another,
)

SCHEME_PREFIXES = ("postgresql://", "postgres://")
SCHEMA_VERSION = 1  # of the tables below; the records' own format is FORMAT_VERSION

# Column types: numbers as numbers, the rest (JSON mappings and lists too) as text.
_TYPES = {"output_size": "BIGINT", "attempts": "INTEGER", "error_code": "INTEGER",
          "duration_s": "DOUBLE PRECISION", "started_at": "DOUBLE PRECISION",
          "finished_at": "DOUBLE PRECISION", "work_exists": "INTEGER"}  # fmt: skip
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS hifly_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS hifly_campaigns (campaign TEXT NOT NULL, api TEXT NOT NULL, "
    "format_version INTEGER NOT NULL, PRIMARY KEY (campaign, api))",
    "CREATE TABLE IF NOT EXISTS hifly_items (campaign TEXT NOT NULL, api TEXT NOT NULL, "
    + ", ".join(f"{c} {_TYPES.get(c, 'TEXT')}" for c in COLUMNS)
    + ", PRIMARY KEY (campaign, api, item))",
    # Who holds a campaign's run lock: read only by a run the advisory lock refused.
    "CREATE TABLE IF NOT EXISTS hifly_locks (campaign TEXT NOT NULL, api TEXT NOT NULL, "
    "host TEXT NOT NULL, pid INTEGER NOT NULL, since TEXT NOT NULL, "
    "PRIMARY KEY (campaign, api))",
)
_UPSERT = (
    f"INSERT INTO hifly_items (campaign, api, {', '.join(COLUMNS)}) "
    f"VALUES (%s, %s, {', '.join('%s' for _ in COLUMNS)}) "
    "ON CONFLICT (campaign, api, item) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[1:])
)
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM hifly_items WHERE campaign = %s AND api = %s"


def is_database(where: str) -> bool:
    """Whether ``where`` (``--state`` or ``HIFLY_STATE``) names a PostgreSQL database."""
    return where.startswith(SCHEME_PREFIXES)


def shown(url: str) -> str:
    """``url`` as messages show it: user, host, port and database, never a password or
    another parameter."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(url)
    except Exception:  # (a string psycopg cannot read is shown by its scheme alone)
        return "postgresql://…"
    user = f"{parts['user']}@" if parts.get("user") else ""
    host = str(parts.get("host") or "")
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname') or ''}"


class PostgresState(StateStore):
    """One campaign's state (its name and API) in a PostgreSQL database; thread-safe,
    one connection. Tables are created on first use."""

    def __init__(self, url: str, campaign: str, api: str, *, readonly: bool = False) -> None:
        self.where = shown(url)
        self.campaign = campaign
        self.api = api
        self.readonly = readonly
        self._lock = threading.Lock()
        self._db = _connect(url, self.where)
        with self._statement():
            _prepare(self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def claim(self, api: str, campaign: str | None = None) -> None:
        wanted = {"api": api, **({"campaign": campaign} if campaign is not None else {})}
        refuse_another(self.where, {"api": self.api, "campaign": self.campaign}, wanted)
        with self._statement(), self._db.transaction():
            self._db.execute(
                "INSERT INTO hifly_campaigns VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (self.campaign, self.api, FORMAT_VERSION),
            )

    def claimed(self) -> dict[str, str]:
        with self._statement():
            found = self._db.execute(
                "SELECT 1 FROM hifly_campaigns WHERE campaign = %s AND api = %s",
                (self.campaign, self.api),
            ).fetchone()
        return {"api": self.api, "campaign": self.campaign} if found else {}

    def records(self) -> dict[str, Record]:
        with self._statement():
            rows = self._db.execute(_SELECT, (self.campaign, self.api)).fetchall()
        return {row[0]: self._record(row) for row in rows}

    def get(self, item: str) -> Record | None:
        with self._statement():
            row = self._db.execute(
                _SELECT + " AND item = %s", (self.campaign, self.api, item)
            ).fetchone()
        return self._record(row) if row else None

    def put_many(self, records: Iterable[Record]) -> None:
        rows = [(self.campaign, self.api, *_row(r)) for r in records]
        if not rows:
            return
        with self._statement(), self._db.transaction(), self._db.cursor() as cursor:
            cursor.executemany(_UPSERT, rows)

    @contextmanager
    def run_lock(self) -> Iterator[None]:
        """Hold the campaign's run lock (SPEC §5) for a run on any machine; raises
        :class:`DatabaseLocked` naming the holder's host, pid and start when another run
        has it. It is a session advisory lock: the server releases it when this session
        ends, however the process ends (a kill, a lost machine)."""
        key = lock_key(self.campaign, self.api)
        with self._statement():
            taken = self._db.execute("SELECT pg_try_advisory_lock(%s, %s)", key).fetchone()
            if not taken[0]:
                raise DatabaseLocked(self.where, self.campaign, self._holder())
            self._db.execute(
                "INSERT INTO hifly_locks VALUES (%s, %s, %s, %s, %s) ON CONFLICT (campaign, api) "
                "DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, since = EXCLUDED.since",
                (self.campaign, self.api, socket.gethostname(), os.getpid(), _now()),
            )
        try:
            yield
        finally:
            with contextlib.suppress(StateError), self._statement():  # (the session's end frees it)
                self._db.execute("SELECT pg_advisory_unlock(%s, %s)", key)

    def _holder(self) -> str:
        row = self._db.execute(
            "SELECT host, pid, since FROM hifly_locks WHERE campaign = %s AND api = %s",
            (self.campaign, self.api),
        ).fetchone()
        return f"host {row[0]}, pid {row[1]}, since {row[2]}" if row else "holder unknown"

    def _record(self, row: tuple[Any, ...]) -> Record:
        try:
            return record_of(COLUMNS, tuple(row))
        except ValueError as exc:
            raise StateError(f"{self.where}: item {row[0]!r} cannot be read: {exc}") from None

    @contextmanager
    def _statement(self) -> Iterator[None]:
        """One use of the connection: serialized between threads; a database that
        cannot be reached is a :class:`StateError` saying where, without the password."""
        import psycopg

        with self._lock:
            try:
                yield
            except psycopg.OperationalError as exc:
                raise StateError(
                    f"{self.where}: the state database cannot be reached ({_reason(exc)}); "
                    "nothing more was written"
                ) from None


class DatabaseLocked(StateError):
    """Another run of the campaign, on any machine, holds its lock in the database."""

    def __init__(self, where: str, campaign: str, holder: str) -> None:
        super().__init__(
            f"{where}: another hifly-batch run of campaign {campaign!r} is using this state "
            f"({holder}); two runs at once would each pay for what the other makes. Wait "
            "for it to finish, or stop it (its progress is saved) and run again"
        )


def lock_key(campaign: str, api: str) -> tuple[int, int]:
    """The advisory lock's two 32-bit keys for a campaign and API."""
    digest = hashlib.sha256(f"hifly-batch\0{campaign}\0{api}".encode()).digest()
    return (
        int.from_bytes(digest[:4], "big", signed=True),
        int.from_bytes(digest[4:8], "big", signed=True),
    )


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %z")


def _row(record: Record) -> tuple[Any, ...]:
    return tuple(encode(vars(record), c) for c in COLUMNS)


def _connect(url: str, where: str) -> Any:
    try:
        import psycopg
    except ImportError:
        raise StateError(
            f"{where}: a PostgreSQL state needs psycopg 3; install it with "
            "pip install 'hifly-batch[postgres]'"
        ) from None
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise StateError(
            f"{where}: the state database cannot be reached ({_reason(exc)}); check the "
            "connection string, and PGPASSWORD or ~/.pgpass for the password"
        ) from None


def _prepare(db: Any) -> None:
    """The tables, made on first use (one transaction; concurrent first uses wait on an
    advisory lock of the transaction, so both see the tables whole)."""
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(hashtext('hifly-batch schema'))")
        for statement in _SCHEMA:
            db.execute(statement)
        found = db.execute("SELECT value FROM hifly_meta WHERE key = 'schema_version'").fetchone()
        if found is None:
            db.execute(
                "INSERT INTO hifly_meta VALUES ('schema_version', %s)", (str(SCHEMA_VERSION),)
            )
        elif int(found[0]) > SCHEMA_VERSION:
            raise StateError(
                f"the state database's tables are of version {found[0]}, this hifly-batch "
                f"reads {SCHEMA_VERSION}; use the hifly-batch version that wrote them"
            )


def _reason(exc: BaseException) -> str:
    """The driver's first line, which names the server and the fault, not the password."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
