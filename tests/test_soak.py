"""Soak: a 300-item campaign under every injected fault at once, through the real CLI.

Faults: HTTP 500s, dropped connections (reads, uploads, downloads), malformed
JSON, slow answers, failed tasks and expired download URLs, all seeded. The
run must finish what can be finished, fail the rest with the task's own code,
create nothing twice, and leave byte-exact outputs; a rerun without faults
then finishes the failed ones. A second round adds connections dropped after
a create was recorded: those items are ``uncertain`` and only
``--resubmit-uncertain`` sends them again. A third adds the faults of v1.1 to
all the others: HTTP 429 with ``Retry-After`` (back-pressure: never a failure),
failed upload PUTs, and a gateway answering 502/504 after the task was made
(uncertain, like a lost answer); reruns with ``--resubmit-uncertain`` under the
same faults finish everything, and only uncertain items are ever created twice.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from hifly_batch.core.lifecycle import Status
from hifly_batch.runner.state import Record
from hifly_batch.sandbox import Faults, Sandbox, SandboxConfig
from hifly_batch.sandbox.faults import RequestKind, decide_request, decide_task
from tests.campaigns import Campaign, Result, cli, creates, popen, read_state, report_rows
from tests.conftest import SECRET_TOKEN

ROWS = 296  # + 2 uploads, 1 avatar, 1 voice = 300 items
CONFIG = SandboxConfig(task_seconds=0.05, task_jitter=0.05, token=SECRET_TOKEN)
FAULTS = Faults(
    seed=5,
    http_500=0.10,
    drop=0.05,
    malformed_json=0.02,
    slow=0.05,
    slow_seconds=0.3,
    task_fail=0.05,
    expired_url=0.10,
)
VIDEO_CREATE = "video/create_by_tts"


def run(campaign: Campaign, sandbox: Sandbox, *extra: str) -> Result:
    result = cli(
        "run", "--no-progress", str(campaign.manifest), *extra, sandbox=sandbox, timeout=300
    )
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    return result


def videos(campaign: Campaign) -> list[Record]:
    return [r for r in read_state(campaign).values() if r.section == "videos"]


def assert_done_outputs_exact(campaign: Campaign, sandbox: Sandbox) -> int:
    """Every done video's file is the sandbox's bytes; returns how many were checked."""
    done = [r for r in videos(campaign) if r.status is Status.DONE]
    for record in done:
        assert record.output is not None and record.task_id is not None
        data = (campaign.output_dir / record.output).read_bytes()
        assert data == sandbox.output_bytes(record.task_id), record.item
    return len(done)


def assert_failures_carry_the_task_code(campaign: Campaign, sandbox: Sandbox) -> int:
    """A failed video is a task the sandbox failed, reported with that task's code and message."""
    failed = [r for r in videos(campaign) if r.status is Status.FAILED]
    for record in failed:
        assert record.task_id is not None, (record.item, record.error_message)
        task = sandbox.task(record.task_id)
        assert task is not None and task.fails, (record.item, record.error_message)
        assert record.error_code == (task.fail_code or None), record  # 0: the task has none
        assert task.fail_message in (record.error_message or ""), record
    return len(failed)


def assert_report_is_the_state(campaign: Campaign) -> None:
    """The report says of each item what the state says (the lock file's lines of work
    under way never outlive the run that settled them)."""
    reported = {row["item"]: row["status"] for row in report_rows(campaign)}
    assert reported == {item: r.status.value for item, r in read_state(campaign).items()}


def assert_one_create_per_task(campaign: Campaign, sandbox: Sandbox, before: int) -> None:
    """Each create the sandbox recorded since ``before`` is a task id some item holds."""
    task_ids = [r.task_id for r in videos(campaign) if r.task_id is not None]
    assert len(task_ids) == len(set(task_ids))
    made = creates(sandbox)[VIDEO_CREATE] - before
    assert made == len([t for t in task_ids if int(t) > before + 2]), made


