"""The state: what happened to every item of a manifest, across runs.

:class:`StateStore` is what the runner, the plan, status, reports and the lock file
read and write through; a store is chosen by :func:`open_state` from where the state
is (a file path: :mod:`state_file`, the default). Every store keeps the same records,
with the same transaction boundaries: one short transaction per change (the task id is
committed the moment a create is answered), all of a batch or none.

This module also holds how a record is stored, column by column, for every store.
"""

from __future__ import annotations

import abc
import contextlib
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import MISSING, dataclass, fields, replace
from pathlib import Path
from typing import Any

from hifly_batch.core.graph import Item
from hifly_batch.core.lifecycle import Status
from hifly_batch.core.planning import PriorState
from hifly_batch.runner.errors import StateError

FORMAT_VERSION = 2


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


COLUMNS = tuple(f.name for f in fields(Record))
_MAPPINGS = ("settings", "field_digests")  # stored as JSON text (work_exists as 0 or 1)
_LISTS = ("replaces",)  # stored as JSON text
LEGACY_COLUMN = "details"  # version 1's one JSON column for the fields below
LEGACY_FIELDS = ("settings", "field_digests", "work_exists")


class StateStore(abc.ABC):
    """Read and write item records of one campaign's state; thread-safe. ``where`` says
    where the state is, in messages (never a password)."""

    where: str

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def claim(self, api: str, campaign: str | None = None) -> None:
        """Tie the state to one campaign and one API (``sandbox`` or ``service``); a state
        already tied to others raises :class:`StateError` and is left as it is.

        Avatars, voices and tasks made on a sandbox do not exist on the real
        service (nor the other way round), and another campaign's records would
        be overwritten by this one's, so one state serves one of each.
        """

    @abc.abstractmethod
    def claimed(self) -> dict[str, str]:
        """What the state was claimed for: ``api`` (``sandbox`` or ``service``) and
        ``campaign``, each missing before the first claim."""

    @abc.abstractmethod
    def records(self) -> dict[str, Record]:
        """Every item's record, by item id."""

    @abc.abstractmethod
    def get(self, item: str) -> Record | None: ...

    @abc.abstractmethod
    def put_many(self, records: Iterable[Record]) -> None:
        """Write records in one transaction: all of them or none."""

    @abc.abstractmethod
    def replace_all(self, records: Iterable[Record]) -> None:
        """Make ``records`` the state's only records, in one transaction."""

    @abc.abstractmethod
    def run_lock(self) -> contextlib.AbstractContextManager[None]:
        """Hold the state for one run, on whatever machine: a :class:`StateError` naming
        the holder when another run has it; released when the holder ends, however it
        ends."""

    def unsent(self) -> list[Record]:
        """Records this store could not write and keeps elsewhere meanwhile (a lost
        database's journal), oldest first."""
        return []

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_campaign(self, campaign: str) -> None:
        """:class:`StateError` when the state belongs to another campaign (for commands
        that only read it, which must not show another campaign's records as this one's)."""
        found = self.claimed()
        refuse_another(self.where, found, {"api": found.get("api", ""), "campaign": campaign})

    def put(self, record: Record) -> None:
        """Write one record in its own transaction (the commit is the durability point)."""
        self.put_many([record])

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


def open_state(
    where: Path | str,
    *,
    readonly: bool = False,
    campaign: str = "",
    api: str = "service",
    journal: Path | None = None,
) -> StateStore:
    """The store of the state at ``where``: a ``postgresql://`` database, where it keeps
    ``campaign``'s records on ``api`` (``service`` or ``sandbox``), with ``journal`` the
    local file that keeps what a lost database could not be sent (see
    :mod:`state_postgres`); or a file path (:mod:`state_file`)."""
    # (both build on this module)
    from hifly_batch.runner.state_file import FileState
    from hifly_batch.runner.state_postgres import PostgresState, is_database

    if is_database(str(where)):
        return PostgresState(str(where), campaign, api, readonly=readonly, journal=journal)
    return FileState(Path(where), readonly=readonly)


def refuse_another(where: str | Path, found: Mapping[str, str], wanted: Mapping[str, str]) -> None:
    """Refuse a state claimed for another campaign or API (``where``: the state, as shown)."""
    path = where
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


def default_value(column: str) -> Any:
    """The field's default as stored: the rows a column is added to read it."""
    field = next(f for f in fields(Record) if f.name == column)
    return None if field.default is MISSING else encode({column: field.default}, column)


def row_of(record: Record) -> tuple[Any, ...]:
    return tuple(encode(vars(record), c) for c in COLUMNS)


def encode(values: Mapping[str, Any], column: str) -> Any:
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


def record_of(columns: tuple[str, ...], row: tuple[Any, ...]) -> Record:
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
    if LEGACY_COLUMN in values:  # a version-1 file read as it is
        values.update(from_details(values.pop(LEGACY_COLUMN)))
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


def from_details(details: object) -> dict[str, Any]:
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
