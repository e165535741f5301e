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
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from hifly_batch.runner import journal
from hifly_batch.runner.errors import StateError
from hifly_batch.runner.state import (
    COLUMNS,
    FORMAT_VERSION,
    Record,
    StateStore,
    default_value,
    encode,
    record_of,
    refuse_another,
)

SCHEME_PREFIXES = ("postgresql://", "postgres://")
RETRY_SECONDS = 30.0  # how long a lost database is waited for (a server restart takes less)
T = TypeVar("T")
log = logging.getLogger(__name__)

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
# Each version's statements, from the version before (0: no tables yet). A release that
# changes the tables adds the next version here; opening a database runs those it lacks,
# in one transaction. (A field added to records needs none: its column is added as
# the file's is, by _add_new_columns.)
_MIGRATIONS: dict[int, tuple[str, ...]] = {1: _SCHEMA}
SCHEMA_VERSION = max(_MIGRATIONS)  # of the tables; the records' own format is FORMAT_VERSION
_UPSERT = (
    f"INSERT INTO hifly_items (campaign, api, {', '.join(COLUMNS)}) "
    f"VALUES (%s, %s, {', '.join('%s' for _ in COLUMNS)}) "
    "ON CONFLICT (campaign, api, item) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[1:])
)


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
    one connection. Tables are created on first use; a read-only store creates nothing.

    A lost connection is retried for ``retry_seconds`` (default :data:`RETRY_SECONDS`, or
    ``HIFLY_STATE_RETRY_SECONDS``), reconnecting and re-taking the run lock, and the write
    is then made again (every write is an upsert: making it twice is making it once).
    Past that, or when another run took the lock meanwhile, the store is lost: every
    write from then on goes to the local ``journal`` and raises :class:`StateError`, and
    nothing else is sent to the database. The next run that takes the lock writes the
    journal back (:mod:`journal`).
    """

    def __init__(
        self,
        url: str,
        campaign: str,
        api: str,
        *,
        readonly: bool = False,
        journal: Path | None = None,
        retry_seconds: float | None = None,
    ) -> None:
        self.where = shown(url)
        self.campaign = campaign
        self.api = api
        self.readonly = readonly
        self.journal = journal
        self.retry_seconds = retry_seconds if retry_seconds is not None else _retry_seconds()
        self._url = url
        self._lock = threading.Lock()
        self._holding = False  # the run lock, to take again on a new connection
        self._lost: str | None = None  # why the database was given up, once it was
        self._db = _connect(url, self.where)
        self._tables = self._use(_check_tables if readonly else _prepare)
        # Tables of an earlier version, read without changing them, may lack newer
        # columns: those fields read as their defaults.
        present = self._use(_columns_of) if self._tables else set()
        self._columns = tuple(c for c in COLUMNS if c in present)
        self._select = (
            f"SELECT {', '.join(self._columns)} FROM hifly_items WHERE campaign = %s AND api = %s"
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def claim(self, api: str, campaign: str | None = None) -> None:
        wanted = {"api": api, **({"campaign": campaign} if campaign is not None else {})}
        refuse_another(self.where, {"api": self.api, "campaign": self.campaign}, wanted)
        self._use(
            lambda db: db.execute(
                "INSERT INTO hifly_campaigns VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (self.campaign, self.api, FORMAT_VERSION),
            )
        )

    def claimed(self) -> dict[str, str]:
        if not self._tables:
            return {}
        found = self._use(
            lambda db: db.execute(
                "SELECT 1 FROM hifly_campaigns WHERE campaign = %s AND api = %s",
                (self.campaign, self.api),
            ).fetchone()
        )
        return {"api": self.api, "campaign": self.campaign} if found else {}

    def records(self) -> dict[str, Record]:
        if not self._tables:
            return {}
        rows = self._use(lambda db: db.execute(self._select, (self.campaign, self.api)).fetchall())
        records = {row[0]: self._record(row) for row in rows}
        if self.readonly and self.journal is not None:  # what the next run will write back
            records.update((r.item, r) for r in journal.behind(records, journal.read(self.journal)))
        return records

    def unsent(self) -> list[Record]:
        return journal.read(self.journal) if self.journal is not None else []

    def campaigns(self) -> list[tuple[str, str]]:
        """Every (campaign, api) this database keeps state of, this store's or not."""
        if not self._tables:
            return []
        query = "SELECT campaign, api FROM hifly_campaigns ORDER BY campaign, api"
        rows = self._use(lambda db: db.execute(query).fetchall())
        return [(str(c), str(a)) for c, a in rows]

    def get(self, item: str) -> Record | None:
        if not self._tables:
            return None
        row = self._use(
            lambda db: db.execute(
                self._select + " AND item = %s", (self.campaign, self.api, item)
            ).fetchone()
        )
        return self._record(row) if row else None

    def put_many(self, records: Iterable[Record]) -> None:
        self._write(list(records))

    def replace_all(self, records: Iterable[Record]) -> None:
        self._write(list(records), clear=True)

    def _write(self, records: list[Record], *, clear: bool = False) -> None:
        rows = [(self.campaign, self.api, *_row(r)) for r in records]
        if not rows and not clear:
            return

        def write(db: Any) -> None:
            if len(rows) == 1 and not clear:  # one statement is its own transaction
                db.execute(_UPSERT, rows[0])
                return
            with db.transaction(), db.cursor() as cursor:
                if clear:
                    cursor.execute(
                        "DELETE FROM hifly_items WHERE campaign = %s AND api = %s",
                        (self.campaign, self.api),
                    )
                cursor.executemany(_UPSERT, rows)

        self._use(write, keep=records)

    @contextmanager
    def run_lock(self) -> Iterator[None]:
        """Hold the campaign's run lock (SPEC §5) for a run on any machine; raises
        :class:`DatabaseLocked` naming the holder's host, pid and start when another run
        has it. It is a session advisory lock: the server releases it when this session
        ends, however the process ends (a kill, a lost machine). Taking it writes back
        what the journal kept of an earlier run whose database was lost."""
        self._use(self._take_lock)
        self._holding = True
        try:
            self._write_back_journal()
            yield
        finally:
            self._holding = False
            if self._lost is None:
                with contextlib.suppress(StateError):  # (the session's end frees it anyway)
                    self._use(lambda db: db.execute("SELECT pg_advisory_unlock(%s, %s)", self._key))

    @property
    def _key(self) -> tuple[int, int]:
        return lock_key(self.campaign, self.api)

    def _take_lock(self, db: Any) -> None:
        taken = db.execute("SELECT pg_try_advisory_lock(%s, %s)", self._key).fetchone()
        if not taken[0]:
            raise DatabaseLocked(self.where, self.campaign, self._holder(db))
        if self.readonly:  # (held to read a state no run is changing; it names nobody)
            return
        db.execute(
            "INSERT INTO hifly_locks VALUES (%s, %s, %s, %s, %s) ON CONFLICT (campaign, api) "
            "DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, since = EXCLUDED.since",
            (self.campaign, self.api, socket.gethostname(), os.getpid(), _now()),
        )

    def _holder(self, db: Any) -> str:
        row = db.execute(
            "SELECT host, pid, since FROM hifly_locks WHERE campaign = %s AND api = %s",
            (self.campaign, self.api),
        ).fetchone()
        return f"host {row[0]}, pid {row[1]}, since {row[2]}" if row else "holder unknown"

    def _write_back_journal(self) -> None:
        if self.journal is None or not self.journal.exists():
            return
        kept = journal.behind(self.records(), journal.read(self.journal))
        self.put_many(kept)
        self.journal.unlink()
        if kept:
            log.warning(
                "%s: wrote back %d record(s) an earlier run kept in %s when the database "
                "was lost", self.where, len(kept), self.journal,
            )  # fmt: skip

    def _record(self, row: tuple[Any, ...]) -> Record:
        try:
            return record_of(self._columns, tuple(row))
        except ValueError as exc:
            raise StateError(f"{self.where}: item {row[0]!r} cannot be read: {exc}") from None

    def _use(self, work: Callable[[Any], T], keep: Sequence[Record] = ()) -> T:
        """``work(connection)``, serialized between threads; on a lost connection, retried
        on a new one until ``retry_seconds`` have passed. When the database is given up,
        ``keep`` (the records ``work`` writes) goes to the journal and :class:`StateError`
        says where, without the password."""
        import psycopg

        with self._lock:
            deadline: float | None = None
            while self._lost is None:
                try:
                    return work(self._db)
                except psycopg.OperationalError as exc:
                    if deadline is None:
                        deadline = time.monotonic() + self.retry_seconds
                        log.warning("%s: the state database was lost (%s); reconnecting",
                                    self.where, _reason(exc))  # fmt: skip
                    self._lost = self._reconnect(deadline, _reason(exc))
            raise self._given_up(keep)

    def _reconnect(self, deadline: float, fault: str) -> str | None:
        """A new connection, and the run lock again if this store held it, before
        ``deadline``: None once there is one, else why not (``fault``, the connection's,
        or that another run took the lock meanwhile: this run must not write over that
        one's work)."""
        import psycopg

        pause = 0.25
        while time.monotonic() < deadline:
            with contextlib.suppress(psycopg.Error):
                self._db.close()
                left = max(1, int(deadline - time.monotonic()))
                self._db = psycopg.connect(self._url, autocommit=True, connect_timeout=min(5, left))
                if self._holding:
                    try:
                        self._take_lock(self._db)
                    except DatabaseLocked as taken:
                        return f"another run took the campaign's lock: {taken.holder}"
                log.warning("%s: reconnected to the state database", self.where)
                return None
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 2.0)
        return fault

    def _given_up(self, keep: Sequence[Record]) -> StateError:
        """The error of a write to a database given up on, once ``keep`` is journaled."""
        lost = f"the state database was lost ({self._lost})"
        if not keep or self.journal is None:
            return StateError(f"{self.where}: {lost}; nothing more was written")
        try:
            journal.append(self.journal, keep)
        except OSError as exc:
            return StateError(
                f"{self.where}: {lost}, and {self.journal} cannot be written ({exc.strerror}); "
                "items whose create was answered meanwhile are uncertain on the next run"
            )
        return StateError(
            f"{self.where}: {lost}; what could not be written there is kept in "
            f"{self.journal}, and the next run writes it back. Run again once the "
            "database is reachable: nothing is sent twice"
        )


