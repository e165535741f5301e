"""``hifly-batch run MANIFEST``: carry the plan out, resumably."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from hifly_batch import console
from hifly_batch.api.connect import base_url_from
from hifly_batch.campaign import Campaign, Quote, RunResult, Spending
from hifly_batch.errors import ExitStatus
from hifly_batch.manifest.diagnostics import ManifestInvalid
from hifly_batch.reports import summary
from hifly_batch.reports.plan_view import Target, estimate_lines, render_text, totals_line
from hifly_batch.reports.progress import ProgressBar, summary_table
from hifly_batch.runner.receiver import parse_address


def register(
    subparsers: argparse._SubParsersAction, common: Callable[..., list[argparse.ArgumentParser]]
) -> None:
    parser = subparsers.add_parser(
        "run",
        parents=common("base_url", "sandbox", "state", "no_progress"),
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
    parser.add_argument(
        "--max-credits",
        type=_credits,
        metavar="N",
        help="send no paid create once this run's estimated spend would pass N credits",
    )
    parser.add_argument(
        "--callbacks",
        type=_address,
        metavar="HOST:PORT",
        help="also listen there for the service's task callbacks, and query each task "
        "when its callback comes (the account's callback URL must reach it)",
    )
    parser.add_argument(
        "--yes",
        action="store_true",
        help="do not ask before spending credits (without a terminal nobody is asked)",
    )
    parser.set_defaults(handler=_handle)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _address(text: str) -> tuple[str, int]:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _credits(text: str) -> float:
    try:
        value = float(text.replace(",", "").replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of credits") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a number of credits, 0 or more")
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
        lines = estimate_lines(campaign.estimate(plan, api=target.api))
        console.out(render_text(args.manifest, plan, target, extra_lines=lines))
        return 0
    campaign = Campaign.load(args.manifest, state=args.state, sandbox=args.sandbox)
    bar = ProgressBar(not args.no_progress and args.quiet == 0)
    with console.above_bar(bar.enabled):
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
                max_credits=args.max_credits,
                callbacks=args.callbacks,
                before_paying=functools.partial(_before_paying, ask=not args.yes),
            )
        finally:
            bar.close()
    commands = summary.Commands.of(
        args.manifest,
        sandbox=getattr(args, "sandbox", False),
        state=getattr(args, "state", None),
        base_url=getattr(args, "base_url", None),
        env_state=env.get("HIFLY_STATE"),
    )
    again = [flag for pattern in args.recreate or () for flag in ("--recreate", pattern)]
    deps = {item.id: item.deps for item in campaign.graph}
    return _show(result, commands, deps, again)


def _before_paying(quote: Quote, *, ask: bool) -> bool:
    """Show what the run will spend; on a terminal, for the real API, ask first (SPEC §4)."""
    lines = [
        f"estimated cost: {quote.estimate.describe()}",
        f"balance: {_balance(quote.balance)} on {quote.api}",
    ]
    if quote.balance is not None and quote.estimate.credits > quote.balance:
        lines.append(
            "the balance may not cover it: new work stops when the credits run out "
            "(code 1002), and a rerun continues"
        )
    if not ask or quote.sandbox or not console.interactive():
        console.info("\n".join(lines))
        return True
    context = "\n".join([totals_line(quote.plan), *lines])
    return console.confirm(context, f"Spend about {quote.estimate.credits:,.0f} credits? [y/N] ")


def _balance(credits: int | None) -> str:
    return "unknown (it could not be read)" if credits is None else f"{credits:,} credits"


def _show(
    result: RunResult,
    commands: summary.Commands,
    deps: Mapping[str, Sequence[str]],
    again: Sequence[str] = (),
) -> int:
    """Print the end of a run on stdout: what did not finish, by cause, with the commands
    that deal with it, then the counts and the reports' paths; one line when there was
    nothing to do. Why the run stopped early goes to stderr."""
    if result.outcome.out_of_credits:
        console.err(
            "hifly-batch: credits ran out (code 1002 insufficient credits, 积分不足): no new "
            "work was submitted; running tasks were finished. Add credits, then run again "
            "to continue."
        )
    if result.outcome.held and result.spending is not None:
        console.err(_over_limit(result.spending, len(result.outcome.held)))
    if result.idle:
        console.out(summary.nothing_to_do(result.records, result.scope))
        return int(result.exit_status)
    held = result.outcome.held
    unfinished = summary.unfinished(result.records, deps, commands, result.scope, held, again)
    if unfinished:
        console.out("\n".join([*unfinished, ""]))
    console.out(summary_table(result.records))
    console.out(f"report: {result.report}")
    console.out(f"review: {result.review}")
    if result.exit_status is not ExitStatus.OK and result.log is not None:
        console.out(f"log: {result.log}")  # what to attach to a report of the problem
    if result.outcome.interrupted:
        how = "stopped by SIGTERM" if result.outcome.terminated else "interrupted"
        same = " with the same --recreate" if again else ""
        console.err(f"hifly-batch: {how}; progress is saved, run again{same} to resume")
    return int(result.exit_status)


def _over_limit(spending: Spending, held: int) -> str:
    spent = (
        f"{spending.spent:,} credits (balance {spending.before:,} → {spending.after:,})"
        if spending.spent is not None and spending.before is not None and spending.after is not None
        else f"about {spending.committed:,.0f} credits (estimated)"
    )
    return (
        f"hifly-batch: --max-credits {spending.limit:,.0f}: no paid create was sent past the "
        f"limit; this run spent {spent}. Running tasks were finished; {held} item(s) were held "
        "back. Run again (with a higher --max-credits, or without it) to continue"
    )
