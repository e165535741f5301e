"""The state file: what happened to every item of a manifest, across runs.

SQLite in WAL mode, one row per item, one short transaction per change: a
`kill -9` at any instant leaves the last committed change in place and the
file readable, and a change costs one row write however large the campaign
(polls that see no change write nothing). ``synchronous=NORMAL`` keeps every
commit safe from a process crash; only a power cut may lose the last few, and
then the file is still consistent.

A lock file beside the database (``flock``, released by the kernel when the
process dies, however it dies) keeps two runs off one state.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from hifly_batch.core.lifecycle import Status
from hifly_batch.core.planning import PriorState
from hifly_batch.runner.errors import StateError

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Record:
    """One item's row in the state file."""

    item: str
    section: str
    kind: str
    key: str | None = None
    status: Status = Status.PENDING
    fingerprint: str = ""
    settings_fingerprint: str = ""
    task_id: str | None = None
    resource_id: str | None = None
    output: str | None = None
    output_size: int | None = None  # bytes, to tell a whole output from a damaged one
    duration_s: float | None = None
    attempts: int = 0
    error_code: int | None = None
    error_message: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    details: str | None = None  # JSON: what was applied (voice settings, field digests)


_COLUMNS = tuple(f.name for f in fields(Record))
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    item TEXT PRIMARY KEY, {", ".join(c + " ANY" for c in _COLUMNS[1:])}
) STRICT, WITHOUT ROWID;
"""


class StateLocked(StateError):
    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(
            f"{path}: another hifly-batch run is using this state file ({holder}); "
            "wait for it to finish, or stop it (its progress is saved) and run again"
        )


class StateStore:
    """Read and write item records; thread-safe, one connection."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = _open(path, readonly)
        # A file from an earlier version may lack newer columns; they read as defaults.
        present = {row[1] for row in self._db.execute("PRAGMA table_info(items)")}
        self._columns = tuple(c for c in _COLUMNS if c in present)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def claim(self, api: str) -> None:
        """Tie the file to one API (``sandbox`` or ``service``); refuse the other one.

        Avatars, voices and tasks made on a sandbox do not exist on the real
        service (nor the other way round), so one state file serves one of them.
        """
        with self._lock, self._db:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'api'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('api', ?)", (api,))
                return
        if row[0] != api:
            raise StateError(
                f"{self.path}: this state file records work made on the {row[0]}, and this "
                f"run talks to the {api}; that work does not exist there. Give this run a "
                "state file of its own with --state, or delete this one to start over"
            )

    def records(self) -> dict[str, Record]:
        """Every item's record, by item id."""
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(self._columns)} FROM items").fetchall()
        return {row[0]: _record(self._columns, row) for row in rows}

    def get(self, item: str) -> Record | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {', '.join(self._columns)} FROM items WHERE item = ?", (item,)
            ).fetchone()
        return _record(self._columns, row) if row else None

    def put(self, record: Record) -> None:
        """Write one record in its own transaction (the commit is the durability point)."""
        self.put_many([record])

    def put_many(self, records: Iterable[Record]) -> None:
        """Write records in one transaction: all of them or none."""
        rows = [_row(r) for r in records]
        marks = ", ".join("?" for _ in _COLUMNS)
        with self._lock, self._db:
            # The connection is in autocommit mode: without BEGIN, each row would be
            # its own transaction, and a failure or a kill midway would keep the first ones.
            self._db.execute("BEGIN")
            self._db.executemany(
                f"INSERT OR REPLACE INTO items ({', '.join(_COLUMNS)}) VALUES ({marks})", rows
            )

    def update(self, record: Record, **changes: Any) -> Record:
        """Write ``record`` with ``changes`` applied; returns the new record."""
        new = replace(record, **changes)
        self.put(new)
        return new


def _open(path: Path, readonly: bool) -> sqlite3.Connection:
    if readonly and not path.exists():
        raise StateError(f"{path}: no state file yet: nothing has run for this manifest")
    try:
        if not readonly:
            path.parent.mkdir(parents=True, exist_ok=True)
        uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
        db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA busy_timeout = 5000")
        if not readonly:
            _prepare(db)
        _check_version(db, path)
        return db
    except sqlite3.DatabaseError as exc:
        raise StateError(
            f"{path}: the state file is damaged or not a hifly-batch state file ({exc}); "
            "move it aside to start over (a fresh run re-creates items it does not know)"
        ) from None


def _prepare(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    with db:
        db.executescript(_SCHEMA)
        present = {row[1] for row in db.execute("PRAGMA table_info(items)")}
        for column in _COLUMNS:
            if column not in present:  # written by an earlier version: add what is new
                db.execute(f"ALTER TABLE items ADD COLUMN {column} ANY")
        db.execute(
            "INSERT OR IGNORE INTO meta VALUES ('format_version', ?)", (str(FORMAT_VERSION),)
        )


def _check_version(db: sqlite3.Connection, path: Path) -> None:
    row = db.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
    if row is None or row[0] != str(FORMAT_VERSION):
        found = row[0] if row else "none"
        raise StateError(
            f"{path}: state format version {found}, this hifly-batch reads {FORMAT_VERSION}; "
            "use the hifly-batch version that wrote it, or move the file aside to start over"
        )


def _row(record: Record) -> tuple[Any, ...]:
    values = [getattr(record, c) for c in _COLUMNS]
    values[_COLUMNS.index("status")] = record.status.value
    return tuple(values)


def _record(columns: tuple[str, ...], row: tuple[Any, ...]) -> Record:
    values = dict(zip(columns, row, strict=True))
    values["status"] = Status(values["status"])
    return Record(**values)


@contextlib.contextmanager
def run_lock(state_path: Path) -> Iterator[None]:
    """Hold the state's lock for a run; StateLocked when another process holds it."""
    lock_path = state_path.with_name(state_path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateLocked(state_path, _holder(fd)) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        yield
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    return text or "pid unknown"


def prior_states(records: dict[str, Record]) -> dict[str, PriorState]:
    """What the plan needs to know of each recorded item."""
    return {item: prior_state(r) for item, r in records.items()}


def prior_state(record: Record) -> PriorState:
    details = json.loads(record.details) if record.details else {}
    return PriorState(
        status=record.status,
        fingerprint=record.fingerprint,
        settings_fingerprint=record.settings_fingerprint or None,
        task_id=record.task_id,
        settings=details.get("settings"),
        field_digests=details.get("field_digests"),
    )