def campaigns_in(url: str) -> list[tuple[str, str]]:
    """The (campaign, api) pairs a database keeps state of; none before its first run.
    Raises :class:`StateError` when it cannot be reached."""
    with contextlib.closing(PostgresState(url, "", "", readonly=True)) as store:
        return store.campaigns()


class DatabaseLocked(StateError):
    """Another run of the campaign, on any machine, holds its lock in the database."""

    def __init__(self, where: str, campaign: str, holder: str) -> None:
        self.holder = holder
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


def _retry_seconds() -> float:
    """How long a run waits for a lost database: ``HIFLY_STATE_RETRY_SECONDS``, else
    :data:`RETRY_SECONDS`."""
    try:
        return max(0.0, float(os.environ.get("HIFLY_STATE_RETRY_SECONDS", RETRY_SECONDS)))
    except ValueError:
        return RETRY_SECONDS


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


def _prepare(db: Any) -> bool:
    """Make the tables, or bring them up to this version; returns True. One transaction:
    concurrent first uses wait on an advisory lock of the transaction, so each sees the
    tables whole, and a kill midway leaves them as they were."""
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(hashtext('hifly-batch schema'))")
        version = _version(db)
        _check_version(version)
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[step]:
                db.execute(statement)
        if version < SCHEMA_VERSION:
            db.execute(
                "INSERT INTO hifly_meta VALUES ('schema_version', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                (str(SCHEMA_VERSION),),
            )
        _add_new_columns(db)
    return True


