"""A state knows its campaign (SPEC §5, v1.1): an empty file, another campaign's state or a
file that is no hifly-batch state is refused with exit 3, and nothing is created or changed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from hifly_batch.sandbox import Sandbox, SandboxConfig
from tests.campaigns import (
    Campaign,
    cli,
    creates,
    popen,
    read_state,
    report_rows,
    state_path,
)
from tests.conftest import FAST, SECRET_TOKEN


def run(campaign: Campaign, sandbox: Sandbox, *extra: str):  # type: ignore[no-untyped-def]
    return cli("run", "--no-progress", *extra, str(campaign.manifest), sandbox=sandbox)


def test_an_empty_state_file_is_refused_and_nothing_is_created(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    campaign = Campaign(tmp_path / "c", rows=2).write()
    assert run(campaign, sandbox).code == 0
    made = creates(sandbox)
    state_path(campaign).write_bytes(b"")  # : > .hifly/campaign.state.db
    for command in ("status", "plan", "report"):  # the same word from every command
        result = cli(command, str(campaign.manifest), sandbox=sandbox)
        assert result.code == 3 and "state file is empty" in result.stderr, result.stderr
    result = run(campaign, sandbox)
    assert result.code == 3 and "state file is empty" in result.stderr, result.stderr
    assert creates(sandbox) == made
    assert state_path(campaign).stat().st_size == 0  # left as it was


def test_another_campaigns_state_is_refused_and_left_unchanged(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    a = Campaign(tmp_path / "a", rows=2, extra_yaml="").write()
    a.manifest.write_text(a.manifest.read_text("utf-8").replace("name: campaign", "name: a"))
    b = Campaign(tmp_path / "b", rows=3).write()
    b.manifest.write_text(b.manifest.read_text("utf-8").replace("name: campaign", "name: b"))
    assert run(a, sandbox).code == 0
    a_state = a.root / ".hifly" / "a.state.db"
    before = a_state.read_bytes()
    made = creates(sandbox)
    result = run(b, sandbox, "--state", str(a_state))
    assert result.code == 3 and "belongs to campaign 'a', not 'b'" in result.stderr, result.stderr
    assert creates(sandbox) == made
    assert a_state.read_bytes() == before
    plan = json.loads(cli("plan", "--json", str(a.manifest)).stdout)
    assert set(plan["totals"]) == {"skip"}  # a's own state is intact
    for command in ("plan", "status", "report"):  # reading it as b's is refused too
        shown = cli(command, "--state", str(a_state), str(b.manifest))
        assert shown.code == 3 and "belongs to campaign 'a'" in shown.stderr, (command, shown)


def test_a_file_that_is_no_hifly_batch_state_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    campaign = Campaign(tmp_path / "c", rows=1).write()
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (body TEXT)")
    result = run(campaign, sandbox, "--state", str(other))
    assert result.code == 3 and "not a hifly-batch state" in result.stderr, result.stderr
    assert creates(sandbox) == {}
    with sqlite3.connect(other) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    assert tables == {"notes"}


def test_a_new_state_is_whole_from_its_first_byte(sandbox: Sandbox, tmp_path: Path) -> None:
    campaign = Campaign(tmp_path / "c", rows=1).write()
    assert run(campaign, sandbox).code == 0
    assert read_state(campaign)  # readable
    leftovers = [p.name for p in state_path(campaign).parent.iterdir() if p.name.endswith(".new")]
    assert leftovers == []


def test_a_row_with_a_value_no_state_holds_is_damage_not_a_traceback(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    campaign = Campaign(tmp_path / "c", rows=1).write()
    assert run(campaign, sandbox).code == 0
    made = creates(sandbox)
    with sqlite3.connect(state_path(campaign)) as db:
        db.execute("UPDATE items SET status = 'weird' WHERE item LIKE 'videos.%'")
    for result in (run(campaign, sandbox), cli("status", str(campaign.manifest))):
        assert result.code == 3 and "damaged" in result.stderr, result.stderr
        assert "videos.welcome[c0001]" in result.stderr and "Traceback" not in result.stderr
    assert creates(sandbox) == made


def test_text_that_is_not_utf8_or_a_path_too_long_is_said_not_crashed(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    campaign = Campaign(tmp_path / "c", rows=1).write()
    assert run(campaign, sandbox).code == 0
    with sqlite3.connect(state_path(campaign)) as db:  # (an editor's doing)
        db.execute("UPDATE items SET error_message = CAST(x'fffe41' AS TEXT)")
    for result in (cli("status", str(campaign.manifest)), cli("report", str(campaign.manifest))):
        assert result.code == 3 and "damaged" in result.stderr, result.stderr
    too_long = str(tmp_path / ("a" * 300 + ".db"))
    for result in (
        cli("status", "--state", too_long, str(campaign.manifest)),
        cli("state", "copy", str(state_path(campaign)), too_long),
    ):
        assert result.code == 3 and "internal error" not in result.stderr, result.stderr


@pytest.mark.parametrize("second_state", ["symlink", "hard link", "another state"])
def test_a_second_run_of_a_campaign_under_way_is_refused(tmp_path: Path, second_state: str) -> None:
    config = SandboxConfig(task_seconds=2.0, task_jitter=0.0, token=SECRET_TOKEN)
    with Sandbox(tmp_path / "w", config) as sandbox:
        campaign = Campaign(tmp_path / "c", rows=3).write()
        first = popen("run", "--no-progress", str(campaign.manifest), sandbox=sandbox)
        try:
            deadline = time.monotonic() + 30
            while not sandbox.counters().creates and time.monotonic() < deadline:
                time.sleep(0.05)
            alias = tmp_path / "elsewhere" / "alias.db"
            alias.parent.mkdir()
            if second_state == "symlink":
                alias.symlink_to(state_path(campaign))
            elif second_state == "hard link":
                os.link(state_path(campaign), alias)
            first.send_signal(signal.SIGSTOP)  # (still under way, however slow this machine)
            try:
                second = run(campaign, sandbox, "--state", str(alias))
            finally:
                first.send_signal(signal.SIGCONT)
            expected = {"symlink": "another hifly-batch run is using this state",
                        "hard link": "using this state file (by another path to the same file)",
                        "another state": "another hifly-batch run of this campaign"}  # fmt: skip
            assert second.code == 3 and expected[second_state] in second.stderr, second.stderr
        finally:
            assert first.wait(timeout=60) == 0
        made = creates(sandbox)
    assert made["video/create_by_tts"] == 3  # each video created once


def test_a_finished_video_whose_download_failed_is_downloaded_never_created(
    tmp_path: Path,
) -> None:
    world, campaign = tmp_path / "w", Campaign(tmp_path / "c", rows=2).write()
    with Sandbox(world, FAST) as sandbox:
        assert run(campaign, sandbox).code == 0
        token, made = sandbox.token, creates(sandbox)
    shutil.rmtree(campaign.output_dir / "videos" / "welcome")
    with socket.socket() as probe:  # a port nothing listens on: the service is unreachable
        probe.bind(("127.0.0.1", 0))
        gone = SimpleNamespace(base_url=f"http://127.0.0.1:{probe.getsockname()[1]}", token=token)
    assert run(campaign, gone).code != 0  # type: ignore[arg-type]
    plan = cli("plan", str(campaign.manifest)).stdout
    actions = {line.split()[1]: line.split()[0] for line in plan.splitlines() if "videos." in line}
    assert set(actions.values()) == {"download"}, plan
    with Sandbox(world, FAST) as sandbox:
        again = run(campaign, sandbox)
        assert again.code == 0, again.stderr
        assert creates(sandbox) == made  # the world's count: nothing created again
    assert len(list((campaign.output_dir / "videos" / "welcome").glob("*.mp4"))) == 2


def test_recreate_makes_exactly_the_matching_done_item_again(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    campaign = Campaign(tmp_path / "c", rows=3).write()
    assert run(campaign, sandbox).code == 0
    made = creates(sandbox)
    target = "videos.welcome[c0002]"
    dry = cli("run", "--dry-run", "--recreate", target, str(campaign.manifest), sandbox=sandbox)
    assert f"recreate  {target}" in dry.stdout and "asked with --recreate" in dry.stdout
    assert creates(sandbox) == made  # a dry run sends nothing
    again = run(campaign, sandbox, "--recreate", target)
    assert again.code == 0, again.stderr
    after = creates(sandbox)
    assert after["video/create_by_tts"] == made["video/create_by_tts"] + 1
    assert {k: v for k, v in after.items() if k != "video/create_by_tts"} == {
        k: v for k, v in made.items() if k != "video/create_by_tts"
    }
    nothing = run(campaign, sandbox, "--recreate", "videos.nope*")
    assert nothing.code == 2 and "--recreate videos.nope*: no item id matches" in nothing.stderr


def test_rows_taken_out_are_listed_as_removed_and_their_outputs_kept(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    campaign = Campaign(tmp_path / "c", rows=3).write()
    assert run(campaign, sandbox).code == 0
    made = creates(sandbox)
    campaign.rows = 2
    campaign.write()
    plan = cli("plan", str(campaign.manifest)).stdout
    assert "removed   videos.welcome[c0003]  (outputs kept)" in plan, plan
    assert json.loads(cli("plan", "--json", str(campaign.manifest)).stdout)["removed"] == [
        "videos.welcome[c0003]"
    ]
    assert run(campaign, sandbox).code == 0
    assert creates(sandbox) == made
    assert (campaign.output_dir / "videos" / "welcome" / "c0003.mp4").is_file()


def renamed_output(campaign: Campaign) -> None:
    text = campaign.manifest.read_text("utf-8")
    title = '    title: "欢迎{{ row.name }}"\n'
    campaign.manifest.write_text(
        text.replace(title, title + '    output: "renamed/{{ key }}.mp4"\n')
    )


@pytest.mark.parametrize("old_file", ["kept", "deleted"])
def test_a_changed_output_path_moves_or_downloads_the_file_and_creates_nothing(
    sandbox: Sandbox, tmp_path: Path, old_file: str
) -> None:
    campaign = Campaign(tmp_path / "c", rows=2).write()
    assert run(campaign, sandbox).code == 0
    made = creates(sandbox)
    old = campaign.output_dir / "videos" / "welcome"
    before = {p.name: p.read_bytes() for p in old.glob("*.mp4")}
    if old_file == "deleted":
        shutil.rmtree(old)
    renamed_output(campaign)
    plan = cli("plan", str(campaign.manifest)).stdout
    assert "move      videos.welcome[c0001]" in plan and "→ renamed/c0001.mp4" in plan, plan
    assert run(campaign, sandbox).code == 0
    assert creates(sandbox) == made
    new = campaign.output_dir / "renamed"
    assert {p.name: p.read_bytes() for p in new.glob("*.mp4")} == before
    assert not list(old.glob("*.mp4"))
    rows = {r["item"]: r["output"] for r in report_rows(campaign)}
    assert rows["videos.welcome[c0002]"] == "renamed/c0002.mp4"
    again = json.loads(cli("plan", "--json", str(campaign.manifest)).stdout)
    assert set(again["totals"]) == {"skip"}


def test_two_outputs_that_swap_paths_each_end_up_with_their_own_video(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    campaign = Campaign(tmp_path / "c", rows=2).write()
    assert run(campaign, sandbox).code == 0
    made = creates(sandbox)
    swapped = "videos/welcome/{{ 'c0002' if key == 'c0001' else 'c0001' }}.mp4"
    text = campaign.manifest.read_text("utf-8")
    title = '    title: "欢迎{{ row.name }}"\n'
    campaign.manifest.write_text(text.replace(title, f'{title}    output: "{swapped}"\n'))
    assert run(campaign, sandbox).code == 0
    assert creates(sandbox) == made
    rows = {r["item"]: r for r in report_rows(campaign)}
    for item, other in (("c0001", "c0002"), ("c0002", "c0001")):
        row = rows[f"videos.welcome[{item}]"]
        assert row["output"] == f"videos/welcome/{other}.mp4"
        saved = (campaign.output_dir / row["output"]).read_bytes()
        assert saved == sandbox.output_bytes(row["task_id"]), item


def test_plan_says_download_for_a_deleted_output_and_the_run_creates_nothing(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    campaign = Campaign(tmp_path / "c", rows=2).write()
    assert run(campaign, sandbox).code == 0
    made = creates(sandbox)
    gone = campaign.output_dir / "videos" / "welcome" / "c0001.mp4"
    original = gone.read_bytes()
    gone.unlink()
    plan = json.loads(cli("plan", "--json", str(campaign.manifest)).stdout)
    actions = {item["id"]: item["action"] for item in plan["items"]}
    assert actions.pop("videos.welcome[c0001]") == "download"
    assert set(actions.values()) == {"skip"}
    assert run(campaign, sandbox).code == 0
    assert gone.read_bytes() == original and creates(sandbox) == made


@pytest.mark.parametrize("place", ["under a file", "a folder"])
def test_a_state_path_that_cannot_hold_a_state_is_said_so_exit_3(
    tmp_path: Path, place: str
) -> None:
    campaign = Campaign(tmp_path / "c", rows=1).write()
    (tmp_path / "a-file").write_text("")
    (tmp_path / "a-folder.db").mkdir()
    state = {"under a file": tmp_path / "a-file" / "s.db", "a folder": tmp_path / "a-folder.db"}
    commands = ("run",) if place == "under a file" else ("run", "plan", "status")
    for command in commands:  # (reading a state that cannot exist finds none: no error)
        result = cli(command, "--sandbox", "--state", str(state[place]), str(campaign.manifest))
        expected = "cannot be made there" if place == "under a file" else "is a folder"
        assert result.code == 3 and expected in result.stderr, (command, result)
        assert "internal error" not in result.stderr
