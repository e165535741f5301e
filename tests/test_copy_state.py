"""``hifly-batch state copy``: a campaign's state between a file and a real PostgreSQL
database, through the CLI, after a real run on the sandbox."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from hifly_batch.core.lifecycle import Status
from hifly_batch.runner.state import Record
from hifly_batch.runner.state_file import FileState
from hifly_batch.runner.state_postgres import PostgresState
from hifly_batch.sandbox import Sandbox
from tests.campaigns import Campaign, cli, creates, state_path


def file_records(path: Path) -> tuple[dict[str, str], dict[str, Record]]:
    with FileState(path, readonly=True) as store:
        return store.claimed(), store.records()


def database_records(
    url: str, campaign: str = "campaign", api: str = "sandbox"
) -> dict[str, Record]:
    with PostgresState(url, campaign, api, readonly=True) as store:
        return store.records()


@pytest.fixture
def made(sandbox: Sandbox, tmp_path: Path) -> Campaign:
    """A campaign run to the end on the sandbox, its state in the default file."""
    campaign = Campaign(tmp_path / "c", rows=6).write()
    result = cli("run", "--no-progress", str(campaign.manifest), sandbox=sandbox)
    assert result.code == 0, result.stderr
    return campaign


def test_file_to_database_to_file_round_trips_every_record(
    made: Campaign, pg_url: str, tmp_path: Path
) -> None:
    claimed, records = file_records(state_path(made))
    assert len(records) == 10 and {r.task_id for r in records.values()} - {None}
    there = cli("state", "copy", str(state_path(made)), pg_url)
    assert there.code == 0, there.stderr
    assert "copied 10 record(s) of campaign 'campaign' (sandbox)" in there.stdout
    assert database_records(pg_url) == records
    back = tmp_path / "back.state.db"
    again = cli("state", "copy", pg_url, str(back))
    assert again.code == 0, again.stderr
    assert file_records(back) == (claimed, records)


def test_a_run_on_the_copy_makes_nothing_again(
    made: Campaign, sandbox: Sandbox, pg_url: str
) -> None:
    assert cli("state", "copy", str(state_path(made)), pg_url).code == 0
    before = creates(sandbox)
    state_path(made).unlink()  # (so that only the database can know what was made)
    (made.root / "campaign.sandbox.lock").unlink()
    result = cli("run", "--no-progress", "--state", pg_url, str(made.manifest), sandbox=sandbox)
    assert result.code == 0, result.stderr
    assert creates(sandbox) == before


def test_a_target_with_records_is_replaced_only_when_forced(made: Campaign, pg_url: str) -> None:
    _, records = file_records(state_path(made))
    stale = Record("videos.welcome[gone]", "videos", "video_by_tts", status=Status.DONE)
    changed = replace(next(iter(records.values())), task_id="elsewhere")
    with PostgresState(pg_url, "campaign", "sandbox") as store:
        store.claim("sandbox", "campaign")
        store.put_many([stale, changed])
    refused = cli("state", "copy", str(state_path(made)), pg_url)
    assert refused.code == 2
    assert "already has 2 record(s) of campaign 'campaign'" in refused.stderr
    assert "--force" in refused.stderr
    assert database_records(pg_url) == {stale.item: stale, changed.item: changed}
    forced = cli("state", "copy", "--force", str(state_path(made)), pg_url)
    assert forced.code == 0, forced.stderr
    assert "replacing its 2" in forced.stdout
    assert database_records(pg_url) == records


def test_a_database_of_several_campaigns_needs_the_campaign_named(
    made: Campaign, pg_url: str, tmp_path: Path
) -> None:
    assert cli("state", "copy", str(state_path(made)), pg_url).code == 0
    with PostgresState(pg_url, "autumn", "sandbox") as other:
        other.claim("sandbox", "autumn")
        other.put(Record("voices.v", "voices", "voice_clone"))
    unnamed = cli("state", "copy", pg_url, str(tmp_path / "out.db"))
    assert unnamed.code == 2 and "--campaign" in unnamed.stderr, unnamed.stderr
    assert "'autumn' (sandbox), 'campaign' (sandbox)" in unnamed.stderr
    named = cli("state", "copy", "--campaign", "autumn", pg_url, str(tmp_path / "autumn.db"))
    assert named.code == 0, named.stderr
    claimed, records = file_records(tmp_path / "autumn.db")
    assert claimed == {"api": "sandbox", "campaign": "autumn"} and list(records) == ["voices.v"]
    real = cli("state", "copy", "--campaign", "autumn", pg_url, str(tmp_path / "real.db"))
    assert real.code == 0, real.stderr  # a campaign only rehearsed there: its rehearsal
    assert file_records(tmp_path / "real.db") == (claimed, records)
    absent = cli("state", "copy", "--sandbox", "--campaign", "winter", pg_url, "w.db")
    assert absent.code == 2 and "no records of campaign 'winter' on the sandbox" in absent.stderr


def test_one_database_spelled_twice_is_one_state(made: Campaign, pg_url: str) -> None:
    assert cli("state", "copy", str(state_path(made)), pg_url).code == 0
    respelled = pg_url.replace("postgresql://", "postgres://")
    without_port = pg_url.replace("&port=5432", "")  # (the default port, left out)
    for other in (respelled, without_port):
        same = cli("state", "copy", "--force", pg_url, other)
        assert same.code == 2 and "FROM and TO are the same state" in same.stderr, same.stderr


def test_a_state_a_run_holds_is_not_copied(made: Campaign, pg_url: str, tmp_path: Path) -> None:
    with PostgresState(pg_url, "campaign", "sandbox") as running, running.run_lock():
        into = cli("state", "copy", str(state_path(made)), pg_url)
        assert into.code == 3 and "another hifly-batch run" in into.stderr, into.stderr
    assert database_records(pg_url) == {}
    with FileState(state_path(made)) as running, running.run_lock():
        out_of = cli("state", "copy", str(state_path(made)), str(tmp_path / "copy.db"))
        assert out_of.code == 3 and "another hifly-batch run" in out_of.stderr
    assert not (tmp_path / "copy.db").exists()


def test_copies_that_cannot_be_meant_are_usage_errors(made: Campaign, tmp_path: Path) -> None:
    path = str(state_path(made))
    assert cli("state", "copy", path, path).code == 2
    (tmp_path / "alias.db").symlink_to(path)
    alias = cli("state", "copy", path, str(tmp_path / "alias.db"))
    assert alias.code == 2 and "FROM and TO are the same state" in alias.stderr
    (tmp_path / "plain").write_text("a file, not a folder")
    under_a_file = cli("state", "copy", path, str(tmp_path / "plain" / "x.db"))
    assert under_a_file.code == 3 and "cannot be written" in under_a_file.stderr
    wrong = cli("state", "copy", "--campaign", "autumn", path, str(tmp_path / "x.db"))
    assert wrong.code == 2 and "holds campaign 'campaign', not 'autumn'" in wrong.stderr
    missing = cli("state", "copy", str(tmp_path / "none.db"), str(tmp_path / "x.db"))
    assert missing.code == 3 and "no state file yet" in missing.stderr
    assert "Traceback" not in wrong.stderr + missing.stderr
