"""Crash torture: ``kill -9`` the real CLI at random moments, resume, and lose nothing.

The sandbox runs in this process, so the test can fire a SIGKILL at the
child the instant the sandbox has answered (or is about to answer) a create
request or a download: those kills land in the at-most-once window (create
answered, task id not yet committed) and in the middle of a download (temporary
file written, synced, renamed, then the state write). Timer kills land
anywhere else: start-up, planning, polling, report writing.
"""

from __future__ import annotations

import csv
import random
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hifly_batch.core.lifecycle import Status
from hifly_batch.reports.csv_report import COLUMNS
from hifly_batch.runner.state import Record
from hifly_batch.sandbox import Sandbox, SandboxConfig
from hifly_batch.sandbox.faults import RequestKind
from hifly_batch.sandbox.routes import classify
from hifly_batch.sandbox.server import Handler
from tests.campaigns import (
    Campaign,
    cli,
    create_endpoint,
    creates,
    output_files,
    popen,
    read_state,
    temporary_files,
)
from tests.conftest import SECRET_TOKEN

SEED = 4_20_2024
KILLS = 36
ROWS = 60
# Long texts make outputs of about 100 kB, so downloads take long enough to be hit.
LONG_TEMPLATE = "{{ row.name }}您好，感谢您选择{{ vars.brand }}。" + "好" * 6000
CONFIG = SandboxConfig(task_seconds=0.05, task_jitter=0.1, token=SECRET_TOKEN)

# (phase, weight, delay range in seconds after the trigger)
PHASES: tuple[tuple[str, float, tuple[float, float]], ...] = (
    ("create received, before its answer", 0.15, (0.0, 0.0)),
    ("create answered, task id not yet recorded", 0.30, (0.0, 0.004)),
    ("download answered, file being written", 0.35, (0.0, 0.008)),
    ("timer", 0.20, (0.15, 1.5)),
)


@dataclass
class _Armed:
    phase: str
    kind: RequestKind
    before_answer: bool
    delay: float
    proc: subprocess.Popen[str]


class KillSwitch:
    """Wraps the sandbox's request dispatch to SIGKILL a child at a chosen request."""

    def __init__(self, sandbox: Sandbox) -> None:
        server = sandbox._server
        assert server is not None
        self._inner: Callable[[Handler], None] = server.dispatch
        server.dispatch = self._dispatch  # type: ignore[method-assign]
        self._lock = threading.Lock()
        self._armed: _Armed | None = None

    def arm(self, armed: _Armed) -> None:
        with self._lock:
            self._armed = armed

    def disarm(self) -> None:
        with self._lock:
            self._armed = None

    def _take(self, kind: RequestKind, before_answer: bool) -> _Armed | None:
        with self._lock:
            armed = self._armed
            if armed is None or armed.kind is not kind or armed.before_answer != before_answer:
                return None
            self._armed = None
            return armed

    def _dispatch(self, http: Handler) -> None:
        kind = classify(http.path.split("?", 1)[0]).kind
        armed = self._take(kind, before_answer=True)
        if armed is not None:
            armed.proc.kill()
        self._inner(http)
        armed = self._take(kind, before_answer=False)
        if armed is not None:
            time.sleep(armed.delay)
            armed.proc.kill()


@dataclass
class Torture:
    """Bookkeeping across kills: what each kill hit and which creates may repeat."""

    campaign: Campaign
    sandbox: Sandbox
    phases: Counter[str] = field(default_factory=Counter)
    left_partial_download: int = 0
    left_submitting: int = 0
    left_file_unrecorded: int = 0
    finished_runs: int = 0
    ever_uncertain: set[tuple[str, int]] = field(default_factory=set)
    resubmittable: set[tuple[str, int]] = field(default_factory=set)

    @property
    def kills(self) -> int:
        return sum(self.phases.values())

    def after_process(self, temporaries_before: int) -> None:
        """Checks that must hold whenever no run is going: state, outputs, report."""
        records = read_state(self.campaign)  # opens read-only: the file is usable
        submitting = [r for r in records.values() if r.status is Status.SUBMITTING]
        self.left_submitting += bool(submitting)
        self.ever_uncertain |= {_attempt(r) for r in records.values() if _is_uncertain(r)}
        self.left_partial_download += _partial_downloads(self.campaign) > temporaries_before
        assert_outputs_whole(self.campaign, self.sandbox, records)
        self.left_file_unrecorded += any(
            records[f"videos.welcome[{p.stem}]"].status is not Status.DONE
            for p in output_files(self.campaign)
            if p.parent.name == "welcome"
        )
        assert_report_readable(self.campaign)

    def before_resubmit(self) -> None:
        """A ``--resubmit-uncertain`` run may create each uncertain item once more."""
        records = read_state(self.campaign)
        self.resubmittable |= {_attempt(r) for r in records.values() if _is_uncertain(r)}


def _partial_downloads(campaign: Campaign) -> int:
    return sum(p.suffix == ".part" for p in temporary_files(campaign))


def _is_uncertain(record: Record) -> bool:
    return record.status in (Status.SUBMITTING, Status.UNCERTAIN)


def _attempt(record: Record) -> tuple[str, int]:
    return record.item, record.attempts


def assert_outputs_whole(campaign: Campaign, sandbox: Sandbox, records: dict[str, Record]) -> None:
    """Every file at a final name is exactly the output of its item's task."""
    for path in output_files(campaign):
        relative = path.relative_to(campaign.output_dir).as_posix()
        if "/" not in relative:  # the report and its review page, written atomically
            continue
        assert relative.startswith("videos/welcome/") and path.suffix == ".mp4", relative
        record = records[f"videos.welcome[{path.stem}]"]
        assert record.task_id is not None, f"{relative} exists but its item has no task id"
        assert path.read_bytes() == sandbox.output_bytes(record.task_id), f"{relative} is partial"


