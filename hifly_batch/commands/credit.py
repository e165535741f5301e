"""``hifly-batch credit``: the account's credit balance."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path

from hifly_batch import console
from hifly_batch.api.connect import ACCOUNT_SANDBOX_DIR, api_client


def register(
    subparsers: argparse._SubParsersAction, common: Callable[..., list[argparse.ArgumentParser]]
) -> None:
    parser = subparsers.add_parser(
        "credit",
        parents=common("base_url", "sandbox"),
        help="show the account's credit balance",
        description="Show the credit balance of the account HIFLY_TOKEN belongs to.",
        epilog="example:\n  HIFLY_TOKEN=... hifly-batch credit",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    sandbox_dir = ACCOUNT_SANDBOX_DIR if args.sandbox else None
    return credit(env, base_url=args.base_url, sandbox_dir=sandbox_dir)


def credit(env: Mapping[str, str], *, base_url: str | None, sandbox_dir: Path | None) -> int:
    """Print the balance on stdout: ``left: 100,000 credits``."""
    with api_client(env, base_url=base_url, sandbox_dir=sandbox_dir) as client:
        console.out(balance_line(client.credit()))
    return 0


def balance_line(left: int) -> str:
    """``left: 100,000 credits`` (``1 credit`` for one)."""
    return f"left: {left:,} credit{'' if left == 1 else 's'}"
