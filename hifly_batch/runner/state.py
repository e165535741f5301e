"""The state file: what happened to every item of a manifest, across runs.

SQLite in WAL mode, one row per item, one short transaction per change: a
`kill -9` at any instant leaves the last committed change in place and the
file readable, and a change costs one row write however large the campaign
(polls that see no change write nothing). ``synchronous=NORMAL`` keeps every
commit safe from a process crash; only a power cut may lose the last few, and
then the file is still consistent.

Two runs are kept off one state by ``runner/lock.py``.

Format versions: 2 keeps what was applied to an item (voice settings, field
digests, whether its task exists remotely) in columns of their own; 1 (release
0.1.0) kept them in one JSON ``details`` column. Opening a version-1 file for
writing migrates it in one transaction; opening it read-only translates its
rows in memory and writes nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Collection, Iterable, Mapping
from dataclasses import MISSING, dataclass, fields, replace
from pathlib import Path
from typing import Any

from hifly_batch.core.graph import Item
from hifly_batch.core.lifecycle import Status
from hifly_batch.core.planning import PriorState
from hifly_batch.runner.errors import StateError

FORMAT_VERSION = 2
_READABLE_VERSIONS = ("1", "2")  # version 1 is migrated on a writing open, translated on a read


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
    output_sha256: str | None = None  # of the output's bytes, for the lock file
    duration_s: float | None = None
    attempts: int = 0
    error_code: int | None = None
    error_message: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    # What the item was last made with, for the plan to say what changed (never mutated):
    settings: Mapping[str, str] | None = None  # a voice's rate/volume/pitch, as applied
    field_digests: Mapping[str, str] | None = None  # Graph.field_digests() of what was sent
    # A failed item whose task exists remotely: a retry fetches its result, never re-creates.
    work_exists: bool = False
    # The tasks of the finished work this item was made again to replace (run --recreate),
    # oldest first: every machine's record of one of them gives way to this one.
    replaces: tuple[str, ...] = ()

    @property
    def has_work(self) -> bool:
        """Its task made the work: done, or failed only after (keeping the result failed,
        or the run stopped waiting for it); such work is never paid for again."""
        failed_after = self.status is Status.FAILED and self.work_exists
        return self.status is Status.DONE or (failed_after and self.task_id is not None)


def new_record(item: Item) -> Record:
    """The record of an item nothing has happened to yet."""
    return Record(
        item=item.id,
        section=item.section,
        kind=item.kind.value,
        key=item.key,
        fingerprint=item.fingerprint,
    )


_COLUMNS = tuple(f.name for f in fields(Record))
_MAPPINGS = ("settings", "field_digests")  # stored as JSON text (work_exists as 0 or 1)
_LISTS = ("replaces",)  # stored as JSON text
_LEGACY = "details"  # version 1's one JSON column for the fields below
_LEGACY_FIELDS = ("settings", "field_digests", "work_exists")
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    f"""CREATE TABLE IF NOT EXISTS items (
    item TEXT PRIMARY KEY, {", ".join(c + " ANY" for c in _COLUMNS[1:])}
) STRICT, WITHOUT ROWID""",
)


class StateStore:
    """Read and write item records; thread-safe, one connection."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = _open(path, readonly)
        # A file from an earlier version may lack newer columns; they read as defaults.
        # A version-1 file opened read-only keeps its details column: read and translated.
        present = _columns_of(self._db)
        legacy = (_LEGACY,) if _LEGACY in present and _version(self._db) == "1" else ()
        self._columns = tuple(c for c in _COLUMNS if c in present) + legacy

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def claim(self, api: str, campaign: str | None = None) -> None:
        """Tie the state to one campaign and one API (``sandbox`` or ``service``); a state
        already tied to others raises :class:`StateError` and is left as it is.

        Avatars, voices and tasks made on a sandbox do not exist on the real
        service (nor the other way round), and another campaign's records would
        be overwritten by this one's, so one state serves one of each.
        """
        wanted = {"api": api, **({"campaign": campaign} if campaign is not None else {})}
        try:
            with self._lock, self._db:
                self._db.execute("BEGIN IMMEDIATE")
                query = "SELECT key, value FROM meta WHERE key IN ('api', 'campaign')"
                found = dict(self._db.execute(query).fetchall())
                _refuse_another(self.path, found, wanted)  # raising rolls back: nothing written
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

    def check_campaign(self, campaign: str) -> None:
        """:class:`StateError` when the state belongs to another campaign (for commands
        that only read it, which must not show another campaign's records as this one's)."""
        found = self.claimed()
        _refuse_another(self.path, found, {"api": found.get("api", ""), "campaign": campaign})

    def records(self) -> dict[str, Record]:
        """Every item's record, by item id."""
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(self._columns)} FROM items").fetchall()
        return {row[0]: self._record(row) for row in rows}

    def get(self, item: str) -> Record | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {', '.join(self._columns)} FROM items WHERE item = ?", (item,)
            ).fetchone()
        return self._record(row) if row else None

    def _record(self, row: tuple[Any, ...]) -> Record:
        try:
            return _record(self._columns, row)
        except ValueError as exc:
            raise _damaged(self.path, f"item {row[0]!r}: {exc}") from None

    def put(self, record: Record) -> None:
        """Write one record in its own transaction (the commit is the durability point)."""
        self.put_many([record])

    def put_many(self, records: Iterable[Record]) -> None:
        """Write records in one transaction: all of them or none."""
        rows = [_row(r) for r in records]
        marks = ", ".join("?" for _ in _COLUMNS)
        try:  # (the commit, where a full disk shows, is the end of the with)
            with self._lock, self._db:
                # The connection is in autocommit mode: without BEGIN, each row would be
                # its own transaction, and a failure or a kill midway would keep the first.
                self._db.execute("BEGIN")
                self._db.executemany(
                    f"INSERT OR REPLACE INTO items ({', '.join(_COLUMNS)}) VALUES ({marks})", rows
                )
        except sqlite3.OperationalError as exc:
            raise _unwritable(self.path, exc) from None

    def settle_interrupted(self) -> dict[str, Record]:
        """Mark items a dead run left ``submitting`` as ``uncertain``; returns every record.

        Their create request was sent and its answer never recorded: the work
        may exist, so they are not sent again unless the user says so.
        """
        message = "the run stopped after sending the create request and before recording its answer"
        records = self.records()
        changed = {
            item: replace(r, status=Status.UNCERTAIN, error_message=message)
            for item, r in records.items()
            if r.status is Status.SUBMITTING
        }
        self.put_many(changed.values())
        return {**records, **changed}

    def update(self, record: Record, **changes: Any) -> Record:
        """Write ``record`` with ``changes`` applied; returns the new record."""
        new = replace(record, **changes)
        self.put(new)
        return new


