"""A campaign as a library call: load a manifest, plan it, run it, report on it.

Everything the ``plan``, ``run``, ``status`` and ``report`` commands do beyond
parsing options and printing happens here, so a Python user gets the same
guards as the command line (the state's lock, the sandbox/real separation, the
settling of an interrupted run)::

    from hifly_batch import Campaign

    campaign = Campaign.load("campaign.yaml", sandbox=True)
    print(campaign.plan().totals())
    result = campaign.run(on_progress=print)
    print(result.exit_status, result.report)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from hifly_batch.api.connect import api_client, base_url_from
from hifly_batch.core.graph import Graph, build_graph
from hifly_batch.core.lifecycle import Status
from hifly_batch.core.planning import Plan, make_plan
from hifly_batch.core.scope import matching, select
from hifly_batch.errors import ExitStatus, UsageError
from hifly_batch.manifest.loader import load_campaign
from hifly_batch.manifest.model import Manifest
from hifly_batch.reports import csv_report, review_page
from hifly_batch.runner.lock import run_lock
from hifly_batch.runner.outputs import OutputFolder
from hifly_batch.runner.scheduler import Outcome, RunSettings, Scheduler
from hifly_batch.runner.state import Record, StateStore, prior_states

STATE_FOLDER = ".hifly"

ProgressCallback = Callable[[dict[str, int], int], None]
"""Called as items change: counts of done/failed/running/queued, and the total."""


@dataclass(frozen=True)
class RunResult:
    """What :meth:`Campaign.run` ended with."""

    outcome: Outcome
    records: list[Record]  # one per item of the manifest, in dependency order
    scope: set[str] | None  # the item ids the run could touch; None: all
    report: Path  # report.csv
    review: Path  # report.html beside it

    @property
    def exit_status(self) -> ExitStatus:
        """SPEC §4: 0 every item in scope done, 1 some not, 130 interrupted."""
        if self.outcome.interrupted:
            return ExitStatus.INTERRUPTED
        in_scope = (r for r in self.records if self.scope is None or r.item in self.scope)
        finished = all(r.status is Status.DONE for r in in_scope)
        return ExitStatus.OK if finished else ExitStatus.ITEMS_FAILED


@dataclass(frozen=True)
class Campaign:
    """A validated manifest with its item graph and the state that records its runs."""

    manifest: Manifest
    graph: Graph
    state_path: Path
    sandbox: bool = False

    @classmethod
    def load(
        cls, path: Path | str, *, state: Path | str | None = None, sandbox: bool = False
    ) -> Campaign:
        """Validate the manifest at ``path``; raises ``ManifestInvalid`` with every fault.

        The state defaults to ``.hifly/<name>.state.db`` beside the manifest. A
        sandbox rehearsal keeps its own (``<name>.sandbox.state.db``): the
        avatars and voices it made exist only in the sandbox, so a real run
        must not take them as done.
        """
        loaded = load_campaign(Path(path))
        manifest = loaded.manifest
        kind = ".sandbox" if sandbox else ""
        default = manifest.root / STATE_FOLDER / f"{manifest.name}{kind}.state.db"
        state_path = Path(state) if state else default
        return cls(manifest, build_graph(loaded), state_path, sandbox)

    @property
    def output_dir(self) -> Path:
        return self.manifest.settings.output_dir

    @property
    def sandbox_dir(self) -> Path:
        """The sandbox world of sandbox runs, kept beside the manifest."""
        return self.manifest.root / STATE_FOLDER / "sandbox"

    # Reading ------------------------------------------------------------------

    def plan(self, *, resubmit_uncertain: bool = False, recreate: Sequence[str] = ()) -> Plan:
        """What a run would do with each item, given the state; no network, writes nothing.
        ``recreate``: item-id globs of done items to make again (``NoMatch`` if none match)."""
        return self._plan(self._recorded(), resubmit_uncertain, recreate)

    def _plan(
        self, records: Mapping[str, Record], resubmit_uncertain: bool, recreate: Sequence[str] | str
    ) -> Plan:
        globs = (recreate,) if isinstance(recreate, str) else tuple(recreate)
        return make_plan(
            self.graph,
            prior_states(records),
            resubmit_uncertain=resubmit_uncertain,
            recreate=matching(self.graph, globs, "--recreate") if globs else set(),
            output_whole=OutputFolder(self.output_dir).whole,
        )

    def records(self) -> list[Record]:
        """Each item's record as the state has it, in dependency order (``StateError``
        when there is no state yet or it cannot be read)."""
        with StateStore(self.state_path, readonly=True) as store:
            return csv_report.report_records(self.graph, store.records())

    def write_reports(
        self, records: list[Record] | None = None, path: Path | None = None
    ) -> tuple[Path, Path]:
        """report.csv (at ``path``, default in output_dir) and report.html beside it;
        returns both paths. ``records`` default to what the state has."""
        rows = self.records() if records is None else records
        csv_path = path or self.output_dir / "report.csv"
        csv_report.write(rows, csv_path)
        page = review_page.review_path(csv_path)
        review_page.write(
            rows, self.graph.by_id, page, output_dir=self.output_dir, title=self.manifest.name
        )
        return csv_path, page

    def _recorded(self) -> dict[str, Record]:
        if not self.state_path.exists():
            return {}
        with StateStore(self.state_path, readonly=True) as store:
            return store.records()

    # Running ------------------------------------------------------------------

    def run(
        self,
        *,
        only: Sequence[str] | str = (),
        retry_failed: bool = False,
        concurrency: int | None = None,
        resubmit_uncertain: bool = False,
        recreate: Sequence[str] | str = (),
        base_url: str | None = None,
        env: Mapping[str, str] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> RunResult:
        """Carry the plan out against the API, then write the reports.

        Holds the state's lock for the whole run (``StateLocked`` if another
        run has it); refuses a state made on the other kind of API
        (``StateError``); items an interrupted run left mid-create become
        uncertain. ``only`` (item-id globs) and ``retry_failed`` narrow what
        the run touches (``NoMatch`` when ``only`` matches nothing); ``recreate``
        (item-id globs) makes matching done items again, as Terraform's ``-replace``.
        The token and base URL come from ``env`` (default ``os.environ``): ``HIFLY_TOKEN``,
        ``HIFLY_BASE_URL``. A Ctrl-C during the run is not raised: the result
        says ``interrupted``.
        """
        env = os.environ if env is None else env
        only = (only,) if isinstance(only, str) else tuple(only)
        if concurrency is not None and concurrency < 1:
            raise UsageError(f"concurrency {concurrency}: must be 1 or more")
        with run_lock(self.state_path), StateStore(self.state_path) as store:
            store.claim(
                api_kind(sandbox=self.sandbox, base_url=base_url, env=env), self.manifest.name
            )
            records = store.settle_interrupted()
            plan = self._plan(records, resubmit_uncertain, recreate)
            statuses = {item: r.status for item, r in records.items()}
            scope = select(self.graph, plan, statuses, only=only, retry_failed=retry_failed)
            settings = RunSettings.of(self.manifest.settings, concurrency=concurrency)
            sandbox_dir = self.sandbox_dir if self.sandbox else None
            with api_client(env, base_url=base_url, sandbox_dir=sandbox_dir) as client:
                runner = Scheduler(
                    self.graph,
                    plan,
                    store,
                    client,
                    settings,
                    scope=scope,
                    on_progress=on_progress,
                    records=dict(records),
                )
                outcome = runner.run()
            final = csv_report.report_records(self.graph, store.records(), scope)
            report, review = self.write_reports(final)
        return RunResult(outcome, final, scope, report, review)


def api_kind(*, sandbox: bool, base_url: str | None, env: Mapping[str, str]) -> str:
    """``sandbox`` for an in-process or loopback API, ``service`` for the real one."""
    if sandbox:
        return "sandbox"
    host = urlsplit(base_url_from(base_url, env)).hostname or ""
    loopback = host == "localhost" or host == "::1" or host.startswith("127.")
    return "sandbox" if loopback else "service"
