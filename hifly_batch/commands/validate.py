"""``hifly-batch validate MANIFEST...``: every static check of SPEC §3, no network."""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

from hifly_batch import console
from hifly_batch.core.graph import Graph, build_graph
from hifly_batch.errors import ExitStatus, UsageError
from hifly_batch.manifest.diagnostics import ManifestInvalid
from hifly_batch.manifest.discovery import find_manifests
from hifly_batch.manifest.loader import load_campaign


def register(
    subparsers: argparse._SubParsersAction, common: Callable[..., list[argparse.ArgumentParser]]
) -> None:
    parser = subparsers.add_parser(
        "validate",
        parents=common(),
        help="check manifests without sending anything",
        description=(
            "Check manifests completely: YAML, schema, names and references, data files, "
            "templates rendered for every row, API limits, local media. Every error is "
            "shown at once as FILE:LINE:COL: path.to.field: message. No network."
        ),
        epilog=(
            "examples:\n  hifly-batch validate campaign.yaml\n"
            "  hifly-batch validate --all-manifests   # as the pre-commit hook does"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("manifests", nargs="*", type=Path, metavar="MANIFEST")
    parser.add_argument(
        "--all-manifests",
        action="store_true",
        help="also every manifest under the current folder (YAML files that name the "
        "manifest schema, or have a top-level version and a section); hidden folders skipped",
    )
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    manifests = list(args.manifests)
    if not manifests and not args.all_manifests:
        raise UsageError("validate: give one or more MANIFEST files, or --all-manifests")
    if args.all_manifests:
        found = find_manifests(Path.cwd())
        if not found:
            console.info(f"validate: no manifest under {Path.cwd()}")
        manifests += [p.relative_to(Path.cwd()) for p in found]
    return validate(list(dict.fromkeys(manifests)))


def validate(manifests: list[Path]) -> int:
    """Validate each manifest; 0 when all are valid, 2 when any is not."""
    status = ExitStatus.OK
    for path in manifests:
        try:
            graph = load_graph(path)
        except ManifestInvalid as exc:
            console.err(exc.render(path))
            status = ExitStatus.INVALID
            continue
        console.out(f"{path}: valid ({summary(graph)})")
    return int(status)


def load_graph(path: Path) -> Graph:
    """The manifest's item graph; :class:`ManifestInvalid` carrying every fault otherwise."""
    return build_graph(load_campaign(path))


def summary(graph: Graph) -> str:
    """``9 items: 2 assets, 1 avatars, ...``."""
    sections = Counter(item.section for item in graph)
    parts = ", ".join(f"{n} {section}" for section, n in sections.items())
    return f"{len(graph)} items: {parts}" if parts else "no items"
