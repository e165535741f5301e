"""The state in a file (the default store): SQLite, beside the manifest or at --state.

SQLite in WAL mode, one row per item, one short transaction per change: a
`kill -9` at any instant leaves the last committed change in place and the
file readable, and a change costs one row write however large the campaign
(polls that see no change write nothing). ``synchronous=NORMAL`` keeps every
commit safe from a process crash; only a power cut may lose the last few, and
then the file is still consistent.

Two runs are kept off one state by ``runner/lock.py`` (:meth:`FileState.run_lock`).

Format versions: 2 keeps what was applied to an item (voice settings, field
digests, whether its task exists remotely) in columns of their own; 1 (release
0.1.0) kept them in one JSON ``details`` column. Opening a version-1 file for
writing migrates it in one transaction; opening it read-only translates its
rows in memory and writes nothing.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hifly_batch.runner.errors import StateError
from hifly_batch.runner.lock import state_file_lock
from hifly_batch.runner.state import (
    COLUMNS,
    FORMAT_VERSION,
    LEGACY_COLUMN,
    LEGACY_FIELDS,
    Record,
    StateStore,
    default_value,
    encode,
    from_details,
    record_of,
    refuse_another,
    row_of,
)

_READABLE_VERSIONS = ("1", "2")  # version 1 is migrated on a writing open, translated on a read
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    f"""CREATE TABLE IF NOT EXISTS items (
    item TEXT PRIMARY KEY, {", ".join(c + " ANY" for c in COLUMNS[1:])}
) STRICT, WITHOUT ROWID""",
)


class FileState(StateStore):
    """The state in an SQLite file; thread-safe, one connection."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.where = str(path)
        self._lock = threading.Lock()
        self._db = _open(path, readonly)
        # A file from an earlier version may lack newer columns; they read as defaults.
        # A version-1 file opened read-only keeps its details column: read and translated.
        present = _columns_of(self._db)
        legacy = (LEGACY_COLUMN,) if LEGACY_COLUMN in present and _version(self._db) == "1" else ()
        self._columns = tuple(c for c in COLUMNS if c in present) + legacy

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def claim(self, api: str, campaign: str | None = None) -> None:
        wanted = {"api": api, **({"campaign": campaign} if campaign is not None else {})}
        try:
            with self._lock, self._db:
                self._db.execute("BEGIN IMMEDIATE")
                query = "SELECT key, value FROM meta WHERE key IN ('api', 'campaign')"
                found = dict(self._db.execute(query).fetchall())
                refuse_another(self.path, found, wanted)  # raising rolls back: nothing written
                for key, value in wanted.items():
                    if key not in found:  # a new state, or one written before it recorded it
                        self._db.execute("INSERT INTO meta VALUES (?, ?)", (key, value))
        except sqlite3.OperationalError as exc:
            raise _unwritable(self.path, exc) from None

    def claimed(self) -> dict[str, str]:
        """What the state was claimed for: ``api`` (``sandbox`` or ``service``) and
        ``campaign``, each missing before the first claim."""
        with self._lock:
            rows = self._db.execute("SELECT key, value FROM meta WHERE key IN ('api', 'campaign')")
            return {str(k): str(v) for k, v in rows.fetchall()}

    def records(self) -> dict[str, Record]:
        rows = self._read(f"SELECT {', '.join(self._columns)} FROM items", ())
        return {row[0]: self._record(row) for row in rows}

    def get(self, item: str) -> Record | None:
        query = f"SELECT {', '.join(self._columns)} FROM items WHERE item = ?"
        rows = self._read(query, (item,))
        return self._record(rows[0]) if rows else None

    def _read(self, query: str, values: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                return self._db.execute(query, values).fetchall()
        except sqlite3.OperationalError as exc:  # (text that is not UTF-8, written by hand)
            raise _damaged(self.path, exc) from None

    def _record(self, row: tuple[Any, ...]) -> Record:
        try:
            return record_of(self._columns, row)
        except ValueError as exc:
            raise _damaged(self.path, f"item {row[0]!r}: {exc}") from None

    def run_lock(self) -> contextlib.AbstractContextManager[None]:
        """``flock`` on the file itself, which every name of it shares (hard links too)."""
        return state_file_lock(self.path)

    def put_many(self, records: Iterable[Record]) -> None:
        self._write(records)

    def replace_all(self, records: Iterable[Record]) -> None:
        self._write(records, clear=True)

    def _write(self, records: Iterable[Record], *, clear: bool = False) -> None:
        rows = [row_of(r) for r in records]
        marks = ", ".join("?" for _ in COLUMNS)
        try:  # (the commit, where a full disk shows, is the end of the with)
            with self._lock, self._db:
                # The connection is in autocommit mode: without BEGIN, each row would be
                # its own transaction, and a failure or a kill midway would keep the first.
                self._db.execute("BEGIN")
                if clear:
                    self._db.execute("DELETE FROM items")
                self._db.executemany(
                    f"INSERT OR REPLACE INTO items ({', '.join(COLUMNS)}) VALUES ({marks})", rows
                )
        except sqlite3.OperationalError as exc:
            raise _unwritable(self.path, exc) from None


def _open(path: Path, readonly: bool) -> sqlite3.Connection:
    try:
        return _opened(path, readonly)
    except OSError as exc:  # a folder on the way that is a file, a name too long, ...
        raise _unwritable(path, exc) from None


def _opened(path: Path, readonly: bool) -> sqlite3.Connection:
    if path.is_dir():
        raise StateError(f"{path}: this is a folder, not a state file; give --state a file path")
    if readonly and not path.exists():
        raise StateError(f"{path}: no state file yet: nothing has run for this manifest")
    if not readonly and not _writable(path):
        raise _unwritable(path, PermissionError("permission denied"))
    try:
        if path.exists():
            _refuse_foreign(path)
        elif not readonly:
            _create(path)
        return _connect(path, readonly)
    except sqlite3.OperationalError as exc:
        if any(word in str(exc) for word in _NOT_WRITTEN):
            raise _unwritable(path, exc) from None
        raise _damaged(path, exc) from None
    except sqlite3.DatabaseError as exc:
        raise _damaged(path, exc) from None


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA busy_timeout = 5000")
    if readonly:
        _check_version(_version(db), path)
    else:
        _prepare(db, path)
    return db


def _create(path: Path) -> None:
    """A new state, built under a temporary name and renamed into place, so that a state
    file that exists is always a whole one: an empty file is never a state of ours."""
    path.parent.mkdir(parents=True, exist_ok=True)
    building = path.with_name(f".{path.name}.{os.getpid()}.new")
    building.unlink(missing_ok=True)
    _connect(building, readonly=False).close()  # closing folds the WAL into the file
    os.replace(building, path)


def _refuse_foreign(path: Path) -> None:
    """An existing file that is not a hifly-batch state is refused, never started afresh:
    it may be a state whose contents were lost, and starting over would pay again."""
    wal = path.with_name(path.name + "-wal")
    if path.stat().st_size == 0 and not (wal.exists() and wal.stat().st_size > 0):
        raise StateError(
            f"{path}: the state file is empty, so it is no hifly-batch state: its records "
            "are gone. Restore it from a backup if you have one; to start this campaign's "
            "state over (a run then creates again what it does not know), delete the file"
        )
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    if tables and "meta" not in tables:
        raise StateError(
            f"{path}: this is an SQLite file but not a hifly-batch state (its tables: "
            f"{', '.join(sorted(tables)[:5])}); nothing was changed. Give --state the "
            "campaign's own state file"
        )


def _writable(path: Path) -> bool:
    """The state file (or, before the first run, its folder) can be written."""
    if path.exists():
        return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    folder = next((p for p in path.parents if p.exists()), None)
    return folder is not None and os.access(folder, os.W_OK)


# SQLite's words for a file it cannot write (read-only, a full or failing disk), as
# opposed to one whose contents it cannot read.
_NOT_WRITTEN = ("readonly", "unable to open", "disk is full", "disk I/O error")


def _unwritable(path: Path, exc: BaseException) -> StateError:
    if "disk is full" in str(exc) or "disk I/O error" in str(exc):
        todo = "free some space there, or check the disk (nothing in the state is lost)"
    else:
        todo = "make the file and its folder writable (nothing in it is lost)"
    return StateError(
        f"{path}: the state cannot be written ({exc}); {todo}, or give another path with --state"
    )


def _damaged(path: Path, exc: BaseException | str) -> StateError:
    return StateError(
        f"{path}: the state file is damaged or not a hifly-batch state file ({exc}); "
        "restore it from a backup if you have one (if you move it aside, the state starts "
        "over, and a run creates again, and pays again for, every item it does not know)"
    )


def _prepare(db: sqlite3.Connection, path: Path) -> None:
    """Create a new file's tables, or bring an older file up to this version.

    One transaction: a kill at any instant leaves the file as it was (a version-1
    file stays version 1, and the next run migrates it) or fully migrated.
    """
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    with db:
        db.execute("BEGIN IMMEDIATE")  # autocommit mode otherwise; see put_many
        for statement in _SCHEMA:
            db.execute(statement)
        version = _version(db)
        if version is None and LEGACY_COLUMN in _columns_of(db):  # 0.1.0's tables, version row lost
            db.execute("INSERT INTO meta VALUES ('format_version', '1')")
            version = "1"
        if version is None:  # a new file
            db.execute("INSERT INTO meta VALUES ('format_version', ?)", (str(FORMAT_VERSION),))
            return
        _check_version(version, path)  # before anything is changed
        present = _columns_of(db)
        for column in COLUMNS:
            if column not in present:  # written by an earlier version: add what is new
                db.execute(f"ALTER TABLE items ADD COLUMN {column} ANY DEFAULT {_default(column)}")
        if version == "1":
            _migrate_from_v1(db, has_details=LEGACY_COLUMN in present)


def _migrate_from_v1(db: sqlite3.Connection, *, has_details: bool) -> None:
    """Move each row's ``details`` JSON into its typed columns, then drop it."""
    if has_details:
        rows = db.execute(f"SELECT item, {LEGACY_COLUMN} FROM items").fetchall()
        for item, details in rows:
            typed = from_details(details)
            values = [encode(typed, column) for column in LEGACY_FIELDS]
            db.execute(
                f"UPDATE items SET {', '.join(c + ' = ?' for c in LEGACY_FIELDS)} WHERE item = ?",
                (*values, item),
            )
        db.execute(f"ALTER TABLE items DROP COLUMN {LEGACY_COLUMN}")
    db.execute("UPDATE meta SET value = ? WHERE key = 'format_version'", (str(FORMAT_VERSION),))


def _version(db: sqlite3.Connection) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
    return str(row[0]) if row else None


def _check_version(version: str | None, path: Path) -> None:
    if version not in _READABLE_VERSIONS:
        raise StateError(
            f"{path}: state format version {version or 'none'}, this hifly-batch reads "
            f"{FORMAT_VERSION}; use the hifly-batch version that wrote it, or move the file "
            "aside to start over"
        )


def _default(column: str) -> str:
    """The field's default as an SQL literal: the rows a column is added to read it."""
    value = default_value(column)
    if value is None:
        return "NULL"
    return str(value) if isinstance(value, int) else "'" + str(value).replace("'", "''") + "'"


def _columns_of(db: sqlite3.Connection) -> set[str]:
    return {row[1] for row in db.execute("PRAGMA table_info(items)")}
