"""``hifly-batch voices``: list the account's voices, or the public ones, with their ids."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path

from hifly_batch import console
from hifly_batch.api.client import ListedVoice
from hifly_batch.api.connect import ACCOUNT_SANDBOX_DIR, api_client
from hifly_batch.apispec import VOICE_TYPE_NAMES

COLUMNS = ("voice", "type", "title", "rate", "volume", "pitch")


def register(
    subparsers: argparse._SubParsersAction, common: Callable[..., list[argparse.ArgumentParser]]
) -> None:
    parser = subparsers.add_parser(
        "voices",
        parents=common("base_url", "sandbox"),
        help="list voices with their ids (own clones, or --public)",
        description=(
            "List the voices a manifest can use: your own clones (voices: {id: ...}) "
            "or, with --public, the public voices (voices: {public: TITLE})."
        ),
        epilog="examples:\n  hifly-batch voices\n  hifly-batch voices --public --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--public", action="store_true", help="list the public voices")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    sandbox_dir = ACCOUNT_SANDBOX_DIR if args.sandbox else None
    return voices(
        env,
        public=args.public,
        as_json=args.json,
        base_url=args.base_url,
        sandbox_dir=sandbox_dir,
    )


def voices(
    env: Mapping[str, str],
    *,
    public: bool,
    as_json: bool,
    base_url: str | None,
    sandbox_dir: Path | None,
) -> int:
    """Print every voice of the chosen kind on stdout."""
    with api_client(env, base_url=base_url, sandbox_dir=sandbox_dir) as client:
        found = client.all_voices(public=public)
    if as_json:
        console.out(json.dumps([as_json_object(v) for v in found], ensure_ascii=False))
    else:
        console.out(format_table(found))
    return 0


def type_name(voice_type: int) -> str:
    """``basic v2 clone (8)``: what the API's voice type number means, with the number."""
    name = VOICE_TYPE_NAMES.get(voice_type)
    return f"{name} ({voice_type})" if name else f"type {voice_type}"


def as_json_object(voice: ListedVoice) -> dict[str, object]:
    """The voice as the API lists it, with ``type_name`` beside the ``type`` number."""
    return {**dataclasses.asdict(voice), "type_name": VOICE_TYPE_NAMES.get(voice.type)}


def format_table(found: list[ListedVoice]) -> str:
    """A plain text table, one voice a line; the type as its name with its number."""
    rows = [list(COLUMNS), *(_cells(v) for v in found)]
    widths = [max(_width(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join(_line(row, widths) for row in rows)


def _cells(voice: ListedVoice) -> list[str]:
    return [type_name(voice.type) if c == "type" else str(getattr(voice, c)) for c in COLUMNS]


def _line(cells: list[str], widths: list[int]) -> str:
    padded = (cell + " " * (w - _width(cell)) for cell, w in zip(cells, widths, strict=True))
    return "  ".join(padded).rstrip()


def _width(text: str) -> int:
    """Display width: CJK characters take two columns in a terminal."""
    return sum(2 if ord(ch) >= 0x1100 and not 0xFF61 <= ord(ch) <= 0xFFDC else 1 for ch in text)
