"""``hifly-batch plan MANIFEST [--json]``: what a run would do, item by item and in totals."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hifly_batch import console
from hifly_batch.commands.validate import report_invalid
from hifly_batch.core.graph import Item
from hifly_batch.core.planning import Action, Plan, PriorState, Step, make_plan
from hifly_batch.errors import ExitStatus
from hifly_batch.manifest.diagnostics import ManifestInvalid
from hifly_batch.runner.state import StateStore, prior_states
from hifly_batch.runner.workspace import open_workspace


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "plan",
        parents=[common],
        help="show what a run would do, without doing it",
        description=(
            "Validate the manifest and list every item in dependency order with what a run "
            "would do to it (create, skip, recreate, edit, retry, resume, uncertain, blocked), "
            "changed items first, then counts per section and per action. No network."
        ),
        epilog=(
            "example:\n  hifly-batch plan campaign.yaml\n  hifly-batch plan --json campaign.yaml"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("manifest", type=Path, metavar="MANIFEST")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON on stdout")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    return plan(args.manifest, as_json=args.json, state=args.state, sandbox=args.sandbox)


def plan(
    manifest: Path, *, as_json: bool = False, state: str | None = None, sandbox: bool = False
) -> int:
    """Print the plan for ``manifest`` given what the state file says of its items."""
    try:
        workspace = open_workspace(manifest, state, sandbox=sandbox)
    except ManifestInvalid as exc:
        report_invalid(exc, manifest)
        return int(ExitStatus.INVALID)
    result = make_plan(workspace.graph, recorded_prior(workspace.state_path))
    console.out(render_json(manifest, result) if as_json else render_text(manifest, result))
    return int(ExitStatus.OK)


def render_text(manifest: Path, result: Plan) -> str:
    """The plan as aligned lines, then the counts table."""
    steps = result.listing()
    width = max((len(s.item.id) for s in steps), default=0)
    lines = [f"plan for {manifest}: {len(steps)} items"]
    lines += [
        f"  {s.action.value:<9} {s.item.id:<{width}}  {s.item.kind.value:<15} {_detail(s)}".rstrip()
        for s in steps
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


def recorded_prior(state_path: Path) -> dict[str, PriorState]:
    """The prior state of every item the state file knows; empty before the first run."""
    if not state_path.exists():
        return {}
    with StateStore(state_path, readonly=True) as store:
        return prior_states(store.records())
