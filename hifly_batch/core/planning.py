"""The plan (SPEC §5): what a run would do with each item, given what earlier runs did.

:func:`make_plan` is pure: the graph and the prior state of each item (as the
state store last recorded it) in, one action per item out. With no prior
state every item is ``create``.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from hifly_batch.core.graph import Graph, Item, ItemKind, Ref
from hifly_batch.core.lifecycle import Status


@dataclass(frozen=True)
class PriorState:
    """What an earlier run left for one item.

    ``settings`` (a voice's last applied rate/volume/pitch) and ``field_digests``
    (:meth:`~hifly_batch.core.graph.Graph.field_digests` when the item was made)
    are optional: with them the plan says exactly what changed. ``work_exists``: the
    item failed after its task was made (it finished, or the run stopped waiting
    for it), so a retry fetches that task's result instead of creating it again.
    """

    status: Status
    fingerprint: str = ""
    settings_fingerprint: str | None = None
    task_id: str | None = None
    settings: Mapping[str, str] | None = None
    field_digests: Mapping[str, str] | None = None
    work_exists: bool = False
    output: str | None = None  # where its output was saved, relative to output_dir
    output_size: int | None = None  # bytes, as downloaded
    output_sha256: str | None = None  # when given, the saved file must have these bytes


OutputCheck = Callable[[str, "int | None", "str | None"], bool]
"""``(relative path, size in bytes or None, SHA-256 or None) -> whole``: is a saved output
still there, whole (and, given a SHA-256, the very file)."""


class Action(str, enum.Enum):
    CREATE = "create"  # never made
    SKIP = "skip"  # done, unchanged
    RECREATE = "recreate"  # done or tried before, but its inputs changed
    EDIT = "edit"  # a voice whose rate/volume/pitch changed: voice/edit, no new clone
    RETRY = "retry"  # failed last time, unchanged
    DOWNLOAD = "download"  # made, but its output was not kept: fetched from its task again
    MOVE = "move"  # done, but its output path changed: the file is moved, nothing is made
    RESUME = "resume"  # submitted, task id known: poll it
    UNCERTAIN = "uncertain"  # may have been submitted, task id unknown: not sent again
    BLOCKED = "blocked"  # waits for an item that will not run
    REMOVED = "removed"  # in the state, no longer in the manifest: nothing done, outputs kept


CHANGED = frozenset({Action.RECREATE, Action.EDIT})
# What a run would change: ``plan --detailed-exitcode`` exits 2 when any item has one.
CHANGES = frozenset(
    {Action.CREATE, Action.RECREATE, Action.EDIT, Action.RETRY, Action.DOWNLOAD, Action.MOVE,
     Action.RESUME}
)  # fmt: skip
# What a run does nothing for, but the user should see: listed by ``plan`` with the changes.
ATTENTION = frozenset({Action.UNCERTAIN, Action.BLOCKED, Action.REMOVED})
_WILL_SUBMIT = frozenset({Action.CREATE, Action.RECREATE, Action.RETRY})
_STOPS_DEPENDENTS = frozenset({Action.UNCERTAIN, Action.BLOCKED})


@dataclass(frozen=True)
class Step:
    item: Item
    action: Action
    reason: str = ""


@dataclass(frozen=True)
class Plan:
    """One step per graph item, in dependency order; ``removed``: ids the state records
    that the manifest no longer has (nothing is done to them; their outputs are kept)."""

    steps: tuple[Step, ...]
    removed: tuple[str, ...] = ()
    prior: Mapping[str, PriorState] = field(default_factory=dict)  # what it was made from

    def listing(self) -> tuple[Step, ...]:
        """Steps for display: changed items first, each group in dependency order."""
        changed = tuple(s for s in self.steps if s.action in CHANGED)
        return changed + tuple(s for s in self.steps if s.action not in CHANGED)

    @property
    def changes(self) -> bool:
        """Whether a run would change anything (an item whose action is in :data:`CHANGES`)."""
        return any(step.action in CHANGES for step in self.steps)

    def counts(self) -> dict[str, dict[str, int]]:
        """section -> action -> number of items (actions with none are left out)."""
        table: dict[str, Counter[str]] = {}
        for step in self.steps:
            table.setdefault(step.item.section, Counter())[step.action.value] += 1
        for item_id in self.removed:
            table.setdefault(item_id.split(".")[0], Counter())[Action.REMOVED.value] += 1
        return {section: dict(counter) for section, counter in table.items()}

    def totals(self) -> dict[str, int]:
        """action -> number of items, in :class:`Action` order."""
        counter = Counter(step.action for step in self.steps)
        counter[Action.REMOVED] = len(self.removed)
        return {a.value: counter[a] for a in Action if counter[a]}


def make_plan(
    graph: Graph,
    prior: Mapping[str, PriorState],
    *,
    resubmit_uncertain: bool = False,
    recreate: Collection[str] = (),
    output_whole: OutputCheck | None = None,
) -> Plan:
    """Decide every item's action from its prior state and its dependencies' actions.

    ``recreate``: ids of items to make again although they are done (``run --recreate``,
    as Terraform's ``-replace``); the only way, besides a change, to pay again for them.
    ``output_whole(path, size, sha256)`` says whether a done item's saved output is still whole;
    one that is not is downloaded again from its task (without it: assumed whole).
    """
    decided: dict[str, Step] = {}
    for item in graph:
        state = prior.get(item.id)
        if item.id in recreate and state is not None and _made(state):
            step = Step(item, Action.RECREATE, "asked with --recreate")
        else:
            step = _decide(graph, item, state, decided, resubmit_uncertain)
            step = _output_lost(step, state, output_whole)
        decided[item.id] = _blocked(step, decided)
    return Plan(tuple(decided.values()), tuple(sorted(set(prior) - set(decided))), prior)


def _decide(
    graph: Graph, item: Item, state: PriorState | None, decided: Mapping[str, Step], resubmit: bool
) -> Step:
    if state is None or state.status in (Status.PENDING, Status.SKIPPED):
        return Step(item, Action.CREATE, "new")
    if state.fingerprint != item.fingerprint:
        return Step(item, Action.RECREATE, _why_changed(graph, item, state, decided))
    status = state.status
    if status is Status.DONE:
        if item.settings_fingerprint != state.settings_fingerprint:
            return Step(item, Action.EDIT, _settings_change(item, state))
        if (target := output_target(item, state.output)) is not None:
            return Step(item, Action.MOVE, f"output {state.output} → {target}")
        return Step(item, Action.SKIP, "done, unchanged")
    if status is Status.FAILED and state.work_exists and state.task_id:
        if item.output:
            reason = f"task {state.task_id} finished; its output is downloaded, not re-created"
            return Step(item, Action.DOWNLOAD, reason)
        reason = f"failed last run; its task {state.task_id} is fetched again, not re-created"
        return Step(item, Action.RETRY, reason)
    if status is Status.FAILED:
        return Step(item, Action.RETRY, "failed last run")
    if status is Status.RUNNING and state.task_id:
        return Step(item, Action.RESUME, f"task {state.task_id} submitted")
    if status is Status.BLOCKED:
        return Step(item, Action.CREATE, "was blocked")
    if resubmit:
        return Step(item, Action.CREATE, "uncertain: submitting again as asked")
    return Step(item, Action.UNCERTAIN, "may have been submitted (answer lost); not sent again")


def _made(state: PriorState) -> bool:
    """Its work exists: done, or failed only after its task finished."""
    return state.status is Status.DONE or (state.status is Status.FAILED and state.work_exists)


def _output_lost(step: Step, state: PriorState | None, whole: OutputCheck | None) -> Step:
    """A done, unchanged item whose output file is gone or damaged: download, not create."""
    if step.action is not Action.SKIP or whole is None or state is None:
        return step
    if state.output is None or state.task_id is None:
        return step
    if whole(state.output, state.output_size, state.output_sha256):
        return step
    missing = "not the recorded file" if state.output_sha256 else "missing"
    reason = (
        f"output {state.output} {missing}; downloaded from task {state.task_id}, not re-created"
    )
    return Step(step.item, Action.DOWNLOAD, reason)


def output_target(item: Item, saved: str | None) -> str | None:
    """Where a done item's output belongs now, when it was saved elsewhere; else None.

    A default audios output takes its extension from the output URL, so only the
    rest of its path is compared.
    """
    if item.output is None or saved is None:
        return None
    target = item.output
    if item.output_default and item.kind is ItemKind.AUDIO_BY_TTS:
        target = str(PurePosixPath(target).with_suffix(PurePosixPath(saved).suffix))
    return None if target == saved else target


def _blocked(step: Step, decided: Mapping[str, Step]) -> Step:
    if step.action not in _WILL_SUBMIT:
        return step
    for dep in step.item.deps:
        upstream = decided[dep]
        if upstream.action in _STOPS_DEPENDENTS:
            return Step(step.item, Action.BLOCKED, f"waits for {dep} ({upstream.action.value})")
    return step


def _why_changed(graph: Graph, item: Item, state: PriorState, decided: Mapping[str, Step]) -> str:
    """Name what changed: upstream items first, then the item's own fields."""
    reasons = []
    for dep in item.deps:
        upstream = decided[dep]
        if upstream.action is Action.EDIT:
            reasons.append(f"{upstream.reason} ({dep})")
        elif upstream.action in (Action.RECREATE, Action.CREATE):
            reasons.append(f"{dep} changed")
    if state.field_digests is not None:
        for name, value in graph.field_digests(item.id).items():
            if state.field_digests.get(name) != value and not isinstance(item.request[name], Ref):
                reasons.append(f"{name} changed")
        reasons += [f"{name} removed" for name in state.field_digests if name not in item.request]
    return "; ".join(reasons) or "inputs changed"


def _settings_change(item: Item, state: PriorState) -> str:
    new = item.settings or {}
    old = state.settings
    if old is None:
        return "voice settings changed"
    parts = [
        f"{name} {old.get(name, '1.0')} → {new.get(name, '1.0')}"
        for name in ("rate", "volume", "pitch")
        if old.get(name, "1.0") != new.get(name, "1.0")
    ]
    return "voice settings changed: " + ", ".join(parts)
