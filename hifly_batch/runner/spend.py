"""Spending: what runs really cost, kept to correct the estimate, and ``--max-credits``.

The measure (SPEC §4): a run that sends paid creates reads the balance before and
after; when every paid create it sent finished done, the drop, with the works'
real durations, is added to ``.hifly/spend.json`` beside the manifest, one record
per API (``sandbox``, or the real API's base URL). Every campaign of the folder
shares it, as they share the account. A file that cannot be read is ignored (the
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


def read_measured(folder: Path, api: str) -> Measured | None:
    """The measured record of ``api`` in ``folder/spend.json``, or None (none yet, or a
    file that cannot be read)."""
    entry = _read(folder / SPEND_FILE).get(api)
    if not isinstance(entry, dict):
        return None
    try:
        values = {f.name: entry[f.name] for f in fields(Measured)}
        measured = Measured(**values)
    except (KeyError, TypeError):
        return None
    numbers = all(isinstance(v, int | float) and v >= 0 for v in values.values())
    return measured if numbers else None


def add_measured(folder: Path, api: str, run: Measured) -> None:
    """Add one run's measure to ``api``'s record (logged, not raised, when it cannot be
    written)."""
    path = folder / SPEND_FILE
    document = _read(path)
    total = (read_measured(folder, api) or Measured()).plus(run)
    document[api] = asdict(total)
    text = json.dumps({"format": FORMAT, "apis": document}, indent=2, sort_keys=True)
    try:
        write_atomically(path, text + "\n")
    except FileWriteError as exc:
        log.warning("the measured spend was not kept: %s", exc)


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
    creates made. None when the run sent no paid create, or one whose work did not
    finish done within the run (its cost would be counted without its seconds)."""
    made = [
        (graph[item_id].kind, record, graph[item_id].text)
        for item_id, record in after.items()
        if item_id in graph.by_id
        and graph[item_id].kind in TABLE
        and record.task_id is not None
        and record.task_id != getattr(before.get(item_id), "task_id", None)
    ]
    if not made or spent < 0:
        return None
    if any(r.status is not Status.DONE or r.duration_s is None for _, r, _ in made):
        return None
    spoken = [(r, text) for kind, r, text in made if kind in _SPOKEN and text]
    return Measured(
        runs=1,
        credits=float(spent),
        table_credits=sum(table_credits(kind, r.duration_s) for kind, r, _ in made),
        seconds=sum(r.duration_s or 0.0 for r, _ in spoken),
        estimated_seconds=sum(speech_seconds(text) for _, text in spoken),
    )


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
