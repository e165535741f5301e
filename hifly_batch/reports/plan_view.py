"""The plan as people and programs read it: what a run would change and a totals line
(every item with ``--all``), or one JSON document.

By default the text lists only the items a run would change (:data:`CHANGES`) and those
that need the user's attention though a run does nothing for them (:data:`ATTENTION`);
the rows of one manifest entry that share an action and a reason, when there are more
than :data:`GROUP_ABOVE` of them, take one line (``videos.welcome[c0001 … c0244]``), so
a campaign of thousands of rows plans in a screenful. Both renderers take what a caller
adds (lines before the totals line, keys of the JSON document).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hifly_batch.core.estimate import Estimate
from hifly_batch.core.graph import Item
from hifly_batch.core.planning import ATTENTION, CHANGES, Action, Plan, Step

GROUP_ABOVE = 5  # more rows of one entry than this, with one action and reason: one line
_LISTED = CHANGES | ATTENTION
_KEPT = "(outputs kept)"
# How the totals line says each action's count: the changes, in Action order, then the rest.
_TOTALS_WORDS = {
    **{action: f"to {action.value}" for action in Action if action in CHANGES},
    Action.SKIP: "unchanged",
    Action.UNCERTAIN: "uncertain (not sent again)",
    Action.BLOCKED: "blocked",
    Action.REMOVED: f"removed {_KEPT}",
}

T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    """Where a run would send its work: the sandbox, or the API at ``base_url``."""

    sandbox: bool
    base_url: str | None = None  # None for the sandbox, whose address exists only as it runs

    def describe(self) -> str:
        if self.sandbox:
            return "the sandbox (--sandbox)"
        return f"the HiFly API at {self.base_url}"

    @property
    def api(self) -> str:
        """The key of the spend measured on this target (``runner/spend.py``)."""
        return "sandbox" if self.sandbox else (self.base_url or "").rstrip("/")

    def as_json(self) -> dict[str, Any]:
        return {"sandbox": self.sandbox, "base_url": self.base_url}


def estimate_lines(estimate: Estimate) -> list[str]:
    """The estimate's line for the text plan; none when nothing paid would be sent."""
    return [f"Estimated cost: {estimate.describe()}."] if estimate.items else []


def render_text(
    manifest: Path,
    result: Plan,
    target: Target,
    *,
    every: bool = False,
    extra_lines: Sequence[str] = (),
) -> str:
    """The plan as lines: a header naming ``target``, the listing (changes and what needs
    attention, grouped; ``every``: each item on its own line, then counts per section and
    action), the totals line, then ``extra_lines``."""
    lines = [f"plan for {manifest} against {target.describe()}"]
    lines += _every_line(result) if every else _changes_lines(result)
    if every:
        lines += ["", *_counts_table(result)]
    lines += ["", totals_line(result), *extra_lines]
    return "\n".join(lines)


def totals_line(result: Plan) -> str:
    """``Plan: 3 to create, 240 unchanged, 2 removed (outputs kept).``, or, when a run would
    change nothing, ``No changes. 244 items are done and unchanged.``"""
    totals = _totals(result)
    if result.changes:
        return "Plan: " + ", ".join(_said(totals, a) for a in _TOTALS_WORDS if a in totals) + "."
    done = totals.pop(Action.SKIP, 0)
    said = "No changes."
    if done:
        said += f" {done} item{' is' if done == 1 else 's are'} done and unchanged"
    rest = ", ".join(_said(totals, a) for a in _TOTALS_WORDS if a in totals)
    if rest:
        said += f"{';' if done else ''} {rest}"
    return said + ("." if done or rest else "")


def _totals(result: Plan) -> dict[Action, int]:
    return {Action(action): n for action, n in result.totals().items()}


def _said(totals: Mapping[Action, int], action: Action) -> str:
    return f"{totals[action]} {_TOTALS_WORDS[action]}"


# The listing ------------------------------------------------------------------


def _every_line(result: Plan) -> list[str]:
    steps = result.listing()
    return _aligned([_step_row(s) for s in steps]) + [_removed_row((i,)) for i in result.removed]


def _changes_lines(result: Plan) -> list[str]:
    steps = [s for s in result.listing() if s.action in _LISTED]
    rows = [
        _step_row(unit[0]) if len(unit) == 1 else _group_row(unit)
        for unit in grouped(steps, lambda s: (s.item.id, s.action, s.reason))
    ]
    removed = grouped(result.removed, lambda item_id: (item_id, Action.REMOVED, ""))
    return _aligned(rows) + [_removed_row(unit) for unit in removed]


