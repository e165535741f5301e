"""Use hifly_batch as a Python library: load a campaign, plan it, run it, report.

    python examples/library_usage.py [MANIFEST] [--work DIR]

Runs ``manifests/quickstart.yaml`` on the sandbox (no token, no credits) in a
copy made in a work folder (default: a new temporary one), so the repository
stays clean. Without ``sandbox=True`` the same calls use the real API and
read the token from ``HIFLY_TOKEN``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

from hifly_batch import Campaign

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", nargs="?", default="quickstart.yaml", help="in manifests/")
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="hifly-library-"))
    for folder in ("manifests", "examples"):
        skip = shutil.ignore_patterns(".hifly", "out", "__pycache__")
        shutil.copytree(REPO / folder, work / folder, ignore=skip, dirs_exist_ok=True)

    shown: set[int] = set()

    def progress(counts: dict[str, int], total: int) -> None:
        """Called as items change: a line each time another item settles."""
        settled = total - counts["running"] - counts["queued"]  # the six counts add up
        if settled not in shown:
            shown.add(settled)
            others = ", ".join(f"{counts[k]} {k}" for k in ("failed", "uncertain", "blocked"))
            print(f"  {settled}/{total} settled: {counts['done']} done, {others}")

    campaign = Campaign.load(work / "manifests" / args.manifest, sandbox=True)
    plan = campaign.plan()
    for step in plan.listing():  # what changes, first what changed
        print(f"  {step.action.value:<9} {step.item.id}  {step.reason or ''}")
    print("  totals:", ", ".join(f"{n} {action}" for action, n in plan.totals().items()))
    result = campaign.run(on_progress=progress)
    print("statuses:", dict(Counter(r.status.value for r in result.records)))
    print(f"report: {result.report}\nreview: {result.review}")
    return int(result.exit_status)


if __name__ == "__main__":
    sys.exit(main())
