"""The plan as people and programs read it: aligned lines with a counts table, or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hifly_batch.core.graph import Item
from hifly_batch.core.planning import Action, Plan, Step


def render_text(manifest: Path, result: Plan) -> str:
    """The plan as aligned lines, then the counts table."""
    steps = result.listing()
    width = max((len(s.item.id) for s in steps), default=0)
    lines = [f"plan for {manifest}: {len(steps)} items"]
    lines += [
        f"  {s.action.value:<9} {s.item.id:<{width}}  {s.item.kind.value:<15} {_detail(s)}".rstrip()
        for s in steps
    ]
    lines += [
        f"  {Action.REMOVED.value:<9} {item_id}  (outputs kept)" for item_id in result.removed
    ]
    lines += ["", *_counts_table(result)]
    return "\n".join(lines)


def _detail(step: Step) -> str:
    item = step.item
    shown = item.output or (item.file.name if item.file else "")
    if step.action in (Action.CREATE, Action.SKIP) or not step.reason:
        return shown
    return f"{shown}  ({step.reason})" if shown else f"({step.reason})"


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


def render_json(manifest: Path, result: Plan) -> str:
    """The plan as one JSON document (items in dependency order)."""
    document = {
        "manifest": str(manifest),
        "items": [_step_json(step) for step in result.steps],
        "removed": list(result.removed),
        "counts": result.counts(),
        "totals": result.totals(),
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
