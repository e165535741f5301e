"""Use hifly_batch as a Python library: load a manifest, plan it, run it, report.

This runs ``manifests/quickstart.yaml`` against a sandbox started in this
process (no token, no credits) and prints progress through a callback:

    python examples/library_usage.py [MANIFEST] [--work DIR]

State, sandbox world and outputs go to a work folder (default: a new
temporary one), so the repository stays clean. To run against the real API,
replace the sandbox with ``HiflyClient(os.environ["HIFLY_TOKEN"])``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

from hifly_batch.api.client import HiflyClient
from hifly_batch.core.planning import Plan, make_plan
from hifly_batch.reports.csv_report import report_status
from hifly_batch.runner.scheduler import Outcome, Runner, RunSettings
from hifly_batch.runner.state import StateStore, prior_states, run_lock
from hifly_batch.runner.workspace import Workspace, open_workspace
from hifly_batch.sandbox import Sandbox

REPO = Path(__file__).resolve().parent.parent


class ProgressPrinter:
    """A progress callback for the runner: one line each time another item settles."""

    def __init__(self) -> None:
        self.settled = -1

    def __call__(self, counts: dict[str, int], total: int) -> None:
        """Called by the runner whenever an item changes, with done/failed/running/queued."""
        settled = counts["done"] + counts["failed"]
        if settled == self.settled:
            return
        self.settled = settled
        print(
            f"  {settled}/{total} settled: {counts['done']} done, {counts['failed']} failed, "
            f"{counts['running']} running, {counts['queued']} queued",
            flush=True,
        )


def show_plan(plan: Plan) -> None:
    """The plan in words: one line per item, then totals per action."""
    for step in plan.listing():
        reason = f"  ({step.reason})" if step.reason else ""
        print(f"  {step.action.value:<9} {step.item.id}{reason}")
    print("  totals:", ", ".join(f"{n} {action}" for action, n in plan.totals().items()))


def run_campaign(workspace: Workspace, client: HiflyClient) -> Outcome:
    """Plan against the state file, carry the plan out, write report.csv and report.html."""
    run_settings = RunSettings.of(workspace.manifest.settings)
    workspace.state_path.parent.mkdir(parents=True, exist_ok=True)
    with run_lock(workspace.state_path), StateStore(workspace.state_path) as store:
        records = store.records()
        plan = make_plan(workspace.graph, prior_states(records))
        print(f"plan for {workspace.manifest.name}:")
        show_plan(plan)
        runner = Runner(
            workspace.graph,
            plan,
            store,
            client,
            run_settings,
            on_progress=ProgressPrinter(),
            records=dict(records),
        )
        outcome = runner.run()
        final = store.records()
    rows = [final[item.id] for item in workspace.graph if item.id in final]
    csv_path, page = workspace.write_reports(rows)
    print("statuses:", dict(Counter(report_status(r.status) for r in rows)))
    print(f"report: {csv_path}\nreview: {page}")
    return outcome


def copy_campaign(work: Path) -> Path:
    """Copy the repository's manifests and examples into ``work``; outputs land there."""
    for folder in ("manifests", "examples"):
        skip = shutil.ignore_patterns(".hifly", "out", "__pycache__")
        shutil.copytree(REPO / folder, work / folder, ignore=skip, dirs_exist_ok=True)
    return work / "manifests"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", nargs="?", default="quickstart.yaml", help="in manifests/")
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="hifly-library-"))
    manifest = copy_campaign(work) / args.manifest
    workspace = open_workspace(manifest)  # validates; raises ManifestInvalid with every error
    with Sandbox(work / "sandbox-world") as sandbox:
        client = HiflyClient(sandbox.token, sandbox.base_url)
        try:
            outcome = run_campaign(workspace, client)
        finally:
            client.close()
    return 0 if outcome.counts["failed"] == 0 and not outcome.interrupted else 1


if __name__ == "__main__":
    sys.exit(main())
