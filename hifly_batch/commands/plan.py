"""``hifly-batch plan MANIFEST``: what a run would change, and the totals."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path

from hifly_batch import console
from hifly_batch.api.connect import base_url_from
from hifly_batch.campaign import Campaign
from hifly_batch.errors import ExitStatus, HiflyBatchError
from hifly_batch.manifest.diagnostics import ManifestInvalid
from hifly_batch.reports.plan_view import Target, estimate_lines, render_json, render_text

# ``--detailed-exitcode``, as Terraform's: 0 no changes, 1 error, 2 changes pending.
CHANGES_PENDING = 2


def register(
    subparsers: argparse._SubParsersAction, common: Callable[..., list[argparse.ArgumentParser]]
) -> None:
    parser = subparsers.add_parser(
        "plan",
        parents=common("base_url", "sandbox", "state"),
        help="show what a run would do, without doing it",
        description=(
            "Validate the manifest and list what a run would change (create, recreate, edit,\n"
            "retry, download, move, resume) and what needs attention (uncertain, blocked,\n"
            "removed), changed items first; more than five rows of one entry with one action\n"
            "take one line. Then a totals line, or 'No changes.'. --all lists every item.\n"
            "No network."
        ),
        epilog=(
            "examples:\n  hifly-batch plan campaign.yaml\n  hifly-batch plan --all campaign.yaml\n"
            "  hifly-batch plan --detailed-exitcode campaign.yaml   # 0 none, 2 changes, 1 error"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("manifest", type=Path, metavar="MANIFEST")
    parser.add_argument(
        "--all",
        action="store_true",
        dest="every",
        help="list every item on its own line, unchanged ones too, and counts per section",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the plan as JSON on stdout (every item)"
    )
    parser.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 0 when there are no changes, 2 when there are, 1 on any error",
    )
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    return plan(
        args.manifest,
        as_json=args.json,
        every=args.every,
        detailed_exitcode=args.detailed_exitcode,
        state=args.state,
        sandbox=args.sandbox,
        base_url=args.base_url,
        env=env,
    )


def plan(
    manifest: Path,
    *,
    as_json: bool = False,
    every: bool = False,
    detailed_exitcode: bool = False,
    state: str | None = None,
    sandbox: bool = False,
    base_url: str | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Print the plan for ``manifest`` given what the state file says of its items.

    Exit 0; an invalid manifest 2, other errors as their kind says. ``detailed_exitcode``:
    0 no changes, 2 changes pending, 1 any error (an invalid manifest too), as Terraform's
    ``-detailed-exitcode``.
    """
    try:
        campaign = Campaign.load(manifest, state=state, sandbox=sandbox)
        target = _target(sandbox, base_url, env or {})
        result = campaign.plan()
    except ManifestInvalid as exc:
        console.err(exc.render(manifest))
        return int(ExitStatus.ITEMS_FAILED if detailed_exitcode else ExitStatus.INVALID)
    except HiflyBatchError as exc:
        if detailed_exitcode:  # every error is 1, so 2 means only "changes pending"
            exc.exit_status = ExitStatus.ITEMS_FAILED
        raise
    quoted = campaign.estimate(result, api=target.api)
    if as_json:
        console.out(render_json(manifest, result, target, extra={"estimate": quoted.as_json()}))
    else:
        lines = estimate_lines(quoted)
        console.out(render_text(manifest, result, target, every=every, extra_lines=lines))
    rehearsal = campaign.rehearsal_record()
    if rehearsal is not None:  # SPEC §4: say so, and name the flag
        console.err(
            f"note: only a rehearsal has run for this manifest (recorded in {rehearsal.name}); "
            "this is the plan of a real run. With --sandbox, plan against the rehearsal."
        )
    if detailed_exitcode and result.changes:
        return CHANGES_PENDING
    return int(ExitStatus.OK)


def _target(sandbox: bool, base_url: str | None, env: Mapping[str, str]) -> Target:
    """The sandbox, or the API a run would call (``ConfigError`` for a URL of no use)."""
    return Target(True) if sandbox else Target(False, base_url_from(base_url, env))