def test_seed_lets_the_clones_through() -> None:
    """The clones are the sandbox's tasks 1 and 2: with this seed they succeed, so the
    soak's faults meet all 296 videos instead of blocking them (blocking: test_run.py)."""
    for n in (1, 2):
        assert not decide_task(FAULTS, str(10**15 + n), CONFIG.task_jitter).fails


@pytest.mark.slow
def test_soak_under_every_fault_then_a_clean_rerun(tmp_path: Path) -> None:
    started = time.monotonic()
    with Sandbox(tmp_path / "world", CONFIG) as sandbox:
        # Enough tries that a create answered 500 (taken as not made, retried up to
        # max_attempts) never fails an item: only failed tasks do.
        campaign = Campaign(tmp_path / "c", rows=ROWS, concurrency=10, max_attempts=5).write()
        sandbox.set_faults(FAULTS)
        first = run(campaign, sandbox)
        soaked = time.monotonic() - started
        statuses = Counter(row["status"] for row in report_rows(campaign))
        assert set(statuses) <= {"done", "failed"}, statuses
        assert sum(statuses.values()) == ROWS + 4
        assert first.code == (1 if statuses["failed"] else 0)
        faults = sandbox.counters().faults
        injected = ("http_500", "drop", "malformed_json", "slow", "expired_url", "task_fail")
        assert all(faults.get(name) for name in injected), faults
        assert creates(sandbox)["avatar/create_by_video"] == creates(sandbox)["voice/create"] == 1
        assert_one_create_per_task(campaign, sandbox, before=0)
        failed = assert_failures_carry_the_task_code(campaign, sandbox)
        done = assert_done_outputs_exact(campaign, sandbox)
        assert failed == statuses["failed"] and done + failed == ROWS

        sandbox.set_faults(Faults())
        before = creates(sandbox)[VIDEO_CREATE]
        assert run(campaign, sandbox).code == 0
        assert creates(sandbox)[VIDEO_CREATE] - before == failed
        assert assert_done_outputs_exact(campaign, sandbox) == ROWS
        print(
            f"\nsoak: {ROWS + 4} items under faults in {soaked:.1f} s: {dict(statuses)}; "
            f"faults injected {dict(faults)}; rerun without faults made {failed} creates, "
            f"all done; total {time.monotonic() - started:.1f} s"
        )


@pytest.mark.slow
def test_soak_with_lost_create_answers_then_resubmit(tmp_path: Path) -> None:
    started = time.monotonic()
    with Sandbox(tmp_path / "world", CONFIG) as sandbox:
        campaign = Campaign(tmp_path / "c", rows=ROWS, concurrency=10, max_attempts=5).write()
        assert run(campaign, sandbox, "--only", "avatars.*", "--only", "voices.*").code == 0
        sandbox.set_faults(Faults(**{**vars(FAULTS), "drop_after_create": 0.05}))
        result = run(campaign, sandbox)
        assert result.code == 1
        statuses = Counter(
            row["status"] for row in report_rows(campaign) if row["section"] == "videos"
        )
        assert set(statuses) <= {"done", "failed", "uncertain"} and statuses["uncertain"] > 0
        assert sum(statuses.values()) == ROWS
        assert_report_is_the_state(campaign)
        uncertain = [r for r in videos(campaign) if r.status is Status.UNCERTAIN]
        assert len(uncertain) == statuses["uncertain"]
        assert all(
            r.task_id is None and "answer lost" in (r.error_message or "") for r in uncertain
        )
        lost = sandbox.counters().faults["drop_after_create"]
        assert lost == len(uncertain)  # every lost answer, and only those, made an item uncertain
        # Every create the sandbox recorded is an item's task, or one of the lost answers.
        task_ids = [r.task_id for r in videos(campaign) if r.task_id is not None]
        assert creates(sandbox)[VIDEO_CREATE] == len(set(task_ids)) + lost
        failed = assert_failures_carry_the_task_code(campaign, sandbox)
        assert_done_outputs_exact(campaign, sandbox)

        sandbox.set_faults(Faults())
        before = creates(sandbox)[VIDEO_CREATE]
        plain = run(campaign, sandbox)
        assert plain.code == 1 and creates(sandbox)[VIDEO_CREATE] - before == failed
        assert Counter(r["status"] for r in report_rows(campaign))["uncertain"] == len(uncertain)
        again = run(campaign, sandbox, "--resubmit-uncertain")
        assert again.code == 0, again.stderr
        assert creates(sandbox)[VIDEO_CREATE] - before == failed + len(uncertain)
        assert assert_done_outputs_exact(campaign, sandbox) == ROWS
        print(
            f"\nsoak with lost create answers: {dict(statuses)}; {lost} answers dropped after "
            f"the create was recorded; resubmitted {len(uncertain)}, retried {failed}; "
            f"{time.monotonic() - started:.1f} s"
        )


