"""``hifly-batch run MANIFEST``: carry the plan out, resumably."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

from hifly_batch import console
from hifly_batch.api.connect import base_url_from
from hifly_batch.campaign import Campaign, RunResult
from hifly_batch.errors import ExitStatus
from hifly_batch.manifest.diagnostics import ManifestInvalid
from hifly_batch.reports.plan_view import Target, render_text
from hifly_batch.reports.progress import ProgressBar, summary_table


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "run",
        parents=[common],
        help="carry the plan out: upload, clone, render, download, report",
        description=(
            "Run the campaign: upload what is used, clone avatars and voices, create every "
            "video and audio, download them and write the report. A rerun does only what is "
            "still needed: unchanged finished items are skipped, changed ones made again, "
            "failed ones retried, submitted ones resumed."
        ),
        epilog=(
            "examples:\n  hifly-batch run --sandbox campaign.yaml\n"
            "  hifly-batch run campaign.yaml --only 'videos.welcome[c00*]'\n"
            "  hifly-batch run campaign.yaml --retry-failed"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("manifest", type=Path, metavar="MANIFEST")
    parser.add_argument(
        "--only",
        action="append",
        metavar="PATTERN",
        help="only items whose id matches this glob (and what they need); repeatable",
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="only items that failed (and those they blocked)",
    )
    parser.add_argument(
        "--recreate",
        action="append",
        metavar="PATTERN",
        help="make done items whose id matches this glob again (pays again); repeatable",
    )
    parser.add_argument(
        "--concurrency",
        type=_positive,
        metavar="N",
        help="most creation tasks generating at once (default: settings.concurrency)",
    )
    parser.add_argument("--dry-run", action="store_true", help="show the plan; send nothing")
    parser.add_argument(
        "--resubmit-uncertain",
        action="store_true",
        help="send again the items whose create may have been made (may pay twice)",
    )
    parser.set_defaults(handler=_handle)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _handle(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.dry_run:  # as `plan` prints it by default, faults included
        try:
            campaign = Campaign.load(args.manifest, state=args.state, sandbox=args.sandbox)
        except ManifestInvalid as exc:
            console.err(exc.render(args.manifest))
            return int(ExitStatus.INVALID)
        plan = campaign.plan(
            resubmit_uncertain=args.resubmit_uncertain, recreate=tuple(args.recreate or ())
        )
        target = Target(True) if args.sandbox else Target(False, base_url_from(args.base_url, env))
        console.out(render_text(args.manifest, plan, target))
        return 0
    campaign = Campaign.load(args.manifest, state=args.state, sandbox=args.sandbox)
    bar = ProgressBar(not args.no_progress and args.quiet == 0)
    try:
        result = campaign.run(
            only=tuple(args.only or ()),
            retry_failed=args.retry_failed,
            concurrency=args.concurrency,
            resubmit_uncertain=args.resubmit_uncertain,
            recreate=tuple(args.recreate or ()),
            base_url=args.base_url,
            env=env,
            on_progress=bar.update,
        )
    finally:
        bar.close()
    return _show(result)


def _show(result: RunResult) -> int:
    if result.outcome.out_of_credits:
        console.err(
            "hifly-batch: credits ran out (code 1002 积分不足): no new work was submitted; "
            "running tasks were finished. Add credits, then run again to continue."
        )
    console.out(summary_table(result.records))
    console.out(f"report: {result.report}")
    console.out(f"review: {result.review}")
    if result.outcome.interrupted:
        how = "stopped by SIGTERM" if result.outcome.terminated else "interrupted"
        console.err(f"hifly-batch: {how}; progress is saved, run again to resume")
    return int(result.exit_status)
