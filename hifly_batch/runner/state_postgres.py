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
import re
import socket
import threading
import time
import urllib.parse
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
    record_of,
    refuse_another,
    row_of,
)

SCHEME_PREFIXES = ("postgresql://", "postgres://")  # libpq's, as it spells them
# What is meant for a database but is not a URL libpq reads (see is_database).
_URL_LIKE = re.compile(r"\s*([A-Za-z][A-Za-z0-9+.\-]*://)")
_DATABASE_LIKE = re.compile(r"\s*(postgres(?:ql)?\s*[:：/])", re.IGNORECASE)
_KEYWORDS = re.compile(r"(?:^|\s)((?:host|hostaddr|dbname|user|password|port|service)\s*=)")
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
    """Whether ``where`` (``--state`` or ``HIFLY_STATE``) names a PostgreSQL database;
    :class:`StateError` for one that looks like a database given in another form (``pg://``,
    ``postgresql+psycopg://``, ``postgres:/…``, libpq's ``host=… password=…``, spaces
    around it): taken for a file path, it would keep a state on this machine alone, under
    a name that may hold a password."""
    if where.startswith(SCHEME_PREFIXES) and where == where.strip():
        return True
    found = _URL_LIKE.match(where) or _DATABASE_LIKE.match(where) or _KEYWORDS.search(where)
    if found is None:
        return False
    raise StateError(
        f"{found.group(1)}…: not a state hifly-batch can keep (a database written in another "
        "form, or with spaces around it); give a state file's path, or a PostgreSQL database "
        "as postgresql://user@host:port/dbname, the password in PGPASSWORD or ~/.pgpass"
    )


