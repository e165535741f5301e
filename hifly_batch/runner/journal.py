"""The local journal of a database state: the writes a run could not make because the
database was lost, kept on this machine until the next run writes them there.

A create the service answered is paid for; if its task id cannot reach the database
(the connection is gone, and stays gone past the retries), it is appended here, one
JSON line per record, flushed to disk before the run goes on to stop. The next run
that holds the campaign's lock writes back what the database has not moved past
(:func:`behind`), then deletes the file. A line cut short by a kill is skipped.

Append-only and line-per-record, so a kill at any instant leaves every earlier line
whole; reading it writes nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from hifly_batch.core.lifecycle import Status
from hifly_batch.runner.errors import StateError
from hifly_batch.runner.state import COLUMNS, Record, encode, record_of

# A record of the database still in one of these, for the same attempt as a journaled
# one, has not heard what the journal knows (the create's answer, or what followed it).
_BEHIND = frozenset({Status.SUBMITTING, Status.UNCERTAIN, Status.RUNNING})


def append(path: Path, records: Iterable[Record]) -> int:
    """Add ``records`` to the journal at ``path`` and flush them to disk; returns how
    many were written. Raises ``OSError`` when the journal cannot be written."""
    lines = [json.dumps({c: encode(vars(r), c) for c in COLUMNS}, ensure_ascii=False) + "\n"
             for r in records]  # fmt: skip
    if not lines:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, "".join(lines).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return len(lines)


def read(path: Path) -> list[Record]:
    """The journal's records, oldest first; none when there is no journal. Lines that
    do not read as a record (cut short by a kill) are skipped. :class:`StateError` when
    it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StateError(
            f"{path}: the journal of a lost state database cannot be read ({exc.strerror}); "
            "it holds task ids the database has not heard of: make it a readable file again"
        ) from None
    records = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            values = json.loads(line)
            records.append(record_of(COLUMNS, tuple(values[c] for c in COLUMNS)))
    return records


def behind(current: Mapping[str, Record], journaled: Iterable[Record]) -> list[Record]:
    """The journaled records to write over ``current`` (by item id): for each item, its
    last journaled record, where the database's record is of the same attempt (the same
    start) and has not gone past it. An item that another run has since sent again, or
    finished, keeps what the database says."""
    last = {record.item: record for record in journaled}
    return [
        record
        for item, record in last.items()
        if (found := current.get(item)) is not None
        and found.status in _BEHIND
        and found.started_at == record.started_at
        and found != record
    ]
