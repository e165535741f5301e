"""Where a manifest's run keeps things: its state file, outputs and sandbox world."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hifly_batch.core.graph import Graph, build_graph
from hifly_batch.manifest.loader import load_campaign
from hifly_batch.manifest.model import Manifest
from hifly_batch.reports import csv_report, review_page
from hifly_batch.runner.state import Record

STATE_FOLDER = ".hifly"


@dataclass(frozen=True)
class Workspace:
    """A validated manifest with its graph and the paths a run uses."""

    manifest: Manifest
    graph: Graph
    state_path: Path

    @property
    def output_dir(self) -> Path:
        return self.manifest.settings.output_dir

    @property
    def report_path(self) -> Path:
        return self.output_dir / "report.csv"

    def write_reports(self, records: list[Record], path: Path | None = None) -> tuple[Path, Path]:
        """report.csv (at ``path``, default in output_dir) and report.html beside it."""
        csv_path = path or self.report_path
        csv_report.write(records, csv_path)
        page = review_page.review_path(csv_path)
        review_page.write(
            records, self.graph.by_id, page, output_dir=self.output_dir, title=self.manifest.name
        )
        return csv_path, page

    @property
    def sandbox_dir(self) -> Path:
        """The sandbox world of ``--sandbox`` runs, kept beside the manifest."""
        return self.manifest.root / STATE_FOLDER / "sandbox"


def open_workspace(path: Path, state: str | None = None, *, sandbox: bool = False) -> Workspace:
    """Validate ``path`` (ManifestInvalid on faults) and work out its paths.

    A sandbox rehearsal keeps its own state file: the avatars and voices it
    made exist only in the sandbox, so a real run must not take them as done.
    """
    campaign = load_campaign(path)
    manifest = campaign.manifest
    kind = ".sandbox" if sandbox else ""
    default = manifest.root / STATE_FOLDER / f"{manifest.name}{kind}.state.db"
    return Workspace(manifest, build_graph(campaign), Path(state) if state else default)