def shown(url: str) -> str:
    """``url`` as messages show it: user, host, port and database, never a password or
    another parameter."""
    if _authority(url).count("@") > 1:  # (a raw @ in the password: where it ends is a guess)
        return "postgresql://…"
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
        self._troubled = False  # from a lost connection until a statement succeeds again
        self._busy_since: float | None = None  # when the statement under way began
        self._watcher: threading.Thread | None = None
        self._closed = threading.Event()
        self._db = _connect(url, self.where)
        try:
            self._tables = self._use(_check_tables if readonly else _prepare)
        except _TablesRefused as exc:
            self._db.close()
            raise StateError(f"{self.where}: {exc}") from None
        # Tables of an earlier version, read without changing them, may lack newer
        # columns: those fields read as their defaults.
        present = self._use(_columns_of) if self._tables else set()
        self._columns = tuple(c for c in COLUMNS if c in present)
        self._select = (
            f"SELECT {', '.join(self._columns)} FROM hifly_items WHERE campaign = %s AND api = %s"
        )

    def close(self) -> None:
        self._closed.set()
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
                    self._use(self._release)
                    if self.journal is not None:  # all of it written after all
                        self.journal.unlink(missing_ok=True)

    @property
    def _key(self) -> tuple[int, int]:
        return lock_key(self.campaign, self.api)

    def _release(self, db: Any) -> None:
        if self._tables:  # (no holder named, no stale name left)
            db.execute(
                "DELETE FROM hifly_locks WHERE campaign = %s AND api = %s AND host = %s "
                "AND pid = %s", (self.campaign, self.api, socket.gethostname(), os.getpid()),
            )  # fmt: skip
        db.execute("SELECT pg_advisory_unlock(%s, %s)", self._key)

    def _take_lock(self, db: Any) -> None:
        import psycopg

        taken = db.execute("SELECT pg_try_advisory_lock(%s, %s)", self._key).fetchone()
        if not taken[0]:
            raise DatabaseLocked(self.where, self.campaign, self._holder(db))
        if not self._tables:  # (a read-only store of a database no run has used)
            return
        try:
            db.execute(
                "INSERT INTO hifly_locks VALUES (%s, %s, %s, %s, %s) ON CONFLICT (campaign, api) "
                "DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, since = EXCLUDED.since",
                (self.campaign, self.api, socket.gethostname(), os.getpid(), _now()),
            )
        except psycopg.errors.InsufficientPrivilege:
            if not self.readonly:  # (one that only reads may hold the lock unnamed)
                raise

    def _lock_holder(self, db: Any) -> int | None:
        """The server process of the session that holds the campaign's lock."""
        row = db.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = %s::oid AND objid = %s::oid AND objsubid = 2",
            tuple(k % 2**32 for k in self._key),
        ).fetchone()
        return row[0] if row else None

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
        """``work(connection)``, serialized between threads.

        On a lost connection (or a statement with no answer for ``retry_seconds``, see
        :meth:`_watch`), ``work`` is retried on a new connection until ``retry_seconds``
        have passed. From the first failure until a statement succeeds again, every
        write's ``keep`` (the records it writes) goes to the journal before it waits, so
        that a kill during the wait loses nothing. When the database is given up,
        :class:`StateError` says where, without the password. Any other refusal of the
        database is a :class:`StateError` too (a user without the rights it needs, a
        value it cannot hold)."""
        journaled = False
        while not self._lock.acquire(timeout=0.2):  # (held, maybe for a whole wait)
            if self._troubled and not journaled:
                journaled = self._journal(keep)
        try:
            return self._retried(work, keep, journaled)
        finally:
            self._lock.release()

    def _retried(self, work: Callable[[Any], T], keep: Sequence[Record], journaled: bool) -> T:
        """:meth:`_use`'s work, under the lock (``journaled``: ``keep`` is already)."""
        import psycopg

        deadline: float | None = None
        while self._lost is None:
            try:
                with self._watched():
                    result = work(self._db)
            except psycopg.OperationalError as exc:
                if deadline is None:
                    deadline = time.monotonic() + self.retry_seconds
                    log.warning("%s: the state database was lost (%s); reconnecting",
                                self.where, _reason(exc, self._url))  # fmt: skip
                    self._troubled = True
                    journaled = journaled or self._journal(keep)
                self._lost = self._reconnect(deadline, _reason(exc, self._url))
            except psycopg.Error as exc:
                raise self._refused(exc) from None
            else:
                self._troubled = False
                return result
        raise self._given_up(keep, journaled)

    @contextmanager
    def _watched(self) -> Iterator[None]:
        """Mark a statement under way, for :meth:`_watch` to cut if no answer comes."""
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="state-db-watch", daemon=True)
            self._watcher.start()
        self._busy_since = time.monotonic()
        try:
            yield
        finally:
            self._busy_since = None

    def _watch(self) -> None:
        """Cut the connection of a statement that has had no answer for ``retry_seconds``
        (at least 5): a server that stopped answering without closing the connection (a
        frozen host, a partition) would otherwise hold the run forever. The cut is a lost
        connection, which :meth:`_use` handles."""
        limit = max(5.0, self.retry_seconds)
        while not self._closed.wait(1.0):
            since = self._busy_since
            if since is not None and time.monotonic() - since > limit:
                with contextlib.suppress(Exception):  # (a connection already gone)
                    fd = os.dup(self._db.pgconn.socket)
                    with socket.socket(fileno=fd) as cut:
                        cut.shutdown(socket.SHUT_RDWR)
                self._busy_since = None

    def _reconnect(self, deadline: float, fault: str) -> str | None:
        """A new connection, and the run lock again if this store held it, before
        ``deadline``: None once there is one, else why not (``fault``, the connection's,
        or that another run took the lock meanwhile: this run must not write over that
        one's work)."""
        import psycopg

        pause = 0.25
        lost_session = None
        with contextlib.suppress(psycopg.Error):
            lost_session = self._db.info.backend_pid
        while time.monotonic() < deadline:
            with contextlib.suppress(psycopg.Error):
                self._db.close()
                left = max(1, int(deadline - time.monotonic()))
                self._db = _session(psycopg.connect(self._url, **_options(min(5, left))))
                if self._holding:
                    try:
                        self._take_lock(self._db)
                    except DatabaseLocked as taken:
                        if self._lock_holder(self._db) == lost_session:
                            return "the lost connection still holds the campaign's lock"
                        return f"another run took the campaign's lock: {taken.holder}"
                log.warning("%s: reconnected to the state database", self.where)
                return None
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 2.0)
        return fault

    def _journal(self, records: Sequence[Record]) -> bool:
        """Append ``records`` to the journal; False when there is none or it cannot be
        written (the items are then uncertain on the next run, never sent twice)."""
        if not records or self.journal is None:
            return False
        try:
            journal.append(self.journal, records)
        except OSError as exc:
            log.warning("%s: %s cannot be written (%s)", self.where, self.journal, exc.strerror)
            return False
        return True

    def _given_up(self, keep: Sequence[Record], journaled: bool) -> StateError:
        """The error of a use of a database given up on, once ``keep`` is journaled
        (``journaled``: it is already)."""
        lost = f"the state database was lost ({self._lost})"
        if self.journal is None:
            return StateError(f"{self.where}: {lost}; nothing more was written")
        if keep and not journaled:
            self._journal(keep)
        if not self.journal.exists():
            unwritten = "nothing more was written" if not keep else (
                f"{self.journal} cannot be written either: items whose create was answered "
                "meanwhile are uncertain on the next run"
            )  # fmt: skip
            return StateError(f"{self.where}: {lost}; {unwritten}")
        return StateError(
            f"{self.where}: {lost}; what could not be written there is kept in "
            f"{self.journal}, and the next run writes it back. Run again once the "
            "database is reachable: nothing is sent twice"
        )

    def _refused(self, exc: BaseException) -> StateError:
        import psycopg

        reason = _reason(exc, self._url)
        if isinstance(exc, psycopg.errors.InsufficientPrivilege):
            return StateError(
                f"{self.where}: the database user may not do what a state needs ({reason}); "
                "a run makes hifly-batch's tables on first use (CREATE on the schema) and "
                "then reads and writes them: grant those rights, or use another user"
            )
        return StateError(f"{self.where}: the state database refused a statement ({reason})")


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


