"""The library call: ``Campaign.load(path).plan()`` / ``.run()`` with the command's guards."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from hifly_batch import Campaign
from hifly_batch.core.lifecycle import Status
from hifly_batch.errors import ExitStatus
from hifly_batch.manifest.diagnostics import ManifestInvalid
from hifly_batch.runner.errors import StateError
from hifly_batch.runner.lock import StateLocked, run_lock
from hifly_batch.runner.state_file import FileState
from hifly_batch.sandbox import Sandbox, SandboxConfig
from tests.test_examples import copy_repo_campaigns, read_report

VIDEO = "videos.welcome[c002]"


@pytest.fixture
def quickstart(tmp_path: Path) -> Path:
    return copy_repo_campaigns(tmp_path) / "quickstart.yaml"


def test_load_plan_run_and_read_back(quickstart: Path) -> None:
    campaign = Campaign.load(quickstart, sandbox=True)
    assert campaign.state_path == quickstart.parent / ".hifly" / "quickstart.sandbox.state.db"
    assert campaign.plan().totals() == {"create": 9}
    seen: list[int] = []
    result = campaign.run(on_progress=lambda counts, total: seen.append(counts["done"]))
    assert result.exit_status is ExitStatus.OK and not result.outcome.interrupted
    assert {r.status for r in result.records} == {Status.DONE} and len(result.records) == 9
    assert seen[-1] == 9  # the callback saw every item settle
    assert {row["status"] for row in read_report(result.report)} == {"done"}
    assert result.review.is_file()
    assert campaign.plan().totals() == {"skip": 9}
    assert [r.item for r in campaign.records()] == [r.item for r in result.records]


def test_only_narrows_the_run_and_the_rest_is_skipped(quickstart: Path) -> None:
    result = Campaign.load(quickstart, sandbox=True).run(only=[VIDEO])
    statuses = {r.item: r.status for r in result.records}
    assert statuses[VIDEO] is Status.DONE and statuses["videos.welcome[c001]"] is Status.SKIPPED
    assert statuses["audios.greeting"] is Status.SKIPPED
    assert result.exit_status is ExitStatus.OK  # everything in scope is done


def test_a_sandbox_state_is_refused_by_a_real_run_before_any_create(
    quickstart: Path, tmp_path: Path
) -> None:
    rehearsal = Campaign.load(quickstart, sandbox=True)
    rehearsal.run()
    real = Campaign.load(quickstart, state=rehearsal.state_path)
    # An implementation of the API that does not say it is a sandbox is the real service.
    with Sandbox(tmp_path / "service", SandboxConfig(identify=False)) as service:
        env = {"HIFLY_TOKEN": service.token, "HIFLY_BASE_URL": service.base_url}
        with pytest.raises(StateError, match="records work made on the sandbox"):
            real.run(env=env)
        assert dict(service.counters().creates) == {}


def test_an_item_a_dead_run_left_mid_create_is_uncertain_and_not_sent(quickstart: Path) -> None:
    campaign = Campaign.load(quickstart, sandbox=True)
    campaign.run()
    with FileState(campaign.state_path) as store:
        record = store.get(VIDEO)
        assert record is not None
        store.put(replace(record, status=Status.SUBMITTING, task_id=None))
    # As at its first create: no lock file knew it yet (finished work there would win).
    campaign.lock_path(sandbox=True).unlink()
    result = campaign.run()
    mine = next(r for r in result.records if r.item == VIDEO)
    assert mine.status is Status.UNCERTAIN and mine.task_id is None
    assert result.exit_status is ExitStatus.ITEMS_FAILED


def test_a_second_run_on_a_locked_state_is_refused(quickstart: Path) -> None:
    campaign = Campaign.load(quickstart, sandbox=True)
    with run_lock(campaign.state_path), pytest.raises(StateLocked):
        campaign.run()


def test_an_invalid_manifest_raises_with_every_fault(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("version: 1\nvideos:\n  a: {avatar: nope, voice: nope, text: hi}\n", "utf-8")
    with pytest.raises(ManifestInvalid) as caught:
        Campaign.load(path)
    assert "videos.a.avatar" in {d.path for d in caught.value.diagnostics}


def test_a_file_gone_between_load_and_run_fails_its_item_not_the_run(quickstart: Path) -> None:
    campaign = Campaign.load(quickstart, sandbox=True)
    (quickstart.parent.parent / "examples" / "quickstart" / "media" / "voice.wav").unlink()
    result = campaign.run()
    statuses = {r.item: r.status for r in result.records}
    assert statuses["assets.voice_sample"] is Status.FAILED
    assert statuses["voices.founder_voice"] is Status.BLOCKED
    assert statuses["videos.welcome[c001]"] is Status.DONE  # the rest of the run went on
    assert result.exit_status is ExitStatus.ITEMS_FAILED


def test_a_copy_without_its_sandbox_world_rehearses_again_from_scratch(
    quickstart: Path, tmp_path: Path
) -> None:
    """A rehearsal's record names tasks of the in-process sandbox kept in .hifly/; a copy
    of the folder without .hifly/ has a new, empty world, so that record is not read."""
    assert Campaign.load(quickstart, sandbox=True).run().exit_status is ExitStatus.OK
    copy = tmp_path / "copy"
    shutil.copytree(quickstart.parent, copy, ignore=shutil.ignore_patterns(".hifly", "out"))
    assert (copy / "quickstart.sandbox.lock").is_file()
    moved = Campaign.load(copy / "quickstart.yaml", sandbox=True)
    assert moved.plan().totals() == {"create": 9}
    result = moved.run()
    assert result.exit_status is ExitStatus.OK and result.outcome.interrupted is False
    assert Campaign.load(copy / "quickstart.yaml", sandbox=True).plan().totals() == {"skip": 9}


@pytest.mark.parametrize(
    ("settings", "real", "rehearsal"),
    [
        ("", "out/c", "out/c.sandbox"),
        ("settings: {output_dir: out/x}\n", "out/x", "out/x.sandbox"),
        ("settings: {output_dir: renders}\n", "renders", "renders.sandbox"),
    ],
)
def test_rehearsals_write_beside_the_real_outputs_folder(
    tmp_path: Path, settings: str, real: str, rehearsal: str
) -> None:
    manifest = tmp_path / "c.yaml"
    manifest.write_text(f"version: 1\nname: c\n{settings}", encoding="utf-8")
    assert Campaign.load(manifest).output_dir == tmp_path / real
    assert Campaign.load(manifest, sandbox=True).output_dir == tmp_path / rehearsal
