"""``hifly-batch status MANIFEST``: each item's state as the state file records it."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

from hifly_batch import console
from hifly_batch.campaign import Campaign
from hifly_batch.reports.csv_report import report_status
from hifly_batch.reports.progress import summary_table
from hifly_batch.runner.state import Record


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "status",
        parents=[common],
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
    """Print the items' states; 0 whatever they are (the state was readable)."""
    records = Campaign.load(manifest, state=state, sandbox=sandbox).records()
    if as_json:
        console.out(json.dumps([_as_json(r) for r in records], ensure_ascii=False, indent=2))
    else:
        console.out(_table(records))
        console.out("")
        console.out(summary_table(records))
    return 0


def _as_json(record: Record) -> dict[str, object]:
    data = dataclasses.asdict(record)
    data["status"] = report_status(record.status)
    data["state"] = record.status.value
    data.pop("field_digests")  # the plan's own bookkeeping: which request fields changed
    return data


def _table(records: list[Record]) -> str:
    width = max((len(r.item) for r in records), default=4)
    lines = []
    for r in records:
        error = f"  {r.error_code or ''} {r.error_message or ''}".rstrip()
        lines.append(f"{r.item:<{width}}  {r.status.value:<10} {r.task_id or '-':<18}{error}")
    return "\n".join(lines)
