"""``hifly-batch status MANIFEST``: each item's state as the state file records it."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path

from hifly_batch import console
from hifly_batch.campaign import Campaign
from hifly_batch.reports.csv_report import report_status
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
    return status(args.manifest, state=args.state, as_json=args.json, sandbox=args.sandbox)


def status(
    manifest: Path, *, state: str | None = None, as_json: bool = False, sandbox: bool = False
) -> int:
    """Print the items' states; 0 whatever they are (the state was readable).

    Items known only from the lock file (made on another machine, or before the
    local state was lost) are marked with the lock file's name."""
    campaign = Campaign.load(manifest, state=state, sandbox=sandbox)
    recorded = campaign.recorded()
    records = campaign.records(recorded)
    source = {item: recorded.lock_file.name for item in recorded.from_lock}
    if as_json:
        rows = [_as_json(r, source.get(r.item, "state")) for r in records]
        console.out(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        console.out(_table(records, source))
        console.out("")
        console.out(summary_table(records))
        if source:
            console.out(
                f"{len(source)} item(s) known from {recorded.lock_file.name} only "
                "(made on another machine, or before this machine's state was lost)"
            )
    return 0


def _as_json(record: Record, source: str) -> dict[str, object]:
    data = dataclasses.asdict(record)
    data["status"] = report_status(record.status)
    data["state"] = record.status.value
    data["source"] = source  # "state", or the lock file's name
    data.pop("field_digests")  # the plan's own bookkeeping: which request fields changed
    return data


def _table(records: list[Record], source: Mapping[str, str]) -> str:
    width = max((len(r.item) for r in records), default=4)
    lines = []
    for r in records:
        error = f"  {r.error_code or ''} {r.error_message or ''}".rstrip()
        origin = f"  (from {source[r.item]})" if r.item in source else ""
        line = f"{r.item:<{width}}  {r.status.value:<10} {r.task_id or '-':<18}{error}{origin}"
        lines.append(line.rstrip())
    return "\n".join(lines)