# Every fault at once, v1.1's included. The seed is chosen (see the test below) so that
# the first upload PUT fails (the campaign's two asset uploads are its only PUTs), and the
# avatar and voice clones never lose an answer, so every video meets the faults.
EVERY_FAULT = Faults(
    seed=58,
    http_500=0.05,
    drop=0.03,
    drop_after_create=0.02,
    slow=0.03,
    slow_seconds=0.2,
    malformed_json=0.02,
    expired_url=0.05,
    http_429=0.10,
    retry_after_seconds=0.2,  # the header says 1 (whole seconds)
    put_fail=0.10,
    gateway_after_create=0.02,
)
LOST_ANSWERS = ("drop_after_create", "gateway_after_create")
MAX_RUNS = 6


def test_every_fault_seed_fails_a_put_and_spares_the_clones() -> None:
    first_puts = [decide_request(EVERY_FAULT, "upload", n, RequestKind.UPLOAD) for n in (1, 2, 3)]
    assert first_puts[0].put_fail and not any(p.drop for p in first_puts)
    for endpoint in ("avatar/create_by_video", "voice/create"):
        for n in range(1, 6):
            fate = decide_request(EVERY_FAULT, endpoint, n, RequestKind.CREATE)
            assert not (fate.drop_after_create or fate.gateway_after_create), (endpoint, n)


class FailureWatch:
    """Reads the state while a run goes on, and keeps every item it ever saw failed for a
    429 (back-pressure must leave an item pending, never failed, even for a moment)."""

    def __init__(self, campaign: Campaign) -> None:
        self.campaign = campaign
        self.failed_for_429: dict[str, str] = {}
        self.looks = 0
        self.missed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> FailureWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._look()

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            self._look()

    def _look(self) -> None:
        try:
            records = read_state(self.campaign)
        except Exception:  # a read racing the run's first write: look again
            self.missed += 1
            return
        self.looks += 1
        for record in records.values():
            if record.status is Status.FAILED and "429" in (record.error_message or ""):
                self.failed_for_429[record.item] = record.error_message or ""


def watched_run(campaign: Campaign, sandbox: Sandbox, *extra: str) -> tuple[int, FailureWatch]:
    """A run with its state watched; the report must be written anew by it."""
    report = campaign.output_dir / "report.csv"
    report.unlink(missing_ok=True)
    with FailureWatch(campaign) as watch:
        proc = popen("run", "--no-progress", str(campaign.manifest), *extra, sandbox=sandbox)
        _, stderr = proc.communicate(timeout=300)
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    assert report.exists(), f"run {extra} wrote no report"
    return proc.returncode, watch


