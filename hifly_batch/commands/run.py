"""``hifly-batch run MANIFEST``: carry the plan out, resumably."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from hifly_batch import console
from hifly_batch.api.connect import api_client, base_url_from
from hifly_batch.commands.plan import plan as show_plan
from hifly_batch.core.graph import Graph
from hifly_batch.core.planning import Action, Plan, make_plan
from hifly_batch.errors import ExitStatus, UsageError
from hifly_batch.reports.progress import ProgressBar, summary_table
from hifly_batch.runner.scheduler import Outcome, Runner, RunSettings, expand_scope
from hifly_batch.runner.state import Record, StateStore, Status, prior_states, run_lock
from hifly_batch.runner.workspace import Workspace, open_workspace


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


@dataclass(frozen=True)
class RunOptions:
    only: tuple[str, ...] = ()
    retry_failed: bool = False
    concurrency: int | None = None
    resubmit_uncertain: bool = False
    sandbox: bool = False
    base_url: str | None = None
    state: str | None = None
    progress: bool = True


def _handle(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.dry_run:
        return show_plan(args.manifest, state=args.state, sandbox=args.sandbox)
    options = RunOptions(
        only=tuple(args.only or ()),
        retry_failed=args.retry_failed,
        concurrency=args.concurrency,
        resubmit_uncertain=args.resubmit_uncertain,
        sandbox=args.sandbox,
        base_url=args.base_url,
        state=args.state,
        progress=not args.no_progress and args.quiet == 0,
    )
    return run(args.manifest, options, env)


def run(manifest: Path, options: RunOptions, env: Mapping[str, str]) -> int:
    """Run the campaign; returns the exit code of SPEC §4."""
    workspace = open_workspace(manifest, options.state, sandbox=options.sandbox)
    with run_lock(workspace.state_path), StateStore(workspace.state_path) as store:
        store.claim(api_kind(options, env))
        records = settle_interrupted(store, store.records())
        plan = make_plan(
            workspace.graph, prior_states(records), resubmit_uncertain=options.resubmit_uncertain
        )
        scope = select(workspace.graph, plan, records, options)
        outcome = _execute(workspace, plan, store, records, scope, options, env)
        final = report_records(workspace.graph, store.records(), scope)
        csv_path, page = workspace.write_reports(final)
    console.out(summary_table(final))
    console.out(f"report: {csv_path}")
    console.out(f"review: {page}")
    return _exit_status(outcome, final, scope)


def _execute(
    workspace: Workspace,
    plan: Plan,
    store: StateStore,
    records: dict[str, Record],
    scope: set[str] | None,
    options: RunOptions,
    env: Mapping[str, str],
) -> Outcome:
    run_settings = RunSettings.of(workspace.manifest.settings, concurrency=options.concurrency)
    sandbox_dir = workspace.sandbox_dir if options.sandbox else None
    bar = ProgressBar(options.progress)
    try:
        with api_client(env, base_url=options.base_url, sandbox_dir=sandbox_dir) as client:
            runner = Runner(
                workspace.graph,
                plan,
                store,
                client,
                run_settings,
                scope=scope,
                on_progress=bar.update,
                records=dict(records),
            )
            outcome = runner.run()
    finally:
        bar.close()
    if outcome.out_of_credits:
        console.err(
            "hifly-batch: credits ran out (code 1002 积分不足): no new work was submitted; "
            "running tasks were finished. Add credits, then run again to continue."
        )
    return outcome


def api_kind(options: RunOptions, env: Mapping[str, str]) -> str:
    """``sandbox`` for an in-process or loopback API, ``service`` for the real one."""
    if options.sandbox:
        return "sandbox"
    host = urlsplit(base_url_from(options.base_url, env)).hostname or ""
    loopback = host == "localhost" or host == "::1" or host.startswith("127.")
    return "sandbox" if loopback else "service"


def settle_interrupted(store: StateStore, records: dict[str, Record]) -> dict[str, Record]:
    """Items left ``submitting`` by a run that died mid-create are ``uncertain`` now."""
    message = "the run stopped after sending the create request and before recording its answer"
    changed = {
        item: replace(r, status=Status.UNCERTAIN, error_message=message)
        for item, r in records.items()
        if r.status is Status.SUBMITTING
    }
    store.put_many(changed.values())
    return {**records, **changed}


def select(
    graph: Graph, plan: Plan, records: Mapping[str, Record], options: RunOptions
) -> set[str] | None:
    """The items this run may touch (None: all), with everything they need."""
    if not options.only and not options.retry_failed:
        return None
    chosen = [item.id for item in graph]
    if options.only:
        patterns = [id_pattern(p) for p in options.only]
        chosen = [i for i in chosen if any(p.fullmatch(i) for p in patterns)]
        if not chosen:
            raise UsageError(f"--only {' '.join(options.only)}: no item id matches")
    if options.retry_failed:
        stuck = (Status.FAILED, Status.BLOCKED)
        chosen = [i for i in chosen if i in records and records[i].status in stuck]
    steps = {s.item.id: s.action for s in plan.steps}
    needed = expand_scope(graph, chosen)
    return {i for i in needed if i in chosen or steps[i] is not Action.SKIP} | set(chosen)


def id_pattern(glob: str) -> re.Pattern[str]:
    """An item-id glob: ``*`` and ``?`` are wildcards, brackets are the id's own."""
    return re.compile(
        ".*".join(".".join(map(re.escape, part.split("?"))) for part in glob.split("*"))
    )


def report_records(
    graph: Graph, records: Mapping[str, Record], scope: set[str] | None = None
) -> list[Record]:
    """One record per graph item, in graph order; what this run left out is ``skipped``."""
    rows = []
    for item in graph:
        record = records.get(item.id) or Record(
            item=item.id,
            section=item.section,
            kind=item.kind.value,
            key=item.key,
            fingerprint=item.fingerprint,
        )
        if scope is not None and item.id not in scope and record.status is Status.PENDING:
            record = replace(record, status=Status.SKIPPED)
        rows.append(record)
    return rows


def _exit_status(outcome: Outcome, final: Iterable[Record], scope: set[str] | None) -> int:
    if outcome.interrupted:
        console.err("hifly-batch: interrupted; progress is saved, run again to resume")
        return ExitStatus.INTERRUPTED
    finished = all(r.status is Status.DONE for r in final if scope is None or r.item in scope)
    return ExitStatus.OK if finished else ExitStatus.ITEMS_FAILED
