"""``hifly-batch status MANIFEST``: each item's state as the state file records it."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path

from hifly_batch import console
from hifly_batch.campaign import Campaign
from hifly_batch.core.lifecycle import Status
from hifly_batch.core.planning import Action
from hifly_batch.reports import summary
from hifly_batch.reports.csv_report import iso_time, report_status
from hifly_batch.reports.progress import summary_table
from hifly_batch.runner.state import Record


def register(
    subparsers: argparse._SubParsersAction, common: Callable[..., list[argparse.ArgumentParser]]
) -> None:
    parser = subparsers.add_parser(
        "status",
        parents=common("sandbox", "state"),
        help="show each item's state from the state file",
        description="Show every item's status, task id and last error, as the last run left them.",
        epilog=(
            "examples:\n  hifly-batch status campaign.yaml\n"
            "  hifly-batch status --json campaign.yaml"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("manifest", type=Path, metavar="MANIFEST")
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    commands = summary.Commands.of(
        args.manifest,
        sandbox=args.sandbox,
        state=args.state,
        base_url=getattr(args, "base_url", None),
        env_state=env.get("HIFLY_STATE"),
    )
    return status(
        args.manifest, state=args.state, as_json=args.json, sandbox=args.sandbox, commands=commands
    )


def status(
    manifest: Path,
    *,
    state: str | None = None,
    as_json: bool = False,
    sandbox: bool = False,
    commands: summary.Commands | None = None,
) -> int:
    """Print the items' states; 0 whatever they are (the state was readable).

    The table has a header row and one row per item, then what did not finish (by cause,
    with the commands that deal with it) or, when every item is done and the manifest
    unchanged, "Nothing to do". Items known only from the lock file (made on another
    machine, or before the local state was lost) are marked with the lock file's name."""
    campaign = Campaign.load(manifest, state=state, sandbox=sandbox)
    recorded = campaign.recorded()
    records = campaign.records(recorded)
    source = {item: recorded.lock_file.name for item in recorded.from_lock}
    if as_json:
        rows = [as_json_row(r, source.get(r.item, "state")) for r in records]
        console.out(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    console.out(table(records, source))
    console.out("")
    commands = commands or summary.Commands(str(manifest))
    deps = {item.id: item.deps for item in campaign.graph}
    unfinished = summary.unfinished(records, deps, commands)
    if unfinished:
        console.out("\n".join([*unfinished, "", summary_table(records)]))
    elif all(step.action is Action.SKIP for step in campaign.plan().steps):
        console.out(summary.nothing_to_do(records, None))
    else:
        console.out(
            f"All {len(records)} items are done, but a run still has work to do (a change "
            f"since, or outputs to fetch): `{commands.plan()}` shows what."
        )
    if source:
        console.out(
            f"{len(source)} item(s) known from {recorded.lock_file.name} only "
            "(made on another machine, or before this machine's state was lost)"
        )
    return 0


def as_json_row(record: Record, source: str) -> dict[str, object]:
    """One item for ``status --json``: the record's fields, its status in the report's
    words, times as ISO 8601 in UTC (as report.csv has them), the error readable, and
    ``error_meaning`` / ``error_meaning_zh`` where there is a documented code."""
    data = dataclasses.asdict(record)
    data.pop("field_digests")  # the plan's own bookkeeping: which request fields changed
    data["status"] = report_status(record.status)
    data["started_at"] = iso_time(record.started_at)
    data["finished_at"] = iso_time(record.finished_at)
    if record.error_message:
        data["error_message"] = summary.readable(record.error_message)
    failing = record.status is Status.FAILED or record.error_code is not None
    cause = summary.cause_of(record) if failing else None
    if cause is not None and cause.en:
        data["error_meaning"], data["error_meaning_zh"] = cause.en, cause.zh
    data["source"] = source  # "state", or the lock file's name
    return data


def table(records: list[Record], source: Mapping[str, str]) -> str:
    """A header row, then one aligned row per item; the error last, as long as it is."""
    rows = [COLUMNS] + [_row(r, source) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    lines = [
        "  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]])
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


COLUMNS = ("item", "status", "task_id", "resource_id", "output", "attempts", "error")


def _row(record: Record, source: Mapping[str, str]) -> tuple[str, ...]:
    error = summary.error_text(record)
    if record.item in source:
        error = f"{error}  (from {source[record.item]})".lstrip()
    return (
        record.item,
        report_status(record.status),
        record.task_id or "-",
        record.resource_id or "-",
        record.output or "-",
        str(record.attempts),
        error,
    )