def creates_per_item(campaign: Campaign, sandbox: Sandbox) -> Counter[str]:
    """How many tasks the sandbox made for each item, told apart by title (one per item)."""
    records = read_state(campaign)
    by_title: dict[str, str] = {}
    for record in records.values():
        if record.task_id is not None:
            task = sandbox.task(record.task_id)
            assert task is not None
            by_title[task.title] = record.item
    made: Counter[str] = Counter()
    for made_task in sandbox.task_times():
        task = sandbox.task(made_task.task_id)
        assert task is not None and task.title in by_title, made_task
        made[by_title[task.title]] += 1
    return made


@pytest.mark.slow
def test_soak_under_every_fault_with_429s_put_failures_and_gateways(tmp_path: Path) -> None:
    started = time.monotonic()
    with Sandbox(tmp_path / "world", CONFIG) as sandbox:
        campaign = Campaign(tmp_path / "c", rows=ROWS, concurrency=16, max_attempts=5).write()
        sandbox.set_faults(EVERY_FAULT)
        episodes: Counter[str] = Counter()  # times each item was left uncertain
        history: list[str] = []
        looks = 0
        extra: tuple[str, ...] = ()
        for _ in range(MAX_RUNS):
            code, watch = watched_run(campaign, sandbox, *extra)
            rows = report_rows(campaign)
            statuses = Counter(row["status"] for row in rows)
            looks += watch.looks
            history.append(
                f"{' '.join(extra) or 'run'}: {dict(statuses)} (exit {code}); state read "
                f"{watch.looks} times during it ({watch.missed} reads missed)"
            )
            assert len(rows) == ROWS + 4
            # Every item done but those whose create answer was lost (gateway, dropped).
            assert set(statuses) <= {"done", "uncertain"}, history
            assert code == (1 if statuses["uncertain"] else 0), history
            assert not [r for r in rows if "429" in r["error_message"]]
            assert not watch.failed_for_429, watch.failed_for_429
            assert_report_is_the_state(campaign)
            records = read_state(campaign)
            assert {r.status for r in records.values()} <= {Status.DONE, Status.UNCERTAIN}
            uncertain = [r for r in records.values() if r.status is Status.UNCERTAIN]
            for record in uncertain:
                message = record.error_message or ""
                assert record.task_id is None, record
                assert "from a gateway" in message or "answer lost" in message, record
                episodes[record.item] += 1
            if not uncertain:
                break
            extra = ("--resubmit-uncertain",)
        else:
            pytest.fail(f"still uncertain after {MAX_RUNS} runs: {history}")
        seconds = time.monotonic() - started

        counters = sandbox.counters()
        faults = counters.faults
        injected = [name for name in EVERY_FAULT.__dataclass_fields__ if name in faults]
        expected = {"http_500", "drop", "slow", "malformed_json", "expired_url", "http_429",
                    "put_fail", *LOST_ANSWERS}  # fmt: skip
        assert expected <= set(injected), faults
        # Every lost answer, and only those, left an item uncertain once.
        assert sum(episodes.values()) == sum(faults[name] for name in LOST_ANSWERS)
        # Each item made exactly once, plus once per uncertain episode resubmitted.
        made = creates_per_item(campaign, sandbox)
        assert set(made) == {r.item for r in read_state(campaign).values() if r.task_id is not None}
        twice = {item: n for item, n in made.items() if n != 1 + episodes[item]}
        assert not twice, twice
        assert sum(counters.creates.values()) == len(made) + sum(episodes.values())
        assert assert_done_outputs_exact(campaign, sandbox) == ROWS

        print(f"\nsoak under every fault: {ROWS + 4} items, {len(history)} runs, {seconds:.1f} s")
        for line in history:
            print(f"  {line}")
        print(f"  faults injected: {dict(sorted(faults.items()))}")
        print(
            f"  creates: {dict(counters.creates)} ({sum(counters.creates.values())}) for "
            f"{len(made)} items; {len(episodes)} items uncertain ({sum(episodes.values())} "
            f"episodes), each created once more on resubmit; 0 duplicates otherwise; "
            f"no item seen failed for a 429 in {looks} reads of the state"
        )