def _refuse_another(path: Path, found: Mapping[str, str], wanted: Mapping[str, str]) -> None:
    if found.get("campaign", wanted.get("campaign")) != wanted.get("campaign"):
        raise StateError(
            f"{path}: this state belongs to campaign {found['campaign']!r}, not "
            f"{wanted.get('campaign')!r}; nothing was changed. Run this campaign with its own "
            "state (leave out --state for the default)"
        )
    if found.get("api", wanted["api"]) != wanted["api"]:
        raise StateError(
            f"{path}: this state file records work made on the {found['api']}, and this run "
            f"talks to the {wanted['api']}; that work does not exist there. Give this run a "
            "state file of its own with --state, or delete this one to start over"
        )


def _open(path: Path, readonly: bool) -> sqlite3.Connection:
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
        if version is None and _LEGACY in _columns_of(db):  # 0.1.0's tables, version row lost
            db.execute("INSERT INTO meta VALUES ('format_version', '1')")
            version = "1"
        if version is None:  # a new file
            db.execute("INSERT INTO meta VALUES ('format_version', ?)", (str(FORMAT_VERSION),))
            return
        _check_version(version, path)  # before anything is changed
        present = _columns_of(db)
        for column in _COLUMNS:
            if column not in present:  # written by an earlier version: add what is new
                db.execute(f"ALTER TABLE items ADD COLUMN {column} ANY DEFAULT {_default(column)}")
        if version == "1":
            _migrate_from_v1(db, has_details=_LEGACY in present)


def _migrate_from_v1(db: sqlite3.Connection, *, has_details: bool) -> None:
    """Move each row's ``details`` JSON into its typed columns, then drop it."""
    if has_details:
        rows = db.execute(f"SELECT item, {_LEGACY} FROM items").fetchall()
        for item, details in rows:
            typed = _from_details(details)
            values = [_encode(typed, column) for column in _LEGACY_FIELDS]
            db.execute(
                f"UPDATE items SET {', '.join(c + ' = ?' for c in _LEGACY_FIELDS)} WHERE item = ?",
                (*values, item),
            )
        db.execute(f"ALTER TABLE items DROP COLUMN {_LEGACY}")
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
    field = next(f for f in fields(Record) if f.name == column)
    value = None if field.default is MISSING else _encode({column: field.default}, column)
    if value is None:
        return "NULL"
    return str(value) if isinstance(value, int) else "'" + str(value).replace("'", "''") + "'"


