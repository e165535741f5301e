"""The sandbox's world on disk: account, files, tasks, avatars, voices, counters.

``<data_dir>/world.db`` is SQLite in WAL mode, so a second process (or a later
run) sees the same token, credits and resources. ``<data_dir>/files/`` holds
uploaded bytes and generated outputs under generated names only.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hifly_batch.errors import ConfigError
from hifly_batch.sandbox.records import (
    Counters,
    CreateOutcome,
    FileRow,
    TaskRow,
    TaskTime,
    VoiceRow,
    file_row,
    task_row,
    voice_row,
)

FORMAT_VERSION = 1
DB_NAME = "world.db"
FILES_DIR = "files"

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE account (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    token TEXT NOT NULL, secret TEXT NOT NULL, credits INTEGER NOT NULL
);
CREATE TABLE files (
    file_id TEXT PRIMARY KEY, kind TEXT NOT NULL, ext TEXT NOT NULL,
    content_type TEXT NOT NULL, uploaded INTEGER NOT NULL DEFAULT 0,
    size INTEGER, stored_name TEXT NOT NULL UNIQUE, created_at REAL NOT NULL
);
CREATE TABLE tasks (
    task_id TEXT PRIMARY KEY, endpoint TEXT NOT NULL, params TEXT NOT NULL,
    title TEXT NOT NULL, created_at REAL NOT NULL, finish_at REAL NOT NULL,
    fails INTEGER NOT NULL, fail_code INTEGER NOT NULL DEFAULT 0,
    fail_message TEXT NOT NULL DEFAULT '', result_id TEXT NOT NULL DEFAULT '',
    input_seconds REAL, output_file TEXT, output_seconds REAL,
    callback_sent INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tasks_finish ON tasks (finish_at);
CREATE TABLE avatars (
    avatar TEXT PRIMARY KEY, task_id TEXT NOT NULL REFERENCES tasks, title TEXT NOT NULL
);
CREATE TABLE voices (
    voice TEXT PRIMARY KEY, task_id TEXT NOT NULL REFERENCES tasks, title TEXT NOT NULL,
    rate TEXT NOT NULL DEFAULT '1.0', volume TEXT NOT NULL DEFAULT '1.0',
    pitch TEXT NOT NULL DEFAULT '1.0'
);
CREATE TABLE counters (
    kind TEXT NOT NULL, name TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (kind, name)
);
"""


class WorldError(ConfigError):
    """The world file cannot be used; the message names it and says what to do."""


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


def _create(path: Path, token: str, credits: int) -> None:
    # Built under a temporary name and moved into place, so a world.db that
    # exists is always complete: a crash mid-creation leaves only the temp file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    conn = _connect(tmp)
    try:
        conn.executescript(_SCHEMA)
        conn.execute("INSERT INTO meta VALUES ('format_version', ?)", (str(FORMAT_VERSION),))
        conn.execute(
            "INSERT INTO account VALUES (1, ?, ?, ?)", (token, secrets.token_hex(32), credits)
        )
    finally:
        conn.close()
    try:
        # link() refuses to replace: when two processes race, the first world wins.
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