def _add_new_columns(db: Any) -> None:
    """Columns for record fields newer than the table (rows already there read the
    field's default)."""
    from psycopg import sql

    present = _columns_of(db)
    for column in COLUMNS:
        if column not in present:
            db.execute(
                sql.SQL("ALTER TABLE hifly_items ADD COLUMN {} {} DEFAULT {}").format(
                    sql.Identifier(column),
                    sql.SQL(_TYPES.get(column, "TEXT")),
                    sql.Literal(default_value(column)),
                )
            )


def _columns_of(db: Any) -> set[str]:
    query = (
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = 'hifly_items'"
    )
    return {row[0] for row in db.execute(query)}


def _version(db: Any) -> int:
    """The tables' version; 0 when there are none."""
    if db.execute("SELECT to_regclass('hifly_meta')").fetchone()[0] is None:
        return 0
    found = db.execute("SELECT value FROM hifly_meta WHERE key = 'schema_version'").fetchone()
    return int(found[0]) if found else 0


def _check_tables(db: Any) -> bool:
    """Whether the tables are there (a read-only store makes none), of a version this
    hifly-batch reads."""
    version = _version(db)
    _check_version(version)
    return version > 0


def _check_version(version: int) -> None:
    if version > SCHEMA_VERSION:
        raise StateError(
            f"the state database's tables are of version {version}, this hifly-batch "
            f"reads {SCHEMA_VERSION}; use the hifly-batch version that wrote them"
        )


def _reason(exc: BaseException) -> str:
    """The driver's first line, which names the server and the fault, not the password."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
