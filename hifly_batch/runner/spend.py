"""Spending: what runs really cost, kept to correct the estimate, and ``--max-credits``.

The measure (SPEC §4): a run that sends paid creates reads the balance before and
after; when every paid create it sent finished done, the drop, with the works'
real durations, is added to ``.hifly/spend.json`` beside the manifest, one record
per API (``sandbox``, or the real API's base URL) and campaign. A campaign's
estimate uses its own runs' measure, else what every campaign of the folder measured
(they share the account). A file that cannot be read is ignored (the
table applies again); one that cannot be written is only logged: an estimate is
never worth stopping a run for.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from hifly_batch.core.estimate import (
    PER_ITEM,
    TABLE,
    Measured,
    speech_seconds,
    table_credits,
)
from hifly_batch.core.graph import Graph, ItemKind
from hifly_batch.core.lifecycle import Status
from hifly_batch.errors import HiflyBatchError
from hifly_batch.files import FileWriteError, write_atomically
from hifly_batch.runner.state import Record

SPEND_FILE = "spend.json"
FORMAT = 1
log = logging.getLogger(__name__)


def read_measured(folder: Path, api: str, campaign: str | None = None) -> Measured | None:
    """What runs on ``api`` from ``folder`` measured: ``campaign``'s own runs where it has
    any (the same works cost the same again), else every campaign's; None when there is
    no measure yet, or ``spend.json`` cannot be read."""
    entry = _mapping(_read(folder / SPEND_FILE).get(api))
    own = _mapping(entry.get("campaigns")).get(campaign) if campaign is not None else None
    return _measured(own) or _measured(entry.get("all"))


def add_measured(folder: Path, api: str, campaign: str, run: Measured) -> None:
    """Add one run of ``campaign`` to what ``api`` measured, its own and every campaign's
    (logged, not raised, when it cannot be written)."""
    path = folder / SPEND_FILE
    document = _read(path)
    entry = _mapping(document.get(api))
    campaigns = _mapping(entry.get("campaigns"))
    own = (_measured(campaigns.get(campaign)) or Measured()).plus(run)
    pool = (_measured(entry.get("all")) or Measured()).plus(run)
    document[api] = {"all": asdict(pool), "campaigns": {**campaigns, campaign: asdict(own)}}
    text = json.dumps({"format": FORMAT, "apis": document}, indent=2, sort_keys=True)
    try:
        write_atomically(path, text + "\n")
    except FileWriteError as exc:
        log.warning("the measured spend was not kept: %s", exc)


def _mapping(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def _measured(entry: object) -> Measured | None:
    """A record of ``spend.json`` as a :class:`Measured`; None if it is not one."""
    if not isinstance(entry, dict):
        return None
    try:
        values = {f.name: entry[f.name] for f in fields(Measured)}
    except KeyError:
        return None
    numbers = all(isinstance(v, int | float) and v >= 0 for v in values.values())
    return Measured(**values) if numbers else None


def _read(path: Path) -> dict[str, object]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("%s cannot be read (%s); the estimate uses the table", path, exc)
        return {}
    apis = document.get("apis") if isinstance(document, dict) else None
    if document.get("format") != FORMAT or not isinstance(apis, dict):
        return {}
    return apis


def measure(
    graph: Graph,
    before: Mapping[str, Record],
    after: Mapping[str, Record],
    spent: float,
) -> Measured | None:
    """One run's measure: ``spent`` (the balance's drop) against the works its paid
    creates made. None when the run changed no paid item, or left one it changed other
    than done with a new task (failed, uncertain, interrupted: what it cost cannot be told
    from what it made), or when the balance grew (credits were added meanwhile)."""
    changed = [
        (graph[item_id], record)
        for item_id, record in after.items()
        if item_id in graph.by_id
        and graph[item_id].kind in TABLE
        and record != before.get(item_id)
        and not _refetched(record, before.get(item_id))
    ]
    if not changed or spent < 0:
        return None
    made = [(item, record) for item, record in changed if _made_now(item.kind, record, before)]
    if len(made) < len(changed):
        return None
    spoken = [(record, item.text) for item, record in made if item.kind in _SPOKEN and item.text]
    return Measured(
        runs=1,
        credits=float(spent),
        table_credits=sum(table_credits(item.kind, record.duration_s) for item, record in made),
        seconds=sum(record.duration_s or 0.0 for record, _ in spoken),
        estimated_seconds=sum(speech_seconds(text) for _, text in spoken),
    )


def _refetched(record: Record, earlier: Record | None) -> bool:
    """Only an earlier task's output was fetched again: no create was sent."""
    same_task = earlier is not None and record.task_id == earlier.task_id
    return same_task and record.task_id is not None


def _made_now(kind: ItemKind, record: Record, before: Mapping[str, Record]) -> bool:
    """Done by a task this run made (an image avatar has no duration: it is priced per
    avatar)."""
    new_task = record.task_id is not None and record.task_id != getattr(
        before.get(record.item), "task_id", None
    )
    timed = record.duration_s is not None or kind in PER_ITEM
    return record.status is Status.DONE and new_task and timed


_SPOKEN = frozenset({ItemKind.VIDEO_BY_TTS, ItemKind.AUDIO_BY_TTS})


@dataclass
class CreditLimit:
    """``run --max-credits N``: admits paid creates while the credits they are estimated
    to take, summed over this run, stay within ``limit``. Once one is refused, every later
    one is too: a run stops sending paid creates, it does not pick cheaper ones.

    ``prices``: item id -> estimated credits. Admitting an item again (a create resent
    after a refusal that made nothing) costs nothing more. Thread-safe."""

    limit: float
    prices: Mapping[str, float]
    committed: float = 0.0
    stopped: bool = False
    admitted: set[str] = field(default_factory=set)
    held: list[str] = field(default_factory=list)  # refused, in the order they came

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def admit(self, item_id: str) -> bool:
        with self._lock:
            if item_id in self.admitted:
                return True
            price = self.prices.get(item_id, 0.0)
            if self.stopped or self.committed + price > self.limit:
                self.stopped = True
                self.held.append(item_id)
                return False
            self.admitted.add(item_id)
            self.committed += price
            return True


def balance(read: Callable[[], int]) -> int | None:
    """``read()`` (the client's credit query), or None when it fails: a balance is shown
    and measured where it can be had, and its absence stops nothing."""
    try:
        return read()
    except HiflyBatchError as exc:
        log.info("the credit balance could not be read: %s", exc)
        return None