class World:
    """One open world; every method is safe to call from any thread."""

    def __init__(self, conn: sqlite3.Connection, data_dir: Path) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self.data_dir = data_dir
        self.files_dir = data_dir / FILES_DIR

    @classmethod
    def open(
        cls, data_dir: Path, *, token: str | None = None, credits: int = 0, create: bool = True
    ) -> World:
        """Open ``data_dir/world.db``, creating a new world there if there is none.

        ``token`` and ``credits`` only apply to a new world (None: a random token).
        """
        path = data_dir / DB_NAME
        if not path.exists():
            if not create:
                raise WorldError(f"{path}: no sandbox world here (run the sandbox once first)")
            data_dir.mkdir(parents=True, exist_ok=True)
            _create(path, token or secrets.token_urlsafe(24), credits)
        (data_dir / FILES_DIR).mkdir(exist_ok=True)
        conn = _connect(path)
        try:
            _check_version(conn, path)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            conn.close()
            raise
        return cls(conn, data_dir)

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front: checks and writes in
        # one transaction stay consistent even with another process on the file.
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self._conn.execute(sql, args).fetchone()
            return row

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # -- account ---------------------------------------------------------

    def token(self) -> str:
        """The world's own API token."""
        row = self._one("SELECT token FROM account")
        assert row is not None
        return str(row[0])

    def secret(self) -> str:
        """The HMAC key that signs upload and download URLs."""
        row = self._one("SELECT secret FROM account")
        assert row is not None
        return str(row[0])

    def credits(self) -> int:
        """The credit balance."""
        row = self._one("SELECT credits FROM account")
        assert row is not None
        return int(row[0])

    def set_credits(self, n: int) -> None:
        """Set the credit balance."""
        with self._tx() as db:
            db.execute("UPDATE account SET credits = ?", (n,))

    # -- counters ----------------------------------------------------------

    def bump(self, kind: str, name: str) -> int:
        """Add one to a counter and return its new value."""
        with self._tx() as db:
            row = db.execute(
                "INSERT INTO counters VALUES (?, ?, 1) ON CONFLICT (kind, name) "
                "DO UPDATE SET n = n + 1 RETURNING n",
                (kind, name),
            ).fetchone()
            return int(row[0])

    def counters(self) -> Counters:
        """All counters, by kind."""
        found: dict[str, dict[str, int]] = {"requests": {}, "creates": {}, "faults": {}}
        for row in self._all("SELECT kind, name, n FROM counters ORDER BY kind, name"):
            if row["kind"] in found:
                found[row["kind"]][row["name"]] = row["n"]
        return Counters(**found)

    # -- files -------------------------------------------------------------

    def add_file(self, row: FileRow, now: float) -> None:
        """Record a file (its bytes are written by the caller)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.file_id,
                    row.kind,
                    row.ext,
                    row.content_type,
                    int(row.uploaded),
                    row.size,
                    row.stored_name,
                    now,
                ),
            )

    def mark_uploaded(self, file_id: str, size: int) -> None:
        """Note that a file's bytes arrived."""
        with self._tx() as db:
            db.execute("UPDATE files SET uploaded = 1, size = ? WHERE file_id = ?", (size, file_id))

    def file(self, file_id: str) -> FileRow | None:
        """A file by id."""
        return file_row(self._one("SELECT * FROM files WHERE file_id = ?", (file_id,)))

    def file_by_name(self, stored_name: str) -> FileRow | None:
        """A file by its stored name."""
        return file_row(self._one("SELECT * FROM files WHERE stored_name = ?", (stored_name,)))

    # -- tasks ---------------------------------------------------------------

    def create_task(
        self,
        task: TaskRow,
        *,
        cost: int,
        works: frozenset[str] | None,
        max_generating: int,
        now: float,
    ) -> CreateOutcome:
        """Record a task unless the generating cap or the balance refuses it.

        ``works``: short names counted against the cap, or None when the task
        is not a work. ``cost`` is charged in the same transaction.
        """
        with self._tx() as db:
            if works is not None:
                marks = ",".join("?" * len(works))
                generating = db.execute(
                    f"SELECT COUNT(*) FROM tasks WHERE endpoint IN ({marks}) AND finish_at > ?",
                    (*sorted(works), now),
                ).fetchone()[0]
                if generating >= max_generating:
                    return CreateOutcome.TOO_MANY_GENERATING
            if cost and db.execute("SELECT credits FROM account").fetchone()[0] < cost:
                return CreateOutcome.NO_CREDITS
            _insert_task(db, task)
            db.execute("UPDATE account SET credits = credits - ?", (cost,))
            return CreateOutcome.CREATED

    def task(self, task_id: str) -> TaskRow | None:
        """A task by id."""
        return task_row(self._one("SELECT * FROM tasks WHERE task_id = ?", (task_id,)))

    def set_output(self, task_id: str, output_file: str, seconds: float) -> None:
        """Record a task's generated output."""
        with self._tx() as db:
            db.execute(
                "UPDATE tasks SET output_file = ?, output_seconds = ? WHERE task_id = ?",
                (output_file, seconds, task_id),
            )

    def task_times(self) -> list[TaskTime]:
        """Creation and finish times of every task, oldest first."""
        return [
            TaskTime(
                r["task_id"],
                r["endpoint"],
                r["created_at"],
                r["finish_at"],
                r["finish_at"] - r["created_at"],
            )
            for r in self._all("SELECT * FROM tasks ORDER BY created_at, task_id")
        ]

    def callbacks_due(self) -> list[tuple[str, float]]:
        """Tasks whose callback is not settled yet: (task_id, finish_at)."""
        rows = self._all("SELECT task_id, finish_at FROM tasks WHERE callback_sent = 0")
        return [(r[0], r[1]) for r in rows]

    def mark_callback_sent(self, task_id: str) -> None:
        """Note that a task's callback is settled (delivered, or lost): never sent again."""
        with self._tx() as db:
            db.execute("UPDATE tasks SET callback_sent = 1 WHERE task_id = ?", (task_id,))

    # -- avatars and voices --------------------------------------------------

    def avatar_task(self, avatar: str) -> TaskRow | None:
        """The clone task that made ``avatar``, if any."""
        return task_row(
            self._one(
                "SELECT tasks.* FROM avatars JOIN tasks USING (task_id) WHERE avatar = ?", (avatar,)
            )
        )

    def voice(self, voice: str) -> tuple[VoiceRow, TaskRow] | None:
        """An own voice and the clone task that made it."""
        row = self._one("SELECT * FROM voices WHERE voice = ?", (voice,))
        if row is None:
            return None
        task = self.task(row["task_id"])
        assert task is not None
        return voice_row(row), task

    def voices(self, now: float) -> list[VoiceRow]:
        """Own voices whose clone finished successfully by ``now``, oldest first."""
        rows = self._all(
            "SELECT voices.* FROM voices JOIN tasks USING (task_id) "
            "WHERE tasks.finish_at <= ? AND tasks.fails = 0 ORDER BY tasks.created_at, voice",
            (now,),
        )
        return [voice_row(r) for r in rows]

    def edit_voice(self, voice: str, rate: str, volume: str, pitch: str) -> None:
        """Store a voice's new edit values."""
        with self._tx() as db:
            db.execute(
                "UPDATE voices SET rate = ?, volume = ?, pitch = ? WHERE voice = ?",
                (rate, volume, pitch, voice),
            )