def holder_name() -> str:
    """How a refusal names this process as the lock's holder (see ``_holder``)."""
    return f"host {socket.gethostname()}, pid {os.getpid()},"


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
    """The record's column values; a NUL, which PostgreSQL's text cannot hold (a service's
    message may carry one), is stored as U+FFFD rather than ending the run."""
    return tuple(v.replace("\0", "\ufffd") if isinstance(v, str) else v for v in row_of(record))


def _connect(url: str, where: str) -> Any:
    try:
        import psycopg
    except ImportError:
        raise StateError(
            f"{where}: a PostgreSQL state needs psycopg 3; install it with "
            "pip install 'hifly-batch[postgres]'"
        ) from None
    try:
        return _session(psycopg.connect(url, **_options(10)))
    except psycopg.Error as exc:
        raise StateError(
            f"{where}: the state database cannot be reached ({_reason(exc, url)}); check the "
            "connection string, and PGPASSWORD or ~/.pgpass for the password"
        ) from None


def _options(connect_timeout: int) -> dict[str, Any]:
    return {"autocommit": True, "connect_timeout": connect_timeout}


def _session(db: Any) -> Any:
    """``db``, set to end its session (and free its locks) within about a minute of its
    machine going away: the server probes an idle TCP connection after 30 s, every 10 s,
    3 times (over a Unix socket there is no such loss, and these do nothing)."""
    db.execute(
        "SELECT set_config('tcp_keepalives_idle', '30', false), "
        "set_config('tcp_keepalives_interval', '10', false), "
        "set_config('tcp_keepalives_count', '3', false)"
    )
    return db


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
    if found is None:
        return 0
    if not str(found[0]).isdigit():
        raise _TablesRefused(
            f"hifly_meta says schema_version {found[0]!r}, which no hifly-batch wrote; the "
            "tables were changed by hand: restore them, or use another database"
        )
    return int(found[0])


def _check_tables(db: Any) -> bool:
    """Whether the tables are there (a read-only store makes none), of a version this
    hifly-batch reads."""
    version = _version(db)
    _check_version(version)
    return version > 0


def _check_version(version: int) -> None:
    if version > SCHEMA_VERSION:
        raise _TablesRefused(
            f"the state database's tables are of version {version}, this hifly-batch "
            f"reads {SCHEMA_VERSION}; use the hifly-batch version that wrote them"
        )


class _TablesRefused(Exception):
    """Tables this hifly-batch must not read or change (said with the database's name)."""


def _reason(exc: BaseException, url: str) -> str:
    """The driver's first line, which names the server and the fault, with the connection
    string and its password cut out wherever the driver quoted them (libpq quotes a token
    it cannot read, which may be the password)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for secret in sorted(_secrets(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _authority(url: str) -> str:
    """What comes between ``scheme://`` and the path: ``user:password@host:port``."""
    return re.split(r"[/?#]", url.partition("://")[2], maxsplit=1)[0]


def _secrets(url: str) -> set[str]:
    """What of ``url`` a message must not show: the whole string, and its password as
    written and as decoded (read by libpq's rules where it can, by the URL's form
    otherwise)."""
    found = {url}
    userinfo = _authority(url).rpartition("@")[0]
    if ":" in userinfo:
        password = userinfo.split(":", 1)[1]
        found |= {password, *password.split("@")}  # (libpq may read a part as the host)
    with contextlib.suppress(Exception):
        from psycopg.conninfo import conninfo_to_dict

        found.add(str(conninfo_to_dict(url).get("password") or ""))
    found |= {urllib.parse.unquote(secret) for secret in found}
    return {secret for secret in found if secret}