def grouped(
    entries: Sequence[T], describe: Callable[[T], tuple[str, Action, str]], above: int = GROUP_ABOVE
) -> list[tuple[T, ...]]:
    """``entries`` as display units, in their order: each alone, but the rows of one manifest
    entry (ids ``section.name[key]``) that share an action and a reason, when there are more
    than ``above`` of them, as one unit at the place of the first; then the rest of an
    entry's rows with one action, when more than ``above`` remain, also as one (each with
    its own reason, such as a download from its own task). ``describe(entry)``:
    ``(item id, action, reason)``."""
    keyed: list[tuple[int, str, Action, str]] = []  # place, entry, action, reason of rows
    for n, one in enumerate(entries):
        item_id, action, why = describe(one)
        if (split := split_id(item_id)) is not None:
            keyed.append((n, split[0], action, why))
    first: dict[int, list[int]] = {}  # a unit's first place -> every place in it
    taken: set[int] = set()
    for same_reason in (True, False):
        members: dict[tuple[str, Action, str], list[int]] = {}
        for n, entry, action, why in keyed:
            if n not in taken:
                members.setdefault((entry, action, why if same_reason else ""), []).append(n)
        for places in members.values():
            if len(places) > above:
                first[places[0]] = places
                taken.update(places)
    return [
        tuple(entries[i] for i in first[n]) if n in first else (entry,)
        for n, entry in enumerate(entries)
        if n in first or n not in taken
    ]


def split_id(item_id: str) -> tuple[str, str] | None:
    """``videos.welcome[c0001]`` → ``("videos.welcome", "c0001")``; None for an id
    without a row key."""
    entry, bracket, rest = item_id.partition("[")
    if not bracket or not rest.endswith("]"):
        return None
    return entry, rest[:-1]


def group_label(ids: Sequence[str]) -> str:
    """``videos.welcome[c0001 … c0244]``: the entry with its first and last row keys."""
    first, last = split_id(ids[0]), split_id(ids[-1])
    assert first is not None and last is not None  # (only rows are grouped)
    return f"{first[0]}[{first[1]} … {last[1]}]"


Row = tuple[str, str, str, str]  # action, id or group label, kind, detail


def _aligned(rows: Sequence[Row]) -> list[str]:
    width = max((len(label) for _, label, _, _ in rows), default=0)
    return [
        f"  {action:<9} {label:<{width}}  {kind:<15} {detail}".rstrip()
        for action, label, kind, detail in rows
    ]


def _step_row(step: Step) -> Row:
    item = step.item
    shown = item.output or (item.file.name if item.file else "")
    why = _reason(step)
    detail = f"{shown}  ({why})" if shown and why else shown or (f"({why})" if why else "")
    return step.action.value, item.id, item.kind.value, detail


def _group_row(steps: Sequence[Step]) -> Row:
    step = steps[0]
    reasons = {_reason(s) for s in steps}
    why = reasons.pop() if len(reasons) == 1 else "each its own reason: --all lists them"
    detail = f"{len(steps)} rows" + (f"  ({why})" if why else "")
    return step.action.value, group_label([s.item.id for s in steps]), step.item.kind.value, detail


def _reason(step: Step) -> str:
    """The reason worth saying: none for a new item or a done, unchanged one."""
    if step.action is Action.SKIP or (step.action is Action.CREATE and step.reason == "new"):
        return ""
    return step.reason


def _removed_row(ids: Sequence[str]) -> str:
    if len(ids) == 1:
        return f"  {Action.REMOVED.value:<9} {ids[0]}  {_KEPT}"
    return f"  {Action.REMOVED.value:<9} {group_label(ids)}  {len(ids)} rows  {_KEPT}"


def _counts_table(result: Plan) -> list[str]:
    counts, totals = result.counts(), result.totals()
    actions = list(totals)
    header = f"{'section':<8}" + "".join(f" {a:>9}" for a in actions)
    rows = [
        f"{section:<8}" + "".join(f" {per.get(a, 0):>9}" for a in actions)
        for section, per in counts.items()
    ]
    total = f"{'total':<8}" + "".join(f" {totals[a]:>9}" for a in actions)
    return [header, *rows, total]


# JSON ---------------------------------------------------------------------------


def render_json(
    manifest: Path, result: Plan, target: Target, *, extra: Mapping[str, Any] | None = None
) -> str:
    """The plan as one JSON document: every item in dependency order with its action
    (whatever the text lists), the removed ids, the target, counts, totals, ``changes``
    (whether a run would change anything), and the keys of ``extra``."""
    document = {
        "manifest": str(manifest),
        "target": target.as_json(),
        "changes": result.changes,
        "items": [_step_json(step) for step in result.steps],
        "removed": list(result.removed),
        "counts": result.counts(),
        "totals": result.totals(),
        **(extra or {}),
    }
    return json.dumps(document, ensure_ascii=False, indent=2)


def _step_json(step: Step) -> dict[str, Any]:
    item: Item = step.item
    return {
        "id": item.id,
        "section": item.section,
        "name": item.name,
        "key": item.key,
        "kind": item.kind.value,
        "action": step.action.value,
        "reason": step.reason,
        "deps": list(item.deps),
        "fingerprint": item.fingerprint,
        "output": item.output,
        "title": item.request.get("title"),
    }