def _columns_of(db: sqlite3.Connection) -> set[str]:
    return {row[1] for row in db.execute("PRAGMA table_info(items)")}


def _row(record: Record) -> tuple[Any, ...]:
    return tuple(_encode(vars(record), c) for c in _COLUMNS)


def _encode(values: Mapping[str, Any], column: str) -> Any:
    """How a field is stored: status by its value, mappings as JSON text, the flag as 0/1."""
    value: Any = values.get(column)
    if column == "status":
        return value.value
    if column in _MAPPINGS and value is not None:
        return json.dumps(dict(value), ensure_ascii=False, sort_keys=True)
    if column == "work_exists":
        return int(bool(value))
    if column in _LISTS:
        return json.dumps(list(value or ()))
    return value


# Columns that must hold a number of this type (or NULL), whatever an editor wrote there.
_NUMBERS = {"output_size": int, "attempts": int, "error_code": int, "duration_s": float,
            "started_at": float, "finished_at": float}  # fmt: skip
_TEXTS = ("item", "section", "kind", "fingerprint")


def _record(columns: tuple[str, ...], row: tuple[Any, ...]) -> Record:
    """The record a row holds; ``ValueError`` naming the column when a value is not one a
    state can hold (the file was edited or damaged)."""
    values = dict(zip(columns, row, strict=True))
    _check_values(values)
    values["status"] = Status(values["status"])
    for column in _MAPPINGS:
        if column in values:
            values[column] = _mapping(_loads(values[column]))
    if "work_exists" in values:
        values["work_exists"] = bool(values["work_exists"])
    for column in _LISTS:
        if column in values:
            values[column] = _texts(_loads(values[column]))
    if _LEGACY in values:  # a version-1 file read as it is
        values.update(_from_details(values.pop(_LEGACY)))
    return Record(**values)


def _check_values(values: Mapping[str, Any]) -> None:
    if values["status"] not in {s.value for s in Status}:
        raise ValueError(f"status {values['status']!r} is not one a state records")
    for column, kind in _NUMBERS.items():
        value = values.get(column)
        if value is not None and not (isinstance(value, (int, kind)) and value == value):
            raise ValueError(f"{column} {value!r} is not a number")
    for column in _TEXTS:
        if not isinstance(values.get(column, ""), str):
            raise ValueError(f"{column} {values[column]!r} is not text")


def _from_details(details: object) -> dict[str, Any]:
    """The typed fields a version-1 ``details`` held; NULL or garbage reads as defaults.

    The flag is read as 0.1.0 read it (any true value), so that a migrated item is
    retried exactly as that release would have retried it.
    """
    data = _loads(details)
    if not isinstance(data, dict):
        return {}
    return {
        "settings": _mapping(data.get("settings")),
        "field_digests": _mapping(data.get("field_digests")),
        "work_exists": bool(data.get("work_exists")),
    }


def _loads(text: object) -> object:
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _texts(value: object) -> tuple[str, ...]:
    """``value`` as a tuple of strings if it is a list of them, else empty."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return ()
    return tuple(value)


def _mapping(value: object) -> dict[str, str] | None:
    """``value`` if it is a mapping of strings to strings, else None."""
    if not isinstance(value, dict):
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return None
    return value


def prior_states(
    records: Mapping[str, Record], verify: Collection[str] = ()
) -> dict[str, PriorState]:
    """What the plan needs to know of each recorded item; for the items in ``verify``
    (records this machine did not make) a saved output must also match its SHA-256."""
    return {item: prior_state(r, verify=item in verify) for item, r in records.items()}


def prior_state(record: Record, *, verify: bool = False) -> PriorState:
    return PriorState(
        status=record.status,
        fingerprint=record.fingerprint,
        settings_fingerprint=record.settings_fingerprint or None,
        task_id=record.task_id,
        settings=record.settings,
        field_digests=record.field_digests,
        work_exists=record.work_exists,
        output=record.output,
        output_size=record.output_size,
        output_sha256=record.output_sha256 if verify else None,
    )