def _check_version(conn: sqlite3.Connection, path: Path) -> None:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise WorldError(
            f"{path}: not a readable sandbox world ({exc}); move it away or delete "
            "its folder to start a new world"
        ) from None
    version = row[0] if row else None
    if version != str(FORMAT_VERSION):
        raise WorldError(
            f"{path}: sandbox world format version {version}, this version of hifly-batch "
            f"reads version {FORMAT_VERSION}; use a new data folder or delete this one"
        )


def _insert_task(db: sqlite3.Connection, task: TaskRow) -> None:
    db.execute(
        "INSERT INTO tasks (task_id, endpoint, params, title, created_at, finish_at, fails, "
        "fail_code, fail_message, result_id, input_seconds) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (
            task.task_id,
            task.endpoint,
            json.dumps(task.params, ensure_ascii=False),
            task.title,
            task.created_at,
            task.finish_at,
            int(task.fails),
            task.fail_code,
            task.fail_message,
            task.result_id,
            task.input_seconds,
        ),
    )
    if task.endpoint.startswith("avatar/"):
        db.execute(
            "INSERT INTO avatars VALUES (?, ?, ?)", (task.result_id, task.task_id, task.title)
        )
    elif task.endpoint == "voice/create":
        db.execute(
            "INSERT INTO voices (voice, task_id, title) VALUES (?, ?, ?)",
            (task.result_id, task.task_id, task.title),
        )
