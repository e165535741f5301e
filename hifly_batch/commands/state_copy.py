"""``hifly-batch state copy FROM TO``: a campaign's state from one store to another."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping

from hifly_batch import console
from hifly_batch.runner.copy_state import copy_state


def register(
    subparsers: argparse._SubParsersAction, common: Callable[..., list[argparse.ArgumentParser]]
) -> None:
    parser = subparsers.add_parser(
        "state",
        parents=common(),
        help="copy a campaign's state between a file and a database",
        description="Work on a campaign's state as a whole.",
        epilog=(
            "example:\n  hifly-batch state copy .hifly/spring.state.db "
            "postgresql://ci@db.example.com/hifly"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    copy = actions.add_parser(
        "copy",
        parents=common(),
        help="copy a campaign's records from one state to another",
        description=(
            "Copy one campaign's records from the state FROM to the state TO, each a state "
            "file or a postgresql:// database (credentials from PGPASSWORD or ~/.pgpass). "
            "Both are locked while they are copied, so no run changes them meanwhile. A "
            "target that already has records of the campaign is left alone unless --force."
        ),
        epilog=(
            "examples:\n  hifly-batch state copy .hifly/spring.state.db "
            "postgresql://ci@db.example.com/hifly\n"
            "  hifly-batch state copy --campaign spring postgresql://ci@db.example.com/hifly "
            "spring.state.db"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    copy.add_argument("source", metavar="FROM", help="the state to copy: a file or a URL")
    copy.add_argument("target", metavar="TO", help="where to copy it: a file or a URL")
    copy.add_argument(
        "--campaign",
        metavar="NAME",
        help="the campaign to copy out of a database that holds several (its manifest's name)",
    )
    copy.add_argument(  # SUPPRESS: `hifly-batch --sandbox state copy` is kept (default: False)
        "--sandbox",
        action="store_true",
        default=argparse.SUPPRESS,
        help="copy the campaign's rehearsal records",
    )
    copy.add_argument(
        "--force",
        action="store_true",
        help="replace the records the target already has of the campaign",
    )
    copy.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    copied = copy_state(
        args.source, args.target, campaign=args.campaign, sandbox=args.sandbox, force=args.force
    )
    replaced = f", replacing its {copied.replaced}" if copied.replaced else ""
    console.out(
        f"copied {copied.records} record(s) of campaign {copied.campaign!r} ({copied.api}) "
        f"from {copied.source} to {copied.target}{replaced}"
    )
    return 0
