"""The CSV report (SPEC §6): one row per item, written from the state file.

UTF-8 with a BOM so spreadsheet programs show Chinese correctly; cells a
spreadsheet would evaluate as a formula get a leading ``'``. Besides the state's
columns, each row says what the item's create request says: its rendered title
and script (``title``, ``text``), taken from the graph item.

Rows that a ``when`` filtered out make no item, so they have no row here (one
row per item, SPEC §6); the review page lists them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from hifly_batch.core.graph import Graph, Item
from hifly_batch.core.lifecycle import Status
from hifly_batch.files import write_atomically
from hifly_batch.runner.state import Record, new_record

COLUMNS = (
    "item", "kind", "section", "key", "status", "task_id", "resource_id", "output",
    "duration_s", "attempts", "error_code", "error_message", "started_at", "finished_at",
    "fingerprint", "title", "text",
)  # fmt: skip

# The report speaks of where items ended, not of the runner's inner steps.
REPORT_STATUS = {
    Status.PENDING: "pending",
    Status.RUNNING: "pending",
    Status.SUBMITTING: "uncertain",
    Status.UNCERTAIN: "uncertain",
    Status.DONE: "done",
    Status.FAILED: "failed",
    Status.BLOCKED: "blocked",
    Status.SKIPPED: "skipped",
}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def report_records(
    graph: Graph, records: Mapping[str, Record], scope: set[str] | None = None
) -> list[Record]:
    """One record per graph item, in graph order; what a run's scope left out is ``skipped``."""
    rows = []
    for item in graph:
        record = records.get(item.id) or new_record(item)
        if scope is not None and item.id not in scope and record.status is Status.PENDING:
            record = replace(record, status=Status.SKIPPED)
        rows.append(record)
    return rows


def report_status(status: Status) -> str:
    return REPORT_STATUS[status]


def row(record: Record, item: Item | None = None) -> list[str]:
    """One report row; every cell a string, safe to open in a spreadsheet. ``item``: the
    record's graph item, for its title and text (none: both empty)."""
    values = {
        "item": record.item,
        "kind": record.kind,
        "section": record.section,
        "key": record.key,
        "status": report_status(record.status),
        "task_id": record.task_id,
        "resource_id": record.resource_id,
        "output": record.output,
        "duration_s": _number(record.duration_s),
        "attempts": str(record.attempts),
        "error_code": record.error_code,
        "error_message": record.error_message,
        "started_at": iso_time(record.started_at),
        "finished_at": iso_time(record.finished_at),
        "fingerprint": record.fingerprint,
        "title": item_title(item),
        "text": item.text if item is not None else None,
    }
    return [escape_cell("" if values[c] is None else str(values[c])) for c in COLUMNS]


def item_title(item: Item | None) -> str | None:
    """The title the item's create request sends (a work's, an avatar's or a cloned
    voice's; a public voice's is the title it is found by); None where there is none."""
    title = item.request.get("title") if item is not None else None
    return title if isinstance(title, str) else None


def escape_cell(text: str) -> str:
    """Defuse spreadsheet formulas (``=cmd|...``): such a cell is shown, never run."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def render(records: Iterable[Record], items: Mapping[str, Item]) -> str:
    """The whole CSV text, header first, rows in the order given; ``items``: graph items
    by id (a record without one has an empty title and text)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows(row(r, items.get(r.item)) for r in records)
    return buffer.getvalue()


def write(records: Iterable[Record], items: Mapping[str, Item], path: Path) -> None:
    """Write the report atomically: a reader never sees half a file (``FileWriteError``
    when it cannot be written)."""
    write_atomically(path, render(records, items), encoding="utf-8-sig")


def _number(value: float | None) -> str | None:
    if value is None:
        return None
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def iso_time(value: float | None) -> str | None:
    """Epoch seconds as ISO 8601 in UTC, to the second (the report's and status's form)."""
    if value is None:
        return None
    return datetime.fromtimestamp(value, timezone.utc).isoformat(timespec="seconds")
