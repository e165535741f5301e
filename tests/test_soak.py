"""Soak: a 300-item campaign under every injected fault at once, through the real CLI.

Faults: HTTP 500s, dropped connections (reads, uploads, downloads), malformed
JSON, slow answers, failed tasks and expired download URLs, all seeded. The
run must finish what can be finished, fail the rest with the task's own code,
create nothing twice, and leave byte-exact outputs; a rerun without faults
then finishes the failed ones. A second round adds connections dropped after
a create was recorded: those items are ``uncertain`` and only
``--resubmit-uncertain`` sends them again.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from hifly_batch.core.lifecycle import Status
from hifly_batch.runner.state import Record
from hifly_batch.sandbox import Faults, Sandbox, SandboxConfig
from hifly_batch.sandbox.faults import decide_task
from tests.campaigns import Campaign, Result, cli, creates, read_state, report_rows
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
        campaign = Campaign(tmp_path / "c", rows=ROWS, concurrency=10).write()
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
        campaign = Campaign(tmp_path / "c", rows=ROWS, concurrency=10).write()
        assert run(campaign, sandbox, "--only", "avatars.*", "--only", "voices.*").code == 0
        sandbox.set_faults(Faults(**{**vars(FAULTS), "drop_after_create": 0.05}))
        result = run(campaign, sandbox)
        assert result.code == 1
        statuses = Counter(
            row["status"] for row in report_rows(campaign) if row["section"] == "videos"
        )
        assert set(statuses) <= {"done", "failed", "uncertain"} and statuses["uncertain"] > 0
        assert sum(statuses.values()) == ROWS
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
