"""``hifly-batch report MANIFEST``: write the CSV report again from the state file."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path

from hifly_batch import console
from hifly_batch.campaign import Campaign


def register(
    subparsers: argparse._SubParsersAction, common: Callable[..., list[argparse.ArgumentParser]]
) -> None:
    parser = subparsers.add_parser(
        "report",
        parents=common("sandbox", "state"),
        help="write the CSV report again from the state file",
        description=(
            "Write the CSV report (one row per item, UTF-8 with BOM) from the state file, "
            "without touching the API. Default: report.csv in the output folder."
        ),
        epilog=(
            "examples:\n  hifly-batch report campaign.yaml\n"
            "  hifly-batch report campaign.yaml -o /tmp/r.csv"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("manifest", type=Path, metavar="MANIFEST")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE", help="where to write it")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    return write_report(args.manifest, state=args.state, output=args.output, sandbox=args.sandbox)


def write_report(
    manifest: Path,
    *,
    state: str | None = None,
    output: Path | None = None,
    sandbox: bool = False,
) -> int:
    """Write the report; prints where."""
    campaign = Campaign.load(manifest, state=state, sandbox=sandbox)
    path, page = campaign.write_reports(path=output)
    console.out(str(path))
    console.out(str(page))
    return 0