def assert_report_readable(campaign: Campaign) -> None:
    report = campaign.output_dir / "report.csv"
    if report.exists():
        with report.open(encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.reader(fh))
        assert tuple(rows[0]) == COLUMNS and all(len(r) == len(COLUMNS) for r in rows)


def one_killed_run(
    torture: Torture, switch: KillSwitch, rng: random.Random, resubmit: bool
) -> None:
    phase, trigger, delays = _choose(rng)
    temporaries = _partial_downloads(torture.campaign)
    extra = ("--resubmit-uncertain",) if resubmit else ()
    if resubmit:
        torture.before_resubmit()
    proc = popen("run", "--no-progress", str(torture.campaign.manifest), *extra,
                 sandbox=torture.sandbox)  # fmt: skip
    delay = rng.uniform(*delays)
    if trigger is not None:
        kind, before = trigger
        switch.arm(_Armed(phase, kind, before, delay, proc))
    try:
        _, stderr = proc.communicate(timeout=delay if trigger is None else 10.0)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        phase = phase if trigger is None else "timer (trigger never came)"
    finally:
        switch.disarm()
    if proc.returncode == -9:
        torture.phases[phase] += 1
    else:
        torture.finished_runs += 1
        assert proc.returncode in (0, 1), stderr
        assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    torture.after_process(temporaries)


def _choose(rng: random.Random) -> tuple[str, tuple[RequestKind, bool] | None, tuple[float, float]]:
    names = [p[0] for p in PHASES]
    phase = rng.choices(names, weights=[p[1] for p in PHASES])[0]
    delays = next(p[2] for p in PHASES if p[0] == phase)
    triggers = {
        PHASES[0][0]: (RequestKind.CREATE, True),
        PHASES[1][0]: (RequestKind.CREATE, False),
        PHASES[2][0]: (RequestKind.DOWNLOAD, False),
    }
    return phase, triggers.get(phase), delays


def assert_no_create_repeated(torture: Torture, records: dict[str, Record]) -> None:
    """Per endpoint: every item created at least once, and more only where it was uncertain
    and then resubmitted on request (once per such episode)."""
    items: Counter[str] = Counter()
    allowed: Counter[str] = Counter()
    for record in records.values():
        endpoint = create_endpoint(record)
        if endpoint is not None:
            items[endpoint] += 1
            allowed[endpoint] += sum(1 for item, _ in torture.resubmittable if item == record.item)
    made = creates(torture.sandbox)
    for endpoint, count in items.items():
        assert count <= made.get(endpoint, 0) <= count + allowed[endpoint], (
            endpoint, made.get(endpoint), count, allowed[endpoint]
        )  # fmt: skip


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_and_pays_once(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    started = time.monotonic()
    with Sandbox(tmp_path / "world", CONFIG) as sandbox:
        campaign = Campaign(tmp_path / "c", rows=ROWS, concurrency=8, template=LONG_TEMPLATE)
        campaign.write()
        torture = Torture(campaign, sandbox)
        switch = KillSwitch(sandbox)
        runs = 0
        while torture.kills < KILLS:
            runs += 1
            assert runs < 4 * KILLS, "the runs stopped reaching the kill points"
            one_killed_run(torture, switch, rng, resubmit=rng.random() < 0.25)
            if torture.finished_runs and torture.kills < KILLS and _all_done(campaign):
                campaign.rows += 10  # keep work coming so later kills hit real work
                campaign.write()
        final = cli("run", "--no-progress", str(campaign.manifest), sandbox=sandbox)
        assert final.code in (0, 1), final.stderr
        torture.after_process(_partial_downloads(campaign))
        uncertain_at_end = sum(_is_uncertain(r) for r in read_state(campaign).values())
        if uncertain_at_end:
            assert final.code == 1
            torture.before_resubmit()
            again = cli("run", "--no-progress", str(campaign.manifest), "--resubmit-uncertain",
                        sandbox=sandbox)  # fmt: skip
            assert again.code == 0, again.stderr
        else:
            assert final.code == 0, final.stderr
        records = read_state(campaign)
        assert {r.status for r in records.values()} == {Status.DONE}
        assert len(records) == campaign.rows + 4
        assert len(output_files(campaign)) >= campaign.rows
        for record in records.values():
            if record.section == "videos":
                assert record.output is not None and record.task_id is not None
                data = (campaign.output_dir / record.output).read_bytes()
                assert data == sandbox.output_bytes(record.task_id), record.item
        assert_outputs_whole(campaign, sandbox, records)
        assert_no_create_repeated(torture, records)
        print(
            f"\ncrash torture: {torture.kills} kills in {runs} runs "
            f"({torture.finished_runs} ran to the end), {time.monotonic() - started:.1f} s"
        )
        for phase, count in sorted(torture.phases.items()):
            print(f"  {count:3d} kills: {phase}")
        print(
            f"  {torture.left_submitting} kills left an item submitting (uncertain on resume); "
            f"{torture.left_partial_download} left a temporary download file; "
            f"{torture.left_file_unrecorded} left a renamed file its state did not record yet; "
            f"{_partial_downloads(campaign)} temporary download files remain, hidden"
        )
        print(
            f"  items ever uncertain: {len({i for i, _ in torture.ever_uncertain})}; "
            f"uncertain at the end (then resubmitted): {uncertain_at_end}; "
            f"creates: {creates(sandbox)} for {campaign.rows} videos, "
            f"{len(torture.resubmittable)} resubmissions of uncertain items allowed"
        )


def _all_done(campaign: Campaign) -> bool:
    records = read_state(campaign)
    return len(records) == campaign.rows + 4 and all(
        r.status is Status.DONE for r in records.values()
    )
