"""Plain records of the sandbox's world, and their conversion from database rows."""

from __future__ import annotations

import enum
import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Counters:
    """Requests per endpoint short name, creates that recorded a task, injected faults."""

    requests: dict[str, int] = field(default_factory=dict)
    creates: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskTime:
    """When a task was created and when it finished (or will)."""

    task_id: str
    endpoint: str
    created_at: float
    finished_at: float
    seconds: float


@dataclass(frozen=True)
class FileRow:
    """An uploaded file or a generated output, as stored."""

    file_id: str
    kind: str  # "upload" or "output"
    ext: str
    content_type: str
    uploaded: bool
    size: int | None
    stored_name: str


@dataclass(frozen=True)
class TaskRow:
    """A recorded task: its request, timing, fate and results."""

    task_id: str
    endpoint: str  # short name, e.g. "video/create_by_tts"
    params: dict[str, Any]
    title: str
    created_at: float
    finish_at: float
    fails: bool
    fail_code: int = 0
    fail_message: str = ""
    result_id: str = ""  # avatar or voice id
    input_seconds: float | None = None
    output_file: str | None = None
    output_seconds: float | None = None


@dataclass(frozen=True)
class VoiceRow:
    """An own (cloned) voice with its current edit values."""

    voice: str
    task_id: str
    title: str
    rate: str
    volume: str
    pitch: str


class CreateOutcome(enum.Enum):
    """What recording a task came to."""

    CREATED = "created"
    TOO_MANY_GENERATING = "too_many_generating"
    NO_CREDITS = "no_credits"


def file_row(row: sqlite3.Row | None) -> FileRow | None:
    """The record of a ``files`` row."""
    if row is None:
        return None
    return FileRow(
        row["file_id"],
        row["kind"],
        row["ext"],
        row["content_type"],
        bool(row["uploaded"]),
        row["size"],
        row["stored_name"],
    )


def task_row(row: sqlite3.Row | None) -> TaskRow | None:
    """The record of a ``tasks`` row."""
    if row is None:
        return None
    return TaskRow(
        task_id=row["task_id"],
        endpoint=row["endpoint"],
        params=json.loads(row["params"]),
        title=row["title"],
        created_at=row["created_at"],
        finish_at=row["finish_at"],
        fails=bool(row["fails"]),
        fail_code=row["fail_code"],
        fail_message=row["fail_message"],
        result_id=row["result_id"],
        input_seconds=row["input_seconds"],
        output_file=row["output_file"],
        output_seconds=row["output_seconds"],
    )


def voice_row(row: sqlite3.Row) -> VoiceRow:
    """The record of a ``voices`` row."""
    return VoiceRow(
        row["voice"], row["task_id"], row["title"], row["rate"], row["volume"], row["pitch"]
    )
