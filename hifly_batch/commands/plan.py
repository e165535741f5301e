"""``hifly-batch plan MANIFEST [--json]``: what a run would do, item by item and in totals."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path

from hifly_batch import console
from hifly_batch.campaign import Campaign
from hifly_batch.errors import ExitStatus
from hifly_batch.manifest.diagnostics import ManifestInvalid
from hifly_batch.reports.plan_view import render_json, render_text


def register(
    subparsers: argparse._SubParsersAction, common: Callable[..., list[argparse.ArgumentParser]]
) -> None:
    parser = subparsers.add_parser(
        "plan",
        parents=common("base_url", "sandbox", "state"),
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
        campaign = Campaign.load(manifest, state=state, sandbox=sandbox)
    except ManifestInvalid as exc:
        console.err(exc.render(manifest))
        return int(ExitStatus.INVALID)
    result = campaign.plan()
    console.out(render_json(manifest, result) if as_json else render_text(manifest, result))
    rehearsal = campaign.rehearsal_record()
    if rehearsal is not None:  # SPEC §4: say so, and name the flag
        console.err(
            f"note: only a rehearsal has run for this manifest (recorded in {rehearsal.name}); "
            "this is the plan of a real run. With --sandbox, plan against the rehearsal."
        )
    return int(ExitStatus.OK)
